//! TLS for the gateway proxy: certificates from `kubernetes.io/tls` Secrets
//! chosen by SNI, the server configuration of each TLS port, the SNI of a
//! ClientHello read without terminating TLS (passthrough), and the client
//! configuration that re-encrypts to backends.
//!
//! Rotation: a listening port builds its [`server_config`] once, with a
//! [`CertResolver`] that asks a lookup closure for the certificate at every
//! handshake. The proxy's closure reads the route table it swaps atomically,
//! so a new or renewed Secret serves from the next handshake on, with no
//! listener rebuilt. A resumed session (ticket or session cache) does not ask
//! the resolver: it keeps the certificate its client verified until the
//! ticket expires, while its requests are routed by the current table.
//!
//! [`peek_sni`] is hand-written because passthrough must forward the
//! client's bytes unchanged to the backend, which owns the TLS session: the
//! proxy only needs the `server_name` from a buffer it peeked. rustls's only
//! ClientHello reader is `server::Acceptor`, a server connection in the
//! making: it could be fed a copy of the buffer, but it keeps connection
//! state per peek and refuses what rustls itself would not serve (a
//! ClientHello without null compression, data after the ClientHello in its
//! record), which is the backend's call, not ours. The parser here reads the
//! record and handshake framing and the `server_name` extension only,
//! bounds-checked at every step, over at most [`PEEK_LIMIT`] bytes.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use rustls::crypto::ring as provider;
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert};
use rustls::sign::{CertifiedKey, SigningKey};
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::host::{self, HostMap, HostPattern};

/// The Secret type that carries a certificate and its key.
pub const SECRET_TYPE_TLS: &str = "kubernetes.io/tls";
/// The data key of the PEM certificate chain, leaf first.
pub const TLS_CERT: &str = "tls.crt";
/// The data key of the PEM private key.
pub const TLS_KEY: &str = "tls.key";

/// TLS 1.3 and 1.2 (many clients and backends still speak only 1.2).
static VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A certificate, key or CA bundle that cannot be used, naming the object
/// and what is wrong with it. Key material never appears in a message.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("Secret {secret}: type is {found:?}, a certificate needs type \"kubernetes.io/tls\"")]
    WrongSecretType { secret: String, found: String },
    #[error("Secret {secret}: data has no {key:?}")]
    MissingData { secret: String, key: &'static str },
    #[error("Secret {secret}: tls.crt holds no PEM CERTIFICATE")]
    NoCertificate { secret: String },
    #[error("Secret {secret}: tls.crt: {why}")]
    BadCertificate { secret: String, why: String },
    #[error("Secret {secret}: tls.key: {why}")]
    BadKey { secret: String, why: String },
    #[error(
        "Secret {secret}: tls.key is {what}; weft serves RSA (2048 to 8192 bits), \
         ECDSA P-256 or P-384, and Ed25519 keys"
    )]
    UnsupportedKey { secret: String, what: String },
    #[error(
        "Secret {secret}: tls.key is not the key of the first certificate (the leaf) in tls.crt"
    )]
    KeyMismatch { secret: String },
    #[error("CA bundle #{index}: {why}")]
    BadCaBundle { index: usize, why: String },
    #[error(
        "no usable CA certificate in {bundles} CA bundle(s) \
         ({rejected} certificate(s) refused as trust anchors)"
    )]
    NoCaCertificate { bundles: usize, rejected: usize },
}

fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(provider::default_provider())
}

fn alpn(http2: bool) -> Vec<Vec<u8>> {
    if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    }
}

/// "namespace/name" of a Secret, for messages.
fn secret_ref(secret: &Secret) -> String {
    let name = secret.metadata.name.as_deref().unwrap_or("<unnamed>");
    match secret.metadata.namespace.as_deref() {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Certificates from Secrets

/// The certificate chain and signing key of a `kubernetes.io/tls` Secret:
/// `tls.crt` a PEM chain, leaf first; `tls.key` a PEM PKCS#8, PKCS#1 (RSA)
/// or SEC1 (EC) key that must be the leaf's. Validity dates are not checked
/// here: an expired certificate is served, and its clients decide.
pub fn certified_key_from_secret(secret: &Secret) -> Result<Arc<CertifiedKey>, TlsError> {
    let name = secret_ref(secret);
    let found = secret.type_.as_deref().unwrap_or("Opaque");
    if found != SECRET_TYPE_TLS {
        return Err(TlsError::WrongSecretType {
            secret: name,
            found: found.to_string(),
        });
    }
    let data = |key: &'static str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|v| v.0.as_slice())
            .ok_or_else(|| TlsError::MissingData {
                secret: name.clone(),
                key,
            })
    };
    let crt = data(TLS_CERT)?;
    let key = data(TLS_KEY)?;

    let chain = certificate_chain(&name, crt)?;
    let signing_key = signing_key(&name, key)?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        // The key cannot tell its public half: nothing to compare (rustls's
        // own `CertifiedKey::from_der` accepts this too).
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(TlsError::KeyMismatch { secret: name });
        }
        Err(e) => {
            return Err(TlsError::BadCertificate {
                secret: name,
                why: format!("the leaf certificate does not parse: {e}"),
            });
        }
    }
    Ok(Arc::new(certified))
}

fn certificate_chain(secret: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            secret: secret.to_string(),
            why: format!("PEM: {e}"),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            secret: secret.to_string(),
        });
    };
    // Only the leaf is parsed: the rest of the chain is sent as it is, and
    // judged by the clients that verify it.
    if let Err(e) = ParsedCertificate::try_from(leaf) {
        return Err(TlsError::BadCertificate {
            secret: secret.to_string(),
            why: format!("the first certificate (the leaf) is not valid X.509: {e}"),
        });
    }
    Ok(chain)
}

fn signing_key(secret: &str, pem: &[u8]) -> Result<Arc<dyn SigningKey>, TlsError> {
    let bad = |why: String| TlsError::BadKey {
        secret: secret.to_string(),
        why,
    };
    let unsupported = |what: String| TlsError::UnsupportedKey {
        secret: secret.to_string(),
        what,
    };
    let der = match PrivateKeyDer::from_pem_slice(pem) {
        Ok(der) => der,
        Err(pem::Error::NoItemsFound) => {
            return Err(match other_private_key_label(pem) {
                Some(label) => unsupported(format!("a PEM {label:?} section")),
                None => bad(
                    "holds no PEM private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)"
                        .to_string(),
                ),
            });
        }
        Err(e) => return Err(bad(format!("PEM: {e}"))),
    };
    match provider::sign::any_supported_type(&der) {
        Ok(key) => Ok(key),
        Err(_) => Err(match describe_key(&der) {
            Some(KeyDescription {
                what,
                supported: false,
            }) => unsupported(what),
            Some(KeyDescription {
                what,
                supported: true,
            }) => bad(format!(
                "holds {what} that does not load (corrupt or inconsistent)"
            )),
            None => bad(format!(
                "the {} PEM section does not hold a DER private key of that form",
                pem_label(&der)
            )),
        }),
    }
}

