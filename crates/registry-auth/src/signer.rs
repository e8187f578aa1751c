//! Signs registry tokens as distribution's token auth verifies them: a JWT (ES256 or RS256)
//! whose header carries the signing certificate chain (`x5c`), which the registry checks against
//! its `rootcertbundle`, and whose claims name issuer, audience (service), lifetime and access.
//!
//! The key is parsed once and signing uses ring directly, with the (constant) header encoded once:
//! that is what makes thousands of tokens per second possible. jsonwebtoken, an independent
//! implementation, verifies a probe token at start-up (so a key that does not belong to the
//! certificate is refused before any client sees a token).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use p256::pkcs8::EncodePrivateKey;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use crate::scope::ResourceActions;

/// Why the signing key or certificate cannot be used; each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM CERTIFICATE: give the token-signing certificate (leaf first)")]
    NoCertificate { path: String },
    #[error(
        "{path} holds no usable private key: give an EC P-256 key (PKCS#8 \"PRIVATE KEY\" or SEC1 \"EC PRIVATE KEY\") or an RSA key of at least 2048 bits ({detail})"
    )]
    Key { path: String, detail: String },
    #[error(
        "the token-signing key {key} does not belong to the certificate {cert}: give the key of that certificate"
    )]
    Mismatch { key: String, cert: String },
    #[error("cannot sign a token: {0}")]
    Sign(String),
}

/// The JWT claims distribution's token auth reads (`aud` is a single string in distribution 2.x).
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    pub access: Vec<ResourceActionsClaim>,
}

/// `access` claim entry as decoded (for tests and diagnostics).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResourceActionsClaim {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[derive(Serialize)]
struct OutgoingClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    access: &'a [ResourceActions],
}

#[derive(Serialize)]
struct JwsHeader<'a> {
    typ: &'a str,
    alg: &'a str,
    x5c: &'a [String],
}

/// A signed token and when it was issued.
#[derive(Clone, Debug)]
pub struct SignedToken {
    pub jwt: String,
    pub issued_at: SystemTime,
    pub expires_in: Duration,
}

enum SigningKey {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

impl SigningKey {
    fn algorithm(&self) -> Algorithm {
        match self {
            Self::Ec(_) => Algorithm::ES256,
            Self::Rsa(_) => Algorithm::RS256,
        }
    }

    fn sign(&self, rng: &SystemRandom, message: &[u8]) -> Result<Vec<u8>, SignerError> {
        let failed = |_| SignerError::Sign("the signing operation failed".into());
        match self {
            // FIXED signing yields r‖s, the JWS encoding of an ECDSA signature.
            Self::Ec(key) => key
                .sign(rng, message)
                .map(|signature| signature.as_ref().to_vec())
                .map_err(failed),
            Self::Rsa(key) => {
                let mut signature = vec![0; key.public().modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, rng, message, &mut signature)
                    .map_err(failed)?;
                Ok(signature)
            }
        }
    }
}

/// Signs tokens with one key; cheap to share.
pub struct TokenSigner {
    key: SigningKey,
    rng: SystemRandom,
    /// `base64url(header)` followed by `.`: the header never changes.
    encoded_header: String,
    issuer: String,
    service: String,
    ttl: Duration,
}

impl TokenSigner {
    /// Loads the certificate chain and key from PEM files and checks that they belong together.
    pub fn from_files(
        cert_file: &Path,
        key_file: &Path,
        issuer: String,
        service: String,
        ttl: Duration,
    ) -> Result<Self, SignerError> {
        let cert_pem = read(cert_file)?;
        let key_pem = read(key_file)?;
        Self::from_pem(
            &cert_pem,
            &key_pem,
            &cert_file.display().to_string(),
            &key_file.display().to_string(),
            issuer,
            service,
            ttl,
        )
    }

    /// As [`Self::from_files`], from PEM bytes; `cert_name`/`key_name` name them in errors.
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        cert_name: &str,
        key_name: &str,
        issuer: String,
        service: String,
        ttl: Duration,
    ) -> Result<Self, SignerError> {
        let chain: Vec<String> = CertificateDer::pem_slice_iter(cert_pem)
            .filter_map(Result::ok)
            .map(|der| STANDARD.encode(der.as_ref()))
            .collect();
        if chain.is_empty() {
            return Err(SignerError::NoCertificate {
                path: cert_name.to_owned(),
            });
        }
        let key = load_key(key_pem).map_err(|detail| SignerError::Key {
            path: key_name.to_owned(),
            detail,
        })?;
        let alg = match key.algorithm() {
            Algorithm::ES256 => "ES256",
            _ => "RS256",
        };
        let header = serde_json::to_vec(&JwsHeader {
            typ: "JWT",
            alg,
            x5c: &chain,
        })
        .map_err(|err| SignerError::Sign(err.to_string()))?;
        let signer = Self {
            key,
            rng: SystemRandom::new(),
            encoded_header: format!("{}.", URL_SAFE_NO_PAD.encode(header)),
            issuer,
            service,
            ttl,
        };
        signer.check_key_matches(cert_pem, cert_name, key_name)?;
        Ok(signer)
    }

