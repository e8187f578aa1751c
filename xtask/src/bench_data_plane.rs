//! `cargo xtask bench data-plane`: how fast the mirror's nginx config serves, measured on
//! loopback with the real parts of the data-plane tests (docker-registry upstream, Debian's nginx
//! running the rendered config, ctr and curl), printed as a table of medians with ratios.

use std::time::Instant;

use anyhow::{Context as _, bail, ensure};
use wharf_dataplane_tests::http::Request;
use wharf_dataplane_tests::process::reaped_children_cpu_seconds;
use wharf_dataplane_tests::{
    Containerd, MirrorOptions, Scenario, StaticFileServer, TestImage, UpstreamOptions, tools,
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

/// Where the warm blob is downloaded from, side by side in the same rounds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The mirror's cache.
    Mirror,
    /// The same file from nginx with the mirror's TLS settings: the ceiling over TLS.
    StaticTls,
    /// The same, with curl negotiating HTTP/2: whether the client's protocol matters.
    StaticTlsHttp2,
    /// The same file over plain HTTP (sendfile): the loopback ceiling without encryption.
    StaticPlain,
    /// The upstream registry itself.
    Upstream,
}

const SOURCES: [Source; 5] = [
    Source::Mirror,
    Source::StaticTls,
    Source::StaticTlsHttp2,
    Source::StaticPlain,
    Source::Upstream,
];

/// Downloads of one source: rates, and the CPU the server's nginx and curl spent.
#[derive(Default)]
struct Downloads {
    rates: Vec<f64>,
    bytes: u64,
    server_cpu_seconds: f64,
    curl_cpu_seconds: f64,
}

impl Downloads {
    fn rate(&self) -> f64 {
        median(self.rates.clone())
    }

    fn server_cpu_per_gb(&self) -> f64 {
        self.server_cpu_seconds / (self.bytes as f64 / 1e9)
    }

    fn curl_cpu_per_gb(&self) -> f64 {
        self.curl_cpu_seconds / (self.bytes as f64 / 1e9)
    }
}