fn pem_label(der: &PrivateKeyDer<'_>) -> &'static str {
    match der {
        PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
        PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    }
}

/// The label of a PEM private key section that the PEM reader does not
/// take (`ENCRYPTED PRIVATE KEY`, `DSA PRIVATE KEY`, `OPENSSH PRIVATE KEY`…).
fn other_private_key_label(pem: &[u8]) -> Option<String> {
    pem.split(|&b| b == b'\n' || b == b'\r').find_map(|line| {
        let line = std::str::from_utf8(line).ok()?.trim();
        let label = line.strip_prefix("-----BEGIN ")?.strip_suffix("-----")?;
        label.ends_with("PRIVATE KEY").then(|| label.to_string())
    })
}

/// What a private key is, read from its DER when ring refused it: to tell
/// "not supported" from "corrupt".
struct KeyDescription {
    what: String,
    /// Whether keys of this kind load when well-formed.
    supported: bool,
}

mod oid {
    pub const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    pub const RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
    pub const EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    pub const DSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01];
    pub const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
    pub const ED448: &[u8] = &[0x2b, 0x65, 0x71];
    pub const X25519: &[u8] = &[0x2b, 0x65, 0x6e];
    pub const X448: &[u8] = &[0x2b, 0x65, 0x6f];
    pub const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    pub const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
    pub const P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
    pub const SECP256K1: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x0a];
}

const DER_INTEGER: u8 = 0x02;
const DER_OCTET_STRING: u8 = 0x04;
const DER_OID: u8 = 0x06;
const DER_SEQUENCE: u8 = 0x30;
/// `[0]` EXPLICIT, the curve parameters of a SEC1 key.
const DER_CONTEXT_0: u8 = 0xa0;

/// The first DER element of `input`: (tag, contents, what follows).
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (digits, rest) = rest.split_at(n);
        let len = digits
            .iter()
            .fold(0usize, |acc, &d| (acc << 8) | usize::from(d));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (contents, rest) = rest.split_at(len);
    Some((tag, contents, rest))
}

/// The contents of an element with the expected tag, and what follows.
fn der_expect(input: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
    match der_next(input)? {
        (tag, contents, rest) if tag == want => Some((contents, rest)),
        _ => None,
    }
}

fn describe_key(der: &PrivateKeyDer<'_>) -> Option<KeyDescription> {
    match der {
        PrivateKeyDer::Pkcs1(k) => Some(describe_rsa(k.secret_pkcs1_der())),
        PrivateKeyDer::Sec1(k) => {
            // ECPrivateKey ::= SEQUENCE { version INTEGER, privateKey OCTET
            // STRING, parameters [0] OID OPTIONAL, publicKey [1] OPTIONAL }
            let (seq, _) = der_expect(k.secret_sec1_der(), DER_SEQUENCE)?;
            let (_, rest) = der_expect(seq, DER_INTEGER)?;
            let (private, rest) = der_expect(rest, DER_OCTET_STRING)?;
            let curve = der_expect(rest, DER_CONTEXT_0)
                .and_then(|(params, _)| der_expect(params, DER_OID))
                .map(|(curve, _)| curve);
            Some(match curve {
                Some(curve) => describe_curve(curve),
                // No named curve: the private scalar's size tells.
                None => match private.len() {
                    32 => describe_curve(oid::P256),
                    48 => describe_curve(oid::P384),
                    65 | 66 => describe_curve(oid::P521),
                    n => KeyDescription {
                        what: format!("an EC key of {n} bytes on an unnamed curve"),
                        supported: false,
                    },
                },
            })
        }
        PrivateKeyDer::Pkcs8(k) => {
            // PrivateKeyInfo ::= SEQUENCE { version INTEGER, algorithm
            // SEQUENCE { OID, parameters }, privateKey OCTET STRING, ... }
            let (seq, _) = der_expect(k.secret_pkcs8_der(), DER_SEQUENCE)?;
            let (_, rest) = der_expect(seq, DER_INTEGER)?;
            let (algorithm, rest) = der_expect(rest, DER_SEQUENCE)?;
            let (private, _) = der_expect(rest, DER_OCTET_STRING)?;
            let (alg, params) = der_expect(algorithm, DER_OID)?;
            let named = |what: &str, supported| KeyDescription {
                what: what.to_string(),
                supported,
            };
            Some(match alg {
                oid::RSA => describe_rsa(private),
                oid::RSA_PSS => named("an RSA-PSS key", false),
                oid::EC => match der_expect(params, DER_OID) {
                    Some((curve, _)) => describe_curve(curve),
                    None => named("an EC key without a named curve", false),
                },
                oid::ED25519 => named("an Ed25519 key", true),
                oid::ED448 => named("an Ed448 key", false),
                oid::X25519 => named("an X25519 key (key exchange only, it cannot sign)", false),
                oid::X448 => named("an X448 key (key exchange only, it cannot sign)", false),
                oid::DSA => named("a DSA key", false),
                other => KeyDescription {
                    what: format!("a key of algorithm {}", dotted_oid(other)),
                    supported: false,
                },
            })
        }
        _ => None,
    }
}

/// An RSA key from its PKCS#1 `RSAPrivateKey`, by modulus size (ring signs
/// with 2048 to 8192 bits).
fn describe_rsa(pkcs1: &[u8]) -> KeyDescription {
    match rsa_modulus_bits(pkcs1) {
        Some(bits) => KeyDescription {
            what: format!("an RSA key of {bits} bits"),
            supported: (2048..=8192).contains(&bits),
        },
        None => KeyDescription {
            what: "an RSA key".to_string(),
            supported: true,
        },
    }
}

fn rsa_modulus_bits(pkcs1: &[u8]) -> Option<usize> {
    // RSAPrivateKey ::= SEQUENCE { version INTEGER, modulus INTEGER, ... }
    let (seq, _) = der_expect(pkcs1, DER_SEQUENCE)?;
    let (_, rest) = der_expect(seq, DER_INTEGER)?;
    let (modulus, _) = der_expect(rest, DER_INTEGER)?;
    let start = modulus.iter().position(|&b| b != 0)?;
    let leading = modulus[start].leading_zeros() as usize;
    Some((modulus.len() - start) * 8 - leading)
}

fn describe_curve(curve: &[u8]) -> KeyDescription {
    let (what, supported) = match curve {
        oid::P256 => ("an ECDSA P-256 key".to_string(), true),
        oid::P384 => ("an ECDSA P-384 key".to_string(), true),
        oid::P521 => ("an ECDSA P-521 key".to_string(), false),
        oid::SECP256K1 => ("an ECDSA secp256k1 key".to_string(), false),
        other => (format!("an EC key on curve {}", dotted_oid(other)), false),
    };
    KeyDescription { what, supported }
}

/// An OID's contents in dotted form, for messages.
fn dotted_oid(bytes: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for &b in bytes {
        if acc > u64::MAX >> 7 {
            return "(malformed OID)".to_string();
        }
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            arcs.push(acc);
            acc = 0;
        }
    }
    let Some((&first, rest)) = arcs.split_first() else {
        return "(malformed OID)".to_string();
    };
    if bytes.last().is_some_and(|b| b & 0x80 != 0) {
        return "(malformed OID)".to_string();
    }
    let (a, b) = match first {
        0..=39 => (0, first),
        40..=79 => (1, first - 40),
        _ => (2, first - 80),
    };
    let mut out = format!("{a}.{b}");
    for arc in rest {
        out.push_str(&format!(".{arc}"));
    }
    out
}

