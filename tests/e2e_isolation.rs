//! End to end: isolation between projects. A user with RBAC in project A only
//! (`edit` there, nothing elsewhere) cannot get project B's credential into a
//! pod — by annotation, by a renamed credential, or through a managed copy made
//! by hand — and cannot claim B's existing Secret.

mod cluster;

use cluster::{Cluster, USER};
use serde_json::json;

fn main() {
    cluster::run(
        "e2e_isolation",
        vec![("a_project_user_cannot_reach_another_project", isolation)],
    );
}

/// `kubectl` as the project-A user; returns (success, stderr).
fn as_user(c: &Cluster, args: &[&str], stdin: &str) -> (bool, String) {
    let out = c.kubectl(&[&["--as", USER], args].concat(), Some(stdin));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn secret(
    name: &str,
    ns: &str,
    labels: serde_json::Value,
    annotations: serde_json::Value,
) -> String {
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": annotations},
           "stringData": {"token": "isolation-canary"}})
    .to_string()
}

fn pod(ns: &str, name: &str, annotations: serde_json::Value) -> String {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns, "annotations": annotations},
           "spec": {"containers": [{"name": "c", "image": "registry.example/app:1"}]}})
    .to_string()
}

fn isolation(c: &Cluster) {
    // The user may edit in A (Cluster::namespace binds `edit`); B is created by the admin only.
    let a = c.namespace("iso-a", &[("runai/queue", "iso-a")]);
    let b = format!("iso-b-{}", std::process::id());
    c.kubectl_ok(&["create", "namespace", &b], None);
    c.kubectl_ok(&["label", "namespace", &b, "runai/queue=iso-b"], None);
    let generic = json!({"run.ai/resource": "generic"});
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&secret("b-token", &b, generic.clone(), json!({}))),
    );
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&secret("b-backing", &b, generic.clone(), json!({}))),
    );
    assert!(
        !as_user(c, &["get", "secret", "b-token", "-n", &b], "").0,
        "RBAC: no access to B"
    );

    // 1. B's credential, named in an annotation of a pod in A: not visible to A.
    for annotations in [
        json!({"run.ai/credentials-env": "T=b-token:token"}),
        json!({"run.ai/credentials-volume": "b-token:/etc/t"}),
        json!({"run.ai/s3-credential": "b-token"}),
        json!({"run.ai/image-pull-credentials": "b-token"}),
    ] {
        let (ok, err) = as_user(
            c,
            &["apply", "-f", "-"],
            &pod(&a, "p1", annotations.clone()),
        );
        assert!(!ok, "{annotations}: must be refused");
        assert!(
            err.contains("not visible") || err.contains("no credential named"),
            "{err}"
        );
    }

    // 2. B renames its credential: still B's, still invisible to A.
    c.kubectl_ok(
        &[
            "annotate",
            "secret",
            "b-token",
            "-n",
            &b,
            "run.ai/name=shared-name",
        ],
        None,
    );
    let (ok, err) = as_user(
        c,
        &["apply", "-f", "-"],
        &pod(
            &a,
            "p2",
            json!({"run.ai/credentials-env-from": "shared-name"}),
        ),
    );
    assert!(
        !ok && err.contains("denied the request") && err.contains("shared-name"),
        "{err}"
    );

    // 3. A managed copy made by hand in A (to pose as a cluster credential's copy): refused.
    let copy = secret(
        "credgate.b-token",
        &a,
        json!({"credgate.run.ai/managed-copy": "true", "credgate.run.ai/source-uid": "forged"}),
        json!({"credgate.run.ai/source": format!("{b}/b-token")}),
    );
    let (ok, err) = as_user(c, &["apply", "-f", "-"], &copy);
    assert!(
        !ok && err.contains("credgate"),
        "a hand-made copy must be refused: {err}"
    );

    // 4. Claiming B's existing Secret from A: the backing Secret must be in A.
    let claim = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "steal", "namespace": a, "labels": {"run.ai/resource": "generic"},
                     "annotations": {"run.ai/existing-secret": "b-backing"}}})
    .to_string();
    let (ok, err) = as_user(c, &["apply", "-f", "-"], &claim);
    assert!(
        !ok && err.contains("b-backing"),
        "claiming B's Secret must be refused: {err}"
    );

    // 5. A same-named credential of A's own is A's, never B's.
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&secret(
            "a-token",
            &a,
            generic,
            json!({"run.ai/name": "shared-name"}),
        )),
    );
    let (ok, err) = as_user(
        c,
        &["apply", "-f", "-"],
        &pod(
            &a,
            "p3",
            json!({"run.ai/credentials-env": "T=shared-name:token"}),
        ),
    );
    assert!(ok, "{err}");
    let injected = c.kubectl_json(&["get", "pod", "p3", "-n", &a]);
    let reference = &injected["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"];
    assert_eq!(reference["name"], "a-token", "{injected}");
    assert!(
        !injected.to_string().contains(&b),
        "nothing of B in A's pod"
    );
}
