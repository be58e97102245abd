//! End to end: workloads that name credentials, through the real apiserver and
//! controller-manager — pods created by Deployments and Jobs carry what their
//! annotations ask for; bad references fail at `kubectl apply`.

mod cluster;

use cluster::{Cluster, eventually};
use serde_json::Value;

fn main() {
    cluster::run(
        "e2e_workloads",
        vec![
            (
                "deployment_pods_get_env_volume_and_pull_secret",
                deployment_pods_are_injected,
            ),
            ("job_pods_get_s3_and_git_credentials", job_pods_are_injected),
            (
                "bad_references_fail_at_kubectl_apply",
                bad_references_refused,
            ),
            (
                "auto_pull_secrets_follow_image_registries",
                auto_pull_secrets,
            ),
            (
                "reapplying_changes_nothing_and_user_values_win",
                idempotent_and_user_wins,
            ),
            (
                "pods_outside_project_namespaces_are_untouched",
                outside_projects,
            ),
            (
                "stale_references_never_wedge_the_controllers",
                stale_references,
            ),
        ],
    );
}

/// A project namespace with one credential of each type.
fn project(c: &Cluster, prefix: &str) -> String {
    let ns = c.namespace(prefix, &[("runai/queue", prefix)]);
    let registry = c.kubectl_ok(
        &[
            "create",
            "secret",
            "docker-registry",
            "ghcr",
            "-n",
            &ns,
            "--docker-server=ghcr.io",
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
            "-o",
            "yaml",
        ],
        Some(&registry),
    );
    c.kubectl_ok(&["apply", "-f", "-"], Some(&registry));
    let manifests = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: db, namespace: {ns}, labels: {{run.ai/resource: generic}}}}\nstringData: {{url: 'postgres://db', token: t}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: s3, namespace: {ns}, labels: {{run.ai/resource: access-key}}}}\nstringData: {{AccessKeyId: AKIA, SecretKey: e2e}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: git, namespace: {ns}, labels: {{run.ai/resource: password}}}}\nstringData: {{User: bot, Password: e2e}}\n"
    );
    c.kubectl_ok(&["apply", "-f", "-"], Some(&manifests));
    ns
}

fn json(c: &Cluster, args: &[&str]) -> Value {
    c.kubectl_json(args)
}

/// The first pod of `selector`, once the controller-manager has created it.
fn pod_of(c: &Cluster, ns: &str, selector: &str) -> Value {
    let mut pod = Value::Null;
    eventually(60, &format!("a pod for {selector}"), || {
        let pods = json(c, &["get", "pods", "-n", ns, "-l", selector]);
        pod = pods["items"][0].clone();
        !pod.is_null()
    });
    pod
}

fn env_names(container: &Value) -> Vec<String> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect()
}

fn deployment_pods_are_injected(c: &Cluster) {
    let ns = project(c, "deploy");
    let deployment = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata:\n      labels: {{app: web}}\n      annotations:\n        run.ai/credentials-env: 'DB_URL=db:url'\n        run.ai/credentials-volume: 'db:/etc/db'\n    spec:\n      containers: [{{name: app, image: ghcr.io/org/app:1}}, {{name: side, image: busybox}}]\n"
    );
    c.kubectl_ok(&["apply", "-f", "-"], Some(&deployment));
    let pod = pod_of(c, &ns, "app=web");
    let spec = &pod["spec"];
    assert_eq!(
        spec["imagePullSecrets"],
        serde_json::json!([{"name": "ghcr"}]),
        "{spec}"
    );
    for container in spec["containers"].as_array().unwrap() {
        assert!(
            env_names(container).contains(&"DB_URL".to_owned()),
            "{container}"
        );
        let mount = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == "/etc/db")
            .expect("mount");
        assert_eq!(mount["readOnly"], true);
    }
    let volume = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["secret"]["secretName"] == "db")
        .expect("volume");
    assert_eq!(volume["secret"]["defaultMode"], 256);
    // The Deployment stays as the user wrote it (no GitOps drift).
    let dep = json(c, &["get", "deployment", "web", "-n", &ns]);
    assert!(
        dep["spec"]["template"]["spec"]["containers"][0]
            .get("env")
            .is_none()
    );
}

