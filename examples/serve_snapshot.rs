//! credgate's webhook server (TLS, HTTP, admission) over a fixed snapshot,
//! with no cluster: project `bench-p` holding the credentials the training
//! pod names (`benches/support`). For profiling the served path under load
//! (`perf record -p PID` while `oha` posts `target/bench/bodies/*.json`)
//! without a control plane on the same cores.
//!
//! `cargo run --release --example serve_snapshot -- ADDR CERT KEY`

#![forbid(unsafe_code)]

use credgate::admission::Admission;
use credgate::policy::Settings;
use credgate::server::{Options, Server, http::Limits};
use credgate::state::health::Health;
use std::sync::Arc;
use std::time::Duration;

#[path = "../benches/support/mod.rs"]
mod support;

// As in credgate's main.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, cert, key] = args.as_slice() else {
        anyhow::bail!("usage: serve_snapshot ADDR CERT KEY");
    };
    let index = support::bench_snapshot();
    let options = Options {
        addr: addr.parse()?,
        admin_addr: "127.0.0.1:0".parse()?,
        tls_cert: cert.into(),
        tls_key: key.into(),
        client_ca: None,
        client_names: Vec::new(),
        limits: Limits {
            max_body_bytes: 8 * 1024 * 1024,
            body_timeout: Duration::from_secs(10),
        },
        header_timeout: Duration::from_secs(10),
        shutdown_grace: Duration::from_secs(1),
        max_connections: 4096,
    };
    let admission = Admission::with_index(Settings::default(), index);
    let server = Server::bind(
        options,
        admission,
        Arc::default(),
        Arc::new(Health::default()),
    )
    .await?;
    eprintln!("serving on {}", server.webhook_addr());
    server
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    Ok(())
}
