//! In-process logs of the controllers a test runs, kept in memory so a failure can print them.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

use tracing_subscriber::EnvFilter;

/// Bytes of recent log output kept in memory.
const KEEP_BYTES: usize = 4 << 20;

fn buffer() -> &'static Mutex<Vec<u8>> {
    static BUFFER: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    BUFFER.get_or_init(Mutex::default)
}

struct BufferWriter;

impl Write for BufferWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if std::env::var_os("WHARF_E2E_LOG_STDERR").is_some() {
            std::io::stderr().write_all(data)?;
        }
        let mut buffer = buffer()
            .lock()
            .map_err(|_| std::io::Error::other("log buffer poisoned"))?;
        buffer.extend_from_slice(data);
        if buffer.len() > KEEP_BYTES {
            let excess = buffer.len() - KEEP_BYTES / 2;
            buffer.drain(..excess);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Routes tracing output (filter from `RUST_LOG`, default `info`) into the buffer, once per process.
/// `WHARF_E2E_LOG_STDERR=1` also prints it live.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let result = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(|| BufferWriter)
        .try_init();
    // A second init in the same process keeps the first subscriber.
    drop(result);
}

/// The last `lines` lines of in-process logs.
pub fn tail(lines: usize) -> String {
    let buffer = buffer().lock().map(|b| b.clone()).unwrap_or_default();
    let text = String::from_utf8_lossy(&buffer);
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    format!(
        "--- in-process logs (last {lines} lines) ---\n{}\n",
        all[start..].join("\n")
    )
}
