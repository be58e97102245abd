//! End to end: cluster and department credentials reach their project
//! namespaces as managed copies, with a status on the source; copies follow
//! the source and the namespaces' labels, and only credgate may touch them.

mod cluster;

use cluster::{Cluster, eventually};
use serde_json::Value;

fn main() {
    cluster::run(
        "e2e_propagation",
        vec![
            (
                "cluster_credential_reaches_every_project_with_status",
                cluster_credential,
            ),
            ("department_moves_and_new_projects_follow", department_moves),
            (
                "copies_follow_source_edits_and_deletion",
                edits_and_deletion,
            ),
            ("people_cannot_edit_or_delete_copies", copies_are_protected),
            (
                "a_pod_right_after_a_new_project_gets_its_pull_secret",
                no_pod_before_its_copy,
            ),
            (
                "an_unmanaged_secret_in_the_way_is_reported_not_overwritten",
                collisions,
            ),
        ],
    );
}

fn json(c: &Cluster, args: &[&str]) -> Value {
    c.kubectl_json(args)
}

fn exists(c: &Cluster, ns: &str, name: &str) -> bool {
    c.kubectl(&["get", "secret", name, "-n", ns], None)
        .status
        .success()
}

fn annotation(c: &Cluster, ns: &str, name: &str, key: &str) -> String {
    json(c, &["get", "secret", name, "-n", ns])["metadata"]["annotations"][key]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn source(c: &Cluster, name: &str, scope: &str, value: &str) {
    let _ = c.kubectl(&["create", "namespace", "runai"], None);
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: runai, labels: {{run.ai/resource: generic, {scope}}}}}\nstringData: {{token: {value}}}\n")),
    );
}

fn copy_token(c: &Cluster, ns: &str, copy: &str) -> String {
    use base64::Engine as _;
    let encoded = json(c, &["get", "secret", copy, "-n", ns])["data"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap(),
    )
    .unwrap()
}

fn delete_source(c: &Cluster, name: &str) {
    c.kubectl_ok(
        &["delete", "secret", name, "-n", "runai", "--wait=true"],
        None,
    );
}

