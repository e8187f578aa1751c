//! `cargo xtask images`: wharf's container images as OCI archives, built without Docker, and
//! their import into the local node's containerd.
//!
//! Each archive (`target/images/<name>.tar`) holds one image with one layer: a root filesystem
//! of the release binary and the shared libraries `ldd` lists, `/etc/passwd` with the non-root
//! user 65532, and the CA bundle. `ctr -n k8s.io images import` names it
//! `docker.io/wharf/<name>:dev` (the chart's default tag; the registry image:
//! `docker.io/library/registry:2`). The Dockerfiles in `images/` build the same names with Docker.

mod catalog;
mod oci;
mod rootfs;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::Args;

use crate::scripts::repo_root;
use catalog::HostPackage;

/// The tag the chart's values default to for every wharf image.
pub const DEFAULT_TAG: &str = "dev";

/// Options of `cargo xtask images`.
#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Images to build (default: all): mirror-controller, registry-controller, secret-rotator,
    /// hostess-agent, registry-auth, nginx-mirror, registry, busybox.
    images: Vec<String>,
    /// Tag of the wharf images; the default is the chart's default (`imageTag: dev`).
    #[arg(long, default_value = DEFAULT_TAG)]
    tag: String,
    /// Where the archives go (default: target/images).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Also import the archives into the local node's containerd (`cargo xtask cluster up --node`).
    #[arg(long)]
    import: bool,
    /// Take debug builds (debug info stripped) instead of release builds: much quicker right
    /// after `cargo test`, which has compiled everything in the dev profile; for tests.
    #[arg(long)]
    debug: bool,
    /// Only print the image names.
    #[arg(long)]
    list: bool,
}

pub fn run(args: ImagesArgs) -> anyhow::Result<()> {
    let names = selected(&args.images)?;
    if args.list {
        for name in &names {
            println!("{name}\t{}", catalog::reference(name, &args.tag));
        }
        return Ok(());
    }
    let target_dir = target_dir();
    let out_dir = args.out_dir.unwrap_or_else(|| target_dir.join("images"));
    let components: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| catalog::is_component(n))
        .collect();
    let binaries = build_binaries(&components, args.debug, &target_dir, &out_dir)?;
    let mut packages: Vec<HostPackage> = names
        .iter()
        .flat_map(|n| catalog::host_packages(n))
        .collect();
    packages.dedup();
    ensure_host_packages(&packages)?;

    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut written = Vec::new();
    for name in &names {
        let reference = catalog::reference(name, &args.tag);
        let (rootfs, config) = catalog::assemble(name, &args.tag, &binaries)
            .with_context(|| format!("assembling the root filesystem of {reference}"))?;
        let archive = oci::build_archive(&reference, &rootfs, &config)
            .with_context(|| format!("writing the image {reference}"))?;
        let path = out_dir.join(format!("{name}.tar"));
        write_atomically(&path, &archive.bytes)?;
        eprintln!(
            "images: {reference}  {}  {:.1} MB  {}",
            path.display(),
            archive.bytes.len() as f64 / 1e6,
            archive.manifest_digest
        );
        written.push(path);
    }
    if args.import {
        import(&written)?;
    }
    Ok(())
}

/// The images asked for, in catalog order; all when none is named.
fn selected(asked: &[String]) -> anyhow::Result<Vec<&'static str>> {
    let known = catalog::all_names();
    if let Some(unknown) = asked.iter().find(|a| !known.contains(&a.as_str())) {
        bail!(
            "unknown image {unknown:?}; the images are: {}",
            known.join(", ")
        );
    }
    Ok(known
        .into_iter()
        .filter(|name| asked.is_empty() || asked.iter().any(|a| a == name))
        .collect())
}

/// Cargo's target directory (CARGO_TARGET_DIR, else `target/` of the workspace).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// Builds the components' binaries; returns the directory that holds them: `target/release`,
/// or with `debug`, stripped copies of the `target/debug` ones in `<out_dir>/.debug-bin`.
fn build_binaries(
    components: &[&str],
    debug: bool,
    target_dir: &Path,
    out_dir: &Path,
) -> anyhow::Result<PathBuf> {
    let profile_dir = target_dir.join(if debug { "debug" } else { "release" });
    if components.is_empty() {
        return Ok(profile_dir);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    without_cargo_run_env(&mut command);
    command.current_dir(repo_root()).arg("build");
    if !debug {
        command.arg("--release");
    }
    for component in components {
        command.args(["-p", component, "--bin", component]);
    }
    let what = format!(
        "cargo build{} of {}",
        if debug { "" } else { " --release" },
        components.join(", ")
    );
    eprintln!("images: {what}");
    let status = command.status().context("cannot run cargo")?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    if !debug {
        return Ok(profile_dir);
    }
    ensure_host_packages(&[HostPackage {
        package: "binutils",
        file: "/usr/bin/strip",
    }])?;
    let stripped = out_dir.join(".debug-bin");
    std::fs::create_dir_all(&stripped)
        .with_context(|| format!("creating {}", stripped.display()))?;
    for component in components {
        let status = Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(stripped.join(component))
            .arg(profile_dir.join(component))
            .status()
            .context("cannot run strip (package binutils)")?;
        if !status.success() {
            bail!(
                "strip --strip-debug {} failed ({status})",
                profile_dir.join(component).display()
            );
        }
    }
    Ok(stripped)
}

/// Removes the variables cargo sets for a program it runs (`cargo xtask` is `cargo run`) from a
/// nested cargo's environment: build scripts list some of them as inputs (ring:
/// `rerun-if-env-changed=CARGO_PKG_NAME`), so inheriting them would rebuild half the dependency
/// tree, and the next plain build would rebuild it back.
pub(crate) fn without_cargo_run_env(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(is_cargo_run_variable) {
            command.env_remove(name);
        }
    }
}

