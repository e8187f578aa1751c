//! Scratch: a warm mirror for manual measurements (deleted before handing in).
use wharf_dataplane_tests::http::Request;
use wharf_dataplane_tests::{MirrorOptions, Scenario, UpstreamOptions};
fn main() {
    let mut world = Scenario::start(
        "scratch",
        UpstreamOptions::default(),
        &MirrorOptions {
            cache_max_size_bytes: 8 << 30,
            ..MirrorOptions::default()
        },
    );
    let image = world.push_image("bench/one", "v1", &[100_000_000]);
    let path = format!("/v2/bench/one/blobs/{}", image.layers[0].digest);
    let r = Request::get(world.mirror_url(&path), &world.pki.ca_cert)
        .discard_body()
        .send();
    println!("warm: {}", r.status);
    let info = format!(
        "MIRROR={}\nUPSTREAM=https://{}{path}\nCA={}\nCONF={}\nDIR={}\n",
        world.mirror_url(&path),
        world.upstream.host(),
        world.pki.ca_cert.display(),
        world.mirror.config().paths.config_file,
        world.workdir.path().display()
    );
    std::fs::write("/tmp/scratch.env", info).expect("write");
    std::thread::sleep(std::time::Duration::from_secs(3000));
}