fn cluster_credential(c: &Cluster) {
    let a = c.namespace("prop-a", &[("runai/queue", "prop-a")]);
    let b = c.namespace("prop-b", &[("runai/queue", "prop-b")]);
    let plain = c.namespace("prop-plain", &[]);
    let name = "everyone";
    source(c, name, "run.ai/cluster-wide: \"true\"", "v1");
    let copy = format!("credgate.{name}");
    eventually(30, "copies in every project namespace", || {
        exists(c, &a, &copy) && exists(c, &b, &copy)
    });
    eventually(30, "the status to settle", || {
        annotation(c, "runai", name, "run.ai/status") == "No issues found"
    });
    assert!(!exists(c, &plain, &copy), "no copy outside projects");
    let copied = json(c, &["get", "secret", &copy, "-n", &a]);
    let labels = &copied["metadata"]["labels"];
    assert_eq!(labels["credgate.run.ai/managed-copy"], "true");
    assert_eq!(
        copied["metadata"]["annotations"]["credgate.run.ai/source"],
        format!("runai/{name}")
    );
    assert!(
        copied["metadata"]["annotations"]["credgate.run.ai/source-hash"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(copy_token(c, &a, &copy), "v1");
    let finalizers =
        json(c, &["get", "secret", name, "-n", "runai"])["metadata"]["finalizers"].clone();
    assert_eq!(finalizers, serde_json::json!(["credgate.run.ai/copies"]));
    delete_source(c, name);
    eventually(30, "copies removed with the source", || {
        !exists(c, &a, &copy) && !exists(c, &b, &copy)
    });
}

fn department_moves(c: &Cluster) {
    let pid = std::process::id();
    let (d1, d2) = (format!("d1-{pid}"), format!("d2-{pid}"));
    let ns = c.namespace(
        "mover",
        &[("runai/queue", "mover"), ("run.ai/department", &d1)],
    );
    source(c, "dept-one", &format!("run.ai/department: {d1}"), "one");
    source(c, "dept-two", &format!("run.ai/department: {d2}"), "two");
    eventually(30, "the first department's copy", || {
        exists(c, &ns, "credgate.dept-one")
    });
    assert!(!exists(c, &ns, "credgate.dept-two"));
    c.kubectl_ok(
        &[
            "label",
            "namespace",
            &ns,
            "--overwrite",
            &format!("run.ai/department={d2}"),
        ],
        None,
    );
    eventually(30, "copies to follow the move", || {
        !exists(c, &ns, "credgate.dept-one") && exists(c, &ns, "credgate.dept-two")
    });
    // A namespace that joins as a project gets copies; one that leaves loses them.
    let joiner = c.namespace("joiner", &[]);
    c.kubectl_ok(
        &[
            "label",
            "namespace",
            &joiner,
            "runai/queue=joiner",
            &format!("run.ai/department={d2}"),
        ],
        None,
    );
    eventually(30, "a new project's copies", || {
        exists(c, &joiner, "credgate.dept-two")
    });
    c.kubectl_ok(&["label", "namespace", &joiner, "runai/queue-"], None);
    eventually(30, "a former project's copies to go", || {
        !exists(c, &joiner, "credgate.dept-two")
    });
    delete_source(c, "dept-one");
    delete_source(c, "dept-two");
}

fn edits_and_deletion(c: &Cluster) {
    let ns = c.namespace("edits", &[("runai/queue", "edits")]);
    source(c, "edited", "run.ai/cluster-wide: \"true\"", "before");
    eventually(30, "the copy", || exists(c, &ns, "credgate.edited"));
    let hash = annotation(c, &ns, "credgate.edited", "credgate.run.ai/source-hash");
    source(c, "edited", "run.ai/cluster-wide: \"true\"", "after");
    eventually(30, "the copy to follow the edit", || {
        copy_token(c, &ns, "credgate.edited") == "after"
    });
    assert_ne!(
        annotation(c, &ns, "credgate.edited", "credgate.run.ai/source-hash"),
        hash
    );
    delete_source(c, "edited");
    eventually(30, "the copy to go", || !exists(c, &ns, "credgate.edited"));
    assert!(
        !exists(c, "runai", "edited"),
        "the finalizer is released once the copies are gone"
    );
}

fn copies_are_protected(c: &Cluster) {
    let ns = c.namespace("guarded", &[("runai/queue", "guarded")]);
    source(c, "guarded-src", "run.ai/cluster-wide: \"true\"", "x");
    eventually(30, "the copy", || exists(c, &ns, "credgate.guarded-src"));
    for args in [
        vec!["delete", "secret", "credgate.guarded-src", "-n", &ns],
        vec![
            "annotate",
            "secret",
            "credgate.guarded-src",
            "-n",
            &ns,
            "mine=yes",
        ],
        vec![
            "label",
            "secret",
            "credgate.guarded-src",
            "-n",
            &ns,
            "credgate.run.ai/managed-copy-",
        ],
    ] {
        let out = c.kubectl(&args, None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was allowed");
        assert!(stderr.contains("is a copy managed by credgate; change or delete the source credential Secret runai/guarded-src instead"), "{stderr}");
    }
    // Deleting a project namespace removes its copies.
    c.kubectl_ok(
        &["delete", "namespace", &ns, "--wait=true", "--timeout=60s"],
        None,
    );
    delete_source(c, "guarded-src");
}

fn no_pod_before_its_copy(c: &Cluster) {
    let _ = c.kubectl(&["create", "namespace", "runai"], None);
    let registry = c.kubectl_ok(
        &[
            "create",
            "secret",
            "docker-registry",
            "fast-registry",
            "-n",
            "runai",
            "--docker-server=registry.example.com:5000",
            "--docker-username=bot",
            "--docker-password=e2e",
            "--dry-run=client",
            "-o",
            "yaml",
        ],
        None,
    );
    let registry = c.kubectl_ok(
        &[
            "label",
            "--local",
            "-f",
            "-",
            "run.ai/resource=docker-registry",
            "run.ai/cluster-wide=true",
            "-o",
            "yaml",
        ],
        Some(&registry),
    );
    c.kubectl_ok(&["apply", "-f", "-"], Some(&registry));
    for round in 0..5 {
        let ns = c.namespace(&format!("fresh{round}"), &[]);
        c.kubectl_ok(
            &[
                "label",
                "namespace",
                &ns,
                &format!("runai/queue=fresh{round}"),
            ],
            None,
        );
        // Immediately: the controller may not have run yet; the pod must still get its pull secret.
        let pod = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: {ns}}}\nspec:\n  containers: [{{name: c, image: 'registry.example.com:5000/team/app:1'}}]\n"
        );
        c.kubectl_ok(&["apply", "-f", "-"], Some(&pod));
        let created = json(c, &["get", "pod", "p", "-n", &ns]);
        assert_eq!(
            created["spec"]["imagePullSecrets"],
            serde_json::json!([{"name": "credgate.fast-registry"}]),
            "round {round}"
        );
        assert!(
            exists(c, &ns, "credgate.fast-registry"),
            "round {round}: the copy exists when the pod does"
        );
        c.kubectl_ok(&["delete", "pod", "p", "-n", &ns, "--wait=true"], None);
    }
    delete_source(c, "fast-registry");
}

fn collisions(c: &Cluster) {
    let ns = c.namespace("taken", &[]);
    c.kubectl_ok(
        &[
            "create",
            "secret",
            "generic",
            "credgate.blocked",
            "-n",
            &ns,
            "--from-literal=mine=1",
        ],
        None,
    );
    c.kubectl_ok(&["label", "namespace", &ns, "runai/queue=taken"], None);
    source(c, "blocked", "run.ai/cluster-wide: \"true\"", "x");
    eventually(30, "the status to report the collision", || {
        annotation(c, "runai", "blocked", "run.ai/status") == "Issues found"
    });
    let message = annotation(c, "runai", "blocked", "run.ai/status-message");
    assert!(
        message.contains(&format!(
            "namespace {ns}: a Secret named \"credgate.blocked\" exists and is not credgate's copy"
        )),
        "{message}"
    );
    let theirs = json(c, &["get", "secret", "credgate.blocked", "-n", &ns]);
    assert!(
        theirs["data"].get("mine").is_some(),
        "the user's Secret is untouched"
    );
    delete_source(c, "blocked");
    assert!(
        exists(c, &ns, "credgate.blocked"),
        "never deletes a Secret that is not its copy"
    );
}
