//! The cluster's keys and certificates: a CA made once (ECDSA P-256, ten
//! years), the API server's serving certificate signed by it (remade at
//! every start, one year, for the names and addresses clients dial), and
//! the ServiceAccount token signing key. Kept in one directory, 0700, keys
//! 0600; what exists is reused so kubeconfigs and pod tokens survive a
//! restart of the control plane.
//!
//! rcgen makes the certificates; rustls serves them. The CA's issuer is
//! rebuilt from its fixed distinguished name and stored key (no X.509
//! parser needed), which yields the same issuer name and key identifier as
//! the stored certificate, so chains verify.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

const CA_CN: &str = "weft-ca";

/// Why the keys could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Cert { what: String, source: rcgen::Error },
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// The CA, the serving certificate and the token signing key.
pub struct Pki {
    /// The CA certificate (PEM): what kubeconfigs and pods trust.
    pub ca_cert_pem: String,
    /// The serving certificate (PEM) and its key (PKCS#8 PEM).
    pub serving_cert_pem: String,
    serving_key_pem: String,
    /// The ServiceAccount token signing key (PKCS#8 PEM) and its public half.
    pub(crate) sa_key_pem: String,
    pub(crate) sa_public_pem: String,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").finish_non_exhaustive()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn cert(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Cert {
        what: what.to_string(),
        source,
    }
}

/// Writes `data` to `path` readable by the owner only (atomic rename).
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), PkiError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(data).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn ca_params() -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(cert("CA parameters"))?;
    p.distinguished_name.push(DnType::CommonName, CA_CN);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time_now();
    p.not_before = now - std::time::Duration::from_secs(3600);
    p.not_after = now + std::time::Duration::from_secs(10 * 365 * 86400);
    Ok(p)
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// Reads `path` if it exists.
fn read_opt(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// A key from `path`, or a new one written there.
fn key_at(path: &Path) -> Result<KeyPair, PkiError> {
    if let Some(pem) = read_opt(path)? {
        return KeyPair::from_pem(&pem).map_err(cert("stored key"));
    }
    let key = KeyPair::generate().map_err(cert("new key"))?;
    write_private(path, key.serialize_pem().as_bytes())?;
    Ok(key)
}

impl Pki {
    /// Loads the CA and signing key from `dir` (making them the first
    /// time) and issues a serving certificate for `sans` (DNS names and IP
    /// addresses).
    pub fn load_or_create(dir: &Path, sans: &[String]) -> Result<Pki, PkiError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
        let ca_key_path = dir.join("ca.key");
        let ca_cert_path = dir.join("ca.crt");
        let ca_key = key_at(&ca_key_path)?;
        let ca_cert_pem = match read_opt(&ca_cert_path)? {
            Some(pem) => pem,
            None => {
                let pem = ca_params()?
                    .self_signed(&ca_key)
                    .map_err(cert("CA certificate"))?
                    .pem();
                std::fs::write(&ca_cert_path, &pem).map_err(io(&ca_cert_path))?;
                pem
            }
        };
        let issuer = Issuer::new(ca_params()?, &ca_key);

        let serving_key = KeyPair::generate().map_err(cert("serving key"))?;
        let mut p = CertificateParams::new(sans.to_vec()).map_err(cert("serving names"))?;
        p.distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let now = time_now();
        p.not_before = now - std::time::Duration::from_secs(3600);
        p.not_after = now + std::time::Duration::from_secs(365 * 86400);
        let serving_cert_pem = p
            .signed_by(&serving_key, &issuer)
            .map_err(cert("serving certificate"))?
            .pem();
        let serving_key_pem = serving_key.serialize_pem();
        write_private(&dir.join("apiserver.key"), serving_key_pem.as_bytes())?;
        std::fs::write(dir.join("apiserver.crt"), &serving_cert_pem)
            .map_err(io(&dir.join("apiserver.crt")))?;

        let sa_key = key_at(&dir.join("sa.key"))?;
        Ok(Pki {
            ca_cert_pem,
            serving_cert_pem,
            serving_key_pem,
            sa_key_pem: sa_key.serialize_pem(),
            sa_public_pem: sa_key.public_key_pem(),
        })
    }

    /// A rustls server configuration with the serving certificate (and the
    /// CA after it), HTTP/1.1 only (the server speaks nothing else).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let tls = |e: &dyn std::fmt::Display| PkiError::Tls(e.to_string());
        let mut chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.serving_cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| tls(&e))?;
        chain.extend(
            CertificateDer::pem_slice_iter(self.ca_cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls(&e))?,
        );
        let key =
            PrivateKeyDer::from_pem_slice(self.serving_key_pem.as_bytes()).map_err(|e| tls(&e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls(&e))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| tls(&e))?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_private_and_the_ca_survives_a_reload() {
        let dir = std::env::temp_dir().join(format!("weft-pki-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let sans = vec!["kubernetes".to_string(), "127.0.0.1".to_string()];
        let a = Pki::load_or_create(&dir, &sans).unwrap();
        let b = Pki::load_or_create(&dir, &sans).unwrap();
        assert_eq!(a.ca_cert_pem, b.ca_cert_pem);
        assert_eq!(a.sa_public_pem, b.sa_public_pem);
        for f in ["ca.key", "sa.key", "apiserver.key"] {
            let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        a.server_config().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
