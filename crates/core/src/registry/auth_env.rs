//! The contract between registry-controller's StatefulSet and the registry-auth container:
//! environment variables and in-container paths. Both sides use these constants.

/// Namespace of the ImageRegistry and of the accounts registry-auth authenticates.
pub const ENV_NAMESPACE: &str = "POD_NAMESPACE";
/// Name of the ImageRegistry whose access rules registry-auth applies.
pub const ENV_REGISTRY_NAME: &str = "REGISTRY_NAME";
/// Address registry-auth's token endpoint listens on.
pub const ENV_LISTEN_ADDR: &str = "AUTH_ADDR";
/// Serving certificate chain (PEM) of the token endpoint; plain HTTP when unset.
pub const ENV_TLS_CERT_FILE: &str = "TLS_CERT_FILE";
/// Private key (PEM) of that certificate.
pub const ENV_TLS_KEY_FILE: &str = "TLS_KEY_FILE";
/// Token-signing certificate (PEM; the leaf first, then any intermediates).
pub const ENV_TOKEN_CERT_FILE: &str = "TOKEN_CERT_FILE";
/// Token-signing private key (PEM: PKCS#8 EC P-256 or SEC1 EC, or RSA).
pub const ENV_TOKEN_KEY_FILE: &str = "TOKEN_KEY_FILE";
/// `iss` claim; the registry's `auth.token.issuer`.
pub const ENV_TOKEN_ISSUER: &str = "TOKEN_ISSUER";
/// `aud` claim; the registry's `auth.token.service`.
pub const ENV_TOKEN_SERVICE: &str = "TOKEN_SERVICE";
/// Lifetime of an issued token (Go duration).
pub const ENV_TOKEN_TTL: &str = "TOKEN_TTL";

/// Where the serving certificate Secret is mounted in both containers.
pub const TLS_MOUNT_DIR: &str = "/etc/wharf/tls";
/// Where the token-signing Secret is mounted in both containers.
pub const TOKEN_MOUNT_DIR: &str = "/etc/wharf/token";
/// Default listen address of the token endpoint.
pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:5001";
/// Default token lifetime.
pub const DEFAULT_TOKEN_TTL: &str = "5m";
