//! Component tests: the real server on 127.0.0.1 over TLS, driven with
//! AdmissionReview fixtures (`tests/data`) and with bad input.

mod common;

use base64::Engine as _;
use common::{TestServer, client, fixture, review_response};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Every fixture, on the endpoint it is for, with the answer it must get.
#[tokio::test]
async fn fixtures_get_the_right_answers() {
    let server = TestServer::start().await;
    let http = client(&server.ca_pem(), true);
    // (fixture, endpoint, allowed, fragment of the denial)
    let cases: &[(&str, &str, bool, &str)] = &[
        ("secret-docker-registry-create.json", "/validate", true, ""),
        (
            "secret-docker-registry-empty-auths.json",
            "/validate",
            false,
            "no registries under \"auths\"",
        ),
        (
            "secret-docker-registry-opaque.json",
            "/validate",
            false,
            "must be Secrets of type kubernetes.io/dockerconfigjson",
        ),
        ("secret-access-key-create.json", "/validate", true, ""),
        (
            "secret-access-key-missing-key.json",
            "/validate",
            false,
            "missing or empty: \"SecretKey\"",
        ),
        ("secret-password-basic-auth.json", "/validate", true, ""),
        (
            "secret-generic-empty.json",
            "/validate",
            false,
            "at least one key",
        ),
        (
            "secret-unknown-type.json",
            "/validate",
            false,
            "unknown credential type \"ssh-key\"",
        ),
        (
            "secret-cluster-outside-credentials-namespace.json",
            "/validate",
            false,
            "live in the credentials namespace \"runai\"",
        ),
        (
            "secret-cluster-and-department.json",
            "/validate",
            false,
            "both cluster-wide and of department",
        ),
        ("secret-department-create.json", "/validate", true, ""),
        (
            "secret-description-too-long.json",
            "/validate",
            false,
            "has 251 characters",
        ),
        (
            "secret-update-type-changed.json",
            "/validate",
            false,
            "type cannot change from access-key to generic",
        ),
        (
            "secret-update-created-by-changed.json",
            "/validate",
            false,
            "run.ai/created-by is stamped by credgate",
        ),
        ("secret-unlabelled.json", "/validate", true, ""),
        ("secret-unlabelled.json", "/mutate", true, ""),
        ("secret-delete.json", "/validate", true, ""),
        (
            "review-v1beta1.json",
            "/validate",
            false,
            "admission.k8s.io/v1 AdmissionReview only",
        ),
        (
            "pod-create.json",
            "/validate",
            false,
            "does not handle v1/Pod",
        ),
        (
            "pod-ephemeralcontainers.json",
            "/mutate",
            false,
            "subresource ephemeralcontainers",
        ),
    ];
    for (name, path, allowed, fragment) in cases {
        let body = fixture(name);
        let request: Value = serde_json::from_slice(&body).unwrap();
        let resp = http
            .post(server.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let response = review_response(resp).await;
        assert_eq!(
            response["uid"], request["request"]["uid"],
            "{name}: uid echoed"
        );
        assert_eq!(
            response["allowed"], *allowed,
            "{name} on {path}: {response}"
        );
        let message = response["status"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(fragment),
            "{name}: {message:?} lacks {fragment:?}"
        );
        assert!(
            !message.contains("fixture-"),
            "{name}: a secret value leaked into {message:?}"
        );
        if *path == "/mutate" && *allowed {
            assert!(response.get("patch").is_none(), "{name}: nothing to patch");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn mutate_stamps_creator_and_registries() {
    let server = TestServer::start().await;
    let http = client(&server.ca_pem(), false);
    let body = fixture("secret-docker-registry-create.json");
    let resp = http
        .post(server.url("/mutate"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    let response = review_response(resp).await;
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    let patch = patch_bytes(&response["patch"]);
    let ops: json_patch::Patch = serde_json::from_slice(&patch).unwrap();

    // Apply the patch like the API server does, then ask again: nothing more to do.
    let mut review: Value = serde_json::from_slice(&body).unwrap();
    json_patch::patch(&mut review["request"]["object"], &ops).unwrap();
    let annotations = &review["request"]["object"]["metadata"]["annotations"];
    assert_eq!(annotations["run.ai/created-by"], "alice@example.com");
    assert_eq!(annotations["run.ai/registries"], "docker.io,ghcr.io:443");
    let again = review_response(
        http.post(server.url("/mutate"))
            .json(&review)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(again["allowed"], true);
    assert!(
        again.get("patch").is_none(),
        "second pass patches nothing: {again}"
    );
    server.stop().await;
}

/// kube-rs encodes the patch bytes as a JSON array; the API server reads both that and base64.
/// The patch is base64, as the API defines `[]byte`.
fn patch_bytes(patch: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(patch.as_str().expect("a base64 string"))
        .unwrap()
}

#[tokio::test]
async fn bad_input_gets_clear_answers_and_the_server_keeps_serving() {
    let server = TestServer::start().await;
    for http2 in [false, true] {
        let http = client(&server.ca_pem(), http2);
        let huge = vec![b' '; 10 * 1024 * 1024];
        let mut uid_only = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "x-1"}});
        let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
            (
                "malformed json",
                http.post(server.url("/validate")).body("{\"request\": [1,"),
                400,
                "could not be decoded",
            ),
            (
                "not json at all",
                http.post(server.url("/validate")).body("hello"),
                400,
                "malformed JSON",
            ),
            (
                "empty body",
                http.post(server.url("/mutate")).body(""),
                400,
                "truncated JSON",
            ),
            (
                "no request",
                http.post(server.url("/validate"))
                    .body(r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#),
                400,
                "no request",
            ),
            (
                "deeply nested",
                http.post(server.url("/validate"))
                    .body("[".repeat(1_000_000)),
                400,
                "could not be decoded",
            ),
            (
                "wrong content type",
                http.post(server.url("/validate"))
                    .header("content-type", "text/plain")
                    .body("{}"),
                415,
                "application/json",
            ),
            (
                "GET on webhook",
                http.get(server.url("/validate")),
                405,
                "takes POST",
            ),
            (
                "unknown path",
                http.post(server.url("/other")).body("{}"),
                404,
                "POST /validate or POST /mutate",
            ),
            (
                "10 MiB body",
                http.post(server.url("/validate")).body(huge),
                413,
                "exceeds the limit",
            ),
        ];
        for (name, request, status, fragment) in cases {
            let resp = request
                .send()
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(resp.status().as_u16(), status, "{name} (http2={http2})");
            let text = resp.text().await.unwrap();
            assert!(
                text.contains(fragment),
                "{name}: {text:?} lacks {fragment:?}"
            );
        }

        // A uid is readable but the rest is not: a well-formed denial, not an HTTP error.
        let response = review_response(
            http.post(server.url("/validate"))
                .json(&uid_only)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (response["uid"].as_str(), response["allowed"].as_bool()),
            (Some("x-1"), Some(false))
        );
        uid_only["request"]["kind"] = json!("not-an-object");
        let response = review_response(
            http.post(server.url("/validate"))
                .json(&uid_only)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(
            response["status"]["message"]
                .as_str()
                .unwrap()
                .contains("a field is missing or has the wrong type")
        );

        assert_still_serving(&server, &http).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused() {
    let server = TestServer::start().await;
    let http = client(&server.ca_pem(), false);
    let chunks = (0..9).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024 * 1024]));
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let resp = http
        .post(server.url("/validate"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    server.stop().await;
}

/// Reads until the peer closes; returns what it sent. Bounded by `within`.
async fn read_until_closed(stream: &mut (impl AsyncReadExt + Unpin), within: Duration) -> Vec<u8> {
    let mut received = Vec::new();
    tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server closes the connection");
    received
}

#[tokio::test]
async fn slow_clients_and_non_tls_peers_are_cut_off() {
    let server = TestServer::start().await;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(common::tls_config(
        &server.ca_pem(),
        &[b"http/1.1"],
    )));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();

    // Slow loris: headers that never finish (header timeout 1 s in tests).
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut tls = connector.connect(name.clone(), tcp).await.unwrap();
    tls.write_all(b"POST /validate HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    read_until_closed(&mut tls, Duration::from_secs(5)).await;

    // Slow body: headers complete, body never does (body timeout 2 s in tests).
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut tls = connector.connect(name.clone(), tcp).await.unwrap();
    tls.write_all(
        b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{\"a\":",
    )
    .await
    .unwrap();
    let answer = read_until_closed(&mut tls, Duration::from_secs(6)).await;
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // Plain HTTP and garbage on the TLS port: closed, no crash.
    for junk in [
        &b"GET /validate HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0][..],
        &[0u8; 64][..],
    ] {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(junk).await.unwrap();
        let answer = read_until_closed(&mut tcp, Duration::from_secs(5)).await;
        assert!(!answer.starts_with(b"HTTP/1.1 200"));
    }
    // A silent peer is dropped after the handshake timeout.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    read_until_closed(&mut tcp, Duration::from_secs(5)).await;

    assert_still_serving(&server, &client(&server.ca_pem(), true)).await;
    server.stop().await;
}

#[tokio::test]
async fn alpn_offers_h2_and_http11() {
    let server = TestServer::start().await;
    for (http2, version) in [
        (true, reqwest::Version::HTTP_2),
        (false, reqwest::Version::HTTP_11),
    ] {
        let resp = client(&server.ca_pem(), http2)
            .post(server.url("/validate"))
            .body(fixture("secret-access-key-create.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), version);
        assert_eq!(review_response(resp).await["allowed"], true);
    }
    server.stop().await;
}

#[tokio::test]
async fn admin_port_reports_health_and_metrics() {
    let server = TestServer::start().await;
    let admin = client(&server.ca_pem(), false);
    let get = |path: &str| admin.get(server.admin_url(path)).send();
    assert_eq!(get("/livez").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    assert_eq!(get("/nope").await.unwrap().status(), 404);
    assert_eq!(
        admin
            .post(server.admin_url("/livez"))
            .send()
            .await
            .unwrap()
            .status(),
        405
    );

    let http = client(&server.ca_pem(), true);
    http.post(server.url("/validate"))
        .body(fixture("secret-generic-empty.json"))
        .send()
        .await
        .unwrap();
    http.post(server.url("/validate"))
        .body("nope")
        .send()
        .await
        .unwrap();
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"credgate_admission_requests_total{endpoint="validate",kind="Secret",decision="denied"} 1"#), "{metrics}");
    assert!(
        metrics.contains(r#"credgate_http_errors_total{status="400"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("credgate_admission_duration_seconds_count{endpoint=\"validate\"}"),
        "{metrics}"
    );
    server.stop().await;
}

/// A valid review after bad input is still answered correctly.
async fn assert_still_serving(server: &TestServer, http: &reqwest::Client) {
    let ok = review_response(
        http.post(server.url("/validate"))
            .body(fixture("secret-access-key-create.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(ok["allowed"], true);
}

/// A request of `kind` (`group`/`version`/`resource`) with `object` and `old_object`.
fn admission_review(
    gvk: (&str, &str, &str, &str),
    sub_resource: Option<&str>,
    operation: &str,
    object: Value,
    old_object: Value,
) -> Value {
    let (group, version, kind, resource) = gvk;
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "bad-1", "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": resource},
        "subResource": sub_resource, "name": "x", "namespace": "team-a", "operation": operation,
        "userInfo": {"username": "alice"}, "object": object, "oldObject": old_object, "dryRun": false}})
}

/// The whole answer of an allowed request with no patch and no warning (keys
/// sorted): only the right answer contains it.
const ALLOWED_UNCHANGED: &str = r#"{"allowed":true,"status":{},"uid":"bad-1"}"#;

/// (class, endpoint, body, `Some(allowed)` for an AdmissionReview answer or
/// `None` for HTTP 400, a fragment that only the right answer contains: of the
/// denial's message, of the 400's text, or of an allowed answer's whole `response`)
type BadInput = (
    &'static str,
    &'static str,
    Vec<u8>,
    Option<bool>,
    &'static str,
);

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The bad-input classes not covered above: each gets a well-formed answer
/// that says what is wrong, and memory stays bounded across many of them.
#[tokio::test]
async fn more_bad_input_classes_get_well_formed_answers() {
    let server = TestServer::start().await;
    let http = client(&server.ca_pem(), true);
    let secret = |annotations: Value| {
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": {"name": "x", "namespace": "team-a",
                            "labels": {"run.ai/resource": "generic"}, "annotations": annotations},
               "data": {"token": "dg=="}})
    };
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "namespace": "team-a"},
                     "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
    let secret_gvk = ("", "v1", "Secret", "secrets");
    let pod_gvk = ("", "v1", "Pod", "pods");
    let many: serde_json::Map<String, Value> = (0..5000)
        .map(|i| (format!("example.com/a{i}"), json!("v")))
        .collect();
    let cases: Vec<BadInput> = vec![
        (
            "wrong review kind",
            "/validate",
            {
                // A complete review, so that the kind check is what refuses it.
                let mut review = admission_review(secret_gvk, None, "CREATE", secret(json!({})), Value::Null);
                review["kind"] = json!("Other");
                serde_json::to_vec(&review).unwrap()
            },
            Some(false),
            "credgate answers admission.k8s.io/v1 AdmissionReview only",
        ),
        (
            "missing uid",
            "/validate",
            serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"kind": {"group": "", "version": "v1", "kind": "Secret"}}})).unwrap(),
            None,
            "a field is missing",
        ),
        (
            "unknown resource kind",
            "/validate",
            serde_json::to_vec(&admission_review(("", "v1", "ConfigMap", "configmaps"), None, "CREATE", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}), Value::Null)).unwrap(),
            Some(false),
            "does not handle",
        ),
        (
            "pods/status subresource",
            "/mutate",
            serde_json::to_vec(&admission_review(pod_gvk, Some("status"), "UPDATE", pod.clone(), pod.clone())).unwrap(),
            Some(false),
            "subresource status",
        ),
        (
            "pods/ephemeralcontainers subresource",
            "/mutate",
            serde_json::to_vec(&admission_review(pod_gvk, Some("ephemeralcontainers"), "UPDATE", pod.clone(), pod.clone())).unwrap(),
            Some(false),
            "subresource ephemeralcontainers",
        ),
        (
            "oldObject-only DELETE",
            "/validate",
            serde_json::to_vec(&admission_review(secret_gvk, None, "DELETE", Value::Null, secret(json!({})))).unwrap(),
            Some(true),
            ALLOWED_UNCHANGED,
        ),
        (
            "a 1 MiB annotation value",
            "/validate",
            serde_json::to_vec(&admission_review(secret_gvk, None, "CREATE", secret(json!({"run.ai/description": "d".repeat(1 << 20)})), Value::Null)).unwrap(),
            Some(false),
            "run.ai/description",
        ),
        (
            "5,000 annotations",
            "/mutate",
            serde_json::to_vec(&admission_review(pod_gvk, None, "CREATE", json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "namespace": "team-a", "annotations": many}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}), Value::Null)).unwrap(),
            Some(true),
            ALLOWED_UNCHANGED,
        ),
        (
            "non-UTF-8 annotation value",
            "/validate",
            {
                let mut body = serde_json::to_vec(&admission_review(secret_gvk, None, "CREATE", secret(json!({"run.ai/description": "XXXX"})), Value::Null)).unwrap();
                let at = body.windows(4).position(|w| w == b"XXXX").unwrap();
                body.splice(at..at + 4, [0xff, 0xfe, 0xc3, 0x28]);
                body
            },
            Some(false),
            "the AdmissionReview could not be decoded",
        ),
    ];
    let before = rss_kib();
    for round in 0..20 {
        for (class, endpoint, body, expected, fragment) in &cases {
            let resp = http
                .post(server.url(endpoint))
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("{class}: {e}"));
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            match expected {
                None => {
                    assert_eq!(status, 400, "{class}: {text}");
                    assert!(
                        text.contains(fragment),
                        "{class}: {text:?} lacks {fragment:?}"
                    );
                }
                Some(allowed) => {
                    assert_eq!(status, 200, "{class}: {text}");
                    let review: Value = serde_json::from_str(&text).unwrap();
                    let response = &review["response"];
                    assert_eq!(response["allowed"], *allowed, "{class}: {text}");
                    assert!(
                        !fragment.is_empty(),
                        "{class}: every row names what its answer must say"
                    );
                    if *allowed {
                        let whole = response.to_string();
                        assert!(
                            whole.contains(fragment),
                            "{class}: {whole} lacks {fragment}"
                        );
                    } else {
                        let message = response["status"]["message"].as_str().unwrap_or_default();
                        assert!(
                            message.contains(fragment),
                            "{class}: {message:?} lacks {fragment:?}"
                        );
                    }
                }
            }
        }
        if round == 0 {
            // Still serving correctly after each class once.
            assert_still_serving(&server, &http).await;
        }
    }
    // 180 bad requests of up to 1 MiB each: memory does not grow with them.
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    assert!(grown_mib < 64, "RSS grew by {grown_mib} MiB");
    server.stop().await;
}

