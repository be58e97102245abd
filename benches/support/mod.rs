//! Fixtures shared by the benchmarks and the measuring examples.

use credgate::model::credential::{CredentialType, Scope};
use credgate::state::index::{Index, NamespaceInfo, SecretInfo};

/// Adds the credentials the training pod names (db, s3, git, ghcr) to `namespace`.
pub fn add_pod_credentials(index: &mut Index, namespace: &str) {
    let credentials: [(&str, CredentialType, &[&str], &[&str]); 4] = [
        ("db", CredentialType::Generic, &["url", "token"], &[]),
        (
            "s3",
            CredentialType::AccessKey,
            &["AccessKeyId", "SecretKey"],
            &[],
        ),
        ("git", CredentialType::Password, &["User", "Password"], &[]),
        (
            "ghcr",
            CredentialType::DockerRegistry,
            &[".dockerconfigjson"],
            &["ghcr.io"],
        ),
    ];
    for (name, kind, keys, registries) in credentials {
        let info = SecretInfo {
            uid: "u".into(),
            kind: Some(kind),
            scope: Some(Scope::Project),
            credential_name: name.into(),
            existing_secret: None,
            registries: registries.iter().map(|s| s.to_string()).collect(),
            keys: Some(keys.iter().map(|s| s.to_string()).collect()),
            deleting: false,
        };
        index.set_secret(namespace, name, info);
    }
}

/// The snapshot `serve_snapshot` and `review_count` answer from: project
/// `bench-p` holding the training pod's credentials, and the credentials
/// namespace `runai`.
#[allow(dead_code)] // the benchmarks build their own
pub fn bench_snapshot() -> Index {
    let mut index = Index::default();
    index.set_namespace(
        "bench-p",
        NamespaceInfo {
            project: Some("bench-p".into()),
            ..Default::default()
        },
    );
    index.set_namespace("runai", NamespaceInfo::default());
    add_pod_credentials(&mut index, "bench-p");
    index
}

/// A 3-container pod with 5 credential references (env ×2, volume, S3, Git) and one matching
/// registry: `benches/data/training-pod.json`, which `make bench` also sends over the wire.
#[allow(dead_code)] // serve_snapshot, which shares this module, uses only the fixtures
pub fn training_pod(namespace: &str) -> serde_json::Value {
    let mut pod: serde_json::Value =
        serde_json::from_str(include_str!("../data/training-pod.json")).expect("valid JSON");
    pod["metadata"]["namespace"] = namespace.into();
    pod
}

/// The annotations of a pod given as JSON (as the admission path reads them from typed metadata).
#[allow(dead_code)] // as above
pub fn annotations(pod: &serde_json::Value) -> Option<std::collections::BTreeMap<String, String>> {
    serde_json::from_value(pod["metadata"]["annotations"].clone()).ok()
}

/// An AdmissionReview body for a CREATE of `object`, as the API server sends it.
#[allow(dead_code)] // the benchmarks use it; the examples that share this module do not
pub fn review(kind: &str, resource: &str, namespace: &str, object: &serde_json::Value) -> Vec<u8> {
    let gvk = serde_json::json!({"group": "", "version": "v1", "kind": kind});
    let gvr = serde_json::json!({"group": "", "version": "v1", "resource": resource});
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "bench-0000", "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "name": object["metadata"]["name"], "namespace": namespace, "operation": "CREATE",
            "userInfo": {"username": "alice@example.com", "groups": ["system:authenticated"]},
            "object": object, "oldObject": null, "dryRun": false, "options": null,
        }
    }))
    .expect("a review encodes")
}
