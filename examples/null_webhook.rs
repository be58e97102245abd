//! The two peers of `make bench` that are credgate's own TLS and HTTP stack
//! (its `CertStore`, rustls and hyper's auto HTTP/1.1 + h2 server) without
//! its decisions:
//! - the null webhook (issue 19): every AdmissionReview is answered
//!   `allowed` with no patch. Registered with credgate's rules, it is what
//!   any webhook costs the API server at least;
//! - with RESPONSE_FILE, the ceiling's baseline (issue 9): every request gets
//!   that fixed answer, whatever it asks.
//!
//! `cargo run --release --example null_webhook -- ADDR CERT KEY [RESPONSE_FILE]`

#![forbid(unsafe_code)]

use bytes::Bytes;
use credgate::server::metrics::Metrics;
use credgate::server::tls::CertStore;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::sync::Arc;

/// The request's uid, the only field an answer must echo.
#[derive(serde::Deserialize)]
struct Review<'a> {
    #[serde(borrow)]
    request: Request<'a>,
}

#[derive(serde::Deserialize)]
struct Request<'a> {
    uid: &'a str,
}

fn answer(body: &[u8]) -> Bytes {
    let uid = serde_json::from_slice::<Review<'_>>(body).map_or("", |r| r.request.uid);
    Bytes::from(
        serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": {"uid": uid, "allowed": true}
        })
        .to_string(),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (addr, cert, key, canned) = match args.as_slice() {
        [addr, cert, key] => (addr, cert, key, None),
        [addr, cert, key, response] => {
            (addr, cert, key, Some(Bytes::from(std::fs::read(response)?)))
        }
        _ => anyhow::bail!("usage: null_webhook ADDR CERT KEY [RESPONSE_FILE]"),
    };
    let store = CertStore::load(cert.as_ref(), key.as_ref(), Arc::new(Metrics::default()))?;
    let tls = tokio_rustls::TlsAcceptor::from(store.server_config(None, &[])?);
    let listener = tokio::net::TcpListener::bind(addr.as_str()).await?;
    eprintln!("null webhook serving on {}", listener.local_addr()?);
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (tls, builder, canned) = (tls.clone(), builder.clone(), canned.clone());
        tokio::spawn(async move {
            let Ok(stream) = tls.accept(stream).await else {
                return;
            };
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let canned = canned.clone();
                async move {
                    // Read the whole body, as a webhook must.
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let answer = canned.unwrap_or_else(|| answer(&body));
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(answer))
                            .unwrap_or_default(),
                    )
                }
            });
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
