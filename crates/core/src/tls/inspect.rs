//! Reading an existing certificate: validity, names, issuer and key match, and when to renew it.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use rcgen::{KeyPair, PublicKeyData};
use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;
use x509_parser::prelude::X509Certificate;

use super::TlsError;

/// What a controller needs to know about a certificate it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub common_name: Option<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub is_ca: bool,
}

/// The share of a certificate's lifetime after which it is renewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LifetimeShare {
    pub numerator: u32,
    pub denominator: u32,
}

impl LifetimeShare {
    /// Renew once two thirds of the lifetime have passed.
    pub const TWO_THIRDS: Self = Self {
        numerator: 2,
        denominator: 3,
    };
    /// Renew once three quarters of the lifetime have passed (the image-registry-operator's rule).
    pub const THREE_QUARTERS: Self = Self {
        numerator: 3,
        denominator: 4,
    };
}

impl CertInfo {
    /// When the certificate should be replaced: `share` of the way from not_before to not_after.
    pub fn renew_at(&self, share: LifetimeShare) -> SystemTime {
        let lifetime = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or(Duration::ZERO);
        let denominator = share.denominator.max(1);
        let part = lifetime / denominator * share.numerator.min(denominator);
        self.not_before + part
    }

    /// Whether the certificate is due for renewal at `now` (or not yet valid, or expired).
    pub fn needs_renewal(&self, now: SystemTime, share: LifetimeShare) -> bool {
        now < self.not_before || now >= self.renew_at(share)
    }

    /// Whether every entry of `sans` (DNS names, case-insensitively, and IP addresses) is in
    /// the certificate.
    pub fn covers(&self, sans: &[String]) -> bool {
        sans.iter().all(|san| match san.parse::<IpAddr>() {
            Ok(ip) => self.ip_addresses.contains(&ip),
            Err(_) => self
                .dns_names
                .iter()
                .any(|dns| dns.eq_ignore_ascii_case(san)),
        })
    }
}

/// Reads the first certificate of a PEM text.
pub fn inspect(cert_pem: &str) -> Result<CertInfo, TlsError> {
    with_certificate(cert_pem, |cert| {
        let validity = cert.validity();
        let time = |t: i64| {
            let secs = u64::try_from(t).map_err(|_| TlsError::Validity)?;
            Ok::<_, TlsError>(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        };
        let mut dns_names = Vec::new();
        let mut ip_addresses = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => dns_names.push((*dns).to_owned()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            ip_addresses.push(ip);
                        }
                    }
                    _ => {}
                }
            }
        }
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        Ok(CertInfo {
            not_before: time(validity.not_before.timestamp())?,
            not_after: time(validity.not_after.timestamp())?,
            common_name,
            dns_names,
            ip_addresses,
            is_ca: cert.is_ca(),
        })
    })
}

/// Whether `cert_pem` carries a valid signature of the CA in `ca_pem` and names it as issuer.
pub fn is_issued_by(cert_pem: &str, ca_pem: &str) -> bool {
    let check = || {
        with_certificate(ca_pem, |ca| {
            with_certificate(cert_pem, |cert| {
                Ok(cert.issuer() == ca.subject()
                    && cert.verify_signature(Some(ca.public_key())).is_ok())
            })
        })
    };
    check().unwrap_or(false)
}

/// Whether the private key in `key_pem` belongs to the certificate in `cert_pem`.
pub fn key_matches(cert_pem: &str, key_pem: &str) -> bool {
    let Ok(key) = KeyPair::from_pem(key_pem) else {
        return false;
    };
    with_certificate(cert_pem, |cert| {
        Ok(cert.public_key().raw == key.subject_public_key_info().as_slice())
    })
    .unwrap_or(false)
}

fn with_certificate<T>(
    pem: &str,
    read: impl FnOnce(&X509Certificate<'_>) -> Result<T, TlsError>,
) -> Result<T, TlsError> {
    let (_, pem) =
        parse_x509_pem(pem.as_bytes()).map_err(|err| TlsError::Parse(err.to_string()))?;
    let cert = pem
        .parse_x509()
        .map_err(|err| TlsError::Parse(err.to_string()))?;
    read(&cert)
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(lifetime_secs: u64) -> CertInfo {
        CertInfo {
            not_before: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000),
            not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 + lifetime_secs),
            common_name: None,
            dns_names: vec!["Mirror.Example".into()],
            ip_addresses: vec!["10.0.0.1".parse().expect("ip")],
            is_ca: false,
        }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn renewal_is_due_after_the_share_of_the_lifetime() {
        let cert = info(300);
        assert_eq!(cert.renew_at(LifetimeShare::TWO_THIRDS), at(1_200));
        assert_eq!(cert.renew_at(LifetimeShare::THREE_QUARTERS), at(1_225));
        assert!(!cert.needs_renewal(at(1_199), LifetimeShare::TWO_THIRDS));
        assert!(cert.needs_renewal(at(1_200), LifetimeShare::TWO_THIRDS));
        assert!(!cert.needs_renewal(at(1_200), LifetimeShare::THREE_QUARTERS));
        assert!(cert.needs_renewal(at(5_000), LifetimeShare::THREE_QUARTERS));
        assert!(
            cert.needs_renewal(at(999), LifetimeShare::TWO_THIRDS),
            "not yet valid"
        );
    }

    #[test]
    fn covers_compares_dns_case_insensitively_and_ips_exactly() {
        let cert = info(300);
        assert!(cert.covers(&["mirror.example".into(), "10.0.0.1".into()]));
        assert!(!cert.covers(&["10.0.0.2".into()]));
        assert!(cert.covers(&[]));
    }

    #[test]
    fn garbage_is_a_parse_error() {
        assert!(matches!(
            inspect("not a certificate"),
            Err(TlsError::Parse(_))
        ));
        assert!(!is_issued_by("x", "y"));
        assert!(!key_matches("x", "y"));
    }
}
