//! One test world: a scratch directory, a test CA, an upstream registry and a mirror of it.

use std::path::PathBuf;

use crate::clients::{Containerd, Skopeo};
use crate::image::{ImageLayout, MediaTypes, MultiArchImage, TestImage};
use crate::mirror::{Mirror, MirrorOptions};
use crate::pki::TestPki;
use crate::process::Workdir;
use crate::registry::{Upstream, UpstreamOptions};
use crate::tools;

pub struct Scenario {
    // Field order is drop order: the mirror stops before the upstream, the directory goes last.
    pub mirror: Mirror,
    pub upstream: Upstream,
    pub pki: TestPki,
    pub layout: ImageLayout,
    clients: usize,
    pub workdir: Workdir,
}

impl Scenario {
    /// Starts an upstream and a mirror; panics naming the install script if a binary is missing.
    pub fn start(name: &str, upstream: UpstreamOptions, mirror: &MirrorOptions) -> Scenario {
        let missing = tools::missing();
        assert!(
            missing.is_empty(),
            "missing {}: {}",
            missing.join(", "),
            tools::INSTALL_HINT
        );
        let workdir = Workdir::new(name);
        let pki = TestPki::create(&workdir.path().join("pki"));
        let upstream = Upstream::start(&workdir.path().join("upstream"), &pki, upstream);
        let mirror = Mirror::start(
            &workdir.path().join("mirror"),
            &pki,
            &upstream.host(),
            mirror,
        );
        let layout = ImageLayout::create(&workdir.path().join("images"));
        Scenario {
            mirror,
            upstream,
            pki,
            layout,
            clients: 0,
            workdir,
        }
    }

    /// Builds a single-platform image and pushes it upstream as `repository:tag`.
    pub fn push_image(&mut self, repository: &str, tag: &str, layer_sizes: &[u64]) -> TestImage {
        let local_tag = format!("{}-{tag}", repository.replace('/', "-"));
        let image = self.layout.single_arch(&local_tag, "amd64", layer_sizes);
        self.upstream
            .push(&self.layout, &local_tag, repository, tag);
        image
    }

    /// Builds an amd64 + arm64 image index (or Docker manifest list) and pushes it upstream as
    /// `repository:tag`.
    pub fn push_multi_arch(
        &mut self,
        repository: &str,
        tag: &str,
        layer_sizes: &[u64],
        types: MediaTypes,
    ) -> MultiArchImage {
        let local_tag = format!("{}-{tag}", repository.replace('/', "-"));
        let image = self.layout.multi_arch(&local_tag, layer_sizes, types);
        match types {
            MediaTypes::Oci => self
                .upstream
                .push(&self.layout, &local_tag, repository, tag),
            MediaTypes::Docker => {
                self.upstream
                    .push_from(&self.layout.dir_reference(&image), repository, tag)
            }
        }
        image
    }

    /// A fresh node's containerd, configured to pull the upstream's images through the mirror.
    pub fn new_containerd(&mut self) -> Containerd {
        self.clients += 1;
        let containerd = Containerd::start(
            &self
                .workdir
                .path()
                .join(format!("containerd-{}", self.clients)),
        );
        containerd.use_mirror(
            &self.upstream.host(),
            &self.mirror.host(),
            &self.pki.ca_cert,
        );
        containerd
    }

    /// A fresh node's containerd that pulls straight from the upstream (no mirror).
    pub fn new_direct_containerd(&mut self) -> Containerd {
        self.clients += 1;
        let containerd = Containerd::start(
            &self
                .workdir
                .path()
                .join(format!("containerd-{}", self.clients)),
        );
        containerd.use_registry_directly(&self.upstream.host(), &self.pki.ca_cert);
        containerd
    }

    pub fn skopeo(&self) -> Skopeo {
        Skopeo::new(&self.pki.cert_dir)
    }

    /// A new empty directory for a skopeo copy.
    pub fn new_dir(&mut self, what: &str) -> PathBuf {
        self.clients += 1;
        self.workdir.subdir(&format!("{what}-{}", self.clients))
    }

    /// `<upstream>/<repository>:<tag>`: the name ctr pulls (through the mirror).
    pub fn upstream_ref(&self, repository: &str, tag_or_digest: &str) -> String {
        join_ref(&self.upstream.host(), repository, tag_or_digest)
    }

    /// `<mirror>/<repository>:<tag>`: the name skopeo pulls from the mirror directly.
    pub fn mirror_ref(&self, repository: &str, tag_or_digest: &str) -> String {
        join_ref(&self.mirror.host(), repository, tag_or_digest)
    }

    /// `https://<mirror><path>`.
    pub fn mirror_url(&self, path: &str) -> String {
        format!("https://{}{path}", self.mirror.host())
    }

    /// Logs of both sides, for assertion messages.
    pub fn logs(&self) -> String {
        format!(
            "--- mirror log:\n{}\n--- upstream log:\n{}",
            self.mirror.log_tail(),
            self.upstream.log_tail()
        )
    }
}

fn join_ref(host: &str, repository: &str, tag_or_digest: &str) -> String {
    if tag_or_digest.contains(':') {
        format!("{host}/{repository}@{tag_or_digest}")
    } else {
        format!("{host}/{repository}:{tag_or_digest}")
    }
}
