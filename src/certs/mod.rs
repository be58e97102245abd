//! Development and built-in certificates: an ECDSA P-256 CA and a serving
//! certificate signed by it (rcgen).
//!
//! An existing CA in the output folder is reused, so issuing again rotates the
//! serving certificate without changing the `caBundle` the API server trusts.

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use rustls::pki_types::pem::PemObject as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

pub mod builtin;

/// Names the serving certificate covers when none are given.
pub const DEFAULT_DNS: &[&str] = &[
    "localhost",
    "credgate",
    "credgate.credgate-system",
    "credgate.credgate-system.svc",
    "credgate.credgate-system.svc.cluster.local",
];
pub const DEFAULT_IPS: &[&str] = &["127.0.0.1"];

/// What to issue.
#[derive(Clone, Debug)]
pub struct Request {
    pub out: PathBuf,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    /// Validity of the serving certificate.
    pub days: u32,
    /// Make a new CA even if the folder has one.
    pub new_ca: bool,
    /// Issue a client certificate with this common name instead of a serving
    /// one (for the API server to present to credgate).
    pub client: Option<String>,
}

/// The files written, and the CA bundle for `caBundle`.
#[derive(Clone, Debug)]
pub struct Issued {
    pub ca_cert: PathBuf,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub ca_reused: bool,
    /// Base64 of the CA certificate PEM, as `caBundle` wants it.
    pub ca_bundle: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the CA in {path} cannot be used ({source}); pass --new-ca to replace it")]
    BadCa { path: PathBuf, source: rcgen::Error },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct Pair {
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for Pair {
    // Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

/// A new self-signed ECDSA P-256 CA, valid for `validity` from now.
pub fn new_ca(validity: std::time::Duration) -> Result<Pair, CertError> {
    let now = OffsetDateTime::now_utc();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = name("credgate CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + validity;
    Ok(Pair {
        cert: params.self_signed(&key)?.pem(),
        key: key.serialize_pem(),
    })
}

/// A serving certificate for `dns` and `ips` signed by `ca`, valid for `validity` from now.
pub fn serving(
    ca: &Pair,
    dns: &[String],
    ips: &[IpAddr],
    validity: std::time::Duration,
) -> Result<Pair, CertError> {
    let mut params = CertificateParams::new(dns.to_vec())?;
    params
        .subject_alt_names
        .extend(ips.iter().copied().map(SanType::IpAddress));
    params.distinguished_name = name(dns.first().map_or("credgate", String::as_str));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    signed(ca, params, validity)
}

/// A client certificate for `common_name` signed by `ca`, valid for
/// `validity` from now: what the API server presents to credgate when
/// `--client-ca` is on.
pub fn client(
    ca: &Pair,
    common_name: &str,
    validity: std::time::Duration,
) -> Result<Pair, CertError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = name(common_name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    signed(ca, params, validity)
}

/// Signs a leaf certificate of `params` with `ca`, with a new P-256 key.
fn signed(
    ca: &Pair,
    mut params: CertificateParams,
    validity: std::time::Duration,
) -> Result<Pair, CertError> {
    let now = OffsetDateTime::now_utc();
    let ca_key = KeyPair::from_pem(&ca.key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, &ca_key)?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + validity;
    Ok(Pair {
        cert: params.signed_by(&key, &issuer)?.pem(),
        key: key.serialize_pem(),
    })
}

/// When the first certificate of a PEM stops being valid (`None` if unreadable).
pub fn not_after(cert_pem: &str) -> Option<OffsetDateTime> {
    let der = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).ok()?;
    not_after_der(&der)
}

/// [`not_after`] of a DER certificate.
pub fn not_after_der(der: &[u8]) -> Option<OffsetDateTime> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.to_datetime())
}

/// The SANs to use: the given ones, or the defaults when none are given.
pub fn names_or_defaults(dns: &[String], ips: &[IpAddr]) -> (Vec<String>, Vec<IpAddr>) {
    if dns.is_empty() && ips.is_empty() {
        (
            DEFAULT_DNS.iter().map(|s| (*s).to_owned()).collect(),
            DEFAULT_IPS.iter().filter_map(|s| s.parse().ok()).collect(),
        )
    } else {
        (dns.to_vec(), ips.to_vec())
    }
}

/// Issues (or renews) the serving certificate, writing every file atomically.
pub fn issue(req: &Request) -> Result<Issued, CertError> {
    std::fs::create_dir_all(&req.out).map_err(|source| CertError::Write {
        path: req.out.clone(),
        source,
    })?;
    let ca_cert_path = req.out.join("ca.crt");
    let ca_key_path = req.out.join("ca.key");

    let reuse = !req.new_ca && ca_cert_path.exists() && ca_key_path.exists();
    let ca = if reuse {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| CertError::Read {
                path: p.to_owned(),
                source,
            })
        };
        let ca = Pair {
            cert: read(&ca_cert_path)?,
            key: read(&ca_key_path)?,
        };
        let check = KeyPair::from_pem(&ca.key)
            .and_then(|key| Issuer::from_ca_cert_pem(&ca.cert, key).map(|_| ()));
        check.map_err(|source| CertError::BadCa {
            path: ca_cert_path.clone(),
            source,
        })?;
        ca
    } else {
        let ca = new_ca(std::time::Duration::from_secs(3650 * 86_400))?;
        write(&ca_key_path, ca.key.as_bytes(), true)?;
        write(&ca_cert_path, ca.cert.as_bytes(), false)?;
        ca
    };
    let validity = std::time::Duration::from_secs(u64::from(req.days) * 86_400);
    let pair = match &req.client {
        Some(common_name) => client(&ca, common_name, validity)?,
        None => {
            let (dns, ips) = names_or_defaults(&req.dns, &req.ips);
            serving(&ca, &dns, &ips, validity)?
        }
    };
    let tls_cert = req.out.join("tls.crt");
    let tls_key = req.out.join("tls.key");
    write_pair(&pair, &tls_cert, &tls_key)?;
    Ok(Issued {
        ca_cert: ca_cert_path,
        tls_cert,
        tls_key,
        ca_reused: reuse,
        ca_bundle: base64::engine::general_purpose::STANDARD.encode(&ca.cert),
    })
}

