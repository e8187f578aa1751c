//! A multi-arch tag reaches every client as what it asked for, whichever client came first: a
//! client that reads only single manifests gets the upstream's platform manifest, and ctr and
//! skopeo get the list. The single-manifest client here sends the same first `Accept` line as
//! skopeo (the OCI manifest type); skopeo's list types come on later lines, which nginx 1.22
//! does not show in `$http_accept`: a cache keyed on that variable would mix them up.

use wharf_dataplane_tests::clients::copied_blob;
use wharf_dataplane_tests::http::Request;
use wharf_dataplane_tests::image::file_digest;
use wharf_dataplane_tests::image::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use wharf_dataplane_tests::{MediaTypes, MirrorOptions, MultiArchImage, Scenario, UpstreamOptions};

const MIB: u64 = 1024 * 1024;

/// `GET` the tag as a client that reads single manifests only (two Accept lines, no list type).
fn single_manifest_client(
    world: &Scenario,
    repository: &str,
) -> wharf_dataplane_tests::http::Response {
    Request::get(
        world.mirror_url(&format!("/v2/{repository}/manifests/v1")),
        &world.pki.ca_cert,
    )
    .header("Accept", OCI_MANIFEST)
    .header("Accept", DOCKER_MANIFEST)
    .send()
}

/// The single-manifest client gets the list's amd64 manifest (docker-registry's choice).
fn assert_single_manifest_client_gets_amd64(
    world: &Scenario,
    repository: &str,
    image: &MultiArchImage,
) -> String {
    let response = single_manifest_client(world, repository);
    let what = format!("{}\n{}", response.describe(), world.logs());
    assert_eq!(response.status, 200, "{what}");
    assert_eq!(
        response.header("Content-Type"),
        Some(DOCKER_MANIFEST),
        "{what}"
    );
    assert_eq!(
        response.header("Docker-Content-Digest"),
        Some(image.amd64.manifest.digest.as_str()),
        "{what}"
    );
    assert_eq!(
        wharf_dataplane_tests::image::sha256_digest(&response.body),
        image.amd64.manifest.digest,
        "{what}"
    );
    response
        .header("X-Cache-Status")
        .unwrap_or_default()
        .to_owned()
}

fn assert_ctr_pulls_arm64(world: &mut Scenario, repository: &str, image: &MultiArchImage) {
    let node = world.new_containerd();
    let reference = world.upstream_ref(repository, "v1");
    node.pull(&reference, Some("linux/arm64"))
        .unwrap_or_else(|e| panic!("ctr pull --platform linux/arm64: {e}\n{}", world.logs()));
    assert_eq!(
        node.image_target(&reference).as_deref(),
        Some(image.index.digest.as_str()),
        "ctr resolved the tag to the list\n{}",
        world.logs()
    );
    let content = node.content_digests();
    for blob in image.arm64.blobs() {
        assert!(
            content.contains(&blob.digest),
            "arm64 blob {} missing: ctr got the wrong image\n{}",
            blob.digest,
            world.logs()
        );
    }
    for layer in &image.amd64.layers {
        assert!(
            !content.contains(&layer.digest),
            "ctr --platform linux/arm64 pulled the amd64 layer {}",
            layer.digest
        );
    }
}

fn assert_skopeo_gets_the_list_and_arm64(
    world: &mut Scenario,
    repository: &str,
    image: &MultiArchImage,
) {
    let skopeo = world.skopeo();
    let raw = skopeo
        .inspect_raw(&world.mirror_ref(repository, "v1"))
        .unwrap_or_else(|e| panic!("skopeo inspect --raw: {e}\n{}", world.logs()));
    assert_eq!(
        wharf_dataplane_tests::image::sha256_digest(raw.as_bytes()),
        image.index.digest,
        "skopeo got the list: {raw}\n{}",
        world.logs()
    );
    let dir = world.new_dir("skopeo-arm64");
    skopeo
        .copy(
            &world.mirror_ref(repository, "v1"),
            &dir,
            &["--override-arch", "arm64"],
        )
        .unwrap_or_else(|e| panic!("skopeo copy --override-arch arm64: {e}\n{}", world.logs()));
    for blob in image.arm64.blobs() {
        assert_eq!(file_digest(&copied_blob(&dir, &blob.digest)), blob.digest);
    }
}

#[test]
fn single_manifest_client_first_then_ctr_arm64_and_skopeo() {
    let mut world = Scenario::start(
        "multiarch-single-first",
        UpstreamOptions::default(),
        &MirrorOptions::default(),
    );
    let image = world.push_multi_arch("multi/app", "v1", &[MIB], MediaTypes::Docker);

    assert_eq!(
        assert_single_manifest_client_gets_amd64(&world, "multi/app", &image),
        "MISS"
    );
    assert_ctr_pulls_arm64(&mut world, "multi/app", &image);
    assert_skopeo_gets_the_list_and_arm64(&mut world, "multi/app", &image);
    // Still its own answer, from the cache.
    assert_eq!(
        assert_single_manifest_client_gets_amd64(&world, "multi/app", &image),
        "HIT"
    );
}

#[test]
fn list_clients_first_then_single_manifest_client() {
    let mut world = Scenario::start(
        "multiarch-list-first",
        UpstreamOptions::default(),
        &MirrorOptions::default(),
    );
    let image = world.push_multi_arch("multi/app", "v1", &[MIB], MediaTypes::Docker);

    assert_skopeo_gets_the_list_and_arm64(&mut world, "multi/app", &image);
    assert_ctr_pulls_arm64(&mut world, "multi/app", &image);
    assert_single_manifest_client_gets_amd64(&world, "multi/app", &image);

    // List clients keep getting the list from the cache.
    let list = Request::get(
        world.mirror_url("/v2/multi/app/manifests/v1"),
        &world.pki.ca_cert,
    )
    .header("Accept", OCI_MANIFEST)
    .header("Accept", DOCKER_MANIFEST)
    .header("Accept", DOCKER_LIST)
    .header("Accept", OCI_INDEX)
    .send();
    assert_eq!(
        list.header("Content-Type"),
        Some(DOCKER_LIST),
        "{}",
        list.describe()
    );
    assert_eq!(
        list.header("Docker-Content-Digest"),
        Some(image.index.digest.as_str()),
        "{}",
        list.describe()
    );
}

#[test]
fn oci_index_reaches_ctr_and_skopeo_and_never_a_client_that_cannot_read_it() {
    let mut world = Scenario::start(
        "multiarch-oci",
        UpstreamOptions::default(),
        &MirrorOptions::default(),
    );
    let image = world.push_multi_arch("multi/oci", "v1", &[MIB], MediaTypes::Oci);

    assert_ctr_pulls_arm64(&mut world, "multi/oci", &image);
    assert_skopeo_gets_the_list_and_arm64(&mut world, "multi/oci", &image);
    // docker-registry does not pick a platform out of an OCI index: such a client gets its error.
    let response = single_manifest_client(&world, "multi/oci");
    assert_eq!(response.status, 404, "{}", response.describe());
    assert!(
        String::from_utf8_lossy(&response.body).contains("MANIFEST_UNKNOWN"),
        "{}",
        response.describe()
    );
}
