//! OCI image archives (`oci-layout`, `index.json`, `blobs/sha256/…`) with one layer, written
//! deterministically: the same root filesystem and config give the same bytes and digests.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Context;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use super::rootfs::{Content, Entry, RootFs};

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The only timestamp the images carry.
const EPOCH: &str = "1970-01-01T00:00:00Z";
/// The annotation containerd's `ctr images import` names the image by.
pub const CONTAINERD_NAME_ANNOTATION: &str = "io.containerd.image.name";
/// The OCI annotation with the image's reference.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// The runtime settings of an image (the OCI config's `config` object).
#[derive(Clone, Debug, Default)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `uid:gid`, or empty for root.
    pub user: String,
    pub env: Vec<String>,
    pub working_dir: String,
    /// e.g. `8080/tcp`.
    pub exposed_ports: Vec<String>,
    pub volumes: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// A written archive and the digest of its manifest (what a registry would call the image).
pub struct OciArchive {
    pub bytes: Vec<u8>,
    pub manifest_digest: String,
}

/// The archive of a one-layer image of `rootfs` named `reference` (e.g.
/// `docker.io/wharf/registry-auth:dev`), for `ctr images import` or `skopeo copy oci-archive:`.
pub fn build_archive(
    reference: &str,
    rootfs: &RootFs,
    config: &ImageConfig,
) -> anyhow::Result<OciArchive> {
    let layer_tar = layer(rootfs)?;
    let diff_id = sha256(&layer_tar);
    let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
    gzip.write_all(&layer_tar)?;
    let layer_gz = gzip.finish()?;
    drop(layer_tar);

    let config_json = serde_json::to_vec(&config_document(config, &diff_id))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": descriptor(CONFIG_TYPE, &config_json),
        "layers": [descriptor(LAYER_TYPE, &layer_gz)],
    }))?;
    let manifest_digest = sha256(&manifest);
    let mut manifest_descriptor = descriptor(MANIFEST_TYPE, &manifest);
    manifest_descriptor["platform"] = json!({"architecture": architecture(), "os": "linux"});
    manifest_descriptor["annotations"] = json!({
        CONTAINERD_NAME_ANNOTATION: reference,
        REF_NAME_ANNOTATION: reference,
    });
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [manifest_descriptor],
    }))?;

    let mut blobs: BTreeMap<String, &[u8]> = BTreeMap::new();
    for blob in [&layer_gz, &config_json, &manifest] {
        blobs.insert(hex_of(blob), blob);
    }
    let mut archive = tar::Builder::new(Vec::new());
    append_dir(&mut archive, "blobs/")?;
    append_dir(&mut archive, "blobs/sha256/")?;
    for (digest, blob) in blobs {
        append_file(&mut archive, &format!("blobs/sha256/{digest}"), blob)?;
    }
    append_file(&mut archive, "index.json", &index)?;
    append_file(
        &mut archive,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    Ok(OciArchive {
        bytes: archive.into_inner()?,
        manifest_digest,
    })
}

/// The uncompressed layer: every entry in path order, owned and dated as the root filesystem
/// says (mtime 0), paths relative to `/`.
pub fn layer(rootfs: &RootFs) -> anyhow::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, entry) in rootfs.entries() {
        let relative = path.trim_start_matches('/');
        match &entry.content {
            Content::Dir => {
                let mut header = header(entry, EntryType::Directory, 0);
                builder.append_data(&mut header, format!("{relative}/"), std::io::empty())?;
            }
            Content::Bytes(data) => {
                let mut header = header(entry, EntryType::Regular, data.len() as u64);
                builder.append_data(&mut header, relative, data.as_slice())?;
            }
            Content::HostFile(host) => {
                let file = std::fs::File::open(host)
                    .with_context(|| format!("reading {}", host.display()))?;
                let size = file.metadata()?.len();
                let mut header = header(entry, EntryType::Regular, size);
                builder.append_data(&mut header, relative, file)?;
            }
            Content::Symlink(target) => {
                let mut header = header(entry, EntryType::Symlink, 0);
                builder.append_link(&mut header, relative, target)?;
            }
        }
    }
    Ok(builder.into_inner()?)
}

