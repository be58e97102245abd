//! Fills the API server for the scale benchmark of `make bench`: NAMESPACES
//! project namespaces, each with SECRETS credential Secrets and PODS pods that
//! name two of them, created through the API server (and so through credgate's
//! webhooks) by at most CONCURRENCY requests at a time.
//!
//! `KUBECONFIG=... cargo run --release --example fill_cluster -- NAMESPACES SECRETS PODS CONCURRENCY`

#![forbid(unsafe_code)]

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{Api, PostParams};
use serde_json::json;
use std::time::Instant;

async fn create<K>(api: &Api<K>, object: serde_json::Value) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(object)?;
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let [namespaces, secrets, pods, concurrency] = args.as_slice() else {
        anyhow::bail!("usage: fill_cluster NAMESPACES SECRETS PODS CONCURRENCY");
    };
    let (secrets, pods) = (*secrets, *pods);
    let per_ns = secrets.max(1);
    let client = kube::Client::try_default().await?;
    let started = Instant::now();
    let ns_api: Api<Namespace> = Api::all(client.clone());
    // Namespaces first, then everything inside them, all with bounded concurrency.
    let names: Vec<String> = (0..*namespaces).map(|i| format!("scale-{i}")).collect();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(names.clone())
        .map(|ns| {
            let api = ns_api.clone();
            async move {
                create(
                    &api,
                    json!({"metadata": {"name": ns, "labels": {"runai/queue": ns}}}),
                )
                .await
            }
        })
        .buffer_unordered(*concurrency)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<()>>()?;
    eprintln!(
        "{} namespaces in {:.1} s",
        names.len(),
        started.elapsed().as_secs_f64()
    );
    let objects = names.iter().flat_map(|ns| {
        let credentials = (0..secrets).map(move |j| {
            (
                ns.clone(),
                true,
                json!({
                "metadata": {"name": format!("cred-{j}"), "namespace": ns,
                             "labels": {"run.ai/resource": "generic"}},
                "stringData": {"token": "scale-benchmark"}}),
            )
        });
        let pods = (0..pods).map(move |k| {
            (
                ns.clone(),
                false,
                json!({
                "metadata": {"name": format!("pod-{k}"), "namespace": ns, "annotations": {
                    "run.ai/credentials-env": format!("TOKEN=cred-{}:token", k % per_ns),
                    "run.ai/credentials-volume": format!("cred-{}:/etc/cred", (k + 1) % per_ns)}},
                "spec": {"containers": [{"name": "main", "image": "registry.example/app:1"}]}}),
            )
        });
        credentials.chain(pods).collect::<Vec<_>>()
    });
    // Every Secret before any pod: a pod names credentials credgate must already have seen.
    let (secret_objects, pod_objects): (Vec<_>, Vec<_>) =
        objects.partition(|(_, is_secret, _)| *is_secret);
    let objects = secret_objects.into_iter().chain(pod_objects);
    let total = names.len() * (secrets + pods);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(objects)
        .map(|(ns, is_secret, object)| {
            let client = client.clone();
            let done = &done;
            async move {
                let result = if is_secret {
                    create(&Api::<Secret>::namespaced(client, &ns), object).await
                } else {
                    create(&Api::<Pod>::namespaced(client, &ns), object).await
                };
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if n.is_multiple_of(20_000) {
                    eprintln!(
                        "{n}/{total} objects in {:.0} s",
                        started.elapsed().as_secs_f64()
                    );
                }
                result
            }
        })
        .buffer_unordered(*concurrency)
        .collect()
        .await;
    let errors: Vec<String> = results
        .into_iter()
        .filter_map(|r| r.err())
        .map(|e| e.to_string())
        .collect();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"namespaces": names.len(), "objects": total, "errors": errors.len(),
               "first_error": errors.first(), "seconds": secs,
               "objects_per_sec": (total + names.len()) as f64 / secs})
    );
    Ok(())
}
