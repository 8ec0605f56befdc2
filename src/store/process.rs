//! Process liveness, used to tell a run (or lock) whose owner is gone from one
//! that is still in progress.

use super::model::{Run, RunStatus};

/// Whether a process with this PID exists. On Linux this checks
/// `/proc/<pid>`; elsewhere the answer is unknown and treated as alive, so a
/// run is never wrongly reported interrupted.
pub fn pid_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    #[cfg(target_os = "linux")]
    {
        if pid == 0 {
            return false;
        }
        std::path::Path::new("/proc").join(pid.to_string()).exists()
    }
    #[cfg(not(target_os = "linux"))]
    {
        true
    }
}

/// A `running` run whose owner process is gone can never finish: report it
/// as `interrupted`.
pub fn effective(mut run: Run) -> Run {
    if run.status == RunStatus::Running && !pid_alive(run.owner_pid) {
        run.status = RunStatus::Interrupted;
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_is_alive() {
        assert!(pid_alive(std::process::id()));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reaped_child_is_dead() {
        let Ok(mut child) = std::process::Command::new("true").spawn() else {
            return; // no `true` binary: nothing to check
        };
        let pid = child.id();
        let _ = child.wait();
        assert!(!pid_alive(pid));
        assert!(!pid_alive(0));
    }
}
