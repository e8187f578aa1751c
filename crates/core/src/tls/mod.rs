//! Certificates a controller makes and renews by itself: a self-signed CA, server certificates it
//! signs (DNS and IP SANs), and inspecting an existing certificate to decide when to renew it.

mod inspect;

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

pub use inspect::{CertInfo, LifetimeShare, inspect, is_issued_by, key_matches};

/// How far `not_before` lies in the past, so clients whose clocks lag a little accept a new certificate.
pub const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// A certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CertifiedKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertifiedKey {
    // Keeps private keys out of logs and panic messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertifiedKey")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A certificate that cannot be made or read.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{0:?} cannot be a subject alternative name: use a DNS name or an IP address")]
    InvalidSan(String),
    #[error("the certificate is not valid PEM/X.509: {0}")]
    Parse(String),
    #[error("the validity period does not fit in a date")]
    Validity,
}

/// Makes a self-signed CA certificate (ECDSA P-256) valid for `validity` from `now`.
pub fn generate_ca(
    common_name: &str,
    validity: Duration,
    now: SystemTime,
) -> Result<CertifiedKey, TlsError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, validity, now)?;
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Makes a server certificate (ECDSA P-256) for `sans` (DNS names and IP addresses, the first
/// DNS name also being the common name), signed by `ca` and valid for `validity` from `now`.
pub fn issue_server_cert(
    ca: &CertifiedKey,
    sans: &[String],
    validity: Duration,
    now: SystemTime,
) -> Result<CertifiedKey, TlsError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans
        .iter()
        .map(|san| san_type(san))
        .collect::<Result<_, _>>()?;
    let common_name = sans
        .iter()
        .find(|san| san.parse::<IpAddr>().is_err())
        .or(sans.first())
        .map_or("server", String::as_str);
    params.distinguished_name = distinguished_name(common_name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, validity, now)?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn san_type(san: &str) -> Result<SanType, TlsError> {
    if let Ok(ip) = san.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    san.to_owned()
        .try_into()
        .map(SanType::DnsName)
        .map_err(|_| TlsError::InvalidSan(san.to_owned()))
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

fn set_validity(
    params: &mut CertificateParams,
    validity: Duration,
    now: SystemTime,
) -> Result<(), TlsError> {
    let start = now.checked_sub(BACKDATE).ok_or(TlsError::Validity)?;
    let end = now.checked_add(validity).ok_or(TlsError::Validity)?;
    params.not_before = OffsetDateTime::from(start);
    params.not_after = OffsetDateTime::from(end);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn a_ca_signs_a_server_certificate_with_its_sans() {
        let now = SystemTime::now();
        let ca = generate_ca("wharf test CA", 365 * DAY, now).expect("CA");
        let sans = vec![
            "registry-mirror-docker.default.svc".to_owned(),
            "10.96.0.12".to_owned(),
            "mirror-hub.docker.io".to_owned(),
        ];
        let server = issue_server_cert(&ca, &sans, 90 * DAY, now).expect("server cert");

        let ca_info = inspect(&ca.cert_pem).expect("CA parses");
        assert!(ca_info.is_ca);
        assert_eq!(ca_info.common_name.as_deref(), Some("wharf test CA"));

        let info = inspect(&server.cert_pem).expect("server cert parses");
        assert!(!info.is_ca);
        assert_eq!(
            info.dns_names,
            vec!["registry-mirror-docker.default.svc", "mirror-hub.docker.io"]
        );
        assert_eq!(
            info.ip_addresses,
            vec!["10.96.0.12".parse::<IpAddr>().expect("ip")]
        );
        assert_eq!(
            info.common_name.as_deref(),
            Some("registry-mirror-docker.default.svc")
        );
        assert!(info.covers(&sans));
        assert!(!info.covers(&["other.example".to_owned()]));
        assert!(is_issued_by(&server.cert_pem, &ca.cert_pem));
        assert!(key_matches(&server.cert_pem, &server.key_pem));
        assert!(!key_matches(&server.cert_pem, &ca.key_pem));

        let other_ca = generate_ca("other", DAY, now).expect("CA");
        assert!(!is_issued_by(&server.cert_pem, &other_ca.cert_pem));
    }

    #[test]
    fn validity_starts_a_little_early_and_lasts_as_asked() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let ca = generate_ca("ca", 10 * DAY, now).expect("CA");
        let info = inspect(&ca.cert_pem).expect("parses");
        assert_eq!(info.not_before, now - BACKDATE);
        assert_eq!(info.not_after, now + 10 * DAY);
    }

    #[test]
    fn bad_sans_are_refused() {
        let ca = generate_ca("ca", DAY, SystemTime::now()).expect("CA");
        let err = issue_server_cert(&ca, &["bücher.example".to_owned()], DAY, SystemTime::now())
            .expect_err("invalid SAN");
        assert!(matches!(err, TlsError::InvalidSan(_)), "{err}");
    }

    #[test]
    fn debug_output_hides_the_key() {
        let ca = generate_ca("ca", DAY, SystemTime::now()).expect("CA");
        let text = format!("{ca:?}");
        assert!(text.contains("<redacted>"));
        assert!(!text.contains("PRIVATE KEY"));
    }
}
