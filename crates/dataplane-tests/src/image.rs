//! Test images written as OCI image layouts (what `skopeo copy oci:DIR:TAG` reads): layers are
//! gzip'd tars of random bytes, so every image is unique and incompressible; multi-arch images
//! are an OCI index of an amd64 and an arm64 image.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::process::make_dir;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Which media types an image uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaTypes {
    /// OCI image manifest / index.
    Oci,
    /// Docker schema 2 manifest / manifest list (what Docker Hub serves for most images; the
    /// only kind docker-registry resolves to one platform for clients that cannot read lists).
    Docker,
}

impl MediaTypes {
    fn manifest(self) -> &'static str {
        match self {
            MediaTypes::Oci => OCI_MANIFEST,
            MediaTypes::Docker => DOCKER_MANIFEST,
        }
    }
    fn index(self) -> &'static str {
        match self {
            MediaTypes::Oci => OCI_INDEX,
            MediaTypes::Docker => DOCKER_LIST,
        }
    }
    fn config(self) -> &'static str {
        match self {
            MediaTypes::Oci => OCI_CONFIG,
            MediaTypes::Docker => DOCKER_CONFIG,
        }
    }
    fn layer(self) -> &'static str {
        match self {
            MediaTypes::Oci => OCI_LAYER,
            MediaTypes::Docker => DOCKER_LAYER,
        }
    }
}

/// A content-addressed blob of an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobRef {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

impl BlobRef {
    fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }
}

/// One platform's image.
#[derive(Clone, Debug)]
pub struct TestImage {
    pub manifest: BlobRef,
    pub config: BlobRef,
    pub layers: Vec<BlobRef>,
    pub architecture: String,
}

impl TestImage {
    /// Config and layers: what `GET /v2/…/blobs/<digest>` serves.
    pub fn blobs(&self) -> Vec<&BlobRef> {
        std::iter::once(&self.config).chain(&self.layers).collect()
    }

    /// Total size of config and layers.
    pub fn blob_bytes(&self) -> u64 {
        self.blobs().iter().map(|b| b.size).sum()
    }
}

/// An OCI index over an amd64 and an arm64 image.
#[derive(Clone, Debug)]
pub struct MultiArchImage {
    pub index: BlobRef,
    pub amd64: TestImage,
    pub arm64: TestImage,
}

/// An OCI image layout directory under construction.
pub struct ImageLayout {
    dir: PathBuf,
    refs: Vec<Value>,
}

