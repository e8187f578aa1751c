//! Finds the system binaries the data plane runs, and fails with the fix when one is missing.

use std::path::{Path, PathBuf};

/// The command that installs everything these tests need.
pub const INSTALL_HINT: &str = "run `bash xtask/scripts/dataplane-deps.sh` (installs nginx, docker-registry, skopeo, containerd, apache2-utils, openssl and curl from Debian's packages)";

/// Directories searched besides `$PATH`: nginx and containerd live in sbin on Debian.
const EXTRA_DIRS: &[&str] = &["/usr/local/sbin", "/usr/sbin", "/sbin"];

/// The full path of `binary`; panics saying how to install it when it is not there.
pub fn require(binary: &str) -> PathBuf {
    find(binary).unwrap_or_else(|| panic!("`{binary}` is not installed: {INSTALL_HINT}"))
}

/// Whether every data-plane binary is present.
pub fn missing() -> Vec<&'static str> {
    [
        "nginx",
        "docker-registry",
        "skopeo",
        "containerd",
        "ctr",
        "htpasswd",
        "curl",
    ]
    .into_iter()
    .filter(|binary| find(binary).is_none())
    .collect()
}

fn find(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(binary))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// `$PATH` with the sbin directories added, for scripts that call `nginx` by name.
pub fn path_with_sbin() -> String {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for extra in EXTRA_DIRS {
        if !dirs.iter().any(|d| d == Path::new(extra)) {
            dirs.push(PathBuf::from(extra));
        }
    }
    std::env::join_paths(dirs)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| {
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()
        })
}
