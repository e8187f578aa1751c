//! Tracing setup: text or JSON lines on stderr, filtered by LOG_LEVEL.

use tracing_subscriber::EnvFilter;

/// Output format of the logs.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber; a second call (tests running several components) is a no-op.
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|err| {
        eprintln!("LOG_LEVEL {filter:?} is not a valid filter ({err}); using \"info\"");
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // Already initialised by an earlier component in the same process: keep that one.
    drop(result);
}
