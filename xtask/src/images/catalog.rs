//! What each image holds: the five wharf components (release binary + its libraries, non-root),
//! the nginx mirror and the registry built from Debian's packages, and a busybox test image.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use super::oci::ImageConfig;
use super::rootfs::{CA_BUNDLE, NONROOT, RootFs, User};

/// The wharf binaries; each is the package of the same name and gets an image of that name.
pub const COMPONENTS: [&str; 5] = [
    "mirror-controller",
    "registry-controller",
    "secret-rotator",
    "hostess-agent",
    "registry-auth",
];
/// Images built from this machine's Debian packages.
pub const SYSTEM_IMAGES: [&str; 3] = ["nginx-mirror", "registry", "busybox"];

/// The upstream registry image's name: the registry-controller's default works offline.
pub const REGISTRY_REFERENCE: &str = "docker.io/library/registry:2";
const NGINX_CONF: &str = include_str!("../../../images/nginx-mirror/nginx.conf");
const REGISTRY_CONFIG: &str = include_str!("../../../images/registry/config.yml");
const REGISTRY_ENTRYPOINT: &str = include_str!("../../../images/registry/entrypoint.sh");
/// nginx must have been built with these (`nginx -V`): the mirror's rendered config uses them.
const NGINX_MODULES: [&str; 4] = [
    "http_ssl_module",
    "http_v2_module",
    "http_slice_module",
    "http_realip_module",
];
/// uid/gid of the official nginx images' user, which mirror-controller runs nginx as.
const NGINX_UID: u32 = 101;
const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const SOURCE: &str = "https://github.com/wharf";

/// A Debian package an image copies files from, and a file that shows it is installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostPackage {
    pub package: &'static str,
    pub file: &'static str,
}

const CA_CERTIFICATES: HostPackage = HostPackage {
    package: "ca-certificates",
    file: CA_BUNDLE,
};
const BUSYBOX: HostPackage = HostPackage {
    package: "busybox-static",
    file: "/bin/busybox",
};
const NGINX: HostPackage = HostPackage {
    package: "nginx",
    file: "/usr/sbin/nginx",
};
const DOCKER_REGISTRY: HostPackage = HostPackage {
    package: "docker-registry",
    file: "/usr/bin/docker-registry",
};

/// Every image name, components first.
pub fn all_names() -> Vec<&'static str> {
    COMPONENTS
        .iter()
        .chain(SYSTEM_IMAGES.iter())
        .copied()
        .collect()
}

pub fn is_component(name: &str) -> bool {
    COMPONENTS.contains(&name)
}

/// The name `ctr images import` gives the image, which Kubernetes pods refer to.
pub fn reference(name: &str, tag: &str) -> String {
    match name {
        "registry" => REGISTRY_REFERENCE.to_owned(),
        _ => format!("docker.io/wharf/{name}:{tag}"),
    }
}

/// The Debian packages the image `name` copies files from.
pub fn host_packages(name: &str) -> Vec<HostPackage> {
    match name {
        "nginx-mirror" => vec![CA_CERTIFICATES, NGINX, BUSYBOX],
        "registry" => vec![CA_CERTIFICATES, DOCKER_REGISTRY, BUSYBOX],
        "busybox" => vec![CA_CERTIFICATES, BUSYBOX],
        _ => vec![CA_CERTIFICATES],
    }
}