fn is_cargo_run_variable(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_MANIFEST_")
        || matches!(
            name,
            "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "CARGO_RUSTC_CURRENT_DIR"
                | "OUT_DIR"
        )
}

/// Installs (apt-get) the Debian packages whose files the images copy, when missing.
pub(crate) fn ensure_host_packages(packages: &[HostPackage]) -> anyhow::Result<()> {
    let mut missing: Vec<&str> = packages
        .iter()
        .filter(|p| !Path::new(p.file).exists())
        .map(|p| p.package)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("images: installing Debian packages {}", missing.join(" "));
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    if !install().is_ok_and(|s| s.success()) {
        // A fresh machine has no package lists yet.
        let updated = Command::new("apt-get").arg("update").status();
        if !updated.is_ok_and(|s| s.success()) || !install().is_ok_and(|s| s.success()) {
            bail!(
                "could not install {} (apt-get install, as root); the images copy their files",
                missing.join(" ")
            );
        }
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let temporary = path.with_extension("tar.tmp");
    std::fs::write(&temporary, bytes)
        .with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("writing {}", path.display()))
}

/// `ctr -n k8s.io images import` of each archive into the local node's containerd, where the
/// kubelet finds the images by name.
fn import(archives: &[PathBuf]) -> anyhow::Result<()> {
    let socket = node_containerd_socket()?;
    for archive in archives {
        let output = Command::new("ctr")
            .arg("--address")
            .arg(&socket)
            .args(["-n", "k8s.io", "images", "import"])
            .arg(archive)
            .output()
            .context("cannot run ctr (package containerd)")?;
        if !output.status.success() {
            bail!(
                "ctr images import {} failed: {}",
                archive.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        eprintln!("images: imported {} into {socket}", archive.display());
    }
    Ok(())
}

/// The node's containerd socket, as `cluster.sh env` prints it while the node runs.
fn node_containerd_socket() -> anyhow::Result<String> {
    let output = Command::new("bash")
        .arg(repo_root().join("xtask/scripts/cluster.sh"))
        .arg("env")
        .output()
        .context("cannot run xtask/scripts/cluster.sh env")?;
    parse_env_value(
        &String::from_utf8_lossy(&output.stdout),
        "WHARF_NODE_CONTAINERD_ADDRESS",
    )
    .context("the local node is not running: start it with `cargo xtask cluster up --node`")
}

/// The value of `export NAME=value` in `cluster.sh env` output.
fn parse_env_value(env_output: &str, name: &str) -> Option<String> {
    env_output.lines().find_map(|line| {
        let value = line
            .trim()
            .strip_prefix("export ")?
            .strip_prefix(name)?
            .strip_prefix('=')?;
        Some(value.trim_matches(['"', '\'']).to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_names_means_every_image() {
        assert_eq!(selected(&[]).expect("all"), catalog::all_names());
    }

    #[test]
    fn selection_keeps_catalog_order_and_rejects_unknown_names() {
        let asked = ["busybox".to_owned(), "registry-auth".to_owned()];
        assert_eq!(
            selected(&asked).expect("known"),
            ["registry-auth", "busybox"]
        );
        let error = selected(&["nginx".to_owned()]).expect_err("unknown");
        assert!(error.to_string().contains("nginx-mirror"), "{error}");
    }

    #[test]
    fn a_nested_cargo_keeps_its_settings_but_not_the_running_packages_identity() {
        for inherited in [
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_MANIFEST_DIR",
            "CARGO_CRATE_NAME",
        ] {
            assert!(is_cargo_run_variable(inherited), "{inherited}");
        }
        for setting in [
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_JOBS",
            "CARGO",
            "PATH",
        ] {
            assert!(!is_cargo_run_variable(setting), "{setting}");
        }
    }

    #[test]
    fn the_socket_comes_from_cluster_env() {
        let output = "export KUBECONFIG=/s/admin.kubeconfig\n\
                      export WHARF_NODE_CONTAINERD_ADDRESS=/s/node/containerd/containerd.sock\n";
        assert_eq!(
            parse_env_value(output, "WHARF_NODE_CONTAINERD_ADDRESS").as_deref(),
            Some("/s/node/containerd/containerd.sock")
        );
        assert_eq!(
            parse_env_value("export KUBECONFIG=/k\n", "WHARF_NODE_CONTAINERD_ADDRESS"),
            None
        );
    }
}