// ---------------------------------------------------------------------------
// Choosing a certificate by SNI

/// The certificates of one TLS port, by hostname pattern, looked up by SNI
/// with [`HostMap`]'s precedence: exact, most specific wildcard, any.
#[derive(Debug, Clone, Default)]
pub struct SniCerts {
    certs: HostMap<Arc<CertifiedKey>>,
}

impl SniCerts {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `cert` for the hosts of `pattern`, replacing what was there.
    pub fn insert(&mut self, pattern: &HostPattern, cert: Arc<CertifiedKey>) {
        self.certs.insert(pattern, cert);
    }

    /// The certificate for a client's SNI ([`host::normalize`]d first); a
    /// client without SNI, or with one that is no hostname, gets the
    /// any-host certificate if there is one.
    pub fn get(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let sni = sni.and_then(host::normalize);
        self.certs.get(sni.as_deref()).cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }
}

/// The lookup a [`CertResolver`] asks at each handshake: (port, SNI as the
/// client sent it, lowercased by rustls) → certificate.
pub type CertLookup = dyn Fn(u16, Option<&str>) -> Option<Arc<CertifiedKey>> + Send + Sync;

/// The certificate resolver of one listening port. It holds no
/// certificates: each handshake asks `lookup` for the current one, so
/// rotations need no new `ServerConfig`. No certificate → the handshake
/// fails (never a certificate for another name).
#[derive(Clone)]
pub struct CertResolver {
    port: u16,
    lookup: Arc<CertLookup>,
}

impl CertResolver {
    pub fn new(port: u16, lookup: Arc<CertLookup>) -> Self {
        CertResolver { port, lookup }
    }

    /// A resolver over one fixed set of certificates.
    pub fn fixed(port: u16, certs: Arc<SniCerts>) -> Self {
        Self::new(
            port,
            Arc::new(move |_: u16, sni: Option<&str>| certs.get(sni)),
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name();
        let found = (self.lookup)(self.port, sni);
        if found.is_none() {
            tracing::debug!(
                port = self.port,
                sni = sni.unwrap_or("<none>"),
                "TLS handshake refused: no certificate for this server name"
            );
        }
        found
    }
}

/// The server configuration of one TLS port: TLS 1.2 and 1.3 (ring),
/// certificates from `resolver`, ALPN `h2` then `http/1.1` (or `http/1.1`
/// only). Resumption: rustls's default stateful cache (256 sessions) plus
/// stateless tickets from ring's rotating `Ticketer`, so returning clients
/// skip the certificate exchange on either version.
pub fn server_config(resolver: Arc<dyn ResolvesServerCert>, http2: bool) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(VERSIONS)
        .expect("the ring provider has cipher suites for TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = alpn(http2);
    match provider::Ticketer::new() {
        Ok(ticketer) => config.ticketer = ticketer,
        // Only when the system RNG fails; the session cache still resumes.
        Err(e) => tracing::warn!("TLS session tickets disabled: {e}"),
    }
    Arc::new(config)
}

// ---------------------------------------------------------------------------
// Re-encryption to backends

/// The client configuration for TLS to backends: trusts only the
/// certificates of `ca_pems` (each a PEM bundle, e.g. a ConfigMap's
/// `ca.crt`); the server's certificate is verified by webpki against them
/// and against the `ServerName` given at connect time (the policy's
/// hostname). A PEM syntax error is an error; certificates that cannot be
/// trust anchors are skipped, and an error only if none is left.
pub fn backend_client_config(
    ca_pems: &[&[u8]],
    http2: bool,
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    let mut rejected = 0;
    for (index, pem) in ca_pems.iter().enumerate() {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::BadCaBundle {
                index,
                why: format!("PEM: {e}"),
            })?;
        let (_, refused) = roots.add_parsable_certificates(certs);
        if refused > 0 {
            tracing::debug!(
                index,
                refused,
                "CA bundle: certificates refused as trust anchors"
            );
        }
        rejected += refused;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCaCertificate {
            bundles: ca_pems.len(),
            rejected,
        });
    }
    let mut config = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(VERSIONS)
        .expect("the ring provider has cipher suites for TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn(http2);
    Ok(Arc::new(config))
}

// ---------------------------------------------------------------------------
// Passthrough: the SNI of a ClientHello

/// The most bytes [`peek_sni`] looks at. A ClientHello whose records do not
/// complete within them is refused ([`SniPeek::NotTls`]): real ones are a
/// few hundred bytes to 2 KiB. With this many bytes buffered the answer is
/// never [`SniPeek::NeedMore`].
pub const PEEK_LIMIT: usize = 16 * 1024;

/// What the first bytes of a connection say about its destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SniPeek {
    /// Every byte so far is consistent with a ClientHello that is not
    /// complete: read more (up to [`PEEK_LIMIT`] bytes) and ask again.
    NeedMore,
    /// Not a TLS ClientHello that can be routed (another protocol, a
    /// malformed or ambiguous hello, or one over [`PEEK_LIMIT`]): close.
    NotTls,
    /// A complete ClientHello, with its `server_name` host_name as the client
    /// sent it (ASCII; [`host::normalize`] it before lookups), or None.
    Sni(Option<String>),
}

const CONTENT_HANDSHAKE: u8 = 0x16;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const RECORD_HEADER: usize = 5;
const HANDSHAKE_HEADER: usize = 4;
/// RFC 8446 §5.1: a record's fragment is at most 2^14 bytes.
const MAX_FRAGMENT: usize = 1 << 14;
const EXTENSION_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST_NAME: u8 = 0;

/// Why the peek has no answer yet, or never will.
enum Stop {
    NeedMore,
    NotTls,
}

/// The server_name of the ClientHello at the start of `buf`, the bytes a
/// client sent first on a passthrough port (the caller keeps them to
/// forward unchanged). A ClientHello fragmented over several handshake
/// records is joined. Any input is safe: nothing here indexes unchecked.
pub fn peek_sni(buf: &[u8]) -> SniPeek {
    let buf = &buf[..buf.len().min(PEEK_LIMIT)];
    match client_hello_body(buf) {
        Ok(body) => match client_hello_sni(&body) {
            Some(sni) => SniPeek::Sni(sni),
            None => SniPeek::NotTls,
        },
        Err(Stop::NeedMore) if buf.len() < PEEK_LIMIT => SniPeek::NeedMore,
        Err(_) => SniPeek::NotTls,
    }
}

