//! The store's secret: keys the pseudonyms of subject ids.
//!
//! 32 random bytes in `DIR/secret`, created on first use with mode 0600 and
//! never printed. A subject id becomes `HMAC-SHA-256(secret, id)`, the first
//! 16 bytes in hex: the same id always gives the same pseudonym within a
//! store, and without the secret a pseudonym cannot be tied back to an id,
//! not even by hashing candidate ids.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The per-store secret.
pub struct Secret([u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// Reads `path`; never creates it.
    pub fn load_existing(path: &Path) -> io::Result<Self> {
        let bytes = fs::read(path)?;
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{} is not a 32-byte secret", path.display()))
        })?;
        Ok(Self(key))
    }

    /// Reads `path`, or creates it (mode 0600) with fresh random bytes.
    pub fn load_or_create(path: &Path) -> io::Result<Self> {
        match Self::load_existing(path) {
            Ok(s) => Ok(s),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| io::Error::other(format!("no randomness: {e}")))?;
                let mut opts = OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let mut f = opts.open(path)?;
                f.write_all(&key)?;
                f.sync_all()?;
                Ok(Self(key))
            }
            Err(e) => Err(e),
        }
    }

    /// The pseudonym of a subject id, in hex.
    pub fn pseudonym(&self, id: &str) -> String {
        hex::encode(self.pseudonym_bytes(id))
    }

    /// The pseudonym of a subject id.
    pub fn pseudonym_bytes(&self, id: &str) -> [u8; 16] {
        let tag = self.mac(id.as_bytes());
        tag[..16].try_into().unwrap_or_default()
    }

    /// A key for another purpose, derived from the secret and a label.
    pub fn derive(&self, label: &[u8]) -> [u8; 32] {
        self.mac(label)
    }

    fn mac(&self, data: &[u8]) -> [u8; 32] {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        m.update(data);
        m.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_per_store_and_differ_across_stores() {
        let dir = tempfile::tempdir().unwrap();
        let a = Secret::load_or_create(&dir.path().join("a")).unwrap();
        let a2 = Secret::load_or_create(&dir.path().join("a")).unwrap();
        let b = Secret::load_or_create(&dir.path().join("b")).unwrap();
        assert_eq!(a.pseudonym("c001"), a2.pseudonym("c001"));
        assert_ne!(a.pseudonym("c001"), a.pseudonym("c002"));
        assert_ne!(a.pseudonym("c001"), b.pseudonym("c001"));
        assert_eq!(a.pseudonym("c001").len(), 32);
        assert!(!format!("{a:?}").contains(&hex::encode(a.0)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("a")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
