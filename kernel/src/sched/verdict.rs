//! How the run ends: when nothing can run any more, check that nothing leaked and stop the
//! machine with the boot apps' verdict.
use super::*;

impl Kernel {
    /// Nothing can run: environments left are all waiting for PCT calls that nobody can make
    /// any more. End them, then end the run.
    pub(super) fn finish_or_end_waiters(&mut self, frame: &mut TrapFrame) {
        let waiting: Vec<EnvId> = self.envs.iter().flatten().map(|env| env.id).collect();
        for id in waiting {
            if let Some(env) = self.env(id) {
                log!(
                    "app {} (env {id}) waits for calls nobody is left to make: ended",
                    env.name
                );
            }
            self.end_env(id, EnvStatus::Aborted);
        }
        let _ = frame;
        self.finish();
    }

    /// Every environment has ended: check nothing leaked and stop the machine with the
    /// verdict of the boot apps (the first that did not exit 0, in command-line order).
    fn finish(&mut self) -> ! {
        paging::activate_kernel();
        self.active_space = 0;
        // The generated-code region's page tables are the kernel's (see `code_region`).
        let frames_after = frames::free_count()
            + code_region::code_table_frames()
            + code_region::split_table_frames();
        assert_eq!(
            self.frames_before,
            frames_after,
            "environments leaked {} frames",
            self.frames_before.abs_diff(frames_after)
        );
        assert!(self.caps.is_empty(), "capabilities outlived their holders");
        for &id in &self.boot_apps {
            let status = self.ended.get(id).map(|ended| ended.status);
            let exit = match status {
                Some(EnvStatus::Exited(0)) => continue,
                Some(EnvStatus::Exited(status)) => KernelExit::from_app_status(u64::from(status)),
                Some(EnvStatus::Faulted(_)) => KernelExit::AppFaulted,
                Some(EnvStatus::Aborted) | Some(EnvStatus::Running) | None => {
                    KernelExit::AppAborted
                }
            };
            arch::exit_qemu(exit);
        }
        log!(
            "all apps exited with status 0; {} frames free",
            frames::free_count()
        );
        arch::exit_qemu(KernelExit::Exited(0))
    }
}
