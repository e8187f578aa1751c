//! registry-auth's settings, from flags or the environment the registry-controller sets.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use wharf_core::registry::auth_env;

/// Where the token endpoint listens, what it signs with, and whose accounts it serves.
#[derive(clap::Args, Clone, Debug)]
pub struct AuthArgs {
    /// Namespace of the ImageRegistry and of the ImageRegistryAccounts to authenticate.
    #[arg(long, env = auth_env::ENV_NAMESPACE)]
    pub namespace: String,

    /// Name of the ImageRegistry whose spec.auth (access rules, anonymous pull) applies.
    #[arg(long, env = auth_env::ENV_REGISTRY_NAME)]
    pub registry_name: String,

    /// Address of the token endpoint (`/auth/token`).
    #[arg(long, env = auth_env::ENV_LISTEN_ADDR, default_value = auth_env::DEFAULT_LISTEN_ADDR)]
    pub listen_addr: SocketAddr,

    /// Serving certificate chain (PEM) of the token endpoint; without it the endpoint is plain HTTP.
    #[arg(long, env = auth_env::ENV_TLS_CERT_FILE, requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// Private key (PEM) of the serving certificate.
    #[arg(long, env = auth_env::ENV_TLS_KEY_FILE, requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,

    /// Token-signing certificate (PEM, leaf first); the registry trusts it as its rootcertbundle.
    #[arg(long, env = auth_env::ENV_TOKEN_CERT_FILE)]
    pub token_cert_file: PathBuf,

    /// Token-signing private key (PEM: EC P-256 as PKCS#8 or SEC1, or RSA).
    #[arg(long, env = auth_env::ENV_TOKEN_KEY_FILE)]
    pub token_key_file: PathBuf,

    /// Issuer (`iss`) of the tokens: the registry's auth.token.issuer.
    #[arg(long, env = auth_env::ENV_TOKEN_ISSUER)]
    pub issuer: String,

    /// Service (`aud`) of the tokens: the registry's auth.token.service.
    #[arg(long, env = auth_env::ENV_TOKEN_SERVICE)]
    pub service: String,

    /// Lifetime of an issued token (Go duration, e.g. 5m).
    #[arg(long, env = auth_env::ENV_TOKEN_TTL, default_value = auth_env::DEFAULT_TOKEN_TTL,
          value_parser = parse_ttl)]
    pub token_ttl: Duration,
}

fn parse_ttl(value: &str) -> Result<Duration, String> {
    let ttl = wharf_core::duration::parse_go_duration(value).map_err(|err| err.to_string())?;
    if ttl < Duration::from_secs(1) {
        return Err(format!(
            "{value:?} is too short for a token lifetime: use at least 1s"
        ));
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        auth: AuthArgs,
    }

    const REQUIRED: [&str; 13] = [
        "registry-auth",
        "--namespace",
        "ns",
        "--registry-name",
        "registry",
        "--token-cert-file",
        "c.pem",
        "--token-key-file",
        "k.pem",
        "--issuer",
        "iss",
        "--service",
        "svc",
    ];

    #[test]
    fn defaults_apply() {
        let cli = Cli::try_parse_from(REQUIRED).expect("parses");
        assert_eq!(cli.auth.token_ttl, Duration::from_secs(300));
        assert_eq!(cli.auth.listen_addr.port(), 5001);
        assert!(cli.auth.tls_cert_file.is_none());
    }

    #[test]
    fn tls_needs_both_files_and_ttl_a_duration() {
        let mut args = REQUIRED.to_vec();
        args.extend(["--tls-cert-file", "tls.crt"]);
        assert!(Cli::try_parse_from(&args).is_err());
        let mut args = REQUIRED.to_vec();
        args.extend(["--token-ttl", "5"]);
        let err = Cli::try_parse_from(&args)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("not a duration"), "{err}");
    }
}
