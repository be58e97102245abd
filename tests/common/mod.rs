//! Helpers for component tests: a credgate server on 127.0.0.1 with fresh
//! rcgen certificates, and HTTPS clients that trust only its CA.
#![allow(dead_code)]

use credgate::admission::Admission;
use credgate::certs;
use credgate::policy::Settings;
use credgate::server::http::Limits;
use credgate::server::metrics::Metrics;
use credgate::server::{Options, Server};
use credgate::state::index::{Index, NamespaceInfo};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const BODY_LIMIT: usize = 7 * 1024 * 1024;

/// A running server; dropped or [`TestServer::stop`]ped, it shuts down.
pub struct TestServer {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// A synced snapshot: `team-a` and `team-b` are projects of department `rnd`;
/// `runai` is the credentials namespace.
pub fn test_index() -> Index {
    let mut index = Index::default();
    for ns in ["team-a", "team-b"] {
        index.set_namespace(
            ns,
            NamespaceInfo {
                project: Some(ns.into()),
                department: Some("rnd".into()),
                ..Default::default()
            },
        );
    }
    index.set_namespace("runai", NamespaceInfo::default());
    index
}

pub fn issue(out: &Path, new_ca: bool) -> certs::Issued {
    certs::issue(&certs::Request {
        out: out.to_owned(),
        dns: vec!["localhost".into()],
        ips: vec!["127.0.0.1".parse().unwrap()],
        days: 1,
        new_ca,
        client: None,
    })
    .unwrap()
}

pub fn options(cert: PathBuf, key: PathBuf) -> Options {
    Options {
        addr: "127.0.0.1:0".parse().unwrap(),
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        tls_cert: cert,
        tls_key: key,
        client_ca: None,
        client_names: Vec::new(),
        limits: Limits {
            max_body_bytes: BODY_LIMIT,
            body_timeout: Duration::from_secs(2),
        },
        header_timeout: Duration::from_secs(1),
        shutdown_grace: Duration::from_secs(10),
        max_connections: 256,
    }
}

impl TestServer {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let issued = issue(dir.path(), false);
        Self::start_with(dir, options(issued.tls_cert, issued.tls_key)).await
    }

    pub async fn start_with(dir: tempfile::TempDir, options: Options) -> Self {
        let admission = Admission::with_index(Settings::default(), test_index());
        let server = Server::bind(
            options,
            admission,
            Arc::new(Metrics::default()),
            Arc::default(),
        )
        .await
        .unwrap();
        let (addr, admin) = (server.webhook_addr(), server.admin_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            admin,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("ca.crt")).unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// Signals shutdown; returns the server task to await.
    pub fn begin_stop(&mut self) -> JoinHandle<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.take().unwrap()
    }

    pub async fn stop(mut self) {
        let task = self.begin_stop();
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("server stops")
            .unwrap();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A rustls client configuration trusting only `ca_pem`.
pub fn tls_config(ca_pem: &[u8], alpn: &[&[u8]]) -> rustls::ClientConfig {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// An HTTPS client trusting only `ca_pem`; `http2` selects h2 by ALPN, else HTTP/1.1.
pub fn client(ca_pem: &[u8], http2: bool) -> reqwest::Client {
    let alpn: &[&[u8]] = if http2 { &[b"h2"] } else { &[b"http/1.1"] };
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config(ca_pem, alpn))
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0);
    if !http2 {
        builder = builder.http1_only();
    }
    builder.build().unwrap()
}

/// The `response` of an AdmissionReview answer.
pub async fn review_response(resp: reqwest::Response) -> serde_json::Value {
    assert_eq!(resp.status(), 200, "an AdmissionReview answer");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(body["kind"], "AdmissionReview");
    body["response"].clone()
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A child process that is killed (by pid) if the test ends before it is waited for.
pub struct KillOnDrop(pub Option<std::process::Child>);

impl KillOnDrop {
    pub fn take(&mut self) -> std::process::Child {
        self.0.take().expect("child already taken")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
