//! Where an ImageRegistry's two certificates come from — the serving certificate and the
//! token-signing CA — and the pure pieces of each way: the cert-manager `Certificate`, the
//! self-signed Secrets, and whether a self-signed certificate can stay or must be renewed.
//!
//! Three ways, as the original: a cert-manager `Certificate` when an `issuerRef` is set (cert-manager
//! then writes the Secret), the given Secret as is when only `secretName` is set, otherwise
//! self-signed and renewed by registry-controller once 3/4 of the lifetime has passed.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{ApiResource, DynamicObject};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::crd::{CertificateSource, ImageRegistrySpec, IssuerRef};
use crate::tls::{
    CertifiedKey, LifetimeShare, TlsError, generate_ca, inspect, is_issued_by, issue_server_cert,
    key_matches,
};

use super::names;

/// Secret keys, as `kubernetes.io/tls` Secrets and cert-manager name them.
pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_KEY_KEY: &str = "tls.key";
pub const CA_CERT_KEY: &str = "ca.crt";

/// Lifetime of the self-signed CA that signs the serving certificate.
pub const TLS_CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);
/// Lifetime of a self-signed (or cert-manager) serving certificate.
pub const SERVER_VALIDITY: Duration = Duration::from_secs(90 * 86_400);
/// Lifetime of the token-signing CA (the original's five years).
pub const TOKEN_CA_VALIDITY: Duration = Duration::from_secs(5 * 365 * 86_400);
/// Certificates are renewed once three quarters of their lifetime have passed (the original's rule).
pub const RENEW_AFTER: LifetimeShare = LifetimeShare::THREE_QUARTERS;

/// Where one certificate comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum CertificateMode {
    /// A cert-manager Certificate signed by this issuer writes the Secret.
    CertManager(IssuerRef),
    /// The user's Secret, used as is.
    UserSecret,
    /// registry-controller makes and renews it.
    SelfSigned,
}

/// One certificate's source and the Secret the pods mount.
#[derive(Clone, Debug, PartialEq)]
pub struct CertificatePlan {
    pub mode: CertificateMode,
    pub secret_name: String,
}

/// The serving certificate of registry `name`.
pub fn tls_plan(name: &str, spec: &ImageRegistrySpec) -> CertificatePlan {
    plan(spec.tls.as_ref(), None, names::tls_secret_name(name))
}

/// The token-signing CA of registry `name` (`spec.auth.ca`, or the older `spec.auth.issuerRef`).
pub fn token_plan(name: &str, spec: &ImageRegistrySpec) -> CertificatePlan {
    let auth = spec.auth.as_ref();
    plan(
        auth.and_then(|a| a.ca.as_ref()),
        auth.and_then(|a| a.issuer_ref.as_ref()),
        names::token_ca_secret_name(name),
    )
}

fn plan(
    source: Option<&CertificateSource>,
    fallback_issuer: Option<&IssuerRef>,
    default_secret: String,
) -> CertificatePlan {
    let issuer = source
        .and_then(|s| s.issuer_ref.as_ref())
        .or(fallback_issuer);
    let secret = source.and_then(|s| s.secret_name.clone());
    match (issuer, secret) {
        (Some(issuer), secret) => CertificatePlan {
            mode: CertificateMode::CertManager(issuer.clone()),
            secret_name: secret.unwrap_or(default_secret),
        },
        (None, Some(secret)) => CertificatePlan {
            mode: CertificateMode::UserSecret,
            secret_name: secret,
        },
        (None, None) => CertificatePlan {
            mode: CertificateMode::SelfSigned,
            secret_name: default_secret,
        },
    }
}

/// cert-manager's `Certificate` (cert-manager.io/v1).
pub fn certificate_resource() -> ApiResource {
    ApiResource {
        group: "cert-manager.io".into(),
        version: "v1".into(),
        api_version: "cert-manager.io/v1".into(),
        kind: "Certificate".into(),
        plural: "certificates".into(),
    }
}

/// What a cert-manager Certificate is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertificatePurpose {
    /// The registry's serving certificate for these DNS names (the first is the common name).
    Serving { dns_names: Vec<String> },
    /// A CA whose key signs tokens.
    TokenCa { common_name: String },
}