fn job_pods_are_injected(c: &Cluster) {
    let ns = project(c, "job");
    let job = format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: sync, namespace: {ns}}}\nspec:\n  template:\n    metadata:\n      annotations: {{run.ai/s3-credential: s3, run.ai/git-credential: git, run.ai/credentials-env-from: db}}\n    spec:\n      restartPolicy: Never\n      containers: [{{name: sync, image: busybox}}]\n"
    );
    c.kubectl_ok(&["apply", "-f", "-"], Some(&job));
    let pod = pod_of(c, &ns, "job-name=sync");
    let container = &pod["spec"]["containers"][0];
    let env = &container["env"];
    let find = |name: &str| {
        env.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        find("AWS_ACCESS_KEY_ID")["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "s3", "key": "AccessKeyId"})
    );
    assert_eq!(
        find("AWS_SECRET_ACCESS_KEY")["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "s3", "key": "SecretKey"})
    );
    assert_eq!(
        find("GIT_SYNC_USERNAME")["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "git", "key": "User"})
    );
    assert_eq!(
        find("GIT_SYNC_PASSWORD")["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "git", "key": "Password"})
    );
    assert_eq!(
        container["envFrom"],
        serde_json::json!([{"secretRef": {"name": "db"}}])
    );
    assert!(
        pod["spec"].get("imagePullSecrets").is_none(),
        "busybox is on Docker Hub; only ghcr.io has a credential"
    );
}

fn bad_references_refused(c: &Cluster) {
    let ns = project(c, "bad");
    let other = project(c, "other");
    let cases = [
        (
            format!("run.ai/credentials-env-from: secret-of-{other}"),
            "no credential named",
        ),
        (
            "run.ai/s3-credential: ghcr".to_owned(),
            "credential \"ghcr\" is of type docker-registry; it must be of type access-key",
        ),
        (
            "run.ai/credentials-env: 'X=db:missing'".to_owned(),
            "credential \"db\" has no key \"missing\"",
        ),
        (
            "run.ai/credentials-volume: 'db'".to_owned(),
            "\"db\" must look like <credential>:<mountPath>",
        ),
    ];
    // A credential that exists, but in another project.
    c.kubectl_ok(&["apply", "-f", "-"], Some(&format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: secret-of-{other}, namespace: {other}, labels: {{run.ai/resource: generic}}}}\nstringData: {{k: v}}\n")));
    for (annotation, fragment) in cases {
        let manifest = format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: bad, namespace: {ns}}}\nspec:\n  selector: {{matchLabels: {{app: bad}}}}\n  template:\n    metadata:\n      labels: {{app: bad}}\n      annotations: {{{annotation}}}\n    spec:\n      containers: [{{name: c, image: busybox}}]\n"
        );
        let out = c.kubectl(&["apply", "-f", "-"], Some(&manifest));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{annotation} accepted");
        assert!(
            stderr.contains("pod template: annotation") && stderr.contains(fragment),
            "{stderr:?} lacks {fragment:?}"
        );
    }
    let deployments = c.kubectl_ok(&["get", "deployments", "-n", &ns, "-o", "name"], None);
    assert_eq!(deployments.trim(), "");
}

fn bare_pod(ns: &str, name: &str, image: &str, annotations: &str, env: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, annotations: {{{annotations}}}}}\nspec:\n  containers: [{{name: c, image: '{image}'{env}}}]\n"
    )
}

fn auto_pull_secrets(c: &Cluster) {
    let ns = project(c, "pull");
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&bare_pod(&ns, "unrelated", "quay.io/org/x:1", "", "")),
    );
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&bare_pod(&ns, "matching", "ghcr.io/org/x:1", "", "")),
    );
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&bare_pod(
            &ns,
            "opted-out",
            "ghcr.io/org/x:1",
            "run.ai/image-pull-credentials: none",
            "",
        )),
    );
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&bare_pod(
            &ns,
            "named",
            "quay.io/org/x:1",
            "run.ai/image-pull-credentials: ghcr",
            "",
        )),
    );
    let pulls =
        |name: &str| json(c, &["get", "pod", name, "-n", &ns])["spec"]["imagePullSecrets"].clone();
    assert_eq!(pulls("unrelated"), Value::Null);
    assert_eq!(pulls("matching"), serde_json::json!([{"name": "ghcr"}]));
    assert_eq!(pulls("opted-out"), Value::Null);
    assert_eq!(pulls("named"), serde_json::json!([{"name": "ghcr"}]));
}