/// One record's header checked: (its fragment as far as present, whether
/// the whole fragment is present, the bytes after it).
fn record(buf: &[u8]) -> Result<(&[u8], bool, &[u8]), Stop> {
    // Check each header byte as soon as it arrives, so that a plaintext
    // protocol is told apart from the first byte on.
    match buf.first() {
        None => return Err(Stop::NeedMore),
        Some(&CONTENT_HANDSHAKE) => {}
        Some(_) => return Err(Stop::NotTls),
    }
    match buf.get(1) {
        None => return Err(Stop::NeedMore),
        Some(&3) => {} // legacy_record_version 3.x
        Some(_) => return Err(Stop::NotTls),
    }
    let Some(header) = buf.get(..RECORD_HEADER) else {
        return Err(Stop::NeedMore);
    };
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    // Zero-length handshake fragments are forbidden (RFC 8446 §5.1).
    if len == 0 || len > MAX_FRAGMENT {
        return Err(Stop::NotTls);
    }
    let after_header = &buf[RECORD_HEADER..];
    match after_header.split_at_checked(len) {
        Some((fragment, rest)) => Ok((fragment, true, rest)),
        None => Ok((after_header, false, &[])),
    }
}

/// The ClientHello body's length, once the handshake header is there.
fn hello_len(message: &[u8]) -> Result<Option<usize>, Stop> {
    match message.first() {
        None => return Ok(None),
        Some(&HANDSHAKE_CLIENT_HELLO) => {}
        Some(_) => return Err(Stop::NotTls),
    }
    let Some(header) = message.get(..HANDSHAKE_HEADER) else {
        return Ok(None);
    };
    let len =
        (usize::from(header[1]) << 16) | (usize::from(header[2]) << 8) | usize::from(header[3]);
    if RECORD_HEADER + HANDSHAKE_HEADER + len > PEEK_LIMIT {
        return Err(Stop::NotTls);
    }
    Ok(Some(len))
}

/// The ClientHello body (after its handshake header), joined from as many
/// handshake records as it spans; borrowed when it fits in the first.
fn client_hello_body(buf: &[u8]) -> Result<Cow<'_, [u8]>, Stop> {
    let (fragment, whole, mut rest) = record(buf)?;
    if let Some(len) = hello_len(fragment)? {
        if let Some(body) = fragment.get(HANDSHAKE_HEADER..HANDSHAKE_HEADER + len) {
            return Ok(Cow::Borrowed(body));
        }
    }
    if !whole {
        return Err(Stop::NeedMore);
    }
    let mut message = fragment.to_vec();
    loop {
        // Bounded: `buf` is at most PEEK_LIMIT long and each record takes
        // at least RECORD_HEADER + 1 bytes of it.
        let (fragment, whole, after) = record(rest)?;
        message.extend_from_slice(fragment);
        if let Some(len) = hello_len(&message)? {
            if let Some(body) = message.get(HANDSHAKE_HEADER..HANDSHAKE_HEADER + len) {
                return Ok(Cow::Owned(body.to_vec()));
            }
        }
        if !whole {
            return Err(Stop::NeedMore);
        }
        rest = after;
    }
}

/// A cursor over bytes whose reads fail instead of running past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The server_name of a complete ClientHello body (RFC 8446 §4.1.2, RFC
/// 6066 §3); None when malformed. Two server_name extensions, or two
/// host_names in one, are malformed: the proxy and the backend could read
/// different ones and disagree on where the connection goes.
fn client_hello_sni(body: &[u8]) -> Option<Option<String>> {
    let mut r = Reader(body);
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    if r.vec8()?.len() > 32 {
        return None; // legacy_session_id<0..32>
    }
    let suites = r.vec16()?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return None;
    }
    if r.vec8()?.is_empty() {
        return None; // legacy_compression_methods<1..2^8-1>
    }
    if r.is_empty() {
        return Some(None); // TLS 1.2 and older may send no extensions
    }
    let mut extensions = Reader(r.vec16()?);
    if !r.is_empty() {
        return None;
    }
    let mut sni = None;
    let mut seen = false;
    while !extensions.is_empty() {
        let kind = extensions.u16()?;
        let data = extensions.vec16()?;
        if kind == EXTENSION_SERVER_NAME {
            if seen {
                return None;
            }
            seen = true;
            sni = server_name(data)?;
        }
    }
    Some(sni)
}

