//! Node keys: Curve25519 key pairs as WireGuard uses them (RFC 7748 X25519,
//! keys written in standard base64, 44 characters, as `wg genkey` and
//! `wg pubkey` print them), and the node's private key kept in a file of
//! its own (mode 0600) so a restarted agent keeps its identity.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine;
use x25519_dalek as x25519;

/// A key is 32 bytes.
pub const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{what} is not a WireGuard key: {why} (want 44 characters of base64 for 32 bytes)")]
    Malformed { what: String, why: String },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: std::io::Error,
    },
}

/// A public key, as peers name each other.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; KEY_LEN]);

/// A private key (never printed by `Debug`).
#[derive(Clone)]
pub struct PrivateKey([u8; KEY_LEN]);

impl PublicKey {
    /// Parses `text` (base64), naming `what` in the error.
    pub fn parse(text: &str, what: &str) -> Result<PublicKey, KeyError> {
        decode(text, what).map(PublicKey)
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(public {})", self.public())
    }
}

impl PrivateKey {
    /// A new key from the kernel's random source.
    pub fn generate() -> Result<PrivateKey, KeyError> {
        use std::io::Read;
        let mut bytes = [0u8; KEY_LEN];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(|source| KeyError::Io {
                action: "read a new private key from",
                path: "/dev/urandom".into(),
                source,
            })?;
        Ok(PrivateKey::from_bytes(bytes))
    }

    /// The key, clamped as X25519 uses it (RFC 7748 §5; `wg genkey` does
    /// the same), so the stored and the used bytes are one.
    pub fn from_bytes(mut bytes: [u8; KEY_LEN]) -> PrivateKey {
        bytes[0] &= 248;
        bytes[31] &= 127;
        bytes[31] |= 64;
        PrivateKey(bytes)
    }

    pub fn parse(text: &str, what: &str) -> Result<PrivateKey, KeyError> {
        decode(text, what).map(PrivateKey::from_bytes)
    }

    pub fn public(&self) -> PublicKey {
        let secret = x25519::StaticSecret::from(self.0);
        PublicKey(x25519::PublicKey::from(&secret).to_bytes())
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// The raw key, for the kernel's netlink interface.
    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.0
    }

    /// The key in `path`, or a new one written there (0600, its directory
    /// created) when there is none. A file that does not hold a key is an
    /// error, never replaced: peers know the node by it.
    pub fn load_or_create(path: &Path) -> Result<PrivateKey, KeyError> {
        let shown = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => return PrivateKey::parse(text.trim(), &shown),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(KeyError::Io {
                    action: "read",
                    path: shown,
                    source,
                })
            }
        }
        let key = PrivateKey::generate()?;
        key.store(path)?;
        Ok(key)
    }

    /// Writes the key to `path` (0600), replacing what is there at once
    /// (a temporary file renamed over it).
    pub fn store(&self, path: &Path) -> Result<(), KeyError> {
        let shown = path.display().to_string();
        let io = |action, source| KeyError::Io {
            action,
            path: shown.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io("create the directory of", e))?;
        }
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io("create", e))?;
        // The mode above applies to a new file only.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io("chmod 0600", e))?;
        writeln!(f, "{}", self.to_base64()).map_err(|e| io("write", e))?;
        f.sync_all().map_err(|e| io("sync", e))?;
        std::fs::rename(&tmp, path).map_err(|e| io("rename into place", e))
    }
}

fn decode(text: &str, what: &str) -> Result<[u8; KEY_LEN], KeyError> {
    let malformed = |why: String| KeyError::Malformed {
        what: what.to_string(),
        why,
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| malformed(e.to_string()))?;
    <[u8; KEY_LEN]>::try_from(bytes.as_slice())
        .map_err(|_| malformed(format!("{} bytes", bytes.len())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7748 §6.1: Alice's private key and the public key it gives.
    #[test]
    fn the_public_key_is_x25519_of_the_private_key() {
        let private: [u8; 32] = [
            0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1, 0x72, 0x51, 0xb2,
            0x66, 0x45, 0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0, 0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5,
            0x1d, 0xb9, 0x2c, 0x2a,
        ];
        let public = PrivateKey::from_bytes(private).public();
        assert_eq!(
            public.to_hex(),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
    }

    #[test]
    fn keys_print_as_they_parse() {
        let k = PrivateKey::generate().unwrap();
        let text = k.to_base64();
        assert_eq!(text.len(), 44);
        assert_eq!(PrivateKey::parse(&text, "k").unwrap().to_base64(), text);
        let p = k.public();
        assert_eq!(PublicKey::parse(&p.to_base64(), "p").unwrap(), p);
    }

    #[test]
    fn a_malformed_key_is_an_error_naming_it() {
        for bad in ["", "not base64!", "AAAA"] {
            let e = PublicKey::parse(bad, "annotation weft.io/wireguard-public-key").unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("annotation weft.io/wireguard-public-key is not a WireGuard key"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_stored_key_is_kept_across_loads_and_private_to_its_owner() {
        let dir = std::env::temp_dir().join(format!("weft-wgkey-{}", std::process::id()));
        let path = dir.join("sub/private.key");
        let _ = std::fs::remove_dir_all(&dir);
        let first = PrivateKey::load_or_create(&path).unwrap();
        let again = PrivateKey::load_or_create(&path).unwrap();
        assert_eq!(first.public(), again.public());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::write(&path, "garbage\n").unwrap();
        assert!(
            PrivateKey::load_or_create(&path).is_err(),
            "a bad key file is not replaced"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "garbage\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
