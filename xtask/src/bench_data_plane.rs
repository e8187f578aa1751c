//! `cargo xtask bench data-plane`: how fast the mirror's nginx config serves, measured on
//! loopback with the real parts of the data-plane tests (docker-registry upstream, Debian's nginx
//! running the rendered config, ctr and curl), printed as a table of medians with ratios.

use std::time::Instant;

use anyhow::{Context as _, bail, ensure};
use wharf_dataplane_tests::http::Request;
use wharf_dataplane_tests::{
    Containerd, MirrorOptions, Scenario, TestImage, UpstreamOptions, tools,
};

const MB: u64 = 1_000_000;

/// What to measure and how often.
#[derive(Clone, Debug, clap::Args)]
pub struct Options {
    /// Image size in MB (1 layer, and 5 equal layers).
    #[arg(long, default_value_t = 100)]
    pub size_mb: u64,
    /// Repetitions of each measurement (the table shows medians).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Concurrent pulls in the herd measurement.
    #[arg(long, default_value_t = 10)]
    pub concurrency: usize,
    /// Run only these parts, e.g. `--only blob,herd` (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Part>,
}

/// The parts of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// Warm blob serving rate (curl).
    Blob,
    /// Cold and warm pulls against direct pulls.
    Pulls,
    /// Concurrent cold and warm pulls.
    Herd,
}

