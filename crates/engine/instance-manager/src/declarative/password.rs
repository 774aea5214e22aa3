//! Whether a role's stored password is the declared one, answered from the verifier
//! PostgreSQL keeps in `pg_authid.rolpassword` — the same check PostgreSQL makes when the
//! role logs in (SCRAM-SHA-256 per RFC 5802/7677 with SASLprep, or MD5 over password and role
//! name). So a password is set only when its Secret changed or the role's password was changed
//! behind the operator's back, and the answer survives restarts and failovers (the verifier
//! is in the replicated catalog) with no copy of the password or of a hash of it on disk.
//!
//! Deriving a SCRAM key costs thousands of HMACs; a positive answer is remembered in memory
//! under a keyed hash of (role, verifier, password) so an idle pass does not repeat it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Mutex, OnceLock};

/// The password as SCRAM hashes it: SASLprep-normalised when it is UTF-8 and normalises,
/// else the bytes as they are (what libpq and the server do).
fn prepared(password: &[u8]) -> Vec<u8> {
    match std::str::from_utf8(password) {
        Ok(text) => match stringprep::saslprep(text) {
            Ok(p) => p.into_owned().into_bytes(),
            Err(_) => password.to_vec(),
        },
        Err(_) => password.to_vec(),
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Option<[u8; 32]> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).ok()?;
    mac.update(data);
    Some(mac.finalize().into_bytes().into())
}

/// RFC 5802's `Hi()`: PBKDF2-HMAC-SHA-256 for one block.
fn salted(password: &[u8], salt: &[u8], iterations: u32) -> Option<[u8; 32]> {
    let mut first = salt.to_vec();
    first.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(password, &first)?;
    let mut out = u;
    for _ in 1..iterations {
        u = hmac(password, &u)?;
        for (o, b) in out.iter_mut().zip(u.iter()) {
            *o ^= b;
        }
    }
    Some(out)
}

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` checked against `password`.
fn scram_matches(verifier: &str, password: &[u8]) -> Option<bool> {
    let rest = verifier.strip_prefix("SCRAM-SHA-256$")?;
    let (params, keys) = rest.split_once('$')?;
    let (iterations, salt) = params.split_once(':')?;
    let (stored_key, server_key) = keys.split_once(':')?;
    let iterations: u32 = iterations.parse().ok().filter(|i| *i > 0)?;
    let salt = STANDARD.decode(salt).ok()?;
    let stored_key = STANDARD.decode(stored_key).ok()?;
    let server_key = STANDARD.decode(server_key).ok()?;
    let salted = salted(&prepared(password), &salt, iterations)?;
    let client_key = hmac(&salted, b"Client Key")?;
    let computed_stored: [u8; 32] = Sha256::digest(client_key).into();
    let computed_server = hmac(&salted, b"Server Key")?;
    Some(computed_stored[..] == stored_key[..] && computed_server[..] == server_key[..])
}

/// `md5` followed by the hex MD5 of password and role name.
fn md5_matches(verifier: &str, role: &str, password: &[u8]) -> Option<bool> {
    let hex = verifier.strip_prefix("md5")?;
    let mut hash = md5::Md5::new();
    hash.update(password);
    hash.update(role.as_bytes());
    let digest: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Some(hex == digest)
}

/// Whether `verifier` (a `pg_authid.rolpassword`) is `password`'s for `role`; a verifier in a
/// form this does not know counts as different, so the password is set.
pub(crate) fn verifier_matches(verifier: &str, role: &str, password: &[u8]) -> bool {
    let key = remembered_key(verifier, role, password);
    if remembered().lock().is_ok_and(|m| m.get(role) == Some(&key)) {
        return true;
    }
    let matches = scram_matches(verifier, password)
        .or_else(|| md5_matches(verifier, role, password))
        .unwrap_or(false);
    if matches {
        if let Ok(mut m) = remembered().lock() {
            m.insert(role.to_string(), key);
        }
    }
    matches
}

/// Forget the remembered matches, as a restarted manager has (tests).
#[doc(hidden)]
pub fn forget_verified_passwords() {
    if let Ok(mut m) = remembered().lock() {
        m.clear();
    }
}

fn remembered() -> &'static Mutex<HashMap<String, u64>> {
    static MATCHES: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();
    MATCHES.get_or_init(Default::default)
}

/// A hash keyed by this process's random key: it identifies (verifier, password) in memory
/// without being usable to guess the password elsewhere.
fn remembered_key(verifier: &str, role: &str, password: &[u8]) -> u64 {
    static KEYS: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    let mut hasher = KEYS.get_or_init(Default::default).build_hasher();
    for part in [role.as_bytes(), verifier.as_bytes(), password] {
        hasher.write_usize(part.len());
        hasher.write(part);
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A verifier in PostgreSQL's layout is checked without the server (the integration
    /// test checks ones PostgreSQL made).
    #[test]
    fn scram_verifier_of_a_known_password() {
        let salt = STANDARD.encode(b"0123456789abcdef");
        let verifier = make_scram(b"pencil", b"0123456789abcdef", 4096);
        assert!(verifier.starts_with(&format!("SCRAM-SHA-256$4096:{salt}$")));
        assert!(verifier_matches(&verifier, "x", b"pencil"));
        assert!(!verifier_matches(&verifier, "x", b"pencil2"));
        assert!(!verifier_matches(&verifier, "x", b""));
    }

    #[test]
    fn rfc7677_test_vector() {
        // RFC 7677 §3: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096
        // iterations; the server's stored key and server key as PostgreSQL would keep them.
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = salted(b"pencil", &salt, 4096).unwrap();
        let server_key = hmac(&salted, b"Server Key").unwrap();
        // ServerSignature from the RFC's exchange, recomputed from the derived ServerKey.
        let auth = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
                    r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
                    c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let signature = hmac(&server_key, auth.as_bytes()).unwrap();
        assert_eq!(
            STANDARD.encode(signature),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn md5_verifier() {
        // md5('secret' || 'alice')
        let verifier = format!("md5{}", hex_md5(b"secretalice"));
        assert!(verifier_matches(&verifier, "alice", b"secret"));
        assert!(!verifier_matches(&verifier, "bob", b"secret"));
        assert!(!verifier_matches("something else", "alice", b"secret"));
        assert!(!verifier_matches("SCRAM-SHA-256$x", "alice", b"secret"));
    }

    fn hex_md5(data: &[u8]) -> String {
        md5::Md5::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn make_scram(password: &[u8], salt: &[u8], iterations: u32) -> String {
        let salted = salted(&prepared(password), salt, iterations).unwrap();
        let stored: [u8; 32] = Sha256::digest(hmac(&salted, b"Client Key").unwrap()).into();
        let server = hmac(&salted, b"Server Key").unwrap();
        format!(
            "SCRAM-SHA-256${iterations}:{}${}:{}",
            STANDARD.encode(salt),
            STANDARD.encode(stored),
            STANDARD.encode(server)
        )
    }
}
