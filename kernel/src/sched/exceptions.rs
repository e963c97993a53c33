//! CPU exceptions in ring 3: delivered to the environment's own handler, or they end it.
use super::*;

/// A CPU exception in ring 3: deliver it to the environment's handler, or end it.
pub fn user_exception(frame: &mut TrapFrame, exception: &Exception) {
    with_kernel(|kernel| kernel.user_exception(frame, exception));
}

impl Kernel {
    fn user_exception(&mut self, frame: &mut TrapFrame, exception: &Exception) {
        let id = self.running;
        let env = self.current();
        let entry = env.upcall(UpcallKind::Exception);
        let deliverable = !matches!(exception.vector, 2 | 8 | 18);
        if entry != 0 && deliverable {
            let fault_address = exception.fault_address.unwrap_or(0);
            if deliver(
                env,
                frame,
                entry,
                u64::from(exception.vector),
                frame.error_code,
                fault_address,
            )
            .is_ok()
            {
                return;
            }
            log!(
                "app {} (env {id}): exception frame does not fit below rsp {:#x}",
                env.name,
                frame.rsp
            );
        }
        log!("app {} (env {id}) fault: {exception}", env.name);
        self.end_env(id, EnvStatus::Faulted(exception.vector));
        self.schedule(frame, Advance::SameSlice);
    }
}