/// Writes a serving pair for a server that reloads on change. Key first: a
/// server that reloads between the two renames sees a mismatched pair, refuses
/// it and keeps serving the old one.
pub fn write_pair(pair: &Pair, cert: &Path, key: &Path) -> Result<(), CertError> {
    write(key, pair.key.as_bytes(), true)?;
    write(cert, pair.cert.as_bytes(), false)
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Writes through a temporary file and a rename, so readers never see half a file.
fn write(path: &Path, contents: &[u8], private: bool) -> Result<(), CertError> {
    let err = |source| CertError::Write {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(err)?;
    file.write_all(contents).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_then_renews_with_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let req = Request {
            out: dir.path().to_owned(),
            dns: vec![],
            ips: vec![],
            days: 30,
            new_ca: false,
            client: None,
        };
        let first = issue(&req).unwrap();
        assert!(!first.ca_reused);
        let cert1 = std::fs::read(&first.tls_cert).unwrap();
        let second = issue(&req).unwrap();
        assert!(second.ca_reused);
        let expires = not_after(&std::fs::read_to_string(&second.tls_cert).unwrap()).unwrap();
        let days = (expires - OffsetDateTime::now_utc()).whole_days();
        assert!((29..=30).contains(&days), "{days}");
        assert_eq!(first.ca_bundle, second.ca_bundle);
        assert_ne!(cert1, std::fs::read(&second.tls_cert).unwrap());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&second.tls_key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let third = issue(&Request {
            new_ca: true,
            client: None,
            ..req
        })
        .unwrap();
        assert_ne!(third.ca_bundle, first.ca_bundle);
    }
}
