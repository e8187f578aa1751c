//! The mirror's serving certificate: which names it must carry, whether the generated one can
//! stay or must be (re)issued, and its keys in the config Secret.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use super::names::{CA_CERT_KEY, CA_KEY_KEY, TLS_CERT_KEY, TLS_KEY_KEY, service_name};
use super::validate::split_host_port;
use super::{MirrorSettings, ValidMirror};
use crate::tls::{
    CertInfo, CertifiedKey, LifetimeShare, TlsError, generate_ca, inspect, is_issued_by,
    issue_server_cert, key_matches,
};

/// Lifetime of a generated mirror CA. Nodes trust it per mirror host, so a renewal (which rolls
/// the node agents) is rare.
pub const CA_VALIDITY: Duration = Duration::from_secs(5 * 365 * 86_400);
/// Lifetime of a generated serving certificate.
pub const SERVER_VALIDITY: Duration = Duration::from_secs(365 * 86_400);
/// Certificates are replaced once two thirds of their lifetime have passed.
pub const RENEW_AFTER: LifetimeShare = LifetimeShare::TWO_THIRDS;

/// The names the serving certificate must carry: the Service's DNS names, its ClusterIP (once
/// known; services mode addresses the mirror by it) and the masquerade host (without port).
pub fn serving_sans(
    mirror: &ValidMirror,
    settings: &MirrorSettings,
    cluster_ip: Option<&str>,
) -> Vec<String> {
    let service = service_name(&mirror.name);
    let namespace = &settings.namespace;
    let mut sans = vec![
        format!("{service}.{namespace}.svc"),
        service.clone(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc.{}", settings.cluster_domain),
    ];
    let (masquerade, _port) = split_host_port(&mirror.masquerade_host);
    let masquerade = masquerade.trim_start_matches('[').trim_end_matches(']');
    sans.push(masquerade.to_ascii_lowercase());
    if let Some(ip) = cluster_ip.filter(|ip| !ip.is_empty() && *ip != "None") {
        sans.push(ip.to_owned());
    }
    sans.dedup();
    sans
}

/// A generated CA and the serving certificate it signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsMaterial {
    pub ca: CertifiedKey,
    pub server: CertifiedKey,
}

/// What to do with the generated certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsPlan {
    /// The live certificate is fine: keep it (no write). Check again at `recheck_at`.
    Keep {
        material: TlsMaterial,
        recheck_at: SystemTime,
    },
    /// Issue a new serving certificate, with the live CA when it is still good, else a new CA.
    Issue {
        reusable_ca: Option<CertifiedKey>,
        reason: &'static str,
    },
}

/// Decides whether the live material (see [`read_material`]) can stay: the certificate must
/// parse, carry every SAN, belong to its key, be signed by the CA next to it, and neither it nor
/// the CA may be due for renewal.
pub fn plan_tls(live: Option<TlsMaterial>, sans: &[String], now: SystemTime) -> TlsPlan {
    let Some(material) = live else {
        return TlsPlan::Issue {
            reusable_ca: None,
            reason: "no certificate yet",
        };
    };
    let ca_info = inspect(&material.ca.cert_pem).ok();
    let ca_ok = ca_info.as_ref().is_some_and(|info| {
        info.is_ca
            && !info.needs_renewal(now, RENEW_AFTER)
            && key_matches(&material.ca.cert_pem, &material.ca.key_pem)
    });
    if !ca_ok {
        return TlsPlan::Issue {
            reusable_ca: None,
            reason: "the CA is due for renewal or unreadable",
        };
    }
    let server_info: Option<CertInfo> = inspect(&material.server.cert_pem).ok();
    let problem = match &server_info {
        None => Some("the certificate is unreadable"),
        Some(info) if info.needs_renewal(now, RENEW_AFTER) => {
            Some("the certificate is due for renewal")
        }
        Some(info) if !info.covers(sans) => Some("the certificate lacks a name it must carry"),
        Some(_) if !key_matches(&material.server.cert_pem, &material.server.key_pem) => {
            Some("the key does not match the certificate")
        }
        Some(_) if !is_issued_by(&material.server.cert_pem, &material.ca.cert_pem) => {
            Some("the certificate was not issued by the CA")
        }
        Some(_) => None,
    };
    match (problem, server_info, ca_info) {
        (None, Some(server), Some(ca)) => TlsPlan::Keep {
            recheck_at: server.renew_at(RENEW_AFTER).min(ca.renew_at(RENEW_AFTER)),
            material,
        },
        (problem, _, _) => TlsPlan::Issue {
            reusable_ca: Some(material.ca),
            reason: problem.unwrap_or("the certificate is unreadable"),
        },
    }
}

/// Carries out an [`TlsPlan::Issue`]: a serving certificate for `sans`, signed by the reusable
/// CA or a new one.
pub fn issue(
    mirror: &ValidMirror,
    reusable_ca: Option<CertifiedKey>,
    sans: &[String],
    now: SystemTime,
) -> Result<TlsMaterial, TlsError> {
    let ca = match reusable_ca {
        Some(ca) => ca,
        None => generate_ca(
            &format!("wharf mirror {} CA", mirror.name),
            CA_VALIDITY,
            now,
        )?,
    };
    let server = issue_server_cert(&ca, sans, SERVER_VALIDITY, now)?;
    Ok(TlsMaterial { ca, server })
}

/// The generated material as Secret data (`tls.crt`, `tls.key`, `ca.crt`, `ca.key`), kept in the
/// config Secret beside `default.conf`.
pub fn tls_data(material: &TlsMaterial) -> BTreeMap<String, ByteString> {
    let bytes = |text: &str| ByteString(text.as_bytes().to_vec());
    BTreeMap::from([
        (TLS_CERT_KEY.into(), bytes(&material.server.cert_pem)),
        (TLS_KEY_KEY.into(), bytes(&material.server.key_pem)),
        (CA_CERT_KEY.into(), bytes(&material.ca.cert_pem)),
        (CA_KEY_KEY.into(), bytes(&material.ca.key_pem)),
    ])
}