fn header(entry: &Entry, kind: EntryType, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(entry.mode);
    header.set_uid(u64::from(entry.uid));
    header.set_gid(u64::from(entry.gid));
    header.set_mtime(0);
    header
}

fn append_dir(archive: &mut tar::Builder<Vec<u8>>, path: &str) -> std::io::Result<()> {
    let mut header = Header::new_gnu();
    header.set_entry_type(EntryType::Directory);
    header.set_size(0);
    header.set_mode(0o755);
    header.set_mtime(0);
    archive.append_data(&mut header, path, std::io::empty())
}

fn append_file(
    archive: &mut tar::Builder<Vec<u8>>,
    path: &str,
    data: &[u8],
) -> std::io::Result<()> {
    let mut header = Header::new_gnu();
    header.set_entry_type(EntryType::Regular);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    archive.append_data(&mut header, path, data)
}

fn config_document(config: &ImageConfig, diff_id: &str) -> Value {
    let mut runtime = Map::new();
    let mut put = |key: &str, value: Value| {
        runtime.insert(key.to_owned(), value);
    };
    if !config.user.is_empty() {
        put("User", json!(config.user));
    }
    if !config.env.is_empty() {
        put("Env", json!(config.env));
    }
    if !config.entrypoint.is_empty() {
        put("Entrypoint", json!(config.entrypoint));
    }
    if !config.cmd.is_empty() {
        put("Cmd", json!(config.cmd));
    }
    if !config.working_dir.is_empty() {
        put("WorkingDir", json!(config.working_dir));
    }
    let empty_set =
        |keys: &[String]| Value::Object(keys.iter().map(|k| (k.clone(), json!({}))).collect());
    if !config.exposed_ports.is_empty() {
        put("ExposedPorts", empty_set(&config.exposed_ports));
    }
    if !config.volumes.is_empty() {
        put("Volumes", empty_set(&config.volumes));
    }
    if !config.labels.is_empty() {
        put("Labels", json!(config.labels));
    }
    json!({
        "architecture": architecture(),
        "os": "linux",
        "created": EPOCH,
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": EPOCH, "created_by": "cargo xtask images"}],
    })
}

fn descriptor(media_type: &str, blob: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha256(blob), "size": blob.len()})
}

/// The OCI name of this machine's architecture (images hold this machine's binaries).
fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `sha256:<hex>`.
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex_of(data))
}