/// A cert-manager Certificate named like the Secret it writes.
pub fn certificate(
    namespace: &str,
    plan_secret: &str,
    issuer: &IssuerRef,
    purpose: &CertificatePurpose,
    labels: &BTreeMap<String, String>,
    owner: OwnerReference,
) -> DynamicObject {
    let issuer_ref = json!({
        "name": issuer.name,
        "kind": issuer.kind.as_deref().unwrap_or("Issuer"),
        "group": issuer.group.as_deref().unwrap_or("cert-manager.io"),
    });
    // PKCS#8 EC keys: what rustls and registry-auth's signer read without conversion.
    let private_key = json!({
        "algorithm": "ECDSA",
        "size": 256,
        "encoding": "PKCS8",
        "rotationPolicy": "Always",
    });
    let spec = match purpose {
        CertificatePurpose::Serving { dns_names } => json!({
            "secretName": plan_secret,
            "issuerRef": issuer_ref,
            "commonName": dns_names.first(),
            "dnsNames": dns_names,
            "duration": hours(SERVER_VALIDITY),
            "renewBefore": hours(SERVER_VALIDITY / 4),
            "privateKey": private_key,
            "usages": ["server auth", "digital signature", "key encipherment"],
        }),
        CertificatePurpose::TokenCa { common_name } => json!({
            "secretName": plan_secret,
            "issuerRef": issuer_ref,
            "isCA": true,
            "commonName": common_name,
            "duration": hours(TOKEN_CA_VALIDITY),
            "renewBefore": hours(TOKEN_CA_VALIDITY / 4),
            "privateKey": private_key,
            "usages": ["digital signature", "cert sign"],
        }),
    };
    let mut object = DynamicObject::new(plan_secret, &certificate_resource()).within(namespace);
    object.metadata.labels = Some(labels.clone());
    object.metadata.owner_references = Some(vec![owner]);
    object.data = json!({ "spec": spec });
    object
}

fn hours(duration: Duration) -> String {
    format!("{}h", duration.as_secs() / 3600)
}

/// A certificate and key read from a Secret.
pub fn certified_key(data: &BTreeMap<String, ByteString>) -> Option<CertifiedKey> {
    let text = |key: &str| {
        data.get(key)
            .and_then(|value| String::from_utf8(value.0.clone()).ok())
    };
    Some(CertifiedKey {
        cert_pem: text(TLS_CERT_KEY)?,
        key_pem: text(TLS_KEY_KEY)?,
    })
}

/// Whether a stored self-signed CA can keep signing at `now`: parses, is a CA, key matches,
/// and less than 3/4 of its lifetime has passed.
pub fn ca_is_current(ca: &CertifiedKey, now: SystemTime) -> bool {
    inspect(&ca.cert_pem).is_ok_and(|info| {
        info.is_ca
            && !info.needs_renewal(now, RENEW_AFTER)
            && key_matches(&ca.cert_pem, &ca.key_pem)
    })
}

/// Whether a stored serving certificate can stay at `now`: issued by `ca`, covers `dns_names`,
/// key matches, and less than 3/4 of its lifetime has passed.
pub fn server_cert_is_current(
    server: &CertifiedKey,
    ca: &CertifiedKey,
    dns_names: &[String],
    now: SystemTime,
) -> bool {
    inspect(&server.cert_pem).is_ok_and(|info| {
        !info.needs_renewal(now, RENEW_AFTER)
            && info.covers(dns_names)
            && is_issued_by(&server.cert_pem, &ca.cert_pem)
            && key_matches(&server.cert_pem, &server.key_pem)
    })
}

/// When a certificate should next be looked at again (its renewal time), if it parses.
pub fn renewal_time(cert_pem: &str) -> Option<SystemTime> {
    inspect(cert_pem)
        .ok()
        .map(|info| info.renew_at(RENEW_AFTER))
}

/// A new self-signed CA for the serving certificate of registry `name`.
pub fn new_tls_ca(name: &str, namespace: &str, now: SystemTime) -> Result<CertifiedKey, TlsError> {
    generate_ca(
        &format!("wharf registry {namespace}/{name} CA"),
        TLS_CA_VALIDITY,
        now,
    )
}

