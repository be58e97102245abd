//! Start-up, certificate rotation and graceful shutdown, in process and as the real binary.

mod common;

use common::{TestServer, client, fixture, issue, options, review_response};
use credgate::admission::Admission;
use credgate::policy::Settings;
use credgate::server::Server;
use credgate::server::metrics::Metrics;
use std::io::BufRead as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn validate_ok(server: &TestServer, ca: &[u8]) -> Result<(), reqwest::Error> {
    let resp = client(ca, true)
        .post(server.url("/validate"))
        .body(fixture("secret-access-key-create.json"))
        .send()
        .await?;
    assert_eq!(review_response(resp).await["allowed"], true);
    Ok(())
}

async fn metric(server: &TestServer, name: &str) -> String {
    let text = client(&server.ca_pem(), false)
        .get(server.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn rotated_files_are_served_on_the_next_connection() {
    let server = TestServer::start().await;
    let dir = server.dir.path().to_owned();
    let old_ca = server.ca_pem();
    validate_ok(&server, &old_ca).await.unwrap();

    // A half-written change is refused and the previous certificate stays.
    std::fs::write(dir.join("tls.crt"), b"-----BEGIN CERTIFICATE-----\ngarbage").unwrap();
    validate_ok(&server, &old_ca)
        .await
        .expect("previous certificate still served");
    assert_eq!(
        metric(&server, "credgate_tls_reload_failures_total").await,
        "credgate_tls_reload_failures_total 1"
    );

    // cert-manager style: new files (here with a new CA) replace the old ones.
    let renewed = issue(&dir, true);
    let new_ca = std::fs::read(&renewed.ca_cert).unwrap();
    validate_ok(&server, &new_ca)
        .await
        .expect("new certificate served");
    assert!(
        validate_ok(&server, &old_ca).await.is_err(),
        "the old CA no longer verifies the server"
    );
    assert_eq!(
        metric(&server, "credgate_tls_reloads_total").await,
        "credgate_tls_reloads_total 1"
    );
    // Seconds until the certificate in use expires (issued for one day).
    let expiry = metric(&server, "credgate_certificate_expiry_seconds ").await;
    let seconds: i64 = expiry.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((86_000..=86_400).contains(&seconds), "{expiry}");
    server.stop().await;
}

#[tokio::test]
async fn secret_volume_symlink_swap_is_followed() {
    // Kubernetes Secret volume layout: tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>/
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let v1 = issue(&root.join("..v1"), true);
    std::os::unix::fs::symlink("..v1", root.join("..data")).unwrap();
    for file in ["tls.crt", "tls.key", "ca.crt"] {
        std::os::unix::fs::symlink(Path::new("..data").join(file), root.join(file)).unwrap();
    }
    let opts = options(root.join("tls.crt"), root.join("tls.key"));
    let server = TestServer::start_with(dir, opts).await;
    let ca1 = std::fs::read(&v1.ca_cert).unwrap();
    validate_ok(&server, &ca1).await.unwrap();

    let root = server.dir.path();
    let v2 = issue(&root.join("..v2"), true);
    std::os::unix::fs::symlink("..v2", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    let ca2 = std::fs::read(&v2.ca_cert).unwrap();
    validate_ok(&server, &ca2)
        .await
        .expect("certificate behind the swapped symlink served");
    assert!(validate_ok(&server, &ca1).await.is_err());
    server.stop().await;
}

#[tokio::test]
async fn unusable_certificate_files_fail_the_start_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let a = issue(&dir.path().join("a"), true);
    let b = issue(&dir.path().join("b"), true);
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a pem file").unwrap();
    let cases = [
        (
            dir.path().join("missing.crt"),
            a.tls_key.clone(),
            "cannot read",
        ),
        (
            garbage.clone(),
            a.tls_key.clone(),
            "holds no PEM certificate",
        ),
        (
            a.tls_cert.clone(),
            garbage.clone(),
            "holds no PEM private key",
        ),
        (
            a.tls_cert.clone(),
            b.tls_key.clone(),
            "cannot be used together",
        ),
    ];
    for (cert, key, fragment) in cases {
        let admission = Admission::with_index(Settings::default(), Default::default());
        let result = Server::bind(
            options(cert, key),
            admission,
            Arc::new(Metrics::default()),
            Arc::default(),
        )
        .await;
        let message = result.err().expect("bind must fail").to_string();
        assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
    }
}

#[tokio::test]
async fn shutdown_turns_readiness_off_and_finishes_in_flight_requests() {
    let mut server = TestServer::start().await;
    let admin = client(&server.ca_pem(), false);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(common::tls_config(
        &server.ca_pem(),
        &[b"http/1.1"],
    )));
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut tls = connector
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let body = fixture("secret-access-key-create.json");
    let (first, rest) = body.split_at(body.len() / 2);
    let head = format!(
        "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(first).await.unwrap();
    tls.flush().await.unwrap();

    // Wait until the server is reading that request, then signal shutdown.
    tokio::time::timeout(Duration::from_secs(5), async {
        while metric(&server, "credgate_in_flight_requests").await
            != "credgate_in_flight_requests 1"
        {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the request is in flight");
    let task = server.begin_stop();
    // Readiness goes false while the request is in flight.
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let resp = admin.get(server.admin_url("/readyz")).send().await.unwrap();
            if resp.status() == 503 {
                assert!(resp.text().await.unwrap().contains("shutting down"));
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("readiness turns false");
    assert!(
        !task.is_finished(),
        "the server waits for the in-flight request"
    );

    tls.write_all(rest).await.unwrap();
    tls.flush().await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer))
        .await
        .unwrap()
        .ok();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"allowed\":true"), "{answer}");
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("server stops once drained")
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(server.addr).await.is_err(),
        "no longer accepting"
    );
}

/// The binary: `certs` prints the caBundle, `serve` refuses bad files and exits cleanly on SIGTERM.
#[tokio::test]
async fn binary_certs_serve_and_sigterm() {
    let bin = env!("CARGO_BIN_EXE_credgate");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin)
        .args(["certs", "--out"])
        .arg(dir.path())
        .args(["--dns", "localhost", "--ip", "127.0.0.1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use base64::Engine as _;
    let bundle = base64::engine::general_purpose::STANDARD
        .decode(String::from_utf8(out.stdout).unwrap().trim())
        .unwrap();
    assert_eq!(bundle, std::fs::read(dir.path().join("ca.crt")).unwrap());

    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n",
    )
    .unwrap();
    let out = Command::new(bin)
        .env("KUBECONFIG", &kubeconfig)
        .args([
            "serve",
            "--tls-cert",
            "/nonexistent/tls.crt",
            "--admin-addr",
            "127.0.0.1:0",
            "--addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read /nonexistent/tls.crt"),
        "{stderr}"
    );

    let mut guard = common::KillOnDrop(Some(
        Command::new(bin)
            .env("KUBECONFIG", &kubeconfig)
            .args([
                "--log-format",
                "json",
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--admin-addr",
                "127.0.0.1:0",
                "--tls-cert",
            ])
            .arg(dir.path().join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.path().join("tls.key"))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let child = guard.0.as_mut().unwrap();
    let pid = child.id();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let serving: serde_json::Value = lines
        .by_ref()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .find(|v| v["message"] == "serving")
        .expect("a 'serving' log line");
    let admin = serving["admin"].as_str().unwrap().to_owned();
    // No API server answers this kubeconfig: credgate is live but not ready.
    let http = client(b"", false);
    assert_eq!(
        http.get(format!("http://{admin}/livez"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let ready = http
        .get(format!("http://{admin}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    assert!(
        ready
            .text()
            .await
            .unwrap()
            .contains("waiting for cluster state")
    );

    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut child = guard.take();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit after SIGTERM: {status:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|l| l.contains("SIGTERM received")),
        "{rest:?}"
    );
    assert!(rest.iter().any(|l| l.contains("\"stopped\"")), "{rest:?}");
}
