//! Pushing from the node with skopeo, as a CI job on a machine of the organisation would: the
//! login from a Secret, the registry's CA from the same Secret's `ca.crt`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::Login;

/// A push of a small image over the bridge takes seconds; a hang must not stall the test.
const COPY_TIMEOUT: Duration = Duration::from_secs(120);

/// `skopeo copy oci-archive:<archive> docker://<image>` with `login`, trusting `login`'s CA
/// (written to a certificate directory under `work_dir`). Ok: the digest of the manifest pushed;
/// Err: skopeo's output.
pub fn copy(work_dir: &Path, login: &Login, archive: &Path, image: &str) -> Result<String, String> {
    let cert_dir = work_dir.join(format!("certs-{}", login.secret));
    std::fs::create_dir_all(&cert_dir)
        .and_then(|()| std::fs::write(cert_dir.join("ca.crt"), &login.ca_pem))
        .map_err(|err| format!("writing the CA to {}: {err}", cert_dir.display()))?;
    let digest_file = work_dir.join(format!("digest-{}", login.secret));
    let _stale = std::fs::remove_file(&digest_file);
    let mut command = Command::new("timeout");
    command
        .arg(COPY_TIMEOUT.as_secs().to_string())
        .arg("skopeo")
        .arg("copy")
        .arg("--dest-cert-dir")
        .arg(&cert_dir)
        .arg("--dest-creds")
        .arg(format!("{}:{}", login.username, login.password))
        .arg("--digestfile")
        .arg(&digest_file)
        .arg(format!("oci-archive:{}", archive.display()))
        .arg(format!("docker://{image}"));
    // Every byte goes to the registry's Service on this machine, never through a proxy.
    for proxy in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        command.env_remove(proxy);
    }
    let output = command
        .output()
        .map_err(|err| format!("cannot run skopeo (apt-get install skopeo): {err}"))?;
    if output.status.success() {
        return std::fs::read_to_string(&digest_file)
            .map(|digest| digest.trim().to_owned())
            .map_err(|err| format!("skopeo wrote no digest to {}: {err}", digest_file.display()));
    }
    Err(format!(
        "skopeo exited with {}: {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// The last non-empty line of skopeo's output: its error.
pub fn last_line(output: &str) -> String {
    output
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_error_is_the_last_line() {
        assert_eq!(
            super::last_line(
                "Getting image source signatures\ntime=x level=fatal msg=\"denied\"\n\n"
            ),
            "time=x level=fatal msg=\"denied\""
        );
        assert_eq!(super::last_line(""), "");
    }
}