/// A new serving certificate for `dns_names` signed by `ca`.
pub fn new_server_cert(
    ca: &CertifiedKey,
    dns_names: &[String],
    now: SystemTime,
) -> Result<CertifiedKey, TlsError> {
    issue_server_cert(ca, dns_names, SERVER_VALIDITY, now)
}

/// A new self-signed token-signing CA of registry `name`.
pub fn new_token_ca(
    name: &str,
    namespace: &str,
    now: SystemTime,
) -> Result<CertifiedKey, TlsError> {
    generate_ca(&format!("{name}.{namespace}.svc"), TOKEN_CA_VALIDITY, now)
}

/// A `kubernetes.io/tls` Secret with `tls.crt`, `tls.key` and, when given, `ca.crt`.
pub fn tls_secret(
    name: &str,
    namespace: &str,
    key: &CertifiedKey,
    ca_cert_pem: Option<&str>,
    labels: &BTreeMap<String, String>,
    owner: OwnerReference,
) -> Secret {
    let mut data = BTreeMap::from([
        (
            TLS_CERT_KEY.to_owned(),
            ByteString(key.cert_pem.clone().into_bytes()),
        ),
        (
            TLS_KEY_KEY.to_owned(),
            ByteString(key.key_pem.clone().into_bytes()),
        ),
    ]);
    if let Some(ca) = ca_cert_pem {
        data.insert(CA_CERT_KEY.to_owned(), ByteString(ca.as_bytes().to_vec()));
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels.clone()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

/// A short digest of what the pods read from a certificate Secret (`tls.crt`, `tls.key`), for the
/// pod template annotation that rolls the pods when the certificate changes.
pub fn material_hash(data: &BTreeMap<String, ByteString>) -> String {
    let mut hasher = Sha256::new();
    for key in [TLS_CERT_KEY, TLS_KEY_KEY] {
        hasher.update(key.as_bytes());
        let value = data.get(key).map(|v| v.0.as_slice()).unwrap_or_default();
        hasher.update((value.len() as u64).to_be_bytes());
        hasher.update(value);
    }
    short_hex(&hasher.finalize())
}

/// A short digest of a text (the registry config).
pub fn text_hash(text: &str) -> String {
    short_hex(&Sha256::digest(text.as_bytes()))
}

fn short_hex(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::AuthSpec;

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "registry.mgoltzsche.github.com/v1alpha1".into(),
            kind: "ImageRegistry".into(),
            name: "r".into(),
            uid: "uid".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn issuer(name: &str) -> IssuerRef {
        IssuerRef {
            name: name.into(),
            kind: Some("ClusterIssuer".into()),
            group: None,
        }
    }

    #[test]
    fn three_ways_to_get_a_serving_certificate() {
        let mut spec = ImageRegistrySpec::default();
        assert_eq!(
            tls_plan("r", &spec),
            CertificatePlan {
                mode: CertificateMode::SelfSigned,
                secret_name: "r-tls".into()
            }
        );
        spec.tls = Some(CertificateSource {
            issuer_ref: None,
            secret_name: Some("mine".into()),
        });
        assert_eq!(tls_plan("r", &spec).mode, CertificateMode::UserSecret);
        assert_eq!(tls_plan("r", &spec).secret_name, "mine");
        spec.tls = Some(CertificateSource {
            issuer_ref: Some(issuer("le")),
            secret_name: None,
        });
        assert_eq!(
            tls_plan("r", &spec).mode,
            CertificateMode::CertManager(issuer("le"))
        );
        assert_eq!(tls_plan("r", &spec).secret_name, "r-tls");
    }

    #[test]
    fn the_token_ca_also_takes_the_older_issuer_ref() {
        let mut spec = ImageRegistrySpec::default();
        assert_eq!(token_plan("r", &spec).mode, CertificateMode::SelfSigned);
        assert_eq!(token_plan("r", &spec).secret_name, "r-auth-ca");
        spec.auth = Some(AuthSpec {
            issuer_ref: Some(issuer("old")),
            ..AuthSpec::default()
        });
        assert_eq!(
            token_plan("r", &spec).mode,
            CertificateMode::CertManager(issuer("old"))
        );
        spec.auth = Some(AuthSpec {
            ca: Some(CertificateSource {
                issuer_ref: None,
                secret_name: Some("ca".into()),
            }),
            ..AuthSpec::default()
        });
        assert_eq!(token_plan("r", &spec).mode, CertificateMode::UserSecret);
    }

    #[test]
    fn certificates_carry_issuer_names_and_pkcs8_keys() {
        let serving = certificate(
            "ns",
            "r-tls",
            &issuer("le"),
            &CertificatePurpose::Serving {
                dns_names: vec!["r.ns.example.org".into(), "r.ns.svc".into()],
            },
            &BTreeMap::new(),
            owner(),
        );
        assert_eq!(serving.metadata.name.as_deref(), Some("r-tls"));
        assert_eq!(
            serving.types.as_ref().map(|t| t.kind.as_str()),
            Some("Certificate")
        );
        let spec = &serving.data["spec"];
        assert_eq!(spec["secretName"], "r-tls");
        assert_eq!(spec["issuerRef"]["kind"], "ClusterIssuer");
        assert_eq!(spec["issuerRef"]["group"], "cert-manager.io");
        assert_eq!(spec["dnsNames"][1], "r.ns.svc");
        assert_eq!(spec["commonName"], "r.ns.example.org");
        assert_eq!(spec["privateKey"]["encoding"], "PKCS8");
        assert_eq!(spec["duration"], "2160h");

        let token = certificate(
            "ns",
            "r-auth-ca",
            &IssuerRef {
                name: "ca".into(),
                kind: None,
                group: None,
            },
            &CertificatePurpose::TokenCa {
                common_name: "r.ns.svc".into(),
            },
            &BTreeMap::new(),
            owner(),
        );
        assert_eq!(token.data["spec"]["isCA"], true);
        assert_eq!(token.data["spec"]["issuerRef"]["kind"], "Issuer");
    }

    #[test]
    fn self_signed_certificates_are_kept_until_three_quarters_of_their_life() {
        let day = Duration::from_secs(86_400);
        let issued = SystemTime::now();
        let names = vec!["r.ns.example.org".to_owned()];
        let ca = new_tls_ca("r", "ns", issued).expect("CA");
        let server = new_server_cert(&ca, &names, issued).expect("server");
        assert!(ca_is_current(&ca, issued));
        assert!(server_cert_is_current(&server, &ca, &names, issued));
        assert!(server_cert_is_current(
            &server,
            &ca,
            &names,
            issued + 60 * day
        ));
        assert!(!server_cert_is_current(
            &server,
            &ca,
            &names,
            issued + 68 * day
        ));
        assert!(!server_cert_is_current(
            &server,
            &ca,
            &["other".into()],
            issued
        ));
        let other_ca = new_tls_ca("r", "ns", issued).expect("CA");
        assert!(!server_cert_is_current(&server, &other_ca, &names, issued));
        assert!(
            !ca_is_current(&server, issued),
            "a server certificate is no CA"
        );
        let renewal = renewal_time(&server.cert_pem).expect("parses");
        assert!(renewal > issued + 66 * day && renewal < issued + 68 * day);
    }

    #[test]
    fn secrets_round_trip_and_hash_what_pods_read() {
        let ca = new_token_ca("r", "ns", SystemTime::now()).expect("CA");
        let secret = tls_secret(
            "r-auth-ca",
            "ns",
            &ca,
            Some(&ca.cert_pem),
            &BTreeMap::new(),
            owner(),
        );
        let data = secret.data.expect("data");
        assert_eq!(certified_key(&data), Some(ca.clone()));
        assert!(data.contains_key(CA_CERT_KEY));
        let hash = material_hash(&data);
        assert_eq!(hash.len(), 16);
        let mut changed = data.clone();
        changed.insert(CA_CERT_KEY.into(), ByteString(b"other".to_vec()));
        assert_eq!(
            material_hash(&changed),
            hash,
            "ca.crt is not read by the pods"
        );
        changed.insert(TLS_KEY_KEY.into(), ByteString(b"other".to_vec()));
        assert_ne!(material_hash(&changed), hash);
        assert_eq!(certified_key(&BTreeMap::new()), None);
    }
}