    /// Signs a probe token and verifies it with the certificate's public key.
    fn check_key_matches(
        &self,
        cert_pem: &[u8],
        cert_name: &str,
        key_name: &str,
    ) -> Result<(), SignerError> {
        let mismatch = || SignerError::Mismatch {
            key: key_name.to_owned(),
            cert: cert_name.to_owned(),
        };
        let leaf = first_pem_block(cert_pem, "CERTIFICATE").ok_or_else(mismatch)?;
        let algorithm = self.key.algorithm();
        let decoding = match algorithm {
            Algorithm::ES256 => DecodingKey::from_ec_pem(leaf.as_bytes()),
            _ => DecodingKey::from_rsa_pem(leaf.as_bytes()),
        }
        .map_err(|_| mismatch())?;
        let probe = self.sign("probe", &[], SystemTime::now())?;
        let mut validation = Validation::new(algorithm);
        validation.set_audience(&[&self.service]);
        jsonwebtoken::decode::<Claims>(&probe.jwt, &decoding, &validation)
            .map(|_| ())
            .map_err(|_| mismatch())
    }

    /// The service (audience) tokens are issued for.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Signs a token for `subject` (the account name, empty for anonymous) granting `access`.
    pub fn sign(
        &self,
        subject: &str,
        access: &[ResourceActions],
        now: SystemTime,
    ) -> Result<SignedToken, SignerError> {
        let now_secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let claims = OutgoingClaims {
            iss: &self.issuer,
            sub: subject,
            aud: &self.service,
            exp: now_secs + self.ttl.as_secs(),
            nbf: now_secs,
            iat: now_secs,
            jti: format!("{:032x}", rand::random::<u128>()),
            access,
        };
        let claims =
            serde_json::to_vec(&claims).map_err(|err| SignerError::Sign(err.to_string()))?;
        let mut jwt = String::with_capacity(self.encoded_header.len() + claims.len() * 2 + 100);
        jwt.push_str(&self.encoded_header);
        URL_SAFE_NO_PAD.encode_string(claims, &mut jwt);
        let signature = self.key.sign(&self.rng, jwt.as_bytes())?;
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut jwt);
        Ok(SignedToken {
            jwt,
            issued_at: now,
            expires_in: self.ttl,
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, SignerError> {
    std::fs::read(path).map_err(|source| SignerError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The first PEM block with this label, re-encoded on its own.
fn first_pem_block(pem: &[u8], label: &str) -> Option<String> {
    let text = std::str::from_utf8(pem).ok()?;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let stop = text[start..].find(&end)? + start + end.len();
    Some(text[start..stop].to_owned())
}

/// An EC P-256 key (PKCS#8 or SEC1) → ES256; an RSA key (PKCS#1 or PKCS#8) → RS256.
fn load_key(pem: &[u8]) -> Result<SigningKey, String> {
    let key = PrivateKeyDer::from_pem_slice(pem).map_err(|err| err.to_string())?;
    let ec = |pkcs8: &[u8]| {
        EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            &SystemRandom::new(),
        )
    };
    match key {
        PrivateKeyDer::Pkcs8(der) => {
            let der = der.secret_pkcs8_der();
            if let Ok(key) = ec(der) {
                return Ok(SigningKey::Ec(key));
            }
            RsaKeyPair::from_pkcs8(der)
                .map(SigningKey::Rsa)
                .map_err(|err| format!("the PKCS#8 key is neither EC P-256 nor usable RSA: {err}"))
        }
        PrivateKeyDer::Sec1(der) => {
            let secret = p256::SecretKey::from_sec1_der(der.secret_sec1_der())
                .map_err(|err| format!("the SEC1 key is not a P-256 key: {err}"))?;
            let pkcs8 = secret
                .to_pkcs8_der()
                .map_err(|err| format!("cannot convert the SEC1 key: {err}"))?;
            ec(pkcs8.as_bytes())
                .map(SigningKey::Ec)
                .map_err(|err| format!("the SEC1 key is unusable: {err}"))
        }
        PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der())
            .map(SigningKey::Rsa)
            .map_err(|err| format!("the RSA key is unusable: {err}")),
        _ => Err("unknown private key format".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::pkcs8::DecodePrivateKey;

    fn self_signed() -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("generates a key");
        let params =
            rcgen::CertificateParams::new(vec!["token-ca".to_owned()]).expect("valid params");
        let cert = params.self_signed(&key).expect("self-signs");
        (cert.pem(), key.serialize_pem())
    }

    fn signer(cert: &str, key: &str) -> Result<TokenSigner, SignerError> {
        TokenSigner::from_pem(
            cert.as_bytes(),
            key.as_bytes(),
            "tls.crt",
            "tls.key",
            "issuer".into(),
            "service".into(),
            Duration::from_secs(300),
        )
    }

    #[test]
    fn signs_es256_tokens_with_the_chain_in_the_header() {
        let (cert, key) = self_signed();
        let signer = signer(&cert, &key).expect("loads");
        let access = [ResourceActions {
            kind: "repository".into(),
            name: "team/app".into(),
            actions: vec!["pull".into()],
        }];
        let now = SystemTime::now();
        let token = signer.sign("alice", &access, now).expect("signs");

        let header = jsonwebtoken::decode_header(&token.jwt).expect("header");
        assert_eq!(header.alg, Algorithm::ES256);
        let chain = header.x5c.expect("x5c");
        assert_eq!(chain.len(), 1);
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).expect("pem");
        assert_eq!(STANDARD.decode(&chain[0]).expect("base64"), der.as_ref());

        let decoding = DecodingKey::from_ec_pem(cert.as_bytes()).expect("cert key");
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&["service"]);
        validation.set_issuer(&["issuer"]);
        let claims = jsonwebtoken::decode::<Claims>(&token.jwt, &decoding, &validation)
            .expect("verifies")
            .claims;
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.exp - claims.iat, 300);
        assert_eq!(claims.nbf, claims.iat);
        assert_eq!(claims.jti.len(), 32);
        assert_eq!(
            claims.access,
            vec![ResourceActionsClaim {
                kind: "repository".into(),
                name: "team/app".into(),
                actions: vec!["pull".into()],
            }]
        );
        let other = signer.sign("alice", &access, now).expect("signs");
        assert_ne!(token.jwt, other.jwt, "every token has its own jti");
    }

    #[test]
    fn accepts_a_sec1_key_as_cert_manager_writes_it() {
        let (cert, key) = self_signed();
        let secret = p256::SecretKey::from_pkcs8_pem(&key).expect("pkcs8");
        let sec1 = secret
            .to_sec1_pem(p256::pkcs8::LineEnding::LF)
            .expect("sec1");
        assert!(sec1.contains("EC PRIVATE KEY"));
        signer(&cert, &sec1).expect("loads a SEC1 key");
    }

    #[test]
    fn signs_rs256_with_an_rsa_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let status = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=token",
                "-days",
                "1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("runs openssl");
        assert!(status.success(), "openssl made no RSA certificate");
        let cert = std::fs::read_to_string(&cert).expect("cert");
        let key = std::fs::read_to_string(&key).expect("key");
        let token = signer(&cert, &key)
            .expect("loads an RSA key")
            .sign("bob", &[], SystemTime::now())
            .expect("signs");
        let header = jsonwebtoken::decode_header(&token.jwt).expect("header");
        assert_eq!(header.alg, Algorithm::RS256);
        let decoding = DecodingKey::from_rsa_pem(cert.as_bytes()).expect("cert key");
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&["service"]);
        jsonwebtoken::decode::<Claims>(&token.jwt, &decoding, &validation).expect("verifies");
    }

    #[test]
    fn refuses_a_key_of_another_certificate() {
        let (cert, _) = self_signed();
        let (_, other_key) = self_signed();
        let err = signer(&cert, &other_key).err().expect("mismatch");
        assert!(err.to_string().contains("does not belong"), "{err}");
    }

    #[test]
    fn says_what_is_missing() {
        let (cert, key) = self_signed();
        let err = signer("not a pem", &key).err().expect("no cert");
        assert!(err.to_string().contains("no PEM CERTIFICATE"), "{err}");
        let err = signer(&cert, "garbage").err().expect("no key");
        assert!(err.to_string().contains("no usable private key"), "{err}");
    }
}