/// The root filesystem and config of image `name`; components take their binary from
/// `binaries` (e.g. `target/release`).
pub fn assemble(name: &str, tag: &str, binaries: &Path) -> anyhow::Result<(RootFs, ImageConfig)> {
    let mut rootfs = RootFs::default();
    let mut config = ImageConfig {
        env: vec![PATH.into(), format!("SSL_CERT_FILE={CA_BUNDLE}")],
        working_dir: "/".into(),
        labels: labels(name, tag),
        ..ImageConfig::default()
    };
    let nonroot = User {
        name: "nonroot",
        id: NONROOT,
        home: "/home/nonroot",
    };
    match name {
        "nginx-mirror" => {
            check_nginx_modules()?;
            let nginx = User {
                name: "nginx",
                id: NGINX_UID,
                home: "/nonexistent",
            };
            rootfs.base_system(&[nginx, nonroot])?;
            rootfs.binary_with_libraries("/usr/sbin/nginx", Path::new(NGINX.file))?;
            rootfs.host_file(
                "/etc/nginx/mime.types",
                Path::new("/etc/nginx/mime.types"),
                0o644,
            )?;
            add_nginx_dynamic_modules(&mut rootfs)?;
            rootfs.bytes("/etc/nginx/nginx.conf", NGINX_CONF, 0o644);
            rootfs.dir("/etc/nginx/conf.d", 0o755, 0);
            rootfs.dir("/var/lib/registry", 0o755, NGINX_UID);
            rootfs.busybox(Path::new(BUSYBOX.file))?;
            config.cmd = ["nginx", "-g", "daemon off;"].map(String::from).to_vec();
            config.user = format!("{NGINX_UID}:{NGINX_UID}");
            config.exposed_ports = vec!["5000/tcp".into()];
        }
        "registry" => {
            rootfs.base_system(&[])?;
            rootfs.binary_with_libraries("/bin/registry", Path::new(DOCKER_REGISTRY.file))?;
            rootfs.bytes("/etc/docker/registry/config.yml", REGISTRY_CONFIG, 0o644);
            rootfs.bytes("/entrypoint.sh", REGISTRY_ENTRYPOINT, 0o755);
            rootfs.dir("/var/lib/registry", 0o755, 0);
            rootfs.busybox(Path::new(BUSYBOX.file))?;
            // As the upstream image: root, `/entrypoint.sh /etc/docker/registry/config.yml`.
            config.entrypoint = vec!["/entrypoint.sh".into()];
            config.cmd = vec!["/etc/docker/registry/config.yml".into()];
            config.exposed_ports = vec!["5000/tcp".into()];
            config.volumes = vec!["/var/lib/registry".into()];
        }
        "busybox" => {
            rootfs.base_system(&[nonroot])?;
            rootfs.busybox(Path::new(BUSYBOX.file))?;
            config.cmd = vec!["sh".into()];
            config.user = format!("{NONROOT}:{NONROOT}");
        }
        component if is_component(component) => {
            rootfs.base_system(&[nonroot])?;
            let binary = binaries.join(component);
            rootfs
                .binary_with_libraries(&format!("/usr/local/bin/{component}"), &binary)
                .with_context(|| format!("the build of {component} in {}", binaries.display()))?;
            config.entrypoint = vec![format!("/usr/local/bin/{component}")];
            config.user = format!("{NONROOT}:{NONROOT}");
            config.exposed_ports = vec!["8080/tcp".into()];
            if component == "registry-auth" {
                config.exposed_ports.push("5001/tcp".into());
            }
        }
        other => bail!("unknown image {other:?}; known: {}", all_names().join(", ")),
    }
    Ok((rootfs, config))
}

fn labels(name: &str, tag: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("org.opencontainers.image.title".into(), name.into()),
        ("org.opencontainers.image.version".into(), tag.into()),
        ("org.opencontainers.image.source".into(), SOURCE.into()),
        (
            "org.opencontainers.image.licenses".into(),
            "Apache-2.0".into(),
        ),
    ])
}

fn check_nginx_modules() -> anyhow::Result<()> {
    let output = Command::new(NGINX.file)
        .arg("-V")
        .output()
        .with_context(|| format!("running {} -V", NGINX.file))?;
    // nginx prints its build flags to stderr.
    let flags = String::from_utf8_lossy(&output.stderr);
    let missing = missing_nginx_modules(&flags);
    if !missing.is_empty() {
        bail!(
            "{} lacks the modules {} that the mirror's config needs; install Debian's `nginx` package",
            NGINX.file,
            missing.join(", ")
        );
    }
    Ok(())
}

