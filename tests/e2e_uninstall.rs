//! End to end: `credgate uninstall` leaves nothing that waits for credgate.
//! After it (and with credgate gone), deleting a cluster credential and the
//! credentials namespace complete, the copies are gone, and the credentials
//! themselves stay until someone deletes them.

mod cluster;

use cluster::{Cluster, eventually};
use serde_json::json;
use std::process::{Command, Stdio};

fn main() {
    cluster::run(
        "e2e_uninstall",
        vec![(
            "uninstall_leaves_nothing_that_waits_for_credgate",
            uninstall,
        )],
    );
}

fn credgate(c: &Cluster, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_credgate"))
        .args(args)
        .env("KUBECONFIG", &c.kubeconfig)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn uninstall(c: &Cluster) {
    let _ = c.kubectl(&["create", "namespace", "runai"], None);
    let project = c.namespace("uninstall", &[("runai/queue", "uninstall")]);
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(
            &json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "shared", "namespace": "runai",
                             "labels": {"run.ai/resource": "generic", "run.ai/cluster-wide": "true"}},
                "stringData": {"token": "e2e-secret-uninstall"}})
            .to_string(),
        ),
    );
    let status = |c: &Cluster| {
        c.kubectl_json(&["get", "secret", "shared", "-n", "runai"])["metadata"]["annotations"]
            ["run.ai/status"]
            .clone()
    };
    eventually(60, "the credential to be propagated", || {
        status(c) == "No issues found"
            && c.kubectl(&["get", "secret", "credgate.shared", "-n", &project], None)
                .status
                .success()
    });

    // No terminal and no --yes: nothing changes.
    let refused = credgate(c, &["uninstall"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("pass --yes"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    c.kubectl_ok(&["get", "validatingwebhookconfiguration", "credgate"], None);

    // credgate stops first (its Deployment deleted or scaled to 0), so that its
    // controller does not copy again what uninstall removes; its webhooks,
    // which fail closed, are still registered. `--scale-down` does that for a
    // Deployment (the chart's hook passes it): here a stand-in Deployment
    // `credgate`, whose pod the ReplicaSet controller makes and removes (the
    // development cluster runs no pods), and the process itself.
    let stand_in = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: credgate, namespace: credgate-system}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: stand-in}}\n  template:\n    metadata: {labels: {app: stand-in}}\n    spec:\n      securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}\n      containers: [{name: c, image: busybox, securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}}]\n";
    c.kubectl_ok(&["apply", "-f", "-"], Some(stand_in));
    c.kubectl_ok(
        &[
            "wait",
            "-n",
            "credgate-system",
            "deployment/credgate",
            "--for=jsonpath={.status.replicas}=1",
            "--timeout=60s",
        ],
        None,
    );
    // credgate bound itself to read Secrets where it copied and watches.
    for ns in [project.as_str(), "runai"] {
        c.kubectl_ok(&["get", "rolebinding", "credgate-secrets", "-n", ns], None);
    }
    c.stop_credgate();
    let done = credgate(c, &["uninstall", "--yes", "--scale-down=credgate"]);
    let out = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(
        out.contains("1 managed copies deleted") || out.contains("managed copies deleted"),
        "{out}"
    );
    for kind in [
        "validatingwebhookconfiguration",
        "mutatingwebhookconfiguration",
    ] {
        assert!(
            !c.kubectl(&["get", kind, "credgate"], None).status.success(),
            "{kind} removed"
        );
    }
    assert!(
        !c.kubectl(&["get", "secret", "credgate.shared", "-n", &project], None)
            .status
            .success(),
        "the copy is deleted"
    );
    let credential = c.kubectl_json(&["get", "secret", "shared", "-n", "runai"]);
    assert!(
        credential["metadata"]["finalizers"].is_null(),
        "{credential}"
    );
    assert!(
        credential["metadata"]["annotations"]["run.ai/status"].is_null(),
        "{credential}"
    );
    // The RoleBindings through which credgate read Secrets go too.
    assert!(out.contains("RoleBindings deleted"), "{out}");
    let bindings = c.kubectl_json(&[
        "get",
        "rolebindings",
        "-A",
        "-l",
        "credgate.run.ai/secret-access=true",
    ]);
    assert_eq!(bindings["items"], json!([]), "{bindings}");
    let stand_in = c.kubectl_json(&["get", "deployment", "credgate", "-n", "credgate-system"]);
    assert_eq!(stand_in["spec"]["replicas"], 0, "{stand_in}");
    assert!(
        stand_in["status"]["replicas"].as_i64().unwrap_or(0) == 0,
        "uninstall waited for the pods to go: {}",
        stand_in["status"]
    );
    // Nothing waits for credgate any more.
    c.kubectl_ok(
        &["delete", "secret", "shared", "-n", "runai", "--timeout=30s"],
        None,
    );
    c.kubectl_ok(&["delete", "namespace", "runai", "--timeout=90s"], None);
}
