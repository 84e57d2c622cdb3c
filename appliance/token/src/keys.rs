// SPDX-License-Identifier: MIT OR Apache-2.0
//! Signing keys (the enrolment office's, PKCS#8 PEM) and the public keys a gate trusts
//! (SubjectPublicKeyInfo PEM, one file each in its trusted-keys directory); both are what
//! `openssl pkey` reads and writes for Ed25519.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::TokenError;

/// Which key signed a token: the first 8 bytes of the SHA-256 of its public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    pub fn of(key: &VerifyingKey) -> KeyId {
        let digest = Sha256::digest(key.as_bytes());
        let mut id = [0; 8];
        id.copy_from_slice(&digest[..8]);
        KeyId(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

fn key_error(path: &Path, reason: impl fmt::Display) -> TokenError {
    TokenError::Key {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// A new key pair in `dir`: `<name>.key.pem` (secret, mode 0600: it stays at the enrolment
/// office) and `<name>.pub.pem` (for every gate's trusted-keys directory). Refuses to replace an
/// existing key. Returns both paths and the key id.
pub fn generate_key(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf, KeyId), TokenError> {
    let secret_path = dir.join(format!("{name}.key.pem"));
    let public_path = dir.join(format!("{name}.pub.pem"));
    for path in [&secret_path, &public_path] {
        if path.exists() {
            return Err(key_error(
                path,
                "exists already: a key is never overwritten",
            ));
        }
    }
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| key_error(dir, e))?;
    let key = SigningKey::from_bytes(&seed);
    let secret = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| key_error(&secret_path, e))?;
    write_private(&secret_path, secret.as_bytes())?;
    let public = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| key_error(&public_path, e))?;
    std::fs::write(&public_path, public).map_err(|e| key_error(&public_path, e))?;
    Ok((secret_path, public_path, KeyId::of(&key.verifying_key())))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TokenError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| key_error(path, e))
}

/// The enrolment office's signing key.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, TokenError> {
    let text = std::fs::read_to_string(path).map_err(|e| key_error(path, e))?;
    SigningKey::from_pkcs8_pem(&text).map_err(|e| {
        key_error(
            path,
            format!("not an Ed25519 private key (PKCS#8 PEM): {e}"),
        )
    })
}

/// A public key a gate trusts.
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, TokenError> {
    let text = std::fs::read_to_string(path).map_err(|e| key_error(path, e))?;
    VerifyingKey::from_public_key_pem(&text)
        .map_err(|e| key_error(path, format!("not an Ed25519 public key (SPKI PEM): {e}")))
}

/// The keys a gate accepts tokens from, by key id.
#[derive(Clone, Debug, Default)]
pub struct TrustedKeys {
    keys: BTreeMap<KeyId, VerifyingKey>,
}

impl TrustedKeys {
    /// Every `*.pem` in `dir` (other files are ignored); a `.pem` that is not a public key is an
    /// error naming it, so a misplaced secret key or a damaged file is not silently skipped.
    pub fn load(dir: &Path) -> Result<TrustedKeys, TokenError> {
        let entries = std::fs::read_dir(dir).map_err(|e| key_error(dir, e))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pem"))
            .collect();
        paths.sort();
        let mut keys = BTreeMap::new();
        for path in paths {
            let key = load_verifying_key(&path)?;
            keys.insert(KeyId::of(&key), key);
        }
        Ok(TrustedKeys { keys })
    }

    /// Trusts these keys (tests, and tools that hold the key in memory).
    pub fn of(keys: impl IntoIterator<Item = VerifyingKey>) -> TrustedKeys {
        TrustedKeys {
            keys: keys.into_iter().map(|k| (KeyId::of(&k), k)).collect(),
        }
    }

    pub fn get(&self, id: &KeyId) -> Option<&VerifyingKey> {
        self.keys.get(id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_pair_loads_back_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, public, id) = generate_key(dir.path(), "office").unwrap();
        let signing = load_signing_key(&secret).unwrap();
        let verifying = load_verifying_key(&public).unwrap();
        assert_eq!(signing.verifying_key(), verifying);
        assert_eq!(KeyId::of(&verifying), id);
        assert_eq!(id.to_string().len(), 16);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = generate_key(dir.path(), "office").unwrap_err().to_string();
        assert!(
            again.contains("office.key.pem") && again.contains("never overwritten"),
            "{again}"
        );
    }

    #[test]
    fn the_trusted_directory_takes_public_keys_and_names_a_file_that_is_not_one() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, _, a) = generate_key(dir.path(), "a").unwrap();
        let (_, _, b) = generate_key(dir.path(), "b").unwrap();
        let trusted_dir = dir.path().join("trusted");
        std::fs::create_dir(&trusted_dir).unwrap();
        for name in ["a.pub.pem", "b.pub.pem"] {
            std::fs::copy(dir.path().join(name), trusted_dir.join(name)).unwrap();
        }
        std::fs::write(trusted_dir.join("README"), "not a key").unwrap();
        let trusted = TrustedKeys::load(&trusted_dir).unwrap();
        assert_eq!(trusted.ids().copied().collect::<Vec<_>>().len(), 2);
        assert!(trusted.get(&a).is_some() && trusted.get(&b).is_some());

        std::fs::copy(&secret, trusted_dir.join("oops.pem")).unwrap();
        let e = TrustedKeys::load(&trusted_dir).unwrap_err().to_string();
        assert!(
            e.contains("oops.pem") && e.contains("not an Ed25519 public key"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }
}
