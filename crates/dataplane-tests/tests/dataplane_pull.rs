//! Pulls through the mirror with real clients: digests match, every blob is fetched upstream
//! once whichever client asks (containerd adds `?ns=`, skopeo does not), later pulls are served
//! from the cache, and headers are right on hits and misses for GET and HEAD.

use wharf_core::nginx::BLOB_SLICE_SIZE;
use wharf_dataplane_tests::clients::copied_blob;
use wharf_dataplane_tests::http::Request;
use wharf_dataplane_tests::image::file_digest;
use wharf_dataplane_tests::{MirrorOptions, Scenario, UpstreamOptions};

const MIB: u64 = 1024 * 1024;

#[test]
fn ctr_then_skopeo_fetch_each_blob_upstream_once() {
    let mut world = Scenario::start(
        "pull",
        UpstreamOptions::default(),
        &MirrorOptions::default(),
    );
    // The big layer spans three slices; the small one fits in one.
    let image = world.push_image("team/app", "v1", &[2 * BLOB_SLICE_SIZE + MIB, 300 * 1024]);

    let node = world.new_containerd();
    let reference = world.upstream_ref("team/app", "v1");
    node.pull(&reference, None)
        .unwrap_or_else(|e| panic!("ctr pull: {e}\n{}", world.logs()));
    assert_eq!(
        node.image_target(&reference).as_deref(),
        Some(image.manifest.digest.as_str())
    );
    let content = node.content_digests();
    for blob in image.blobs() {
        assert!(
            content.contains(&blob.digest),
            "{} missing from containerd",
            blob.digest
        );
        let fetched = world.upstream.blob_fetches(&blob.digest);
        assert_eq!(
            fetched.bytes,
            blob.size,
            "blob {} fetched upstream: {fetched:?}\n{}",
            blob.digest,
            world.logs()
        );
    }
    let mirror_log = std::fs::read_to_string(world.mirror.log()).expect("mirror log");
    assert!(
        mirror_log.contains("?ns=127.0.0.1"),
        "ctr went through the mirror with ?ns=\n{mirror_log}"
    );

    let upstream_before = world.upstream.all_blob_fetches();
    let copy = world.new_dir("skopeo");
    world
        .skopeo()
        .copy(&world.mirror_ref("team/app", "v1"), &copy, &[])
        .unwrap_or_else(|e| panic!("skopeo copy: {e}\n{}", world.logs()));
    for blob in image.blobs() {
        assert_eq!(file_digest(&copied_blob(&copy, &blob.digest)), blob.digest);
    }
    assert_eq!(
        world.upstream.all_blob_fetches(),
        upstream_before,
        "skopeo was served from the cache\n{}",
        world.logs()
    );

    // A second node: the manifest is still fresh and every blob is cached.
    let second = world.new_containerd();
    second
        .pull(&reference, None)
        .unwrap_or_else(|e| panic!("second ctr pull: {e}\n{}", world.logs()));
    assert_eq!(
        world.upstream.all_blob_fetches(),
        upstream_before,
        "a second pull sends no blob request upstream"
    );

    let ca = &world.pki.ca_cert;
    let health = Request::get(world.mirror_url("/health-check"), ca).send();
    assert_eq!(health.status, 200);
}

