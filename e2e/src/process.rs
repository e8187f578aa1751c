//! Binaries a test runs, with their output in a log file and a guaranteed stop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// A running binary; clones share it. Stopped when the owning `TestEnv` is dropped.
#[derive(Clone)]
pub struct TestProcess {
    name: String,
    log: PathBuf,
    child: Arc<Mutex<Option<Child>>>,
}

impl TestProcess {
    pub(crate) fn start(name: &str, mut command: Command, log_dir: &Path) -> Self {
        let log = log_dir.join(format!("{name}.log"));
        let file =
            File::create(&log).unwrap_or_else(|err| panic!("creating {}: {err}", log.display()));
        let stderr = file.try_clone().expect("cloning the log file handle");
        // The caller's KUBECONFIG (e.g. an impersonating one) wins over the admin default.
        let has_kubeconfig = command.get_envs().any(|(key, _)| key == "KUBECONFIG");
        if !has_kubeconfig {
            command.env("KUBECONFIG", crate::cluster::kubeconfig_path());
        }
        command.stdin(Stdio::null()).stdout(file).stderr(stderr);
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("starting {name} ({command:?}): {err}"));
        Self {
            name: name.to_owned(),
            log,
            child: Arc::new(Mutex::new(Some(child))),
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().ok()?.as_ref().map(Child::id)
    }

    /// Sends SIGTERM (graceful stop) without waiting.
    pub fn terminate(&self) {
        if let Some(pid) = self.pid() {
            let _sent = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
    }

    /// Waits for the process to exit, up to `timeout`; returns its exit code (None: killed or timed out).
    pub fn wait(&self, timeout: std::time::Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(mut guard) = self.child.lock()
                && let Some(child) = guard.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return status.code();
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Kills the process (if still running) and reaps it.
    pub fn stop(&self) {
        if let Ok(mut guard) = self.child.lock()
            && let Some(mut child) = guard.take()
        {
            let _killed = child.kill();
            let _reaped = child.wait();
        }
    }

    /// The captured output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of the output, headed by the process name.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        let start = all.len().saturating_sub(lines);
        format!(
            "--- {} ({}) ---\n{}\n",
            self.name,
            self.log.display(),
            all[start..].join("\n")
        )
    }
}