/// Serving rate of a cached blob to curl (to /dev/null), against the upstream's own rate and
/// the ceiling of this machine: the same file from nginx with the mirror's TLS settings and
/// over plain HTTP, all in the same interleaved rounds. Also the CPU per GB of nginx and of curl
/// (the rate each could sustain with a core to itself): on loopback both share the machine.
fn warm_blob_rate(world: &Scenario, image: &TestImage, runs: usize) -> anyhow::Result<Vec<Row>> {
    let layer = &image.layers[0];
    let path = format!("/v2/bench/one/blobs/{}", layer.digest);
    let blob_file = world.layout.blob_path(&layer.digest);
    let (Some(root), Some(file_name)) = (blob_file.parent(), blob_file.file_name()) else {
        bail!("no blob file for {}", layer.digest);
    };
    let file_name = file_name.to_string_lossy();
    let static_files = StaticFileServer::start(
        &world.workdir.subdir("static-files"),
        &world.pki,
        root,
        &world.mirror.rendered(),
    );
    let ca = &world.pki.ca_cert;
    let upstream_url = format!("https://{}{path}", world.upstream.host());
    let download = |source: Source, downloads: &mut Downloads| -> anyhow::Result<()> {
        let (request, server_cpu): (Request, &dyn Fn() -> f64) = match source {
            Source::Mirror => (Request::get(world.mirror_url(&path), ca), &|| {
                world.mirror.worker_cpu_seconds()
            }),
            Source::StaticTls => (Request::get(static_files.tls_url(&file_name), ca), &|| {
                static_files.worker_cpu_seconds()
            }),
            Source::StaticTlsHttp2 => (
                Request::get(static_files.tls_http2_url(&file_name), ca).http2(),
                &|| static_files.worker_cpu_seconds(),
            ),
            Source::StaticPlain => (
                Request::get(static_files.plain_url(&file_name), ca),
                &|| static_files.worker_cpu_seconds(),
            ),
            Source::Upstream => (Request::get(upstream_url.clone(), ca), &|| {
                world.upstream.registry_cpu_seconds()
            }),
        };
        let (server_before, curl_before) = (server_cpu(), reaped_children_cpu_seconds());
        let response = request.discard_body().send();
        downloads.server_cpu_seconds += server_cpu() - server_before;
        downloads.curl_cpu_seconds += reaped_children_cpu_seconds() - curl_before;
        ensure!(
            response.status == 200 && response.bytes_downloaded == layer.size,
            "blob download failed: {}",
            response.describe()
        );
        let wanted_version = if source == Source::StaticTlsHttp2 {
            "2"
        } else {
            "1.1"
        };
        ensure!(
            response.http_version == wanted_version,
            "curl spoke HTTP/{} instead of HTTP/{wanted_version}",
            response.http_version
        );
        downloads
            .rates
            .push(layer.size as f64 / MB as f64 / response.total_time.as_secs_f64());
        downloads.bytes += layer.size;
        Ok(())
    };
    eprintln!(
        "bench: warm blob serving rate (mirror, static nginx over TLS and plain HTTP, upstream)"
    );
    // Fills the cache, and every source's page cache and TLS session.
    for source in SOURCES {
        download(source, &mut Downloads::default())?;
    }
    let tls_connections_before = kernel_tls_connections();
    let mut results: Vec<Downloads> = SOURCES.iter().map(|_| Downloads::default()).collect();
    let busy_before = busy_cpu_seconds();
    let started = Instant::now();
    for round in 0..runs.max(7) {
        // Each round starts with another source: what runs just before a download (another
        // process still finishing, a cold CPU cache) is spread over all sources alike.
        for index in (0..SOURCES.len()).map(|i| (i + round) % SOURCES.len()) {
            download(SOURCES[index], &mut results[index])?;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ours: f64 = results
        .iter()
        .map(|d| d.server_cpu_seconds + d.curl_cpu_seconds)
        .sum();
    let others_cores = busy_cpu_seconds()
        .zip(busy_before)
        .map(|(after, before)| ((after - before - ours) / elapsed).max(0.0));
    let kernel_tls = kernel_tls_connections()
        .zip(tls_connections_before)
        .map(|(after, before)| after - before);
    let [mirror, static_tls, static_http2, static_plain, upstream] = &results[..] else {
        bail!("one result per source");
    };
    let mirror_rate = mirror.rate();
    Ok(vec![
        Row {
            what: format!("warm blob serving, {} MB, curl", layer.size / MB),
            value: mirror_rate,
            unit: "MB/s",
            baseline: Some(("upstream direct", upstream.rate())),
            note: format!(
                "target >= 2000 MB/s: {}{}",
                verdict(mirror_rate >= 2000.0),
                match kernel_tls {
                    Some(0) => "; kernel TLS not used",
                    Some(_) => "; kernel TLS used",
                    None => "; no kernel TLS in this kernel",
                }
            ),
        },
        Row {
            what: "  vs the same file from nginx, same TLS".to_owned(),
            value: mirror_rate,
            unit: "MB/s",
            baseline: Some(("static TLS", static_tls.rate())),
            note: format!(
                "ceiling over TLS here; curl --http2: {:.0} MB/s",
                static_http2.rate()
            ),
        },
        Row {
            what: "  vs the same file from nginx, plain HTTP".to_owned(),
            value: mirror_rate,
            unit: "MB/s",
            baseline: Some(("static plain", static_plain.rate())),
            note: "ceiling of loopback without TLS (sendfile)".to_owned(),
        },
        Row {
            what: "  nginx CPU per GB served".to_owned(),
            value: mirror.server_cpu_per_gb(),
            unit: "s",
            baseline: Some(("static TLS", static_tls.server_cpu_per_gb())),
            note: format!(
                "= {:.0} MB/s per core (static plain {:.2} s, upstream registry {:.2} s)",
                1000.0 / mirror.server_cpu_per_gb(),
                static_plain.server_cpu_per_gb(),
                upstream.server_cpu_per_gb()
            ),
        },
        Row {
            what: "  curl CPU per GB received".to_owned(),
            value: mirror.curl_cpu_per_gb(),
            unit: "s",
            baseline: Some(("static plain", static_plain.curl_cpu_per_gb())),
            note: format!(
                "= {:.0} MB/s per core: the client alone",
                1000.0 / mirror.curl_cpu_per_gb()
            ),
        },
        Row {
            what: "  best case: nginx and curl, 2 idle cores".to_owned(),
            value: two_core_bound(mirror),
            unit: "MB/s",
            baseline: Some(("static plain", two_core_bound(static_plain))),
            note: format!(
                "from CPU per GB above; static TLS {:.0} MB/s",
                two_core_bound(static_tls)
            ),
        },
        Row {
            what: "  other processes meanwhile".to_owned(),
            value: others_cores.unwrap_or(f64::NAN),
            unit: "cores",
            baseline: None,
            note: format!(
                "of {}: CPU not used by these downloads",
                std::thread::available_parallelism().map_or(0, usize::from)
            ),
        },
    ])
}

/// The highest rate one download could reach if nginx and curl each had an idle core to
/// itself: the side that needs more CPU per byte sets it.
fn two_core_bound(downloads: &Downloads) -> f64 {
    1000.0
        / downloads
            .server_cpu_per_gb()
            .max(downloads.curl_cpu_per_gb())
}

/// CPU time all processes have used so far (`/proc/stat`, every core, idle and iowait left
/// out), or `None` when it cannot be read.
fn busy_cpu_seconds() -> Option<f64> {
    const TICKS_PER_SECOND: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    Some(busy as f64 / TICKS_PER_SECOND)
}

/// Connections whose sending the kernel has encrypted so far (`/proc/net/tls_stat`), or `None` when this
/// kernel has no TLS (built without `CONFIG_TLS`).
fn kernel_tls_connections() -> Option<u64> {
    let stats = std::fs::read_to_string("/proc/net/tls_stat").ok()?;
    Some(
        stats
            .lines()
            .filter_map(|line| line.split_once(char::is_whitespace))
            .filter(|(name, _)| matches!(*name, "TlsTxSw" | "TlsTxDevice"))
            .filter_map(|(_, count)| count.trim().parse::<u64>().ok())
            .sum(),
    )
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
