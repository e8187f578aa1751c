//! Account passwords: drawn from the operating system's CSPRNG, stored only as bcrypt hashes.

use rand::TryRng;
use rand::rngs::SysRng;

/// Characters of a password: letters and digits, safe in Docker configs and `user:password`.
pub const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Length of a password: 32 base62 characters carry 32 × log2(62) ≈ 190 bits of entropy.
pub const PASSWORD_LEN: usize = 32;
/// bcrypt cost of new accounts (2^8 rounds; `OPERATOR_BCRYPT_COST` changes it). bcrypt's cost
/// slows down guessing of weak, human-chosen passwords; these are 190-bit random strings that no
/// cost makes guessable, so it only decides how much CPU rotations and first logins take.
/// Measured on the 2-core test machine: cost 10 is 64-116 ms per hash, so rotating 1,000 Secrets
/// needs over a minute of both cores for hashing alone (91-131 s in `cargo xtask bench
/// secret-rotator`); cost 8 (19 ms) brings that to about 30 s.
pub const DEFAULT_BCRYPT_COST: u32 = 8;

/// Bits of entropy of a generated password.
pub fn entropy_bits() -> f64 {
    PASSWORD_LEN as f64 * (ALPHABET.len() as f64).log2()
}

/// The operating system refused to hand out random bytes.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomError(#[from] rand::rngs::SysError);

/// A new random password of [`PASSWORD_LEN`] characters of [`ALPHABET`], every character uniform:
/// bytes ≥ 248 (the largest multiple of 62 that fits a byte) are rejected rather than folded,
/// which would favour the first characters.
pub fn generate_password() -> Result<String, RandomError> {
    const ACCEPT_BELOW: u8 = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
    let mut password = String::with_capacity(PASSWORD_LEN);
    let mut buffer = [0u8; 64];
    while password.len() < PASSWORD_LEN {
        SysRng.try_fill_bytes(&mut buffer)?;
        for byte in buffer {
            if byte < ACCEPT_BELOW && password.len() < PASSWORD_LEN {
                password.push(char::from(ALPHABET[usize::from(byte) % ALPHABET.len()]));
            }
        }
    }
    Ok(password)
}

/// The bcrypt hash (`$2b$…`) of `password` at `cost`. CPU-heavy (tens of milliseconds at cost 10):
/// call it from a blocking thread.
pub fn hash_password(password: &str, cost: u32) -> Result<String, bcrypt::BcryptError> {
    bcrypt::hash(password, cost)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use super::*;

    #[test]
    fn passwords_have_the_length_and_charset() {
        for _ in 0..100 {
            let password = generate_password().expect("random bytes");
            assert_eq!(password.len(), PASSWORD_LEN);
            assert!(
                password.bytes().all(|b| ALPHABET.contains(&b)),
                "{password}"
            );
        }
    }

    #[test]
    fn passwords_carry_at_least_128_bits() {
        assert!(entropy_bits() >= 128.0, "{}", entropy_bits());
    }

    #[test]
    fn passwords_do_not_repeat() {
        let passwords: HashSet<String> = (0..1000)
            .map(|_| generate_password().expect("random bytes"))
            .collect();
        assert_eq!(passwords.len(), 1000);
    }

    #[test]
    fn every_character_is_used_about_equally() {
        let mut counts: BTreeMap<u8, usize> = BTreeMap::new();
        let samples = 2000;
        for _ in 0..samples {
            for byte in generate_password().expect("random bytes").bytes() {
                *counts.entry(byte).or_default() += 1;
            }
        }
        assert_eq!(counts.len(), ALPHABET.len(), "every character appears");
        let expected = (samples * PASSWORD_LEN) as f64 / ALPHABET.len() as f64;
        for (byte, count) in counts {
            let deviation = (count as f64 - expected).abs() / expected;
            // ~1032 draws per character: 6 standard deviations is about 19%.
            assert!(
                deviation < 0.2,
                "{} drawn {count} times, expected {expected}",
                char::from(byte)
            );
        }
    }

    #[test]
    fn hashes_verify_and_carry_the_cost() {
        let password = generate_password().expect("random bytes");
        let hash = hash_password(&password, 4).expect("hashes");
        assert!(hash.starts_with("$2b$04$"), "{hash}");
        assert_eq!(hash.len(), 60);
        assert!(bcrypt::verify(&password, &hash).expect("verifies"));
        assert!(!bcrypt::verify("wrong", &hash).expect("verifies"));
    }
}