/// One line of the table: a median, and what it is compared with.
struct Row {
    what: String,
    value: f64,
    unit: &'static str,
    baseline: Option<(&'static str, f64)>,
    note: String,
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    let missing = tools::missing();
    if !missing.is_empty() {
        bail!("missing {}: {}", missing.join(", "), tools::INSTALL_HINT);
    }
    ensure!(
        options.runs > 0 && options.concurrency > 0,
        "--runs and --concurrency must be at least 1"
    );
    let mirror_options = MirrorOptions {
        cache_max_size_bytes: 16 << 30,
        ..MirrorOptions::default()
    };
    let mut world = Scenario::start("bench", UpstreamOptions::default(), &mirror_options);
    let size = options.size_mb * MB;
    eprintln!(
        "bench: building and pushing a {} MB image with 1 layer and one with 5 layers",
        options.size_mb
    );
    let one = world.push_image("bench/one", "v1", &[size]);
    let five = world.push_image("bench/five", "v1", &[size / 5; 5]);

    let wanted = |part| options.only.is_empty() || options.only.contains(&part);
    let load_before = load_average();
    let mut rows = Vec::new();
    if wanted(Part::Blob) {
        rows.extend(warm_blob_rate(&world, &one, options.runs)?);
    }
    if wanted(Part::Pulls) {
        for (name, repository, image) in [
            ("1 layer", "bench/one", &one),
            ("5 layers", "bench/five", &five),
        ] {
            rows.extend(pull_times(&mut world, repository, name, image, options)?);
        }
    }
    if wanted(Part::Herd) {
        rows.extend(herd(&mut world, "bench/one", &one, options)?);
    }
    print_table(options, &rows);
    println!(
        "load average (1 min) before/after: {load_before} / {}: other processes on these cores slow every wall-clock figure; CPU per GB is not affected much",
        load_average()
    );
    Ok(())
}

/// Serving rate of a cached blob to curl (to /dev/null), against the upstream's own rate, and
/// nginx's CPU time per GB served (the rate it could sustain with a core to itself).
fn warm_blob_rate(world: &Scenario, image: &TestImage, runs: usize) -> anyhow::Result<Vec<Row>> {
    let layer = &image.layers[0];
    let path = format!("/v2/bench/one/blobs/{}", layer.digest);
    let ca = &world.pki.ca_cert;
    let fetch = |url: String| -> anyhow::Result<f64> {
        let response = Request::get(url, ca).discard_body().send();
        ensure!(
            response.status == 200 && response.bytes_downloaded == layer.size,
            "blob download failed: {}",
            response.describe()
        );
        Ok(layer.size as f64 / MB as f64 / response.total_time.as_secs_f64())
    };
    eprintln!("bench: warm blob serving rate");
    fetch(world.mirror_url(&path))?; // fills the cache
    let downloads = runs.max(5);
    let cpu_before = world.mirror.worker_cpu_seconds();
    let mirror = median(
        (0..downloads)
            .map(|_| fetch(world.mirror_url(&path)))
            .collect::<anyhow::Result<_>>()?,
    );
    let served_gb = downloads as f64 * layer.size as f64 / 1e9;
    let cpu_per_gb = (world.mirror.worker_cpu_seconds() - cpu_before) / served_gb;
    let upstream_url = format!("https://{}{path}", world.upstream.host());
    let direct = median(
        (0..downloads)
            .map(|_| fetch(upstream_url.clone()))
            .collect::<anyhow::Result<_>>()?,
    );
    Ok(vec![
        Row {
            what: format!("warm blob serving, {} MB, curl", layer.size / MB),
            value: mirror,
            unit: "MB/s",
            baseline: Some(("upstream direct", direct)),
            note: format!("target >= 2000 MB/s: {}", verdict(mirror >= 2000.0)),
        },
        Row {
            what: "  nginx CPU per GB served".to_owned(),
            value: cpu_per_gb,
            unit: "s",
            baseline: None,
            note: format!("= {:.0} MB/s per core", 1000.0 / cpu_per_gb),
        },
    ])
}

/// Cold and warm `ctr images pull` through the mirror, against pulling from the upstream.
fn pull_times(
    world: &mut Scenario,
    repository: &str,
    name: &str,
    image: &TestImage,
    options: &Options,
) -> anyhow::Result<Vec<Row>> {
    let reference = world.upstream_ref(repository, "v1");
    let mut direct = Vec::new();
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for run in 1..=options.runs {
        eprintln!("bench: {name} pulls, run {run}/{}", options.runs);
        let node = world.new_direct_containerd();
        direct.push(timed_pull(&node, &reference)?);
        drop(node);
        world.mirror.wipe_cache();
        let node = world.new_containerd();
        cold.push(timed_pull(&node, &reference)?);
        drop(node);
        let node = world.new_containerd();
        warm.push(timed_pull(&node, &reference)?);
    }
    let direct = median(direct);
    let size = image.blob_bytes() / MB;
    Ok(vec![
        Row {
            what: format!("ctr pull {size} MB, {name}, cold mirror"),
            value: median(cold),
            unit: "s",
            baseline: Some(("upstream direct", direct)),
            note: String::new(),
        },
        Row {
            what: format!("ctr pull {size} MB, {name}, warm mirror"),
            value: median(warm),
            unit: "s",
            baseline: Some(("upstream direct", direct)),
            note: String::new(),
        },
    ])
}

/// N pulls at once on N fresh nodes, cold and warm: wall time and bytes fetched upstream.
fn herd(
    world: &mut Scenario,
    repository: &str,
    image: &TestImage,
    options: &Options,
) -> anyhow::Result<Vec<Row>> {
    let reference = world.upstream_ref(repository, "v1");
    let n = options.concurrency;
    let mut cold_times = Vec::new();
    let mut cold_bytes = Vec::new();
    let mut warm_times = Vec::new();
    let mut warm_bytes = Vec::new();
    for run in 1..=options.runs {
        eprintln!("bench: {n} concurrent pulls, run {run}/{}", options.runs);
        world.mirror.wipe_cache();
        for (times, bytes) in [
            (&mut cold_times, &mut cold_bytes),
            (&mut warm_times, &mut warm_bytes),
        ] {
            let nodes: Vec<Containerd> = (0..n).map(|_| world.new_containerd()).collect();
            let before = world.upstream.all_blob_fetches().bytes;
            let started = Instant::now();
            let results: Vec<anyhow::Result<()>> = std::thread::scope(|scope| {
                let pulls: Vec<_> = nodes
                    .iter()
                    .map(|node| {
                        scope.spawn(|| node.pull(&reference, None).map_err(anyhow::Error::msg))
                    })
                    .collect();
                pulls
                    .into_iter()
                    .map(|pull| {
                        pull.join()
                            .unwrap_or_else(|_| Err(anyhow::anyhow!("a pull thread panicked")))
                    })
                    .collect()
            });
            let elapsed = started.elapsed();
            for result in results {
                result.context("a concurrent pull failed")?;
            }
            times.push(elapsed.as_secs_f64());
            bytes.push((world.upstream.all_blob_fetches().bytes - before) as f64 / MB as f64);
        }
    }
    let image_mb = image.blob_bytes() as f64 / MB as f64;
    let cold_time = median(cold_times);
    let warm_time = median(warm_times);
    let cold_upstream = median(cold_bytes);
    Ok(vec![
        Row {
            what: format!("{n} concurrent ctr pulls, cold mirror"),
            value: cold_time,
            unit: "s",
            baseline: Some(("same, warm", warm_time)),
            note: format!(
                "target <= 1.25x warm: {}",
                verdict(cold_time <= 1.25 * warm_time)
            ),
        },
        Row {
            what: format!("{n} concurrent ctr pulls, warm mirror"),
            value: warm_time,
            unit: "s",
            baseline: None,
            note: String::new(),
        },
        Row {
            what: format!("  upstream bytes, cold ({image_mb:.0} MB image)"),
            value: cold_upstream,
            unit: "MB",
            baseline: Some(("image size", image_mb)),
            note: format!(
                "target <= 1.05x: {}",
                verdict(cold_upstream <= 1.05 * image_mb)
            ),
        },
        Row {
            what: "  upstream bytes, warm".to_owned(),
            value: median(warm_bytes),
            unit: "MB",
            baseline: Some(("image size", image_mb)),
            note: String::new(),
        },
    ])
}

fn timed_pull(node: &Containerd, reference: &str) -> anyhow::Result<f64> {
    let started = Instant::now();
    node.pull(reference, None).map_err(anyhow::Error::msg)?;
    Ok(started.elapsed().as_secs_f64())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn print_table(options: &Options, rows: &[Row]) {
    println!();
    println!(
        "wharf mirror data plane on loopback: medians of {} runs (nginx {}, slices of {} MiB)",
        options.runs,
        nginx_version(),
        wharf_core::nginx::BLOB_SLICE_SIZE >> 20
    );
    println!(
        "{:<48} {:>12}   {:>28}   {:>7}   note",
        "measurement", "mirror", "compared with", "ratio"
    );
    for row in rows {
        let value = format!("{:.2} {}", row.value, row.unit);
        let (baseline, ratio) = match row.baseline {
            Some((name, baseline)) => (
                format!("{name} {baseline:.2} {}", row.unit),
                format!("{:.2}x", row.value / baseline),
            ),
            None => (String::new(), String::new()),
        };
        println!(
            "{:<48} {value:>12}   {baseline:>28}   {ratio:>7}   {}",
            row.what, row.note
        );
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}

fn nginx_version() -> String {
    std::process::Command::new(tools::require("nginx"))
        .arg("-v")
        .output()
        .map(|output| {
            String::from_utf8_lossy(&output.stderr)
                .trim()
                .trim_start_matches("nginx version: ")
                .to_owned()
        })
        .unwrap_or_default()
}
