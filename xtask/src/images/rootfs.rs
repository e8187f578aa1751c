//! An image's root filesystem, assembled in memory from host files: a binary with the shared
//! libraries `ldd` lists, users, CA certificates, busybox applets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// uid/gid of the non-root user of the wharf images (distroless' `nonroot`).
pub const NONROOT: u32 = 65532;
/// Where Debian (and most runtimes) look for the CA bundle.
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What a path of the root filesystem is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    Dir,
    Bytes(Vec<u8>),
    /// A host file, read when the layer is written (binaries are large).
    HostFile(PathBuf),
    Symlink(String),
}

/// One path of the root filesystem with its owner and permission bits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub content: Content,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// A user of `/etc/passwd` (and its group of the same id and name).
#[derive(Clone, Copy, Debug)]
pub struct User {
    pub name: &'static str,
    pub id: u32,
    pub home: &'static str,
}

/// Paths (absolute, `/`-separated) to entries, sorted: layers come out in the same order on
/// every run, which makes them byte-identical.
#[derive(Clone, Debug, Default)]
pub struct RootFs {
    entries: BTreeMap<String, Entry>,
}

impl RootFs {
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries
            .iter()
            .map(|(path, entry)| (path.as_str(), entry))
    }

    #[cfg(test)]
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path)
    }

    /// A directory (and its missing parents, root-owned 0755).
    pub fn dir(&mut self, path: &str, mode: u32, owner: u32) {
        self.insert(path, Content::Dir, mode, owner);
    }

    pub fn bytes(&mut self, path: &str, data: impl Into<Vec<u8>>, mode: u32) {
        self.insert(path, Content::Bytes(data.into()), mode, 0);
    }

    /// A copy of the host file `host` (its content; a symlink is followed).
    pub fn host_file(&mut self, path: &str, host: &Path, mode: u32) -> anyhow::Result<()> {
        let resolved = std::fs::canonicalize(host)
            .with_context(|| format!("{} is missing on this machine", host.display()))?;
        if !resolved.is_file() {
            bail!("{} is not a regular file", host.display());
        }
        self.insert(path, Content::HostFile(resolved), mode, 0);
        Ok(())
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.insert(path, Content::Symlink(target.to_owned()), 0o777, 0);
    }

    fn insert(&mut self, path: &str, content: Content, mode: u32, owner: u32) {
        let path = normalize(path);
        let mut parent = Path::new(&path).parent();
        while let Some(dir) = parent.and_then(Path::to_str).filter(|d| *d != "/") {
            self.entries.entry(dir.to_owned()).or_insert(Entry {
                content: Content::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
            });
            parent = Path::new(dir).parent();
        }
        let entry = Entry {
            content,
            mode,
            uid: owner,
            gid: owner,
        };
        self.entries.insert(path, entry);
    }

    /// The binary at `path` and every shared library it loads, each at the path `ldd` names
    /// (the loader finds them there without an ld.so.cache).
    pub fn binary_with_libraries(&mut self, path: &str, host: &Path) -> anyhow::Result<()> {
        self.host_file(path, host, 0o755)?;
        for library in shared_libraries(host)? {
            let in_image = library
                .to_str()
                .with_context(|| format!("library path {} is not UTF-8", library.display()))?;
            self.host_file(in_image, &library, 0o755)?;
        }
        Ok(())
    }

    /// `/etc/passwd`, `/etc/group` and `/etc/nsswitch.conf` for root and `users`, a world-writable
    /// `/tmp`, each user's home, and the host's CA bundle.
    pub fn base_system(&mut self, users: &[User]) -> anyhow::Result<()> {
        let mut passwd = String::from("root:x:0:0:root:/root:/sbin/nologin\n");
        let mut group = String::from("root:x:0:\n");
        for user in users {
            let User { name, id, home } = user;
            passwd.push_str(&format!("{name}:x:{id}:{id}:{name}:{home}:/sbin/nologin\n"));
            group.push_str(&format!("{name}:x:{id}:\n"));
            if *home != "/nonexistent" {
                self.dir(home, 0o700, *id);
            }
        }
        passwd.push_str("nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n");
        group.push_str("nogroup:x:65534:\n");
        self.bytes("/etc/passwd", passwd, 0o644);
        self.bytes("/etc/group", group, 0o644);
        self.bytes(
            "/etc/nsswitch.conf",
            "passwd: files\ngroup: files\nhosts: files dns\n",
            0o644,
        );
        self.dir("/tmp", 0o1777, 0);
        self.dir("/root", 0o700, 0);
        self.host_file(CA_BUNDLE, Path::new(CA_BUNDLE), 0o644)
            .context("the CA bundle comes from Debian's ca-certificates package")
    }

    /// The host's busybox as `/bin/busybox` (with its libraries, if it is not the static build)
    /// and a symlink for each of its applets (`sh`, `cat`, `wget`, …), unless the image already
    /// has a file there.
    pub fn busybox(&mut self, host: &Path) -> anyhow::Result<()> {
        self.binary_with_libraries("/bin/busybox", host)?;
        let output = Command::new(host)
            .arg("--list-full")
            .output()
            .with_context(|| format!("running {} --list-full", host.display()))?;
        if !output.status.success() {
            bail!("{} --list-full failed", host.display());
        }
        for applet in String::from_utf8_lossy(&output.stdout).lines() {
            let path = format!("/{}", applet.trim());
            if path != "/bin/busybox" && !self.entries.contains_key(&path) {
                self.symlink(&path, "/bin/busybox");
            }
        }
        Ok(())
    }
}

