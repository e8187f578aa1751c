//! Running the project's shell scripts and cargo from xtask, with errors that say what failed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// The repository root (xtask lives one level below it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `xtask/scripts/cluster.sh ARGS…`: the local control plane.
pub fn cluster(args: &[String]) -> anyhow::Result<()> {
    let script = repo_root().join("xtask/scripts/cluster.sh");
    run(
        Command::new("bash").arg(&script).args(args),
        "xtask/scripts/cluster.sh",
    )
}

/// Runs every `xtask/scripts/*-deps.sh`: each installs (once, idempotently) what one group of
/// tests needs from Debian or PyPI, so a fresh machine needs nothing but this repository.
pub fn install_test_dependencies() -> anyhow::Result<()> {
    let dir = repo_root().join("xtask/scripts");
    let mut scripts: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.ends_with("-deps.sh"))
        })
        .collect();
    scripts.sort();
    for script in scripts {
        let what = format!("{}", script.display());
        run(Command::new("bash").arg(&script), &what)?;
    }
    Ok(())
}

/// `cargo test --workspace ARGS…` against the local control plane. Its output streams through,
/// and a last line totals every test binary's results (`N passed, N failed`), because cargo's
/// own last line is the doc-test summary, which says nothing about the run.
pub fn cargo_test(args: &[String]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    crate::images::without_cargo_run_env(&mut command);
    let mut child = command
        .current_dir(repo_root())
        .args(["test", "--workspace", "--no-fail-fast"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start cargo test")?;
    let mut totals = TestTotals::default();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.context("reading cargo test's output")?;
            println!("{line}");
            totals.add_summary_line(&line);
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    println!(
        "{} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    if !status.success() {
        bail!("cargo test --workspace failed ({status})");
    }
    Ok(())
}

/// `cargo xtask demo`: the tour itself is `wharf-demo` of the e2e crate, which shares its steps
/// with the node tests (e2e/src/scenario), so what the demo shows is what CI checks.
pub fn demo() -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    crate::images::without_cargo_run_env(&mut command);
    run(
        command.current_dir(repo_root()).args([
            "run",
            "--quiet",
            "--package",
            "wharf-e2e",
            "--bin",
            "wharf-demo",
        ]),
        "the wharf demo",
    )
}

/// Sums of libtest's `test result:` lines.
#[derive(Debug, Default, PartialEq, Eq)]
struct TestTotals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl TestTotals {
    /// Adds `test result: ok. 16 passed; 0 failed; 1 ignored; …`; other lines are ignored.
    fn add_summary_line(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(label), Some(count)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(count) = count.parse::<u64>() else {
                continue;
            };
            match label {
                "passed" => self.passed += count,
                "failed" => self.failed += count,
                "ignored" => self.ignored += count,
                _ => {}
            }
        }
    }
}

fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot start {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::TestTotals;

    #[test]
    fn totals_add_up_libtest_summaries() {
        let mut totals = TestTotals::default();
        totals.add_summary_line("test result: ok. 16 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s");
        totals.add_summary_line(
            "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out",
        );
        totals.add_summary_line("running 5 tests");
        assert_eq!(
            totals,
            TestTotals {
                passed: 19,
                failed: 2,
                ignored: 1
            }
        );
    }
}
