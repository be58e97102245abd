//! Median and tail of the pod decision + patch (3 containers, 5 credential
//! references) over 100,000 runs, timed one by one.
//!
//! `cargo run --release --example decision_latency`

use credgate::credential::{CredentialType, Scope};
use credgate::index::{Index, NamespaceInfo, SecretInfo};
use credgate::mutate;
use credgate::policy::Settings;
use std::time::Instant;

fn main() {
    let mut index = Index::default();
    index.set_namespace(
        "team-a",
        NamespaceInfo {
            project: Some("team-a".into()),
            department: None,
            ..Default::default()
        },
    );
    for (name, kind, keys, registries) in [
        (
            "db",
            CredentialType::Generic,
            &["url", "token"][..],
            &[][..],
        ),
        (
            "s3",
            CredentialType::AccessKey,
            &["AccessKeyId", "SecretKey"][..],
            &[][..],
        ),
        (
            "git",
            CredentialType::Password,
            &["User", "Password"][..],
            &[][..],
        ),
        (
            "ghcr",
            CredentialType::DockerRegistry,
            &[".dockerconfigjson"][..],
            &["ghcr.io"][..],
        ),
    ] {
        let info = SecretInfo {
            uid: "u".into(),
            kind: Some(kind),
            scope: Some(Scope::Project),
            credential_name: name.into(),
            existing_secret: None,
            registries: registries.iter().map(|s| s.to_string()).collect(),
            keys: Some(keys.iter().map(|s| s.to_string()).collect()),
        };
        index.set_secret("team-a", name, info);
    }
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "train", "namespace": "team-a", "annotations": {
            "run.ai/credentials-env": "DB_URL=db:url, DB_TOKEN=db:token",
            "run.ai/credentials-volume": "db:/etc/db",
            "run.ai/s3-credential": "s3", "run.ai/git-credential": "git"}},
        "spec": {"containers": [
            {"name": "main", "image": "ghcr.io/org/train:1"},
            {"name": "sidecar", "image": "nginx:1.27"},
            {"name": "metrics", "image": "quay.io/org/exporter:2"}]},
    });
    let settings = Settings::default();
    let mut samples = Vec::with_capacity(100_000);
    for _ in 0..100_000 {
        let started = Instant::now();
        let mutation = mutate::pod(&settings, &index, "team-a", &pod).unwrap();
        samples.push(started.elapsed());
        assert!(!mutation.ops.is_empty());
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "pod decision + patch, 100000 runs: p50 {:?}, p99 {:?}, p99.9 {:?}",
        at(0.50),
        at(0.99),
        at(0.999)
    );
}