impl ImageLayout {
    pub fn create(dir: &Path) -> ImageLayout {
        let dir = make_dir(dir);
        make_dir(&dir.join("blobs/sha256"));
        write_file(
            &dir.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        );
        let layout = ImageLayout {
            dir,
            refs: Vec::new(),
        };
        layout.write_index();
        layout
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `oci:DIR:TAG`, skopeo's name for an image of this layout.
    pub fn reference(&self, tag: &str) -> String {
        format!("oci:{}:{tag}", self.dir.display())
    }

    /// A linux OCI image for `architecture` with one layer per size, tagged `tag`.
    pub fn single_arch(&mut self, tag: &str, architecture: &str, layer_sizes: &[u64]) -> TestImage {
        let image = self.image(architecture, layer_sizes, MediaTypes::Oci);
        self.add_ref(tag, &image.manifest);
        image
    }

    /// An index (or manifest list) of a linux/amd64 and a linux/arm64 image (each with its own
    /// random layers of `layer_sizes`), tagged `tag`.
    pub fn multi_arch(
        &mut self,
        tag: &str,
        layer_sizes: &[u64],
        types: MediaTypes,
    ) -> MultiArchImage {
        let amd64 = self.image("amd64", layer_sizes, types);
        let arm64 = self.image("arm64", layer_sizes, types);
        let platform = |image: &TestImage| {
            let mut descriptor = image.manifest.descriptor();
            descriptor["platform"] = json!({"architecture": image.architecture, "os": "linux"});
            descriptor
        };
        let index = json!({
            "schemaVersion": 2,
            "mediaType": types.index(),
            "manifests": [platform(&amd64), platform(&arm64)],
        });
        let index = self.write_json_blob(&index, types.index());
        if types == MediaTypes::Oci {
            self.add_ref(tag, &index);
        }
        MultiArchImage {
            index,
            amd64,
            arm64,
        }
    }

    /// The image as skopeo's `dir:` transport reads it (`manifest.json`, one
    /// `<hex>.manifest.json` per platform, blobs by hex digest): skopeo reads only OCI types from
    /// an `oci:` layout, Docker manifest lists from a `dir:`. Returns `dir:<path>`.
    pub fn dir_reference(&self, image: &MultiArchImage) -> String {
        let dir = make_dir(&self.dir.join(format!("dir-{}", &image.index.digest[7..19])));
        write_file(&dir.join("version"), b"Directory Transport Version: 1.1\n");
        link(
            &self.blob_path(&image.index.digest),
            &dir.join("manifest.json"),
        );
        for platform in [&image.amd64, &image.arm64] {
            let hex = &platform.manifest.digest[7..];
            link(
                &self.blob_path(&platform.manifest.digest),
                &dir.join(format!("{hex}.manifest.json")),
            );
            for blob in platform.blobs() {
                link(&self.blob_path(&blob.digest), &dir.join(&blob.digest[7..]));
            }
        }
        format!("dir:{}", dir.display())
    }

    fn image(&mut self, architecture: &str, layer_sizes: &[u64], types: MediaTypes) -> TestImage {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for (n, size) in layer_sizes.iter().enumerate() {
            let (layer, diff_id) =
                self.write_layer(&format!("layer-{n}.bin"), *size, types.layer());
            layers.push(layer);
            diff_ids.push(diff_id);
        }
        let config = json!({
            "architecture": architecture,
            "os": "linux",
            "config": {"Cmd": ["/bin/true"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": "wharf data-plane test"}],
        });
        let config = self.write_json_blob(&config, types.config());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": types.manifest(),
            "config": config.descriptor(),
            "layers": layers.iter().map(BlobRef::descriptor).collect::<Vec<_>>(),
        });
        let manifest = self.write_json_blob(&manifest, types.manifest());
        TestImage {
            manifest,
            config,
            layers,
            architecture: architecture.to_owned(),
        }
    }

    /// A gzip'd tar holding one file of `size` random bytes; returns the blob and its diff ID.
    fn write_layer(&self, file_name: &str, size: u64, media_type: &str) -> (BlobRef, String) {
        let temp = self
            .dir
            .join(format!(".layer-{}.tmp", rand::random::<u64>()));
        let compressed = HashingWriter::new(BufWriter::new(create_file(&temp)));
        // Random bytes do not compress: deflate's stored blocks are what any level would
        // produce, and they keep building 100 MB images quick.
        let gzip = GzEncoder::new(compressed, Compression::none());
        let mut tar = tar::Builder::new(HashingWriter::new(gzip));
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, file_name, RandomBytes { left: size })
            .expect("write a layer");
        let uncompressed = tar.into_inner().expect("finish the layer's tar");
        let (gzip, diff_id, _) = uncompressed.finish();
        let compressed = gzip.finish().expect("finish the layer's gzip");
        let (mut file, digest, size) = compressed.finish();
        file.flush().expect("flush the layer");
        let path = self.blob_path(&digest);
        std::fs::rename(&temp, &path).expect("move the layer into blobs/");
        let blob = BlobRef {
            digest,
            size,
            media_type: media_type.to_owned(),
        };
        (blob, diff_id)
    }

    fn write_json_blob(&self, value: &Value, media_type: &str) -> BlobRef {
        let bytes = serde_json::to_vec(value).expect("serialize JSON");
        let digest = sha256_digest(&bytes);
        write_file(&self.blob_path(&digest), &bytes);
        BlobRef {
            digest,
            size: bytes.len() as u64,
            media_type: media_type.to_owned(),
        }
    }

    fn add_ref(&mut self, tag: &str, blob: &BlobRef) {
        let mut descriptor = blob.descriptor();
        descriptor["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        self.refs
            .retain(|r| r["annotations"]["org.opencontainers.image.ref.name"] != tag);
        self.refs.push(descriptor);
        self.write_index();
    }

    fn write_index(&self) {
        let index = json!({"schemaVersion": 2, "manifests": self.refs});
        write_file(
            &self.dir.join("index.json"),
            &serde_json::to_vec(&index).expect("serialize the index"),
        );
    }

    /// Where a blob of this layout is stored.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir.join("blobs/sha256").join(hex)
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// `sha256:<hex>` of a file's content.
pub fn file_digest(path: &Path) -> String {
    let mut file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).expect("read a blob");
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    format!("sha256:{}", hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn create_file(path: &Path) -> File {
    File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()))
}

fn link(from: &Path, to: &Path) {
    if !to.exists() {
        std::fs::hard_link(from, to)
            .unwrap_or_else(|e| panic!("link {} to {}: {e}", from.display(), to.display()));
    }
}

fn write_file(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Counts and hashes what passes through to the inner writer.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// The inner writer, the `sha256:<hex>` digest and the byte count.
    fn finish(self) -> (W, String, u64) {
        let digest = format!("sha256:{}", hex(&self.hasher.finalize()));
        (self.inner, digest, self.written)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.written += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `left` random bytes.
struct RandomBytes {
    left: u64,
}

impl Read for RandomBytes {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        rand::fill(&mut buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}