/// `/a//b/` → `/a/b`, always absolute.
fn normalize(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// The libraries (and the dynamic loader) `ldd BINARY` lists; none for a static binary.
pub fn shared_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .context("running ldd (package libc-bin)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        if stdout.contains("not a dynamic executable")
            || stderr.contains("not a dynamic executable")
        {
            return Ok(Vec::new());
        }
        bail!("ldd {} failed: {stderr}", binary.display());
    }
    parse_ldd(&stdout).with_context(|| format!("ldd {}", binary.display()))
}

/// Parses `ldd` output: `name => /path (0x…)` and `/path (0x…)` lines; the vDSO has no file.
pub fn parse_ldd(output: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut libraries = Vec::new();
    for line in output.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("statically linked") {
            continue;
        }
        let target = match line.split_once(" => ") {
            Some((name, target)) => {
                if target.trim().starts_with("not found") {
                    bail!("shared library {name} not found on this machine");
                }
                target
            }
            None => line,
        };
        let path = target.split(" (").next().unwrap_or(target).trim();
        if path.starts_with('/') {
            libraries.push(PathBuf::from(path));
        }
    }
    libraries.sort();
    libraries.dedup();
    Ok(libraries)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NGINX_LDD: &str = "\tlinux-vdso.so.1 (0x00007f03de92a000)
\tlibcrypt.so.1 => /lib/x86_64-linux-gnu/libcrypt.so.1 (0x00007f03de789000)
\tlibssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x00007f03de646000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f03dde1e000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f03de92c000)
";

    #[test]
    fn ldd_output_gives_libraries_and_loader_without_vdso() {
        let libraries = parse_ldd(NGINX_LDD).expect("parses");
        assert_eq!(
            libraries,
            [
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib/x86_64-linux-gnu/libcrypt.so.1",
                "/lib/x86_64-linux-gnu/libssl.so.3",
                "/lib64/ld-linux-x86-64.so.2",
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn a_missing_library_is_an_error_that_names_it() {
        let error = parse_ldd("\tlibfoo.so.1 => not found\n").expect_err("must fail");
        assert!(error.to_string().contains("libfoo.so.1"), "{error}");
    }

    #[test]
    fn static_binaries_have_no_libraries() {
        assert!(
            parse_ldd("\tstatically linked\n")
                .expect("parses")
                .is_empty()
        );
    }

    #[test]
    fn parents_are_created_root_owned() {
        let mut rootfs = RootFs::default();
        rootfs.bytes("usr//local/bin/tool", "x", 0o755);
        let paths: Vec<&str> = rootfs.entries().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            [
                "/usr",
                "/usr/local",
                "/usr/local/bin",
                "/usr/local/bin/tool"
            ]
        );
        let dir = rootfs.get("/usr/local").expect("parent");
        assert_eq!(
            (dir.content.clone(), dir.mode, dir.uid),
            (Content::Dir, 0o755, 0)
        );
    }

    #[test]
    fn an_explicit_directory_keeps_its_owner_and_mode() {
        let mut rootfs = RootFs::default();
        rootfs.dir("/home/nonroot", 0o700, NONROOT);
        rootfs.bytes("/home/nonroot/.profile", "", 0o644);
        let home = rootfs.get("/home/nonroot").expect("home");
        assert_eq!((home.mode, home.uid, home.gid), (0o700, NONROOT, NONROOT));
    }

    #[test]
    fn base_system_has_users_tmp_and_ca_bundle() {
        let mut rootfs = RootFs::default();
        let user = User {
            name: "nonroot",
            id: NONROOT,
            home: "/home/nonroot",
        };
        rootfs
            .base_system(&[user])
            .expect("the CA bundle exists on a Debian machine");
        let Some(Content::Bytes(passwd)) = rootfs.get("/etc/passwd").map(|e| e.content.clone())
        else {
            panic!("no /etc/passwd");
        };
        let passwd = String::from_utf8(passwd).expect("text");
        assert!(passwd.contains("nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"));
        assert!(passwd.starts_with("root:x:0:0:"));
        assert_eq!(rootfs.get("/tmp").map(|e| e.mode), Some(0o1777));
        assert!(matches!(
            rootfs.get(CA_BUNDLE).map(|e| &e.content),
            Some(Content::HostFile(_))
        ));
    }

    #[test]
    fn a_missing_host_file_says_which() {
        let mut rootfs = RootFs::default();
        let error = rootfs
            .host_file("/x", Path::new("/nonexistent/wharf-test"), 0o644)
            .expect_err("must fail");
        assert!(
            error.to_string().contains("/nonexistent/wharf-test"),
            "{error}"
        );
    }

    #[test]
    fn a_real_dynamic_binary_lists_libc_and_the_loader() {
        let libraries = shared_libraries(Path::new("/bin/ls")).expect("ldd /bin/ls");
        assert!(
            libraries.iter().any(|l| l.ends_with("libc.so.6")),
            "{libraries:?}"
        );
        assert!(
            libraries
                .iter()
                .any(|l| l.to_string_lossy().contains("ld-linux")),
            "{libraries:?}"
        );
    }
}