/// The modules of [`NGINX_MODULES`] that `nginx -V` output does not list.
fn missing_nginx_modules(flags: &str) -> Vec<&'static str> {
    NGINX_MODULES
        .into_iter()
        .filter(|module| !flags.contains(&format!("--with-{module}")))
        .collect()
}

/// Debian packages third-party nginx modules as `.so` files; the image carries any installed.
fn add_nginx_dynamic_modules(rootfs: &mut RootFs) -> anyhow::Result<()> {
    let dir = Path::new("/usr/lib/nginx/modules");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let mut modules: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    modules.sort();
    for module in modules
        .iter()
        .filter(|m| m.extension().is_some_and(|e| e == "so"))
    {
        let in_image = module.to_str().context("module path is not UTF-8")?;
        rootfs.binary_with_libraries(in_image, module)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_charts_defaults() {
        assert_eq!(
            reference("registry-auth", "dev"),
            "docker.io/wharf/registry-auth:dev"
        );
        assert_eq!(
            reference("nginx-mirror", "dev"),
            "docker.io/wharf/nginx-mirror:dev"
        );
        assert_eq!(reference("registry", "dev"), "docker.io/library/registry:2");
    }

    #[test]
    fn every_image_has_a_unique_name() {
        let mut names = all_names();
        assert_eq!(names.len(), 8);
        names.dedup();
        assert_eq!(names.len(), 8);
    }

    #[test]
    fn module_check_names_what_is_missing() {
        let flags = "--with-http_ssl_module --with-http_v2_module --with-http_realip_module";
        assert_eq!(missing_nginx_modules(flags), ["http_slice_module"]);
        let all = NGINX_MODULES.map(|m| format!("--with-{m}")).join(" ");
        assert!(missing_nginx_modules(&all).is_empty());
    }

    #[test]
    fn an_unknown_image_lists_the_known_ones() {
        let error = assemble("nope", "dev", Path::new("/nonexistent")).expect_err("unknown");
        assert!(error.to_string().contains("mirror-controller"), "{error}");
    }

    #[test]
    fn a_component_without_its_release_binary_says_so() {
        let error = assemble("registry-auth", "dev", Path::new("/nonexistent/release"))
            .expect_err("no binary");
        assert!(
            format!("{error:#}").contains("build of registry-auth"),
            "{error:#}"
        );
    }

    #[test]
    fn the_registry_image_runs_as_upstream_does() {
        crate::images::ensure_host_packages(&host_packages("registry")).expect("packages");
        let (rootfs, config) = assemble("registry", "dev", Path::new("/nonexistent"))
            .expect("the registry image from Debian's docker-registry");
        assert_eq!(config.entrypoint, ["/entrypoint.sh"]);
        assert_eq!(config.cmd, ["/etc/docker/registry/config.yml"]);
        assert!(rootfs.get("/bin/registry").is_some());
        assert!(rootfs.get("/bin/sh").is_some());
        assert!(rootfs.get("/etc/docker/registry/config.yml").is_some());
    }

    #[test]
    fn the_nginx_image_has_what_the_mirror_pod_runs() {
        crate::images::ensure_host_packages(&host_packages("nginx-mirror")).expect("packages");
        let (rootfs, config) = assemble("nginx-mirror", "dev", Path::new("/nonexistent"))
            .expect("the nginx image from Debian's nginx");
        // The controller's command: /bin/sh -c '… mkdir, cat, rm … exec nginx -e stderr -c …'.
        for path in [
            "/bin/sh",
            "/bin/mkdir",
            "/bin/cat",
            "/bin/rm",
            "/usr/sbin/nginx",
        ] {
            assert!(rootfs.get(path).is_some(), "{path} missing");
        }
        assert!(rootfs.get("/etc/nginx/mime.types").is_some());
        assert!(rootfs.get(CA_BUNDLE).is_some());
        assert_eq!(config.user, "101:101");
        assert_eq!(config.cmd, ["nginx", "-g", "daemon off;"]);
    }
}