/// ServerNameList's host_name; None when malformed.
fn server_name(data: &[u8]) -> Option<Option<String>> {
    let mut outer = Reader(data);
    let list = outer.vec16()?;
    if !outer.is_empty() || list.is_empty() {
        return None;
    }
    let mut names = Reader(list);
    let mut host = None;
    while !names.is_empty() {
        if names.u8()? != NAME_TYPE_HOST_NAME {
            // Other name types (none is defined) have a layout we cannot
            // know, so the list cannot be read past one.
            break;
        }
        let name = names.vec16()?;
        if host.is_some() || name.is_empty() || !name.iter().all(u8::is_ascii_graphic) {
            return None;
        }
        host = Some(String::from_utf8(name.to_vec()).ok()?);
    }
    Some(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::ByteString;
    use proptest::prelude::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    use rustls_pki_types::ServerName;
    use std::collections::BTreeMap;
    use std::sync::RwLock;

    // Test-only keys (generated with `openssl genpkey`): ring cannot
    // generate RSA keys, so rcgen cannot either.
    const RSA_2048: &str = "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCwIqruZaK9sDpg
L2ysp4FgPyJw65Z2vObQG6DM8EPsNRXwTq1C0S3f12qALfTdE5Don9dwYNBlBXlK
cM+xgOW+tMmIaq+q1tasvR+R7U0/bxWCBOExo7e2YuHt3xmv26Vltc1y1OzBMV4k
c3gGbdiY2DXXbvPbfs4cftfA2CZbc01hXOteycPrlOaWwmMRai1REWGD/3UowAjB
7QA9SKEqUVcScWPKiLrHTJHKX3TjO2QCsZ/mlOT1DiuaPc7a47HSDEst0A6SFgGp
Yg9sknaLDn4ya76i8vDmrGFSfQhZU6EcdR9WjoPqt2RDdcHQav1LA2hVSBZgTqW0
1N0LDC1rAgMBAAECggEABOOyXgkJPowCN0k39gbLP5FYNlt73BK8QVOsyqyBAb9y
Zb1N023Yx+JZeznEQWzWAsx65tONodvWUZ9PE8lOLLkIm2SRce6wRiGi/qlukbNI
cklDZDNRqBOl3AqIC2czInueVwYbXC497oIcE8y48EImB5cgSfiCyay3hKgbbHr7
jUa2/8q+WqMXBvbrFdVOD1nf3iO58VkSKHrhO7GfBywstbCNKJiwQCGfHGtr/M+r
E0AAjxm7q8rjXULRM2i4heS+DEtfSeYbWTL6fGKSykwZR6GQXhGKkA0JCGD6Mpnn
s5hicKdYmnVMK34OkKRlv5MYAOul3b2mb1/FUexalQKBgQDulKw2CHHLr8zHjCHp
cJw0G5RXa+jrrAXqMe8m9IwbG7vh7m3EoBzW4z8FHDZXPEeG3xKq/yW9GFe75t+d
lptqJRLONpuBPLIq9XaV9C1nd7JbBJvX6PUWMEm/Mj3SefPcYicCfXr+7uYhdvrd
1ja+dTg54ZP4lSTOKTo47lnzRQKBgQC8/tNVGk9hkVwtawZAiGHrU5hWsiZtIWak
pigei3K19d4bTCjOuucZnVqOlv4h8URycw80Mh7k6s6eBZkmUFcUjHiZ7KGwP1v8
gxuyuLN5oX90MtRZgg32oaW0HkqG+dpp82ZhjvkPY5HZyNAf5N4YpIjIvoDvE4Ef
iIq6g2LQ7wKBgQCNFHlpUkEIc6KidWkwQ5j67zwfHf6ULhspS/HhlUasWRAXIAjk
9tFW+PYxLWes2kZpqMu/NjW4xgZLZNDivUaV0+p06rG2EJBC+vfu4H9g6dUcIXOO
j4EuZ8uUNj98kQT1U01CGbV7vwVy0Iq0V5HzuhlPkOcRXhBvoM1/EOM8CQKBgBRT
M1cLpU3Q3CDmSZ3XDPDJ5LAuKIPD+83pMJdYV9XJw0EcR6cz4naWvY5oHpx33eyR
AymR2lC0D9RetcGxEixbjvy+vgS+S540W141Dtgdzh8o+D1IB0hmyfM87rblV9/d
FT2YqqBFDQJm3jsP2fK8fxlXo3YSmuhRPtogFxhxAoGAXxs3tbpjq8mdmcWX8uGP
NGNaajVYpTextJrw6umZSJnYe0kTQrFECTPetZsQmwhhw4YVOCS6h9PXlwztdXIZ
Rha5cRd54lMKl8ZVFxEyrSK80JCHv0SvW6s8Dd+wxBcbI/BP4KYYkoL55XXsEsxg
VlsH3sAcC1m6u1vpxYvWqUY=
-----END PRIVATE KEY-----
";
    const RSA_1024: &str = "-----BEGIN PRIVATE KEY-----
MIICdwIBADANBgkqhkiG9w0BAQEFAASCAmEwggJdAgEAAoGBAKkEM6MI2gQ5JLV9
TeMoHjqdn08R1b08yLRqKOn3jzMvy+JLbCDYw1AYhYn2IH6TZ1IAvexDMY7yeK6N
IXcIgGhsyg+epIuxzIIigpx2nEWe5t4UKKxVOijEu7Vx+ByGmR5rKwAUXOctZtny
0QLFpPkP3GEyzgI8LE8BaMcEoIMxAgMBAAECgYAstWfTYKwLIfKL77GCvUIBz2As
0lLv0/xjfRGFkm7W43XTTpAzwCMqNNJeRDUkRmm2T2vt63hYj9tMkRihHCabCsUE
9eCUHs2q+DT9IHHiCee/bcetTgqsXCu2SaukeOuBUjgckxoi9Xjp7RcuJ2RAl4B2
pw2MiA0mWaySHrI2AQJBANlBh+CpAhnCCImwu2S5EddPYbjkrgBgfgsODRIR876t
qw3uPMHkWjIhAzOx+5DJjShUjsgWblsp+uoAG28/ZOkCQQDHKF8txncORLCPuVip
O+KuwcI2EOnPPThE11LD0DanUIqrqIVA40F/pU0l4gWxGa3jBpvYZzFFZkt8Iq2L
J98JAkAJaiWRPsGwjBACp333Z222fuIlOQOxUH0lzX4TgmOlp7D58ZEAdfzSn0uc
OeJE6/cKAGAPm6k8mh0ddtO5hm3BAkEArnRu62ouYBFLmJqDT7tlli+kMDggl6jI
4YS8u0polae30SaNk4l+lpH2Qnj7A2e7KmNfoPDD+EbjWJoH6x3CAQJBAJA3LbF+
o6eNlGcMF95L1fmLB3rQ48gAhVVCrkgM2yXRink2rYALSGbDg8Q63XVh+gsVhRNP
Vi9aKJcWtoBcKik=
-----END PRIVATE KEY-----
";

    type Ca = CertifiedIssuer<'static, KeyPair>;

    fn new_ca(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    }

    struct Leaf {
        /// Leaf then CA, as a Secret's tls.crt holds them.
        chain_pem: String,
        key_pem: String,
        der: CertificateDer<'static>,
    }

    fn leaf_with(
        ca: &Ca,
        names: &[&str],
        key: &KeyPair,
        params: Option<CertificateParams>,
    ) -> Leaf {
        let mut params =
            params.unwrap_or_else(|| CertificateParams::new(Vec::<String>::new()).unwrap());
        params.subject_alt_names =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap()
                .subject_alt_names;
        let cert = params.signed_by(key, ca).unwrap();
        Leaf {
            chain_pem: format!("{}{}", cert.pem(), ca.pem()),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn leaf(ca: &Ca, names: &[&str]) -> Leaf {
        leaf_with(ca, names, &KeyPair::generate().unwrap(), None)
    }

    fn secret(type_: Option<&str>, data: &[(&str, &[u8])]) -> Secret {
        Secret {
            metadata: ObjectMeta {
                namespace: Some("apps".into()),
                name: Some("web-tls".into()),
                ..Default::default()
            },
            type_: type_.map(str::to_string),
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        }
    }

    fn tls_secret(crt: &str, key: &str) -> Secret {
        secret(
            Some(SECRET_TYPE_TLS),
            &[(TLS_CERT, crt.as_bytes()), (TLS_KEY, key.as_bytes())],
        )
    }

    fn pem_of(label: &str, der: &[u8]) -> String {
        use std::fmt::Write;
        // Base64 by hand: no base64 crate for one test helper.
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut b64 = String::new();
        for chunk in der.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
            for i in 0..4 {
                if i <= chunk.len() {
                    b64.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    b64.push('=');
                }
            }
        }
        let mut out = format!("-----BEGIN {label}-----\n");
        for line in b64.as_bytes().chunks(64) {
            writeln!(out, "{}", std::str::from_utf8(line).unwrap()).unwrap();
        }
        writeln!(out, "-----END {label}-----").unwrap();
        out
    }

    /// The inner key of a PKCS#8 PrivateKeyInfo: PKCS#1 for RSA, SEC1 for EC.
    fn pkcs8_inner(pem: &str) -> Vec<u8> {
        let PrivateKeyDer::Pkcs8(k) = PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap() else {
            panic!("not PKCS#8");
        };
        let (seq, _) = der_expect(k.secret_pkcs8_der(), DER_SEQUENCE).unwrap();
        let (_, rest) = der_expect(seq, DER_INTEGER).unwrap();
        let (_, rest) = der_expect(rest, DER_SEQUENCE).unwrap();
        der_expect(rest, DER_OCTET_STRING).unwrap().0.to_vec()
    }

    #[test]
    fn a_tls_secret_with_a_chain_loads_leaf_first() {
        let ca = new_ca("weft test CA");
        let leaf = leaf(&ca, &["web.example.com"]);
        let key = certified_key_from_secret(&tls_secret(&leaf.chain_pem, &leaf.key_pem)).unwrap();
        assert_eq!(key.cert.len(), 2);
        assert_eq!(key.cert[0], leaf.der);
        assert_eq!(&key.cert[1], ca.der());
    }

    #[test]
    fn rsa_pkcs1_rsa_pkcs8_sec1_and_ed25519_keys_load() {
        let ca = new_ca("weft test CA");
        let rsa = KeyPair::from_pem(RSA_2048).unwrap();
        let rsa_leaf = leaf_with(&ca, &["rsa.example.com"], &rsa, None);
        let pkcs1 = pem_of("RSA PRIVATE KEY", &pkcs8_inner(RSA_2048));
        for key in [RSA_2048.to_string(), pkcs1] {
            certified_key_from_secret(&tls_secret(&rsa_leaf.chain_pem, &key)).unwrap();
        }

        let ec = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let ec_leaf = leaf_with(&ca, &["ec.example.com"], &ec, None);
        let sec1 = pem_of("EC PRIVATE KEY", &pkcs8_inner(&ec.serialize_pem()));
        certified_key_from_secret(&tls_secret(&ec_leaf.chain_pem, &sec1)).unwrap();

        let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let ed_leaf = leaf_with(&ca, &["ed.example.com"], &ed, None);
        certified_key_from_secret(&tls_secret(&ed_leaf.chain_pem, &ed_leaf.key_pem)).unwrap();
    }

    #[test]
    fn an_expired_or_not_yet_valid_certificate_still_loads() {
        let ca = new_ca("weft test CA");
        for (from, to) in [((2000, 1, 1), (2001, 1, 1)), ((4000, 1, 1), (4001, 1, 1))] {
            let mut params = CertificateParams::default();
            params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
            params.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
            let leaf = leaf_with(
                &ca,
                &["old.example.com"],
                &KeyPair::generate().unwrap(),
                Some(params),
            );
            certified_key_from_secret(&tls_secret(&leaf.chain_pem, &leaf.key_pem)).unwrap();
        }
    }

    #[test]
    fn each_bad_secret_is_refused_with_its_own_reason() {
        let ca = new_ca("weft test CA");
        let good = leaf(&ca, &["web.example.com"]);
        let other = leaf(&ca, &["web.example.com"]);
        let crt = good.chain_pem.as_bytes();
        let key = good.key_pem.as_bytes();
        let mut ed448 = vec![
            0x30, 0x47, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x71, 0x04, 0x3b,
            0x04, 0x39,
        ];
        ed448.extend([7u8; 57]);
        let mut p521_sec1 = vec![0x30, 0x50, 0x02, 0x01, 0x01, 0x04, 0x42];
        p521_sec1.extend([7u8; 66]);
        p521_sec1.extend([0xa0, 0x07, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23]);
        let garbage_pkcs8 = pem_of("PRIVATE KEY", b"\x30\x03\x02\x01\x00");
        let encrypted = pem_of("ENCRYPTED PRIVATE KEY", b"\x30\x03\x02\x01\x00");
        let ed448 = pem_of("PRIVATE KEY", &ed448);
        let p521 = pem_of("EC PRIVATE KEY", &p521_sec1);
        let cases: Vec<(Secret, &str)> = vec![
            (
                secret(Some("Opaque"), &[(TLS_CERT, crt), (TLS_KEY, key)]),
                "Secret apps/web-tls: type is \"Opaque\", a certificate needs type \"kubernetes.io/tls\"",
            ),
            (
                secret(None, &[(TLS_CERT, crt), (TLS_KEY, key)]),
                "type is \"Opaque\"",
            ),
            (secret(Some(SECRET_TYPE_TLS), &[(TLS_KEY, key)]), "Secret apps/web-tls: data has no \"tls.crt\""),
            (secret(Some(SECRET_TYPE_TLS), &[(TLS_CERT, crt)]), "Secret apps/web-tls: data has no \"tls.key\""),
            (
                secret(Some(SECRET_TYPE_TLS), &[(TLS_CERT, key), (TLS_KEY, key)]),
                "Secret apps/web-tls: tls.crt holds no PEM CERTIFICATE",
            ),
            (
                tls_secret(&pem_of("CERTIFICATE", b"not a certificate"), &good.key_pem),
                "tls.crt: the first certificate (the leaf) is not valid X.509",
            ),
            (
                tls_secret(&good.chain_pem, "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n"),
                "Secret apps/web-tls: tls.key: PEM: base64 decode error",
            ),
            (tls_secret(&good.chain_pem, ""), "tls.key: holds no PEM private key"),
            (tls_secret(&good.chain_pem, &good.chain_pem), "tls.key: holds no PEM private key"),
            (
                tls_secret(&good.chain_pem, &garbage_pkcs8),
                "tls.key: the PRIVATE KEY PEM section does not hold a DER private key",
            ),
            (
                tls_secret(&good.chain_pem, &encrypted),
                "tls.key is a PEM \"ENCRYPTED PRIVATE KEY\" section; weft serves RSA",
            ),
            (tls_secret(&good.chain_pem, &ed448), "tls.key is an Ed448 key; weft serves"),
            (tls_secret(&good.chain_pem, &p521), "tls.key is an ECDSA P-521 key; weft serves"),
            (tls_secret(&good.chain_pem, RSA_1024), "tls.key is an RSA key of 1024 bits; weft serves"),
            (
                tls_secret(&good.chain_pem, &other.key_pem),
                "Secret apps/web-tls: tls.key is not the key of the first certificate (the leaf) in tls.crt",
            ),
        ];
        for (secret, want) in cases {
            let got = certified_key_from_secret(&secret)
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(got.contains(want), "want {want:?}\n got {got:?}");
        }
    }

    #[test]
    fn sni_picks_exact_over_wildcard_over_default() {
        let ca = new_ca("weft test CA");
        let load = |names: &[&str]| {
            let l = leaf(&ca, names);
            certified_key_from_secret(&tls_secret(&l.chain_pem, &l.key_pem)).unwrap()
        };
        let (exact, wild, any) = (
            load(&["a.example.com"]),
            load(&["*.example.com"]),
            load(&["default"]),
        );
        let mut certs = SniCerts::new();
        assert!(certs.is_empty());
        certs.insert(&HostPattern::Any, any.clone());
        certs.insert(
            &HostPattern::gateway("*.example.com").unwrap(),
            wild.clone(),
        );
        certs.insert(
            &HostPattern::gateway("a.example.com").unwrap(),
            exact.clone(),
        );
        assert!(!certs.is_empty());
        let got = |sni| certs.get(sni).unwrap();
        assert!(Arc::ptr_eq(&got(Some("a.example.com")), &exact));
        assert!(
            Arc::ptr_eq(&got(Some("A.Example.COM.")), &exact),
            "normalized first"
        );
        assert!(Arc::ptr_eq(&got(Some("b.example.com")), &wild));
        assert!(Arc::ptr_eq(&got(Some("other.org")), &any));
        assert!(Arc::ptr_eq(&got(None), &any));

        let mut no_default = SniCerts::new();
        no_default.insert(&HostPattern::gateway("a.example.com").unwrap(), exact);
        assert!(no_default.get(Some("b.example.com")).is_none());
        assert!(no_default.get(None).is_none());
    }

    struct Handshake {
        leaf: CertificateDer<'static>,
        alpn: Option<Vec<u8>>,
    }

    /// A TLS handshake over an in-memory pipe: the client's view, or the
    /// client's error.
    async fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
        name: &str,
    ) -> Result<Handshake, String> {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let name = ServerName::try_from(name.to_string()).unwrap();
        let (client, _server) = tokio::join!(
            tokio_rustls::TlsConnector::from(client).connect(name, client_io),
            tokio_rustls::TlsAcceptor::from(server).accept(server_io),
        );
        let stream = client.map_err(|e| format!("{e:?}"))?;
        let conn = stream.get_ref().1;
        Ok(Handshake {
            leaf: conn.peer_certificates().unwrap()[0].clone(),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        })
    }

    #[tokio::test]
    async fn handshakes_get_the_certificate_of_their_sni_and_none_for_an_unknown_one() {
        let ca = new_ca("weft test CA");
        let a = leaf(&ca, &["a.example.com"]);
        let b = leaf(&ca, &["b.example.com"]);
        let mut certs = SniCerts::new();
        for (name, l) in [("a.example.com", &a), ("b.example.com", &b)] {
            let key = certified_key_from_secret(&tls_secret(&l.chain_pem, &l.key_pem)).unwrap();
            certs.insert(&HostPattern::gateway(name).unwrap(), key);
        }
        let server = server_config(Arc::new(CertResolver::fixed(443, Arc::new(certs))), true);
        let ca_pem = ca.pem();
        let client = || backend_client_config(&[ca_pem.as_bytes()], true).unwrap();

        let got = handshake(server.clone(), client(), "a.example.com")
            .await
            .unwrap();
        assert_eq!(got.leaf, a.der);
        assert_eq!(got.alpn.as_deref(), Some(&b"h2"[..]));
        let got = handshake(server.clone(), client(), "b.example.com")
            .await
            .unwrap();
        assert_eq!(got.leaf, b.der);

        // No certificate for c, no default: the handshake fails rather than
        // presenting a or b.
        let err = handshake(server, client(), "c.example.com")
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(
            err.contains("AlertReceived(AccessDenied)"),
            "the server refused it: {err}"
        );
    }

    #[tokio::test]
    async fn a_rotated_certificate_serves_from_the_next_handshake_on_the_same_config() {
        let ca = new_ca("weft test CA");
        let load =
            |l: &Leaf| certified_key_from_secret(&tls_secret(&l.chain_pem, &l.key_pem)).unwrap();
        let (old, new) = (leaf(&ca, &["a.example.com"]), leaf(&ca, &["a.example.com"]));
        let pattern = HostPattern::gateway("a.example.com").unwrap();
        let mut certs = SniCerts::new();
        certs.insert(&pattern, load(&old));
        // Stands for the proxy's swapped route table.
        let current = Arc::new(RwLock::new(Arc::new(certs)));
        let table = current.clone();
        let lookup: Arc<CertLookup> = Arc::new(move |port: u16, sni: Option<&str>| {
            assert_eq!(port, 8443);
            table.read().unwrap().get(sni)
        });
        let server = server_config(Arc::new(CertResolver::new(8443, lookup)), false);
        let ca_pem = ca.pem();
        let client = || backend_client_config(&[ca_pem.as_bytes()], false).unwrap();

        let got = handshake(server.clone(), client(), "a.example.com")
            .await
            .unwrap();
        assert_eq!(got.leaf, old.der);
        assert_eq!(got.alpn.as_deref(), Some(&b"http/1.1"[..]));
        let mut certs = SniCerts::new();
        certs.insert(&pattern, load(&new));
        *current.write().unwrap() = Arc::new(certs);
        let got = handshake(server, client(), "a.example.com").await.unwrap();
        assert_eq!(got.leaf, new.der);
    }

    #[tokio::test]
    async fn backend_client_checks_the_servers_hostname_against_the_given_cas() {
        let ca = new_ca("backend CA");
        let backend = leaf(&ca, &["backend.apps.svc"]);
        let key =
            certified_key_from_secret(&tls_secret(&backend.chain_pem, &backend.key_pem)).unwrap();
        let mut certs = SniCerts::new();
        certs.insert(&HostPattern::Any, key);
        let server = server_config(Arc::new(CertResolver::fixed(443, Arc::new(certs))), true);
        let ca_pem = ca.pem();
        let client = backend_client_config(&[b"", ca_pem.as_bytes()], true).unwrap();

        let got = handshake(server.clone(), client.clone(), "backend.apps.svc")
            .await
            .unwrap();
        assert_eq!(got.leaf, backend.der);
        let err = handshake(server.clone(), client, "other.apps.svc")
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(err.contains("NotValidForName"), "{err}");

        // Another CA: the same server is not trusted.
        let stranger = new_ca("stranger CA").pem();
        let client = backend_client_config(&[stranger.as_bytes()], true).unwrap();
        let err = handshake(server, client, "backend.apps.svc")
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(err.contains("UnknownIssuer"), "{err}");
    }

    #[test]
    fn backend_client_config_needs_a_ca_certificate() {
        let err = backend_client_config(&[b"", b"no pem here"], false)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "no usable CA certificate in 2 CA bundle(s) (0 certificate(s) refused as trust anchors)");
        let junk = pem_of("CERTIFICATE", b"junk");
        let err = backend_client_config(&[junk.as_bytes()], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("1 certificate(s) refused"), "{err}");
        let err = backend_client_config(
            &[b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n"],
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("CA bundle #0: PEM:"), "{err}");
    }

    // --- peek_sni

    /// The first flight of a real rustls client: one record with its
    /// ClientHello.
    fn client_hello(sni: Option<&str>) -> Vec<u8> {
        let mut config = ClientConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(VERSIONS)
            .unwrap()
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
        config.alpn_protocols = alpn(true);
        let name = match sni {
            Some(host) => ServerName::try_from(host.to_string()).unwrap(),
            // An IP address is never sent as SNI.
            None => ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
        };
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).unwrap();
        }
        assert_eq!(out[0], CONTENT_HANDSHAKE);
        assert_eq!(
            usize::from(u16::from_be_bytes([out[3], out[4]])),
            out.len() - RECORD_HEADER,
            "one record"
        );
        out
    }

    /// The same handshake message in records of at most `size` bytes.
    fn refragment(hello: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in hello[RECORD_HEADER..].chunks(size) {
            out.extend([CONTENT_HANDSHAKE, 3, 1]);
            out.extend(u16::try_from(chunk.len()).unwrap().to_be_bytes());
            out.extend(chunk);
        }
        out
    }

    /// A ClientHello record with these extensions (type, data).
    fn hello_with(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend([0x11; 32]);
        body.push(0); // session id
        body.extend([0, 2, 0x13, 0x01]); // one suite
        body.extend([1, 0]); // null compression
        let mut exts = Vec::new();
        for (kind, data) in extensions {
            exts.extend(kind.to_be_bytes());
            exts.extend(u16::try_from(data.len()).unwrap().to_be_bytes());
            exts.extend(data);
        }
        body.extend(u16::try_from(exts.len()).unwrap().to_be_bytes());
        body.extend(exts);
        let mut msg = vec![HANDSHAKE_CLIENT_HELLO, 0];
        msg.extend(u16::try_from(body.len()).unwrap().to_be_bytes());
        msg.extend(body);
        let mut out = vec![CONTENT_HANDSHAKE, 3, 1];
        out.extend(u16::try_from(msg.len()).unwrap().to_be_bytes());
        out.extend(msg);
        out
    }

    /// A server_name extension's data with these (name_type, name) entries.
    fn sni_ext(names: &[(u8, &[u8])]) -> (u16, Vec<u8>) {
        let mut list = Vec::new();
        for (kind, name) in names {
            list.push(*kind);
            list.extend(u16::try_from(name.len()).unwrap().to_be_bytes());
            list.extend(*name);
        }
        let mut data = u16::try_from(list.len()).unwrap().to_be_bytes().to_vec();
        data.extend(list);
        (EXTENSION_SERVER_NAME, data)
    }

    fn sni(host: &str) -> SniPeek {
        SniPeek::Sni(Some(host.to_string()))
    }

    #[test]
    fn a_real_client_hello_yields_its_sni_and_every_truncation_needs_more() {
        for (name, want) in [
            (Some("a.example.com"), sni("a.example.com")),
            (None, SniPeek::Sni(None)),
        ] {
            let hello = client_hello(name);
            assert_eq!(peek_sni(&hello), want);
            // Bytes after the hello (the client's next records) change nothing.
            assert_eq!(
                peek_sni(&[&hello[..], b"\x17\x03\x03\x00\x10more"].concat()),
                want
            );
            for n in 0..hello.len() {
                assert_eq!(
                    peek_sni(&hello[..n]),
                    SniPeek::NeedMore,
                    "{n} of {} bytes",
                    hello.len()
                );
            }
        }
    }

    #[test]
    fn other_protocols_are_told_apart_from_the_first_bytes() {
        assert_eq!(peek_sni(b""), SniPeek::NeedMore);
        assert_eq!(peek_sni(b"G"), SniPeek::NotTls);
        assert_eq!(peek_sni(b"GET / HTTP/1.1\r\n"), SniPeek::NotTls);
        assert_eq!(peek_sni(b"SSH-2.0-OpenSSH_9.6\r\n"), SniPeek::NotTls);
        assert_eq!(peek_sni(b"\x16"), SniPeek::NeedMore);
        assert_eq!(
            peek_sni(b"\x16\x02"),
            SniPeek::NotTls,
            "SSL 2 record version"
        );
        assert_eq!(
            peek_sni(b"\x80\x2e\x01\x03\x01"),
            SniPeek::NotTls,
            "SSL 2 compatible hello"
        );
        assert_eq!(
            peek_sni(b"\x16\x03\x01\x00\x00"),
            SniPeek::NotTls,
            "empty fragment"
        );
        assert_eq!(
            peek_sni(b"\x16\x03\x01\x40\x01"),
            SniPeek::NotTls,
            "fragment over 2^14"
        );
        assert_eq!(
            peek_sni(b"\x16\x03\x01\x00\x04\x02"),
            SniPeek::NotTls,
            "ServerHello"
        );
        assert_eq!(
            peek_sni(b"\x15\x03\x03\x00\x02\x02\x28"),
            SniPeek::NotTls,
            "alert"
        );
    }

    #[test]
    fn malformed_or_ambiguous_server_names_are_refused() {
        let one = sni_ext(&[(0, b"a.example.com")]);
        assert_eq!(
            peek_sni(&hello_with(&[(10, vec![0, 2, 0, 29]), one.clone()])),
            sni("a.example.com")
        );
        assert_eq!(peek_sni(&hello_with(&[])), SniPeek::Sni(None));
        assert_eq!(
            peek_sni(&hello_with(&[
                one.clone(),
                sni_ext(&[(0, b"b.example.com")])
            ])),
            SniPeek::NotTls
        );
        assert_eq!(
            peek_sni(&hello_with(&[sni_ext(&[
                (0, b"a.example.com"),
                (0, b"b.example.com")
            ])])),
            SniPeek::NotTls
        );
        assert_eq!(
            peek_sni(&hello_with(&[sni_ext(&[(0, b"a.exa mple.com")])])),
            SniPeek::NotTls
        );
        assert_eq!(
            peek_sni(&hello_with(&[sni_ext(&[(0, "é.com".as_bytes())])])),
            SniPeek::NotTls
        );
        assert_eq!(
            peek_sni(&hello_with(&[sni_ext(&[(0, b"")])])),
            SniPeek::NotTls
        );
        assert_eq!(peek_sni(&hello_with(&[sni_ext(&[])])), SniPeek::NotTls);
        // An unknown name type ends what can be read of the list.
        assert_eq!(
            peek_sni(&hello_with(&[sni_ext(&[(0, b"a.example.com"), (7, b"x")])])),
            sni("a.example.com")
        );
        // Bytes after the extensions inside the handshake message.
        let mut trailing = hello_with(&[one]);
        trailing.push(0);
        let (rec, msg) = (
            u16::from_be_bytes([trailing[3], trailing[4]]) + 1,
            u16::from_be_bytes([trailing[7], trailing[8]]) + 1,
        );
        trailing[3..5].copy_from_slice(&rec.to_be_bytes());
        trailing[7..9].copy_from_slice(&msg.to_be_bytes());
        assert_eq!(peek_sni(&trailing), SniPeek::NotTls);
    }

    #[test]
    fn the_peek_is_bounded() {
        // A hello announced bigger than the limit is refused at once.
        assert_eq!(
            peek_sni(b"\x16\x03\x01\x40\x00\x01\x00\x40\x00"),
            SniPeek::NotTls
        );
        // One-byte records never complete a 4000-byte hello within the limit.
        let mut flood = refragment(
            &[&[0u8; 5][..], b"\x01\x00\x0f\xa0", &[0u8; 4000]].concat(),
            1,
        );
        flood.truncate(PEEK_LIMIT);
        assert_eq!(peek_sni(&flood[..PEEK_LIMIT - 1]), SniPeek::NeedMore);
        assert_eq!(peek_sni(&flood), SniPeek::NotTls);
    }

    proptest! {
        #[test]
        fn a_fragmented_client_hello_is_joined_and_its_truncations_need_more(size in 1usize..400) {
            let hello = refragment(&client_hello(Some("b.example.com")), size);
            prop_assert_eq!(peek_sni(&hello), sni("b.example.com"));
            for n in 0..hello.len() {
                prop_assert_eq!(peek_sni(&hello[..n]), SniPeek::NeedMore);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let _ = peek_sni(&bytes);
            // Past a plausible header, where the parser goes deeper.
            let _ = peek_sni(&[&b"\x16\x03\x01"[..], &bytes].concat());
            let _ = peek_sni(&[&b"\x16\x03\x01\x0b\xb8\x01\x00"[..], &bytes].concat());
        }

        #[test]
        fn corrupted_client_hellos_never_panic_and_full_buffers_never_need_more(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
            pad in 0usize..(2 * PEEK_LIMIT),
        ) {
            let mut hello = refragment(&client_hello(Some("c.example.com")), 97);
            for (at, byte) in edits {
                let i = at.index(hello.len());
                hello[i] = byte;
            }
            let _ = peek_sni(&hello[..cut.index(hello.len())]);
            hello.resize(hello.len() + pad, 0x16);
            if hello.len() >= PEEK_LIMIT {
                prop_assert_ne!(peek_sni(&hello), SniPeek::NeedMore);
            }
        }
    }
}
