//! The ceiling for `make bench`: the same TLS setup as credgate (its
//! `CertStore` and rustls configuration, hyper's auto HTTP/1.1 + h2 server)
//! answering every request with a fixed AdmissionReview read from a file.
//!
//! `cargo run --release --example baseline -- ADDR CERT KEY RESPONSE_FILE`

#![forbid(unsafe_code)]

use bytes::Bytes;
use credgate::server::metrics::Metrics;
use credgate::server::tls::CertStore;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::sync::Arc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, cert, key, response] = args.as_slice() else {
        anyhow::bail!("usage: baseline ADDR CERT KEY RESPONSE_FILE");
    };
    let answer = Bytes::from(std::fs::read(response)?);
    let store = CertStore::load(cert.as_ref(), key.as_ref(), Arc::new(Metrics::default()))?;
    let tls = tokio_rustls::TlsAcceptor::from(store.server_config(None, &[])?);
    let listener = tokio::net::TcpListener::bind(addr.as_str()).await?;
    eprintln!("baseline serving on {}", listener.local_addr()?);
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (tls, builder, answer) = (tls.clone(), builder.clone(), answer.clone());
        tokio::spawn(async move {
            let Ok(stream) = tls.accept(stream).await else {
                return;
            };
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let answer = answer.clone();
                async move {
                    // Read the whole body, as a webhook must.
                    let _ = http_body_util::BodyExt::collect(req.into_body()).await;
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