/// The generated material in a config Secret, when every key is present and UTF-8.
pub fn read_material(secret: &Secret) -> Option<TlsMaterial> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| {
        data.get(key)
            .and_then(|value| String::from_utf8(value.0.clone()).ok())
    };
    Some(TlsMaterial {
        ca: CertifiedKey {
            cert_pem: text(CA_CERT_KEY)?,
            key_pem: text(CA_KEY_KEY)?,
        },
        server: CertifiedKey {
            cert_pem: text(TLS_CERT_KEY)?,
            key_pem: text(TLS_KEY_KEY)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::test_support::{settings, valid_mirror};

    const DAY: Duration = Duration::from_secs(86_400);

    fn sans() -> Vec<String> {
        serving_sans(&valid_mirror("docker"), &settings(), Some("10.96.0.7"))
    }

    fn generated(now: SystemTime) -> Secret {
        let mirror = valid_mirror("docker");
        let material = issue(&mirror, None, &sans(), now).expect("issued");
        crate::mirror::build_config_secret(&mirror, &settings(), "conf", Some(&material))
    }

    #[test]
    fn sans_cover_service_names_masquerade_and_cluster_ip() {
        assert_eq!(
            sans(),
            vec![
                "registry-mirror-docker.mirrors.svc",
                "registry-mirror-docker",
                "registry-mirror-docker.mirrors",
                "registry-mirror-docker.mirrors.svc.cluster.local",
                "mirror-hub.docker.io",
                "10.96.0.7",
            ]
        );
        let mut mirror = valid_mirror("docker");
        mirror.masquerade_host = "Local.Docker.io:5000".into();
        let without_ip = serving_sans(&mirror, &settings(), None);
        assert_eq!(
            without_ip.last().map(String::as_str),
            Some("local.docker.io")
        );
        mirror.masquerade_host = "[fd00::1]:443".into();
        let ipv6 = serving_sans(&mirror, &settings(), Some("None"));
        assert_eq!(ipv6.last().map(String::as_str), Some("fd00::1"));
    }

    #[test]
    fn a_missing_secret_issues_a_new_ca() {
        assert!(matches!(
            plan_tls(None, &sans(), SystemTime::now()),
            TlsPlan::Issue {
                reusable_ca: None,
                ..
            }
        ));
    }

    #[test]
    fn a_good_certificate_is_kept_until_two_thirds_of_its_life() {
        let now = SystemTime::now();
        let secret = generated(now);
        match plan_tls(read_material(&secret), &sans(), now + DAY) {
            TlsPlan::Keep {
                recheck_at,
                material,
            } => {
                let expected =
                    now - crate::tls::BACKDATE + (SERVER_VALIDITY + crate::tls::BACKDATE) / 3 * 2;
                let diff = recheck_at
                    .duration_since(expected)
                    .unwrap_or_else(|e| e.duration());
                assert!(diff < Duration::from_secs(2), "{diff:?}");
                assert_eq!(Some(material), read_material(&secret));
            }
            other => panic!("expected Keep, got {other:?}"),
        }
        match plan_tls(read_material(&secret), &sans(), now + 250 * DAY) {
            TlsPlan::Issue {
                reusable_ca,
                reason,
            } => {
                assert!(reusable_ca.is_some(), "the CA is still young");
                assert!(reason.contains("renewal"), "{reason}");
            }
            other => panic!("expected Issue, got {other:?}"),
        }
    }

    #[test]
    fn an_old_ca_is_replaced_too() {
        let now = SystemTime::now();
        let secret = generated(now);
        assert!(matches!(
            plan_tls(read_material(&secret), &sans(), now + 4 * 365 * DAY),
            TlsPlan::Issue {
                reusable_ca: None,
                ..
            }
        ));
    }

    #[test]
    fn a_new_name_reissues_with_the_same_ca() {
        let now = SystemTime::now();
        let secret = generated(now);
        let mut more = sans();
        more.push("10.96.0.8".into());
        match plan_tls(read_material(&secret), &more, now) {
            TlsPlan::Issue {
                reusable_ca: Some(ca),
                reason,
            } => {
                assert!(reason.contains("name"), "{reason}");
                let material =
                    issue(&valid_mirror("docker"), Some(ca.clone()), &more, now).expect("reissued");
                assert_eq!(material.ca, ca);
                assert!(is_issued_by(&material.server.cert_pem, &ca.cert_pem));
            }
            other => panic!("expected Issue, got {other:?}"),
        }
    }

    #[test]
    fn tampered_material_is_reissued() {
        let now = SystemTime::now();
        let mut secret = generated(now);
        let other = generated(now);
        let data = secret.data.as_mut().expect("data");
        data.insert(
            TLS_KEY_KEY.into(),
            other.data.as_ref().expect("data")[TLS_KEY_KEY].clone(),
        );
        assert!(matches!(
            plan_tls(read_material(&secret), &sans(), now),
            TlsPlan::Issue {
                reason: "the key does not match the certificate",
                ..
            }
        ));
        data_remove(&mut secret, CA_KEY_KEY);
        assert!(matches!(
            plan_tls(read_material(&secret), &sans(), now),
            TlsPlan::Issue {
                reusable_ca: None,
                ..
            }
        ));
    }

    fn data_remove(secret: &mut Secret, key: &str) {
        secret.data.as_mut().expect("data").remove(key);
    }
}
