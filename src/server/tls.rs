//! Serving certificate, loaded before binding and re-read when its files change.
//!
//! Each TLS handshake stats the two files (following symlinks, so the
//! `..data` symlink swap of a Secret volume and cert-manager renewals are both
//! seen) and reloads them when device, inode, size or mtime differ. A change
//! that cannot be loaded (a half-written pair, a key that does not match)
//! keeps the previous certificate and is retried at the next change.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tracing::{info, warn};

use crate::server::metrics::Metrics;

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}; pass an existing PEM file (credgate certs writes one)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate; pass the serving certificate (tls.crt)")]
    NoCertificate { path: PathBuf },
    #[error(
        "{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1); pass the key of the serving certificate (tls.key)"
    )]
    NoKey { path: PathBuf },
    #[error(
        "{cert} and {key} cannot be used together: {source}; pass a certificate with its own key"
    )]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error(
        "{path} holds a certificate that cannot be a client CA: {source}; pass the CA that signed the API server's client certificate"
    )]
    ClientCa {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error(
        "{path} holds no PEM certificate; pass the CA that signed the API server's client certificate"
    )]
    NoClientCa { path: PathBuf },
    #[error("client verification cannot be set up: {0}")]
    ClientVerifier(String),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A client verifier that also requires one of `names` in the certificate:
/// a CA that signs other clients too (a cluster's own CA) then still lets
/// only the API server's certificate through.
#[derive(Debug)]
struct NamedClient {
    inner: Arc<dyn ClientCertVerifier>,
    names: Vec<String>,
}

/// The common names and DNS names of a DER certificate.
fn names_in(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = parsed
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        names.extend(san.value.general_names.iter().filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            _ => None,
        }));
    }
    names
}

impl ClientCertVerifier for NamedClient {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let names = names_in(end_entity);
        if names.iter().any(|n| self.names.contains(n)) {
            return Ok(verified);
        }
        warn!(presented = ?names, expected = ?self.names, "refused a client certificate signed by the client CA but not issued to the API server");
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::ApplicationVerificationFailure,
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Identity of a file's current content, cheap to read on every handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime: m.mtime(),
        mtime_nsec: m.mtime_nsec(),
    })
}

struct Current {
    key: Arc<CertifiedKey>,
    stamps: (Option<Stamp>, Option<Stamp>),
    failed: Option<(Option<Stamp>, Option<Stamp>)>,
}

/// A [`ResolvesServerCert`] that follows the files on disk.
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    metrics: Arc<Metrics>,
    current: RwLock<Current>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("cert", &self.cert_path)
            .field("key", &self.key_path)
            .finish()
    }
}

impl CertStore {
    /// Loads the pair now; an unusable pair is an error (credgate does not start).
    pub fn load(
        cert_path: &Path,
        key_path: &Path,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let stamps = (stamp(cert_path), stamp(key_path));
        let key = Arc::new(load_pair(cert_path, key_path, &provider)?);
        record_expiry(&metrics, &key);
        Ok(Arc::new(CertStore {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            provider,
            metrics,
            current: RwLock::new(Current {
                key,
                stamps,
                failed: None,
            }),
        }))
    }

    /// A rustls server configuration: TLS 1.2 and 1.3, ALPN h2 and http/1.1.
    ///
    /// With `client_ca`, a client must present a certificate that CA signed
    /// (the API server's, see `--client-ca`), and when `client_names` is not
    /// empty, one that carries one of those names as its common name or a DNS
    /// name (`--client-name`): any other is refused during the handshake,
    /// before a byte of HTTP is read.
    pub fn server_config(
        self: &Arc<Self>,
        client_ca: Option<&Path>,
        client_names: &[String],
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let builder = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&bytes).flatten() {
                    roots.add(cert).map_err(|source| TlsError::ClientCa {
                        path: path.to_owned(),
                        source,
                    })?;
                }
                if roots.is_empty() {
                    return Err(TlsError::NoClientCa {
                        path: path.to_owned(),
                    });
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    self.provider.clone(),
                )
                .build()
                .map_err(|e| TlsError::ClientVerifier(e.to_string()))?;
                match client_names {
                    [] => builder.with_client_cert_verifier(verifier),
                    names => builder.with_client_cert_verifier(Arc::new(NamedClient {
                        inner: verifier,
                        names: names.to_vec(),
                    })),
                }
            }
        };
        let mut config = builder.with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The certificate to serve now, reloaded first if the files changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let stamps = (stamp(&self.cert_path), stamp(&self.key_path));
        {
            let current = self.current.read().unwrap_or_else(|e| e.into_inner());
            if current.stamps == stamps || current.failed == Some(stamps) {
                return current.key.clone();
            }
        }
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if current.stamps == stamps || current.failed == Some(stamps) {
            return current.key.clone();
        }
        match load_pair(&self.cert_path, &self.key_path, &self.provider) {
            Ok(key) => {
                info!(cert = %self.cert_path.display(), "serving certificate reloaded");
                self.metrics.tls_reloaded(true);
                record_expiry(&self.metrics, &key);
                *current = Current {
                    key: Arc::new(key),
                    stamps,
                    failed: None,
                };
            }
            Err(error) => {
                warn!(%error, "changed certificate files cannot be used yet; serving the previous certificate");
                self.metrics.tls_reloaded(false);
                current.failed = Some(stamps);
            }
        }
        current.key.clone()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn record_expiry(metrics: &Metrics, key: &CertifiedKey) {
    if let Some(not_after) = key
        .cert
        .first()
        .and_then(|der| crate::certs::not_after_der(der))
    {
        metrics.certificate_loaded(not_after.unix_timestamp());
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn load_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey {
        path: key_path.to_owned(),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Mismatch {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
        source,
    })
}
