//! Concurrent misses collapse: ten clients pulling the same image at once cause one upstream
//! fetch of each blob, and a client waiting for a blob another client is fetching receives data
//! while the download is still running.

use std::sync::Barrier;
use std::time::Duration;

use wharf_core::nginx::BLOB_SLICE_SIZE;
use wharf_dataplane_tests::clients::copied_blob;
use wharf_dataplane_tests::http::Request;
use wharf_dataplane_tests::image::file_digest;
use wharf_dataplane_tests::{MirrorOptions, Scenario, UpstreamOptions};

const MIB: u64 = 1024 * 1024;

#[test]
fn ten_concurrent_cold_pulls_fetch_each_blob_upstream_once() {
    let mut world = Scenario::start(
        "herd",
        UpstreamOptions::default(),
        &MirrorOptions::default(),
    );
    let image = world.push_image("herd/app", "v1", &[14 * MIB, 3 * MIB, 64 * 1024]);
    let nodes: Vec<_> = (0..5).map(|_| world.new_containerd()).collect();
    let skopeo_dirs: Vec<_> = (0..5).map(|_| world.new_dir("skopeo")).collect();
    let skopeo = world.skopeo();
    let ctr_ref = world.upstream_ref("herd/app", "v1");
    let skopeo_ref = world.mirror_ref("herd/app", "v1");
    let start = Barrier::new(10);

    let results: Vec<Result<(), String>> = std::thread::scope(|scope| {
        let mut pulls = Vec::new();
        for node in &nodes {
            let (start, reference) = (&start, &ctr_ref);
            pulls.push(scope.spawn(move || {
                start.wait();
                node.pull(reference, None)
            }));
        }
        for dir in &skopeo_dirs {
            let (start, reference, skopeo) = (&start, &skopeo_ref, &skopeo);
            pulls.push(scope.spawn(move || {
                start.wait();
                skopeo.copy(reference, dir, &[])
            }));
        }
        pulls
            .into_iter()
            .map(|pull| pull.join().unwrap_or_else(|_| Err("panicked".into())))
            .collect()
    });
    for result in results {
        result.unwrap_or_else(|e| panic!("a concurrent pull failed: {e}\n{}", world.logs()));
    }

    for node in &nodes {
        assert_eq!(
            node.image_target(&ctr_ref).as_deref(),
            Some(image.manifest.digest.as_str())
        );
    }
    for dir in &skopeo_dirs {
        for blob in image.blobs() {
            assert_eq!(file_digest(&copied_blob(dir, &blob.digest)), blob.digest);
        }
    }
    for blob in image.blobs() {
        let fetched = world.upstream.blob_fetches(&blob.digest);
        assert_eq!(
            fetched.bytes,
            blob.size,
            "blob {} ({} bytes) fetched upstream once: {fetched:?}\n{}",
            blob.digest,
            blob.size,
            world.logs()
        );
        assert_eq!(
            fetched.requests as u64,
            blob.size.div_ceil(BLOB_SLICE_SIZE),
            "one request per slice: {fetched:?}"
        );
    }
}

#[test]
fn a_waiting_client_streams_while_the_first_download_runs() {
    // A slow object store (one slice per second and request): the blob of four slices takes
    // about 4 s to arrive.
    let upstream = UpstreamOptions {
        redirect_blobs: true,
        blob_rate_limit: Some(format!("{}k", BLOB_SLICE_SIZE / 1024)),
        ..UpstreamOptions::default()
    };
    let mut world = Scenario::start("stream", upstream, &MirrorOptions::default());
    let image = world.push_image("slow/app", "v1", &[4 * BLOB_SLICE_SIZE]);
    let layer = image.layers[0].clone();
    let url = world.mirror_url(&format!("/v2/slow/app/blobs/{}", layer.digest));
    let ca = world.pki.ca_cert.clone();

    let (first, second) = std::thread::scope(|scope| {
        let first = scope.spawn(|| Request::get(url.clone(), &ca).discard_body().send());
        std::thread::sleep(Duration::from_millis(300));
        let second = scope.spawn(|| Request::get(url.clone(), &ca).discard_body().send());
        (
            first.join().expect("first client"),
            second.join().expect("second client"),
        )
    });
    for response in [&first, &second] {
        assert_eq!(
            response.status,
            200,
            "{}\n{}",
            response.describe(),
            world.logs()
        );
        assert_eq!(response.bytes_downloaded, layer.size);
    }
    assert!(
        first.total_time > Duration::from_secs(3),
        "the upstream is slow: {:?}",
        first.total_time
    );
    assert!(
        second.time_to_first_byte + Duration::from_millis(300) + Duration::from_secs(1)
            < first.total_time,
        "the waiting client got its first byte after {:?}, the download took {:?}: it should stream slice by slice, not wait for the whole blob",
        second.time_to_first_byte,
        first.total_time
    );
    let fetched = world.upstream.blob_fetches(&layer.digest);
    assert_eq!(
        fetched.bytes,
        layer.size,
        "one upstream download for both clients: {fetched:?}\n{}",
        world.logs()
    );
}
