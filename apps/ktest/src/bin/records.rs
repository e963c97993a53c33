//! Scenario: bounded records of ended environments. The parent spawns and waits for more
//! children, one after the other, than the kernel keeps records of; the last ones' exit
//! statuses are still known, the first one's record has been forgotten (status `Aborted`,
//! no accounting) rather than kept for ever.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
libnet::entry!(app::main);

#[cfg(target_os = "none")]
mod app {
    use libnet::abi::upcall::{EnvQuery, EnvStatus};
    use libnet::{env, println, sys};

    const CHILD: u64 = 1;
    const CHILDREN: usize = 160;
    /// The kernel's bound (`ENDED_RECORDS`).
    const KEPT: usize = 128;

    pub fn main() -> u8 {
        if env::argument() == CHILD {
            return 7;
        }
        let mut children = [libnet::abi::cap::CapHandle::NONE; CHILDREN];
        let mut exited = 0;
        for child in children.iter_mut() {
            *child = sys::spawn("records", CHILD).expect("spawn");
            if sys::wait(*child) == Ok(EnvStatus::Exited(7)) {
                exited += 1;
            }
        }
        let status = |index: usize| sys::env_status(children[index]);
        let kept = (CHILDREN - KEPT..CHILDREN)
            .filter(|&index| status(index) == Ok(EnvStatus::Exited(7)))
            .count();
        let forgotten = (0..CHILDREN - KEPT)
            .filter(|&index| status(index) == Ok(EnvStatus::Aborted))
            .count();
        let ticks = sys::env_info(children[0], EnvQuery::Dispatches);
        println!(
            "records: {exited}/{CHILDREN} children exited 7; the last {KEPT} still known: {kept}, the {} before forgotten: {forgotten} (first's dispatches {ticks:?})",
            CHILDREN - KEPT
        );
        let ok =
            exited == CHILDREN && kept == KEPT && forgotten == CHILDREN - KEPT && ticks == Ok(0);
        if ok { 0 } else { 1 }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
