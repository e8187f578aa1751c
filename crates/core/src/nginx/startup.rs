//! The mirror container's start: write what the rendered config includes (the `resolver` from
//! resolv.conf, the upstream CA bundle), then exec nginx on the rendered config.

use super::NginxPaths;

/// The command of the mirror's nginx container: [`NginxPaths::in_pod`] in the StatefulSet; tests
/// run the same command with their own paths.
pub fn container_command(paths: &NginxPaths) -> Vec<String> {
    vec!["/bin/sh".to_owned(), "-c".to_owned(), startup_script(paths)]
}

/// POSIX shell that prepares `paths.run_dir` and execs nginx on `paths.config_file`.
///
/// - nginx resolves the upstream (and the object-storage hosts it redirects to) at request
///   time, so a registry whose addresses change keeps working; it needs `resolver` addresses,
///   which it cannot read from resolv.conf itself. IPv6 nameservers are bracketed; link-local
///   ones with a zone (`%eth0`) are skipped, nginx cannot use them.
/// - `proxy_ssl_trusted_certificate` takes one file: the system CAs plus the optional extra
///   bundle are concatenated into [`NginxPaths::upstream_ca_bundle`].
/// - A unix socket left by a killed nginx would make `listen` fail: it is removed.
pub fn startup_script(paths: &NginxPaths) -> String {
    let run_dir = shell_quote(&paths.run_dir);
    let resolv_conf = shell_quote(&paths.resolv_conf);
    let resolver_conf = shell_quote(&paths.resolver_conf());
    let system_ca = shell_quote(&paths.system_ca_bundle);
    let extra_ca = shell_quote(&paths.extra_ca_bundle);
    let bundle = shell_quote(&paths.upstream_ca_bundle());
    let socket = shell_quote(&paths.upstream_socket());
    let config = shell_quote(&paths.config_file);
    format!(
        r#"set -eu
mkdir -p {run_dir}
nameservers=
if [ -r {resolv_conf} ]; then
  while read -r key address _; do
    [ "$key" = nameserver ] || continue
    case $address in
      *%*) continue ;;
      \[*) ;;
      *:*) address="[$address]" ;;
    esac
    nameservers="$nameservers $address"
  done < {resolv_conf}
fi
if [ -z "$nameservers" ]; then
  echo "wharf: no nameserver in {resolv_conf_text}; upstream host names cannot be resolved" >&2
  nameservers=" 127.0.0.1"
fi
echo "resolver$nameservers valid=30s;" > {resolver_conf}
cat {system_ca} > {bundle}
if [ -s {extra_ca} ]; then
  echo >> {bundle}
  cat {extra_ca} >> {bundle}
fi
rm -f {socket}
exec nginx -e stderr -c {config}
"#,
        resolv_conf_text = paths.resolv_conf.replace(['"', '\'', '$', '`', '\\'], ""),
    )
}

/// Single-quotes `value` for sh.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_runs_the_script_with_the_pod_paths() {
        let command = container_command(&NginxPaths::in_pod());
        assert_eq!(command[..2], ["/bin/sh", "-c"]);
        assert!(command[2].contains("exec nginx -e stderr -c '/etc/wharf/nginx/default.conf'"));
        assert!(command[2].contains("done < '/etc/resolv.conf'"));
        assert!(command[2].contains("> '/tmp/resolver.conf'"));
        assert!(command[2].contains(
            "cat '/etc/wharf/upstream-ca/ca-certificates.crt' >> '/tmp/upstream-ca-bundle.crt'"
        ));
    }

    #[test]
    fn quoting_survives_odd_paths() {
        assert_eq!(shell_quote("/tmp/it's"), r"'/tmp/it'\''s'");
    }
}
