//! Quota arithmetic: what an environment has left of each resource, what a child may be
//! given, and each boot app's share of the machine. The kernel measures use where it lives
//! (capability space, address space, packet rings, slice vector); only the policy is here.
use exo_abi::quota::{Limits, RESOURCES, Resource};

/// What every child needs at least to start: its own and its parent's capability, its slice.
pub const CHILD_MINIMUM: Limits = {
    let mut minimum = [0u64; RESOURCES];
    minimum[Resource::Capabilities as usize] = 2;
    minimum[Resource::Slices as usize] = 1;
    Limits(minimum)
};

/// Of each resource, what is neither used nor reserved for children.
pub fn available(limits: &Limits, used: &Limits, reserved: &Limits) -> Limits {
    let mut left = Limits::default();
    for resource in Resource::ALL {
        left.set(
            resource,
            limits
                .get(resource)
                .saturating_sub(used.get(resource))
                .saturating_sub(reserved.get(resource)),
        );
    }
    left
}

/// The limits a new child gets from a parent with `available` left: `requested`, or by
/// default half of what is left (at least [`CHILD_MINIMUM`]). Refused, naming the resource,
/// when the parent has too little.
pub fn child_limits(available: &Limits, requested: Option<&Limits>) -> Result<Limits, Resource> {
    let mut limits = Limits::default();
    for resource in Resource::ALL {
        let left = available.get(resource);
        let wanted = match requested {
            Some(requested) => requested.get(resource),
            None => (left / 2).max(CHILD_MINIMUM.get(resource)),
        };
        if wanted > left || wanted < CHILD_MINIMUM.get(resource) {
            return Err(resource);
        }
        limits.set(resource, wanted);
    }
    Ok(limits)
}

/// Each of `boot_apps` boot apps' equal share of `machine` (the kernel's totals).
pub fn boot_share(machine: &Limits, boot_apps: usize) -> Limits {
    let apps = boot_apps.max(1) as u64;
    let mut share = Limits::default();
    for resource in Resource::ALL {
        share.set(resource, machine.get(resource) / apps);
    }
    share
}

/// `a + b` and `a - b`, resource by resource (saturating).
pub fn add(a: &Limits, b: &Limits) -> Limits {
    let mut sum = *a;
    for (total, more) in sum.0.iter_mut().zip(b.0) {
        *total = total.saturating_add(more);
    }
    sum
}

/// `a - b`, resource by resource, never below zero.
pub fn subtract(a: &Limits, b: &Limits) -> Limits {
    let mut difference = *a;
    for (total, less) in difference.0.iter_mut().zip(b.0) {
        *total = total.saturating_sub(less);
    }
    difference
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(values: [u64; RESOURCES]) -> Limits {
        Limits(values)
    }

    #[test]
    fn children_get_half_by_default_and_never_more_than_is_left() {
        let left = available(
            &limits([100, 100, 100, 100, 100, 4, 8, 4096]),
            &limits([10, 20, 0, 0, 0, 1, 2, 1000]),
            &limits([10, 0, 0, 0, 0, 1, 0, 1096]),
        );
        assert_eq!(left, limits([80, 80, 100, 100, 100, 2, 6, 2000]));
        assert_eq!(
            child_limits(&left, None),
            Ok(limits([40, 40, 50, 50, 50, 1, 3, 1000]))
        );
        let too_much = limits([2, 1, 1, 1, 1, 3, 0, 0]);
        assert_eq!(child_limits(&left, Some(&too_much)), Err(Resource::Slices));
        let too_much_code = limits([2, 1, 1, 1, 1, 1, 0, 2001]);
        assert_eq!(
            child_limits(&left, Some(&too_much_code)),
            Err(Resource::JitCodeBytes)
        );
        let too_few_caps = limits([1, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(
            child_limits(&left, Some(&too_few_caps)),
            Err(Resource::Capabilities)
        );
        // A parent with no slice to spare cannot spawn.
        let no_slice = limits([80, 80, 100, 100, 100, 0, 6, 0]);
        assert_eq!(child_limits(&no_slice, None), Err(Resource::Slices));
    }

    #[test]
    fn boot_apps_split_the_machine_evenly() {
        let machine = limits([8192, 1000, 64, 300, 10, 32, 64, 1 << 20]);
        assert_eq!(
            boot_share(&machine, 3),
            limits([2730, 333, 21, 100, 3, 10, 21, 349_525])
        );
        assert_eq!(boot_share(&machine, 0), machine);
        let a = limits([1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(subtract(&add(&a, &a), &a), a);
        assert_eq!(subtract(&a, &add(&a, &a)), Limits::default());
    }
}
