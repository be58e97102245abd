//! End-to-end pod-create latency through the API server, for `make bench`:
//! `CLIENTS` concurrent clients create `COUNT` pods (the benchmark's training
//! pod, 5 credential references) in `NAMESPACE`, and the latency of each create
//! call is reported as JSON on stdout.
//!
//! `KUBECONFIG=... cargo run --release --example pod_create_latency -- NAMESPACE COUNT CLIENTS PREFIX`

#![forbid(unsafe_code)]

#[path = "../benches/support/mod.rs"]
#[allow(dead_code)]
mod support;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [namespace, count, clients, prefix] = args.as_slice() else {
        anyhow::bail!("usage: pod_create_latency NAMESPACE COUNT CLIENTS PREFIX");
    };
    let (count, clients): (usize, usize) = (count.parse()?, clients.parse()?);
    let client = kube::Client::try_default().await?;
    let api: Api<Pod> = Api::namespaced(client, namespace);
    let started = Instant::now();
    let results: Vec<Result<Duration, String>> = futures::stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            let mut pod = support::training_pod(namespace);
            pod["metadata"]["name"] = format!("{prefix}-{i}").into();
            async move {
                let pod: Pod = serde_json::from_value(pod).map_err(|e| e.to_string())?;
                let t = Instant::now();
                api.create(&PostParams::default(), &pod)
                    .await
                    .map(|_| t.elapsed())
                    .map_err(|e| e.to_string())
            }
        })
        .buffer_unordered(clients)
        .collect()
        .await;
    let wall = started.elapsed();
    let mut ok: Vec<Duration> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    let errors: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    ok.sort_unstable();
    let pct = |p: f64| {
        ok.get(((ok.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{}",
        serde_json::json!({
            "count": count, "clients": clients, "ok": ok.len(), "errors": errors.len(),
            "first_error": errors.first(),
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1.0),
            "creates_per_sec": ok.len() as f64 / wall.as_secs_f64(),
        })
    );
    Ok(())
}