/// `--client-ca` and `--client-name`: only a client presenting a certificate
/// that CA signed for the API server's name gets an answer; any other is
/// refused during the handshake, so its review can change nothing.
#[tokio::test]
async fn with_a_client_ca_only_the_api_server_is_served() {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = tempfile::tempdir().unwrap();
    let issued = common::issue(dir.path(), false);
    // A client certificate for `name` from the CA in `dir` (a new one if absent).
    let client_pair = |dir: &std::path::Path, name: &str| {
        credgate::certs::issue(&credgate::certs::Request {
            out: dir.to_owned(),
            dns: vec![],
            ips: vec![],
            days: 1,
            new_ca: false,
            client: Some(name.into()),
        })
        .unwrap()
    };
    // The API server's; another signed by a CA credgate does not trust; and
    // one the API server's CA signed for another client.
    let (apiserver, stranger, sibling) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let client_cert = client_pair(apiserver.path(), "kube-apiserver");
    let stranger_cert = client_pair(stranger.path(), "kube-apiserver");
    for file in ["ca.crt", "ca.key"] {
        std::fs::copy(apiserver.path().join(file), sibling.path().join(file)).unwrap();
    }
    let sibling_cert = client_pair(sibling.path(), "system:node:worker-1");
    let mut options = common::options(issued.tls_cert, issued.tls_key);
    options.client_ca = Some(client_cert.ca_cert.clone());
    options.client_names = vec!["kube-apiserver".into()];
    let server = TestServer::start_with(dir, options).await;

    let with_identity = |issued: &credgate::certs::Issued| {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&issued.tls_cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(&issued.tls_key).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&server.ca_pem()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    };
    let send = |http: reqwest::Client| {
        let url = server.url("/validate");
        async move {
            http.post(url)
                .header("content-type", "application/json")
                .body(fixture("secret-generic-empty.json"))
                .send()
                .await
        }
    };
    let answered = send(with_identity(&client_cert))
        .await
        .expect("the API server's certificate is accepted");
    let response = review_response(answered).await;
    assert_eq!(
        response["allowed"], false,
        "and the review is decided: {response}"
    );

    for (who, http) in [
        ("no client certificate", client(&server.ca_pem(), true)),
        (
            "a certificate from another CA",
            with_identity(&stranger_cert),
        ),
        (
            "a certificate of the same CA for another name",
            with_identity(&sibling_cert),
        ),
    ] {
        let refused = send(http).await;
        assert!(
            refused.is_err(),
            "{who}: refused during the handshake, got {refused:?}"
        );
    }
    server.stop().await;
}
