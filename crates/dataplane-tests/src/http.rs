//! HTTP requests to the mirror with `curl`, a real client whose headers we choose exactly
//! (e.g. a single `Accept` line, as a client that cannot read manifest lists sends).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::process::run;
use crate::tools::require;

/// A response: status, headers (last response of the exchange), body and timings.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Time until the first body byte arrived.
    pub time_to_first_byte: Duration,
    pub total_time: Duration,
    pub bytes_downloaded: u64,
    /// The HTTP version of the last response: `1.1`, `2`.
    pub http_version: String,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Every header line, for assertion messages.
    pub fn describe(&self) -> String {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        format!(
            "{} {}\n{}",
            self.status,
            headers.join("\n"),
            String::from_utf8_lossy(&self.body[..self.body.len().min(400)])
        )
    }
}

/// A request made with curl, trusting `ca`.
pub struct Request<'a> {
    method: &'a str,
    url: String,
    ca: &'a Path,
    headers: Vec<String>,
    discard_body: bool,
    http_version: &'static str,
}

impl<'a> Request<'a> {
    pub fn get(url: impl Into<String>, ca: &'a Path) -> Self {
        Self::new("GET", url, ca)
    }

    pub fn head(url: impl Into<String>, ca: &'a Path) -> Self {
        Self::new("HEAD", url, ca)
    }

    pub fn new(method: &'a str, url: impl Into<String>, ca: &'a Path) -> Self {
        Request {
            method,
            url: url.into(),
            ca,
            headers: Vec::new(),
            discard_body: false,
            http_version: "--http1.1",
        }
    }

    /// Adds a header line; the same name twice sends two lines.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push(format!("{name}: {value}"));
        self
    }

    /// Streams the body to /dev/null (for big blobs: only its size and timings are kept).
    pub fn discard_body(mut self) -> Self {
        self.discard_body = true;
        self
    }

    /// Asks for HTTP/2 (negotiated with ALPN; a server without it answers over HTTP/1.1).
    pub fn http2(mut self) -> Self {
        self.http_version = "--http2";
        self
    }

    pub fn send(self) -> Response {
        let dir = tempfile::tempdir().expect("temporary directory for curl");
        let headers_file = dir.path().join("headers");
        let body_file = if self.discard_body {
            Path::new("/dev/null").to_owned()
        } else {
            dir.path().join("body")
        };
        let mut command = Command::new(require("curl"));
        command
            .args(["-sS", self.http_version, "--max-time", "120", "--cacert"])
            .arg(self.ca)
            .arg("-D")
            .arg(&headers_file)
            .arg("-o")
            .arg(&body_file)
            .args([
                "-w",
                "%{time_starttransfer} %{time_total} %{size_download} %{http_version}",
            ]);
        if self.method == "HEAD" {
            command.arg("--head");
        } else {
            command.args(["-X", self.method]);
        }
        for header in &self.headers {
            command.arg("-H").arg(header);
        }
        command.arg(&self.url);
        let output = run(&mut command).unwrap_or_else(|e| panic!("{e}"));
        let timings = String::from_utf8_lossy(&output.stdout).into_owned();
        let mut timings = timings.split_whitespace();
        let mut seconds =
            || Duration::from_secs_f64(timings.next().and_then(|t| t.parse().ok()).unwrap_or(0.0));
        let time_to_first_byte = seconds();
        let total_time = seconds();
        let bytes_downloaded = timings.next().and_then(|t| t.parse().ok()).unwrap_or(0);
        let http_version = timings.next().unwrap_or_default().to_owned();
        let raw_headers = std::fs::read_to_string(&headers_file).unwrap_or_default();
        let (status, headers) = parse_last_response_headers(&raw_headers);
        let body = if self.discard_body {
            Vec::new()
        } else {
            std::fs::read(&body_file).unwrap_or_default()
        };
        Response {
            status,
            headers,
            body,
            time_to_first_byte,
            total_time,
            bytes_downloaded,
            http_version,
        }
    }
}

fn parse_last_response_headers(raw: &str) -> (u16, Vec<(String, String)>) {
    let mut status = 0;
    let mut headers = Vec::new();
    for line in raw.lines() {
        let line = line.trim_end();
        if line.starts_with("HTTP/") {
            status = line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            headers.clear();
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    (status, headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_response_of_an_exchange() {
        let raw = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Cache-Status: HIT\r\n\r\n";
        let (status, headers) = parse_last_response_headers(raw);
        assert_eq!(status, 200);
        assert_eq!(
            headers,
            [
                ("Content-Length".into(), "3".into()),
                ("X-Cache-Status".into(), "HIT".into())
            ]
        );
    }
}
