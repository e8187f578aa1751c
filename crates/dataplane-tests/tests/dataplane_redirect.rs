//! Upstreams that answer blob requests with a redirect to object storage (Docker Hub, S3-backed
//! registries): the mirror follows it itself and caches the blob under its digest, so clients
//! never see the redirect and a second pull never leaves the cluster.

use wharf_dataplane_tests::clients::copied_blob;
use wharf_dataplane_tests::http::Request;
use wharf_dataplane_tests::image::file_digest;
use wharf_dataplane_tests::{MirrorOptions, Scenario, UpstreamOptions};

const MIB: u64 = 1024 * 1024;

#[test]
fn redirected_blobs_are_followed_and_cached() {
    let upstream = UpstreamOptions {
        redirect_blobs: true,
        ..UpstreamOptions::default()
    };
    let mut world = Scenario::start("redirect", upstream, &MirrorOptions::default());
    let image = world.push_image("objects/app", "v1", &[9 * MIB, 4096]);

    // The upstream really redirects.
    let direct = Request::get(
        format!(
            "https://{}/v2/objects/app/blobs/{}",
            world.upstream.host(),
            image.layers[0].digest
        ),
        &world.pki.ca_cert,
    )
    .send();
    assert_eq!(direct.status, 307, "{}", direct.describe());
    assert!(
        direct
            .header("Location")
            .is_some_and(|l| l.contains("/docker/registry/v2/blobs/"))
    );

    let node = world.new_containerd();
    let reference = world.upstream_ref("objects/app", "v1");
    node.pull(&reference, None)
        .unwrap_or_else(|e| panic!("ctr pull: {e}\n{}", world.logs()));
    let dir = world.new_dir("skopeo");
    world
        .skopeo()
        .copy(&world.mirror_ref("objects/app", "v1"), &dir, &[])
        .unwrap_or_else(|e| panic!("skopeo copy: {e}\n{}", world.logs()));
    for blob in image.blobs() {
        assert_eq!(file_digest(&copied_blob(&dir, &blob.digest)), blob.digest);
        let fetched = world.upstream.blob_fetches(&blob.digest);
        assert_eq!(
            fetched.bytes,
            blob.size,
            "served once, by the object store: {fetched:?}\n{}",
            world.logs()
        );
        assert!(fetched.redirects >= 1, "{fetched:?}");
    }

    // Clients only ever saw 200s for blobs.
    let mirror_log = std::fs::read_to_string(world.mirror.log()).expect("mirror log");
    let client_blob_lines: Vec<&str> = mirror_log
        .lines()
        .filter(|line| line.starts_with("127.0.0.1 ") && line.contains("/blobs/sha256:"))
        .collect();
    assert!(!client_blob_lines.is_empty());
    for line in &client_blob_lines {
        assert!(
            line.contains(" 200 "),
            "a client saw something else than the blob: {line}"
        );
    }

    // Cached under the digest: a second node's pull sends nothing upstream.
    let before = world.upstream.all_blob_fetches();
    let second = world.new_containerd();
    second
        .pull(&reference, None)
        .unwrap_or_else(|e| panic!("second ctr pull: {e}\n{}", world.logs()));
    assert_eq!(world.upstream.all_blob_fetches(), before);

    // HEAD of a redirected blob on a miss has the right headers too.
    let fresh = world.push_image("objects/other", "v1", &[2 * MIB]);
    let layer = &fresh.layers[0];
    let head = Request::head(
        world.mirror_url(&format!("/v2/objects/other/blobs/{}", layer.digest)),
        &world.pki.ca_cert,
    )
    .send();
    assert_eq!(head.status, 200, "{}", head.describe());
    assert_eq!(
        head.header("Content-Length"),
        Some(layer.size.to_string().as_str()),
        "{}",
        head.describe()
    );
    assert_eq!(
        head.header("Docker-Content-Digest"),
        Some(layer.digest.as_str()),
        "{}",
        head.describe()
    );
}
