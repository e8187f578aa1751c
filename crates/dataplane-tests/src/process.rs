//! Processes the harness starts (each in its own process group, stopped on drop), scratch
//! directories, free loopback ports, and running a command with an error that shows its output.

use std::fs::{File, OpenOptions};
use std::io::Read as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};

/// A long-running process (registry, nginx, containerd) whose output goes to a log file.
/// Dropping it stops the whole process group: nginx workers and all.
pub struct Daemon {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    /// Starts `command` in a new process group with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Daemon {
        let output = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
        let errors = output.try_clone().expect("duplicate log file handle");
        command
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors)
            .process_group(0);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        Daemon {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
        }
    }

    /// Process ID (also the process group ID), while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The file the process writes to.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Waits until `addr` accepts connections; panics with the log if the process exits first.
    pub fn wait_for_port(&mut self, addr: SocketAddr, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {addr} within {timeout:?}; its log:\n{}",
                self.name,
                tail(&self.log, 40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the unix socket `path` accepts connections.
    pub fn wait_for_socket(&mut self, path: &Path, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while std::os::unix::net::UnixStream::connect(path).is_err() {
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {} within {timeout:?}; its log:\n{}",
                self.name,
                path.display(),
                tail(&self.log, 40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Panics with the log when the process has exited.
    pub fn assert_running(&mut self) {
        let Some(child) = self.child.as_mut() else {
            panic!("{} was stopped", self.name);
        };
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{} exited ({status}); its log:\n{}",
                self.name,
                tail(&self.log, 40)
            );
        }
    }

    /// Stops the process group: SIGTERM, then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let group = i32::try_from(child.id()).ok().and_then(Pid::from_raw);
        if let Some(group) = group {
            let _ = kill_process_group(group, Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(group) = group {
            // Whatever is left of the group (an nginx worker still closing, a straggler).
            let _ = kill_process_group(group, Signal::KILL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A scratch directory, removed on drop, that nginx workers (which drop root privileges to the
/// `www-data` user) can enter.
pub struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new(prefix: &str) -> Workdir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("wharf-{prefix}-"))
            .tempdir()
            .expect("create a temporary directory");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("make the temporary directory readable");
        Workdir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A subdirectory, created (mode 0755) if missing.
    pub fn subdir(&self, name: &str) -> PathBuf {
        make_dir(&self.dir.path().join(name))
    }
}

/// Creates `dir` and its parents, readable by everyone.
pub fn make_dir(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", dir.display()));
    dir.to_owned()
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind 127.0.0.1:0")
}

/// CPU time (user + system) used so far by the direct children of `parent` (nginx's workers).
pub fn children_cpu_seconds(parent: u32) -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
        .filter(|stat| stat_field(stat, PPID) == Some(u64::from(parent)))
        .map(|stat| cpu_seconds(&stat, UTIME, STIME))
        .sum()
}

/// CPU time (user + system) process `pid` has used so far (all its threads).
pub fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    cpu_seconds(&stat, UTIME, STIME)
}

/// CPU time (user + system) of this process's children that have exited and been waited for,
/// e.g. every `curl` run so far: the difference around one run is that run's CPU time.
pub fn reaped_children_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    cpu_seconds(&stat, CHILDREN_UTIME, CHILDREN_STIME)
}

// Fields of /proc/<pid>/stat, numbered as in proc(5); times are in USER_HZ, 100 per second.
const PPID: usize = 4;
const UTIME: usize = 14;
const STIME: usize = 15;
const CHILDREN_UTIME: usize = 16;
const CHILDREN_STIME: usize = 17;
const TICKS_PER_SECOND: f64 = 100.0;

fn cpu_seconds(stat: &str, user: usize, system: usize) -> f64 {
    let ticks = stat_field(stat, user).unwrap_or(0) + stat_field(stat, system).unwrap_or(0);
    ticks as f64 / TICKS_PER_SECOND
}

/// Field `number` (from 3 on) of a stat line. The command name (field 2) may contain spaces
/// and parentheses: the fields after it start after its last closing parenthesis.
fn stat_field(stat: &str, number: usize) -> Option<u64> {
    let (_, fields) = stat.rsplit_once(')')?;
    fields
        .split_whitespace()
        .nth(number.checked_sub(3)?)?
        .parse()
        .ok()
}

/// The last `lines` lines of a log file.
pub fn tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs `command` to completion; `Err` carries its exit status, stdout and stderr.
pub fn run(command: &mut Command) -> Result<Output, String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{command:?} failed ({}):\nstdout: {}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Like [`run`], panicking on failure.
pub fn run_ok(command: &mut Command) -> Output {
    run(command).unwrap_or_else(|e| panic!("{e}"))
}

/// The config of a helper nginx (not the mirror's): in the foreground, logging errors to
/// stderr, with its pid and temporary files under `run`; `main` goes before the `events`
/// block, `http` inside the `http` block.
pub fn helper_nginx_config(run: &Path, main: &str, worker_connections: u32, http: &str) -> String {
    let run = run.display();
    format!(
        r#"daemon off;
{main}pid {run}/nginx.pid;
error_log stderr warn;
events {{ worker_connections {worker_connections}; }}
http {{
    client_body_temp_path {run}/client_body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
{http}}}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "42 (a (b) c) S 7 42 42 0 -1 4194560 10 0 0 0 250 130 3 4 20 0";
        assert_eq!(stat_field(stat, PPID), Some(7));
        assert_eq!(stat_field(stat, UTIME), Some(250));
        assert_eq!(stat_field(stat, CHILDREN_STIME), Some(4));
        assert_eq!(cpu_seconds(stat, UTIME, STIME), 3.8);
        assert_eq!(stat_field(stat, 2), None);
        assert_eq!(stat_field("garbage", UTIME), None);
    }

    #[test]
    fn a_finished_child_adds_its_cpu_time() {
        let before = reaped_children_cpu_seconds();
        run_ok(
            Command::new("sh").args(["-c", "i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done"]),
        );
        let used = reaped_children_cpu_seconds() - before;
        assert!(used > 0.0 && used < 60.0, "{used}");
    }

    #[test]
    fn a_running_process_reports_its_cpu_time() {
        let mut child = Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done; sleep 5",
            ])
            .spawn()
            .expect("start sh");
        let deadline = Instant::now() + Duration::from_secs(30);
        while process_cpu_seconds(child.id()) == 0.0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let used = process_cpu_seconds(child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(used > 0.0, "{used}");
        assert_eq!(process_cpu_seconds(u32::MAX), 0.0);
    }
}
