//! Cache policy: a tag pushed again upstream is served new once its TTL has passed (and an
//! unchanged one is revalidated cheaply), the upstream's certificate is verified (system CAs
//! plus the optional extra bundle), and the cache stays within its size bound.

use std::time::{Duration, Instant};

use wharf_dataplane_tests::http::Request;
use wharf_dataplane_tests::{MirrorOptions, Scenario, UpstreamOptions};

const MIB: u64 = 1024 * 1024;
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json";

#[test]
fn a_tag_pushed_again_is_served_new_after_the_ttl() {
    let options = MirrorOptions {
        tag_ttl_seconds: 3,
        ..MirrorOptions::default()
    };
    let mut world = Scenario::start("ttl", UpstreamOptions::default(), &options);
    let old = world.push_image("team/app", "latest", &[MIB]);
    let reference = world.upstream_ref("team/app", "latest");
    let first = world.new_containerd();
    first
        .pull(&reference, None)
        .unwrap_or_else(|e| panic!("{e}\n{}", world.logs()));
    let cached_at = Instant::now();
    assert_eq!(
        first.image_target(&reference).as_deref(),
        Some(old.manifest.digest.as_str())
    );

    let new = world.push_image("team/app", "latest", &[MIB]);
    let within_ttl = world.new_containerd();
    within_ttl
        .pull(&reference, None)
        .unwrap_or_else(|e| panic!("{e}\n{}", world.logs()));
    assert!(
        cached_at.elapsed() < Duration::from_secs(3),
        "the test machine is too slow for a 3 s TTL"
    );
    assert_eq!(
        within_ttl.image_target(&reference).as_deref(),
        Some(old.manifest.digest.as_str()),
        "within the TTL: the cached tag"
    );

    std::thread::sleep(Duration::from_millis(4200).saturating_sub(cached_at.elapsed()));
    let second = world.new_containerd();
    second
        .pull(&reference, None)
        .unwrap_or_else(|e| panic!("{e}\n{}", world.logs()));
    assert_eq!(
        second.image_target(&reference).as_deref(),
        Some(new.manifest.digest.as_str()),
        "after the TTL the new image\n{}",
        world.logs()
    );
    let dir = world.new_dir("skopeo");
    world
        .skopeo()
        .copy(&world.mirror_ref("team/app", "latest"), &dir, &[])
        .unwrap_or_else(|e| panic!("{e}\n{}", world.logs()));
    let manifest = std::fs::read(dir.join("manifest.json")).expect("skopeo wrote the manifest");
    assert_eq!(
        wharf_dataplane_tests::image::sha256_digest(&manifest),
        new.manifest.digest
    );

    // Unchanged after another TTL: revalidated upstream with a conditional request.
    let tag_url = world.mirror_url("/v2/team/app/manifests/latest");
    let fetched = Request::get(tag_url.clone(), &world.pki.ca_cert)
        .header("Accept", ACCEPT)
        .send();
    assert_eq!(
        fetched.header("Docker-Content-Digest"),
        Some(new.manifest.digest.as_str())
    );
    // nginx keeps validity in whole seconds: a TTL of 3 s ends 3 to 4 s after the fetch.
    std::thread::sleep(Duration::from_millis(4200));
    let revalidated = Request::get(tag_url, &world.pki.ca_cert)
        .header("Accept", ACCEPT)
        .send();
    assert_eq!(
        revalidated.header("X-Cache-Status"),
        Some("REVALIDATED"),
        "{}",
        revalidated.describe()
    );
    assert_eq!(
        revalidated.header("Docker-Content-Digest"),
        Some(new.manifest.digest.as_str())
    );
    assert!(
        world
            .upstream
            .manifest_requests()
            .iter()
            .any(|(_, uri, status)| uri.ends_with("/latest") && *status == 304),
        "{:?}",
        world.upstream.manifest_requests()
    );
}

#[test]
fn the_upstream_certificate_is_verified_with_the_extra_ca_bundle() {
    // Debian's system CAs as the system bundle and the test CA as CA_CERTIFICATE_BUNDLE.
    let options = MirrorOptions {
        extra_ca_bundle: true,
        ..MirrorOptions::default()
    };
    let mut world = Scenario::start("extra-ca", UpstreamOptions::default(), &options);
    let image = world.push_image("team/app", "v1", &[MIB]);
    let node = world.new_containerd();
    let reference = world.upstream_ref("team/app", "v1");
    node.pull(&reference, None)
        .unwrap_or_else(|e| panic!("{e}\n{}", world.logs()));
    assert_eq!(
        node.image_target(&reference).as_deref(),
        Some(image.manifest.digest.as_str())
    );

    // Without the extra bundle the upstream's certificate is not trusted: nothing is proxied.
    world.mirror.reconfigure(|config| {
        config.extra_upstream_ca_bundle = false;
        config.paths.extra_ca_bundle = "/nonexistent/ca-certificates.crt".into();
    });
    let response = Request::get(
        world.mirror_url("/v2/team/app/manifests/other"),
        &world.pki.ca_cert,
    )
    .header("Accept", ACCEPT)
    .send();
    assert_eq!(response.status, 502, "{}", response.describe());
    let log = std::fs::read_to_string(world.mirror.log()).expect("mirror log");
    assert!(
        log.contains("upstream SSL certificate verify error"),
        "{}",
        world.logs()
    );
}

#[test]
fn the_cache_stays_within_its_size_bound() {
    let max = 24 * MIB;
    let options = MirrorOptions {
        cache_max_size_bytes: max,
        ..MirrorOptions::default()
    };
    let mut world = Scenario::start("max-size", UpstreamOptions::default(), &options);
    let image = world.push_image("big/app", "v1", &[16 * MIB, 16 * MIB, 16 * MIB]);
    for blob in image.blobs() {
        let response = Request::get(
            world.mirror_url(&format!("/v2/big/app/blobs/{}", blob.digest)),
            &world.pki.ca_cert,
        )
        .discard_body()
        .send();
        assert_eq!(response.status, 200);
    }
    let cache_dir = std::path::PathBuf::from(&world.mirror.config().paths.cache_dir);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let used = directory_bytes(&cache_dir);
        if used <= max + MIB {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cache holds {used} bytes, over its {max} byte bound"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The most recently used blob is still served from the cache.
    let last = image.layers.last().expect("a layer");
    let response = Request::get(
        world.mirror_url(&format!("/v2/big/app/blobs/{}", last.digest)),
        &world.pki.ca_cert,
    )
    .header("Range", "bytes=0-0")
    .send();
    assert_eq!(
        response.header("X-Cache-Status"),
        Some("HIT"),
        "{}",
        response.describe()
    );
}

fn directory_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => directory_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}
