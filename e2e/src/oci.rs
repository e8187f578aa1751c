//! Tiny OCI images for pull and push tests: a layout on disk that skopeo and ctr read.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Writes an OCI image layout at `dir` holding one image, tag `v1`, for this machine's platform,
/// whose single uncompressed layer has the file `/message` holding `message`. Different messages
/// give different digests, so each test pulls an image nobody else has cached.
pub fn write_test_image(dir: &Path, message: &str) {
    let layout = OciLayout::create(dir);
    let mut layer = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(message.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    layer
        .append_data(&mut header, "message", message.as_bytes())
        .expect("adds the file");
    let layer = layer.into_inner().expect("finishes the tar");
    let (layer_digest, layer_size) = layout.put(&layer);

    let config = serde_json::json!({
        "architecture": oci_architecture(),
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    });
    let (config_digest, config_size) = layout.put(config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer_size,
        }],
    });
    layout.finish(manifest.to_string().as_bytes(), "v1");
}

/// An OCI image layout being written in a directory: blobs first, then the manifest, tagged.
pub(crate) struct OciLayout {
    dir: PathBuf,
}

impl OciLayout {
    pub(crate) fn create(dir: &Path) -> Self {
        std::fs::create_dir_all(dir.join("blobs/sha256"))
            .unwrap_or_else(|err| panic!("creating the layout {}: {err}", dir.display()));
        Self {
            dir: dir.to_owned(),
        }
    }

    /// Stores a blob; returns its digest and size.
    pub(crate) fn put(&self, bytes: &[u8]) -> (String, usize) {
        let hex = sha256_hex(bytes);
        let path = self.dir.join("blobs/sha256").join(&hex);
        std::fs::write(&path, bytes)
            .unwrap_or_else(|err| panic!("writing {}: {err}", path.display()));
        (format!("sha256:{hex}"), bytes.len())
    }

    /// Stores `manifest` and writes the index naming it `tag`, which completes the layout.
    pub(crate) fn finish(&self, manifest: &[u8], tag: &str) {
        let (digest, size) = self.put(manifest);
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest,
                "size": size,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }],
        });
        std::fs::write(self.dir.join("index.json"), index.to_string()).expect("writes index.json");
        std::fs::write(
            self.dir.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .expect("writes oci-layout");
    }
}

/// This machine's architecture as OCI names it (what a pull by ctr selects).
fn oci_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A free TCP port on 127.0.0.1 (bound and released; the race with other tests is negligible).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("binds an ephemeral loopback port")
}