/// What containerd sends for manifests (one line).
const CONTAINERD_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, */*";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[test]
fn headers_are_right_on_hits_and_misses_for_get_and_head() {
    let mut world = Scenario::start(
        "headers",
        UpstreamOptions::default(),
        &MirrorOptions::default(),
    );
    // The big layer spans two slices.
    let image = world.push_image("lib/headers", "v1", &[BLOB_SLICE_SIZE + MIB, 1024]);
    let ca = world.pki.ca_cert.clone();
    let manifest_paths = [
        "/v2/lib/headers/manifests/v1".to_owned(),
        format!("/v2/lib/headers/manifests/{}", image.manifest.digest),
    ];
    for path in &manifest_paths {
        let url = world.mirror_url(path);
        // HEAD first: a miss answered without a body, then GET and HEAD from the cache.
        let expectations = [("HEAD", "MISS"), ("GET", "HIT"), ("HEAD", "HIT")];
        for (method, cache) in expectations {
            let response = Request::new(method, url.clone(), &ca)
                .header("Accept", CONTAINERD_ACCEPT)
                .send();
            let what = format!("{method} {path}: {}\n{}", response.describe(), world.logs());
            assert_eq!(response.status, 200, "{what}");
            assert_eq!(response.header("X-Cache-Status"), Some(cache), "{what}");
            assert_eq!(
                response.header("Content-Type"),
                Some(OCI_MANIFEST),
                "{what}"
            );
            assert_eq!(
                response.header("Docker-Content-Digest"),
                Some(image.manifest.digest.as_str()),
                "{what}"
            );
            assert_eq!(
                response.header("Content-Length"),
                Some(image.manifest.size.to_string().as_str()),
                "{what}"
            );
            if method == "GET" {
                assert_eq!(
                    wharf_dataplane_tests::image::sha256_digest(&response.body),
                    image.manifest.digest
                );
            }
        }
    }
    for blob in image.blobs() {
        let url = world.mirror_url(&format!("/v2/lib/headers/blobs/{}", blob.digest));
        for (method, cache) in [("HEAD", "MISS"), ("GET", "HIT"), ("HEAD", "HIT")] {
            let response = Request::new(method, url.clone(), &ca).send();
            let what = format!(
                "{method} blob {}: {}\n{}",
                blob.digest,
                response.describe(),
                world.logs()
            );
            assert_eq!(response.status, 200, "{what}");
            assert_eq!(response.header("X-Cache-Status"), Some(cache), "{what}");
            assert_eq!(
                response.header("Docker-Content-Digest"),
                Some(blob.digest.as_str()),
                "{what}"
            );
            assert_eq!(
                response.header("Content-Length"),
                Some(blob.size.to_string().as_str()),
                "{what}"
            );
            assert_eq!(
                response.header("Content-Type"),
                Some("application/octet-stream"),
                "{what}"
            );
            if method == "GET" {
                assert_eq!(
                    wharf_dataplane_tests::image::sha256_digest(&response.body),
                    blob.digest,
                    "{what}"
                );
            }
        }
        // A miss by GET streams the whole blob too: fetch a range of a fresh mirror's cache is
        // covered by the pull tests; here the HEAD miss must not have fetched more than a slice.
        let fetched = world.upstream.blob_fetches(&blob.digest);
        assert_eq!(fetched.bytes, blob.size, "{fetched:?}");
    }

    // A GET that misses streams the blob with the same headers.
    let other = world.push_image("lib/other", "v1", &[5 * MIB]);
    let layer = &other.layers[0];
    let miss = Request::get(
        world.mirror_url(&format!("/v2/lib/other/blobs/{}", layer.digest)),
        &ca,
    )
    .send();
    let what = format!("{}\n{}", miss.describe(), world.logs());
    assert_eq!(miss.status, 200, "{what}");
    assert_eq!(miss.header("X-Cache-Status"), Some("MISS"), "{what}");
    assert_eq!(
        miss.header("Docker-Content-Digest"),
        Some(layer.digest.as_str()),
        "{what}"
    );
    assert_eq!(
        miss.header("Content-Length"),
        Some(layer.size.to_string().as_str()),
        "{what}"
    );
    assert_eq!(
        wharf_dataplane_tests::image::sha256_digest(&miss.body),
        layer.digest
    );

    // Ranges are served from the cached slices, also across a slice boundary.
    let big = &image.layers[0];
    let (first, last) = (BLOB_SLICE_SIZE - 4, BLOB_SLICE_SIZE + 5);
    let range = Request::get(
        world.mirror_url(&format!("/v2/lib/headers/blobs/{}", big.digest)),
        &ca,
    )
    .header("Range", &format!("bytes={first}-{last}"))
    .send();
    assert_eq!(range.status, 206, "{}", range.describe());
    assert_eq!(range.body.len(), 10);
    assert_eq!(
        range.header("Content-Range"),
        Some(format!("bytes {first}-{last}/{}", big.size).as_str())
    );
    let blob_file = world.layout.blob_path(&big.digest);
    let whole = std::fs::read(&blob_file).expect("read the layer blob");
    assert_eq!(range.body, whole[first as usize..=last as usize]);

    // The masquerade path is the same object.
    let masqueraded = Request::get(
        world.mirror_url("/v2/mirror.wharf.test/lib/headers/manifests/v1"),
        &ca,
    )
    .header("Accept", CONTAINERD_ACCEPT)
    .send();
    assert_eq!(masqueraded.status, 200, "{}", masqueraded.describe());
    assert_eq!(
        masqueraded.header("X-Cache-Status"),
        Some("HIT"),
        "{}",
        masqueraded.describe()
    );
    assert_eq!(
        masqueraded.header("Docker-Content-Digest"),
        Some(image.manifest.digest.as_str())
    );

    // Read-only.
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let response = Request::new(
            method,
            world.mirror_url("/v2/lib/headers/blobs/uploads/"),
            &ca,
        )
        .send();
        assert_eq!(response.status, 405, "{method}: {}", response.describe());
        assert_eq!(response.header("Allow"), Some("GET, HEAD, OPTIONS"));
        assert!(String::from_utf8_lossy(&response.body).contains("read-only"));
    }
    let options = Request::new("OPTIONS", world.mirror_url("/v2/"), &ca).send();
    assert_ne!(options.status, 405, "{}", options.describe());

    // The ping, then from the cache.
    let ping = Request::get(world.mirror_url("/v2/"), &ca).send();
    assert_eq!(
        (ping.status, ping.header("X-Cache-Status")),
        (200, Some("MISS")),
        "{}",
        ping.describe()
    );
    let ping = Request::get(world.mirror_url("/v2/"), &ca).send();
    assert_eq!(
        (ping.status, ping.header("X-Cache-Status")),
        (200, Some("HIT")),
        "{}",
        ping.describe()
    );

    let health = Request::get(world.mirror_url("/health-check"), &ca).send();
    assert_eq!(health.status, 200);
    let other = Request::get(world.mirror_url("/index.html"), &ca).send();
    assert_eq!(other.status, 404);
}

#[test]
fn upstream_down_or_failing_still_serves_what_was_pulled() {
    let options = MirrorOptions {
        tag_ttl_seconds: 1,
        ..MirrorOptions::default()
    };
    let mut world = Scenario::start("outage", UpstreamOptions::default(), &options);
    let image = world.push_image("team/outage", "v1", &[6 * MIB, 2048]);
    let by_tag = world.upstream_ref("team/outage", "v1");
    let by_digest = world.upstream_ref("team/outage", &image.manifest.digest);
    let warm = world.new_containerd();
    warm.pull(&by_tag, None)
        .unwrap_or_else(|e| panic!("{e}\n{}", world.logs()));
    warm.pull(&by_digest, None)
        .unwrap_or_else(|e| panic!("{e}\n{}", world.logs()));
    let skopeo = world.skopeo();
    for reference in [
        world.mirror_ref("team/outage", "v1"),
        world.mirror_ref("team/outage", &image.manifest.digest),
    ] {
        let dir = world.new_dir("warm-skopeo");
        skopeo
            .copy(&reference, &dir, &[])
            .unwrap_or_else(|e| panic!("{e}\n{}", world.logs()));
    }

    let pull_everything = |world: &mut Scenario, when: &str| {
        let node = world.new_containerd();
        node.pull(&by_tag, None)
            .unwrap_or_else(|e| panic!("{when}: ctr pull by tag: {e}\n{}", world.logs()));
        assert_eq!(
            node.image_target(&by_tag).as_deref(),
            Some(image.manifest.digest.as_str())
        );
        node.pull(&by_digest, None)
            .unwrap_or_else(|e| panic!("{when}: ctr pull by digest: {e}\n{}", world.logs()));
        for reference in [
            world.mirror_ref("team/outage", "v1"),
            world.mirror_ref("team/outage", &image.manifest.digest),
        ] {
            let dir = world.new_dir("skopeo");
            world
                .skopeo()
                .copy(&reference, &dir, &[])
                .unwrap_or_else(|e| {
                    panic!("{when}: skopeo copy {reference}: {e}\n{}", world.logs())
                });
            for blob in image.blobs() {
                assert_eq!(file_digest(&copied_blob(&dir, &blob.digest)), blob.digest);
            }
        }
    };

    // Up but answering 503: the tag's TTL has passed, revalidation fails, the cached copy is served.
    world.upstream.fail_with(503);
    // A TTL of 1 s ends 1 to 2 s after the fetch (nginx counts whole seconds).
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let stale = Request::get(
        world.mirror_url("/v2/team/outage/manifests/v1"),
        &world.pki.ca_cert,
    )
    .header("Accept", CONTAINERD_ACCEPT)
    .send();
    assert_eq!(stale.status, 200, "{}", stale.describe());
    assert_eq!(
        stale.header("X-Cache-Status"),
        Some("STALE"),
        "{}",
        stale.describe()
    );
    pull_everything(&mut world, "upstream answering 503");

    // Down (connection refused), and the mirror restarted: the cache on disk still answers.
    world.upstream.stop();
    world.mirror.restart();
    // A TTL of 1 s ends 1 to 2 s after the fetch (nginx counts whole seconds).
    std::thread::sleep(std::time::Duration::from_millis(2100));
    pull_everything(&mut world, "upstream down, mirror restarted");
    let ping = Request::get(world.mirror_url("/v2/"), &world.pki.ca_cert).send();
    assert_eq!(
        ping.status,
        200,
        "the /v2/ ping is served too: {}",
        ping.describe()
    );

    // What was never pulled fails clearly rather than hanging.
    let node = world.new_containerd();
    let error = node
        .pull(&world.upstream_ref("team/outage", "never-pulled"), None)
        .expect_err("nothing cached for this tag");
    assert!(error.contains("never-pulled"), "{error}");
}