fn hex_of(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Read;

    use super::*;

    fn sample_rootfs() -> RootFs {
        let mut rootfs = RootFs::default();
        rootfs.bytes("/usr/local/bin/tool", "#!/bin/sh\necho hi\n", 0o755);
        rootfs.bytes("/etc/passwd", "root:x:0:0::/root:/sbin/nologin\n", 0o644);
        rootfs.dir("/tmp", 0o1777, 0);
        rootfs.dir("/home/nonroot", 0o700, 65532);
        rootfs.symlink("/bin/sh", "/bin/busybox");
        rootfs
    }

    fn sample_config() -> ImageConfig {
        ImageConfig {
            entrypoint: vec!["/usr/local/bin/tool".into()],
            user: "65532:65532".into(),
            env: vec!["PATH=/usr/local/bin:/usr/bin:/bin".into()],
            exposed_ports: vec!["8080/tcp".into()],
            ..ImageConfig::default()
        }
    }

    /// Every file of an archive, by path.
    fn files(archive: &[u8]) -> HashMap<String, Vec<u8>> {
        let mut out = HashMap::new();
        let mut reader = tar::Archive::new(archive);
        for entry in reader.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let path = entry.path().expect("path").to_string_lossy().into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("read");
            out.insert(path, data);
        }
        out
    }

    fn json_of(data: &[u8]) -> Value {
        serde_json::from_slice(data).expect("JSON")
    }

    fn blob<'a>(files: &'a HashMap<String, Vec<u8>>, digest: &Value) -> &'a [u8] {
        let digest = digest.as_str().expect("digest string");
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        files
            .get(&format!("blobs/sha256/{hex}"))
            .unwrap_or_else(|| panic!("blob {digest} missing"))
    }

    #[test]
    fn the_same_input_gives_the_same_bytes() {
        let a =
            build_archive("docker.io/wharf/x:1", &sample_rootfs(), &sample_config()).expect("a");
        let b =
            build_archive("docker.io/wharf/x:1", &sample_rootfs(), &sample_config()).expect("b");
        assert_eq!(a.bytes, b.bytes);
        assert_eq!(a.manifest_digest, b.manifest_digest);
    }

    #[test]
    fn index_manifest_config_and_layer_chain_by_digest() {
        let archive = build_archive("docker.io/wharf/x:1", &sample_rootfs(), &sample_config())
            .expect("archive");
        let files = files(&archive.bytes);
        assert_eq!(json_of(&files["oci-layout"])["imageLayoutVersion"], "1.0.0");
        for (path, data) in &files {
            if let Some(hex) = path.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
                assert_eq!(
                    sha256(data),
                    format!("sha256:{hex}"),
                    "blob {path} has a wrong name"
                );
            }
        }
        let index = json_of(&files["index.json"]);
        let entry = &index["manifests"][0];
        assert_eq!(
            entry["annotations"][REF_NAME_ANNOTATION],
            "docker.io/wharf/x:1"
        );
        assert_eq!(
            entry["annotations"][CONTAINERD_NAME_ANNOTATION],
            "docker.io/wharf/x:1"
        );
        assert_eq!(entry["digest"], archive.manifest_digest.as_str());
        let manifest_bytes = blob(&files, &entry["digest"]);
        assert_eq!(entry["size"], manifest_bytes.len());
        let manifest = json_of(manifest_bytes);
        assert_eq!(manifest["mediaType"], MANIFEST_TYPE);

        let layer_gz = blob(&files, &manifest["layers"][0]["digest"]);
        let mut layer_tar = Vec::new();
        flate2::read::GzDecoder::new(layer_gz)
            .read_to_end(&mut layer_tar)
            .expect("gunzip");
        let config = json_of(blob(&files, &manifest["config"]["digest"]));
        assert_eq!(config["rootfs"]["diff_ids"][0], sha256(&layer_tar));
        assert_eq!(config["config"]["User"], "65532:65532");
        assert_eq!(config["config"]["Entrypoint"][0], "/usr/local/bin/tool");
        assert_eq!(config["config"]["ExposedPorts"]["8080/tcp"], json!({}));
        assert!(config["config"].get("Cmd").is_none());
    }

    #[test]
    fn the_layer_keeps_modes_owners_links_and_zero_times() {
        let layer_tar = layer(&sample_rootfs()).expect("layer");
        let mut reader = tar::Archive::new(layer_tar.as_slice());
        let mut seen = Vec::new();
        for entry in reader.entries().expect("entries") {
            let entry = entry.expect("entry");
            let header = entry.header();
            let path = entry.path().expect("path").to_string_lossy().into_owned();
            assert_eq!(header.mtime().expect("mtime"), 0, "{path}");
            match path.as_str() {
                "tmp/" => assert_eq!(header.mode().expect("mode"), 0o1777),
                "home/nonroot/" => {
                    assert_eq!(header.uid().expect("uid"), 65532);
                    assert_eq!(header.mode().expect("mode"), 0o700);
                }
                "bin/sh" => {
                    assert_eq!(header.entry_type(), EntryType::Symlink);
                    let target = entry.link_name().expect("link").expect("target");
                    assert_eq!(target.to_string_lossy(), "/bin/busybox");
                }
                "usr/local/bin/tool" => assert_eq!(header.mode().expect("mode"), 0o755),
                _ => {}
            }
            seen.push(path);
        }
        assert_eq!(
            seen,
            [
                "bin/",
                "bin/sh",
                "etc/",
                "etc/passwd",
                "home/",
                "home/nonroot/",
                "tmp/",
                "usr/",
                "usr/local/",
                "usr/local/bin/",
                "usr/local/bin/tool"
            ]
        );
    }

    #[test]
    fn long_paths_survive() {
        let mut rootfs = RootFs::default();
        let long = format!("/{}/file", "d".repeat(150));
        rootfs.bytes(&long, "x", 0o644);
        let layer_tar = layer(&rootfs).expect("layer");
        let mut reader = tar::Archive::new(layer_tar.as_slice());
        let paths: Vec<String> = reader
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert!(
            paths.contains(&long.trim_start_matches('/').to_owned()),
            "{paths:?}"
        );
    }
}