fn idempotent_and_user_wins(c: &Cluster) {
    let ns = project(c, "again");
    let manifest = bare_pod(
        &ns,
        "p",
        "ghcr.io/org/x",
        "run.ai/credentials-env: 'DB_URL=db:url, TOKEN=db:token'",
        ", env: [{name: DB_URL, value: local}]",
    );
    let out = c.kubectl(&["apply", "-f", "-"], Some(&manifest));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Warning: container \"c\" sets DB_URL itself"),
        "kubectl shows the warning: {stderr}"
    );
    let before = json(c, &["get", "pod", "p", "-n", &ns]);
    let env = &before["spec"]["containers"][0]["env"];
    assert_eq!(
        env[0],
        serde_json::json!({"name": "DB_URL", "value": "local"}),
        "the user's value wins"
    );
    assert_eq!(env.as_array().unwrap().len(), 2);
    // Re-applying the same manifest changes nothing.
    c.kubectl_ok(&["apply", "-f", "-"], Some(&manifest));
    let after = json(c, &["get", "pod", "p", "-n", &ns]);
    assert_eq!(
        before["metadata"]["resourceVersion"],
        after["metadata"]["resourceVersion"]
    );
    assert_eq!(before["spec"], after["spec"]);

    let deployment = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata:\n      labels: {{app: web}}\n      annotations: {{run.ai/credentials-env-from: db}}\n    spec:\n      containers: [{{name: c, image: busybox}}]\n"
    );
    c.kubectl_ok(&["apply", "-f", "-"], Some(&deployment));
    let generation =
        json(c, &["get", "deployment", "web", "-n", &ns])["metadata"]["generation"].clone();
    let out = c.kubectl_ok(&["apply", "-f", "-"], Some(&deployment));
    assert!(out.contains("unchanged"), "{out}");
    assert_eq!(
        json(c, &["get", "deployment", "web", "-n", &ns])["metadata"]["generation"],
        generation
    );
}

fn outside_projects(c: &Cluster) {
    let ns = c.namespace("plain-pods", &[]);
    // Annotations naming nothing that exists: outside project namespaces credgate is not asked.
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&bare_pod(
            &ns,
            "p",
            "ghcr.io/x",
            "run.ai/s3-credential: nothing",
            "",
        )),
    );
    let pod = json(c, &["get", "pod", "p", "-n", &ns]);
    assert!(pod["spec"]["containers"][0].get("env").is_none());
}

/// Issue 16 (ratcheting): a Deployment whose department credential goes
/// stale when its project moves to another department can still be
/// annotated and scaled, its ReplicaSet is still updated by the
/// controller-manager, and `--cascade=foreground` deletion completes.
fn stale_references(c: &Cluster) {
    let id = std::process::id();
    let (d1, d2) = (format!("d1-{id}"), format!("d2-{id}"));
    let credential = format!("dept-db-{id}");
    let _ = c.kubectl(&["create", "namespace", "runai"], None);
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(
            &serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": credential, "namespace": "runai",
                         "labels": {"run.ai/resource": "generic", "run.ai/department": d1}},
            "stringData": {"token": "e2e-secret-stale"}})
            .to_string(),
        ),
    );
    let ns = c.namespace(
        "stale",
        &[("runai/queue", "stale"), ("run.ai/department", &d1)],
    );
    let deployment = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"},
                                           "annotations": {"run.ai/credentials-env-from": credential}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
    // The namespace's department may take a moment to reach credgate's snapshot.
    eventually(30, "the Deployment to be admitted", || {
        c.kubectl(&["apply", "-f", "-"], Some(&deployment.to_string()))
            .status
            .success()
    });
    eventually(60, "the ReplicaSet", || {
        !c.kubectl_json(&["get", "rs", "-n", &ns])["items"]
            .as_array()
            .unwrap()
            .is_empty()
    });
    // The project moves to another department: the reference is stale now.
    c.kubectl_ok(
        &[
            "label",
            "namespace",
            &ns,
            &format!("run.ai/department={d2}"),
            "--overwrite",
        ],
        None,
    );
    eventually(
        30,
        "credgate to refuse the stale reference for a new template",
        || {
            let mut other = deployment.clone();
            other["metadata"]["name"] = "new".into();
            let out = c.kubectl(
                &["create", "--dry-run=server", "-f", "-"],
                Some(&other.to_string()),
            );
            !out.status.success() && String::from_utf8_lossy(&out.stderr).contains(&credential)
        },
    );
    c.kubectl_ok(
        &["annotate", "deploy", "web", "-n", &ns, "team=platform"],
        None,
    );
    c.kubectl_ok(&["scale", "deploy", "web", "-n", &ns, "--replicas=3"], None);
    eventually(
        60,
        "the controller-manager to update the ReplicaSet",
        || {
            let rs = c.kubectl_json(&["get", "rs", "-n", &ns]);
            rs["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["spec"]["replicas"] == 3)
        },
    );
    c.kubectl_ok(
        &[
            "delete",
            "deploy",
            "web",
            "-n",
            &ns,
            "--cascade=foreground",
            "--wait=false",
        ],
        None,
    );
    eventually(60, "the foreground deletion to finish", || {
        !c.kubectl(&["get", "deploy", "web", "-n", &ns], None)
            .status
            .success()
    });
    // Clean-up, best effort (the credential's copy may still be in use by a stored pod).
    let _ = c.kubectl(
        &[
            "delete",
            "secret",
            &credential,
            "-n",
            "runai",
            "--wait=false",
        ],
        None,
    );
}
