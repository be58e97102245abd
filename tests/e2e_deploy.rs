//! End to end: what users deploy. The kustomize base, its cert-manager overlay
//! and the Helm chart render the same objects and the real apiserver accepts
//! them; credgate runs as its ServiceAccount with no more rights than listed;
//! with credgate down only what it guards is refused; built-in certificates
//! rotate (serving certificate and CA) while requests keep succeeding.

mod cluster;

use cluster::{Cluster, eventually};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    cluster::run(
        "e2e_deploy",
        vec![
            (
                "kustomize_and_helm_render_the_same_accepted_objects",
                rendered_objects,
            ),
            (
                "credgate_runs_as_its_service_account_and_no_more",
                least_privilege,
            ),
            (
                "helm_uninstall_runs_credgate_uninstall_first",
                uninstall_hook,
            ),
            (
                "with_credgate_down_only_what_it_guards_is_refused",
                credgate_down,
            ),
            (
                "builtin_certificates_rotate_while_requests_succeed",
                builtin_rotation,
            ),
            (
                "three_dev_clusters_start_at_once_on_their_own_ports",
                three_dev_clusters,
            ),
        ],
    );
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn helm() -> PathBuf {
    let out = Command::new(repo().join("scripts/helm-bin"))
        .output()
        .expect("scripts/helm-bin runs");
    assert!(
        out.status.success(),
        "helm could not be built: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn kustomize(c: &Cluster, dir: &str) -> String {
    c.kubectl_ok(
        &["kustomize", &repo().join(dir).display().to_string()],
        None,
    )
}

/// The chart's objects, without its hooks (which only `helm uninstall` runs).
fn helm_template(namespace: &str, set: &[&str]) -> String {
    helm_render(namespace, set, false)
}

fn helm_render(namespace: &str, set: &[&str], hooks: bool) -> String {
    let mut cmd = Command::new(helm());
    cmd.args(["template", "credgate"])
        .arg(repo().join("manifests/helm/credgate"))
        .args(["-n", namespace]);
    if !hooks {
        cmd.arg("--no-hooks");
    }
    for s in set {
        cmd.args(["--set", s]);
    }
    run(&mut cmd)
}

/// Issue 16: `helm uninstall` runs `credgate uninstall --yes` first, as a
/// pre-delete hook Job with its own ServiceAccount, which may delete only
/// credgate's webhook configurations and its claims, and list, patch and
/// delete Secrets. The API server accepts the objects (server dry run; the
/// development cluster runs no pods, so the Job itself cannot run here:
/// `e2e_uninstall` runs the same command).
fn uninstall_hook(c: &Cluster) {
    let all = objects(c, &helm_render("credgate-system", &[], true));
    let hooks: BTreeMap<_, _> = all
        .into_iter()
        .filter(|(_, o)| o["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete")
        .collect();
    let kinds: BTreeSet<&str> = hooks.keys().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "ClusterRole",
            "ClusterRoleBinding",
            "Job",
            "Role",
            "RoleBinding",
            "ServiceAccount"
        ])
    );
    let job = &hooks[&("Job".into(), "credgate-uninstall".into())];
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "credgate-uninstall");
    assert_eq!(
        pod["containers"][0]["args"],
        serde_json::json!([
            "uninstall",
            "--yes",
            "--credgate-namespace=credgate-system",
            "--scale-down=credgate"
        ])
    );
    let rules = hooks[&("ClusterRole".into(), "credgate-uninstall".into())]["rules"].to_string();
    for narrow in [
        r#""resourceNames":["credgate"]"#,
        r#""verbs":["list","delete","patch"]"#,
    ] {
        assert!(rules.contains(narrow), "{narrow}: {rules}");
    }
    let yaml: String = hooks
        .values()
        .map(|o| format!("---\n{}", serde_yaml_ng::to_string(o).unwrap()))
        .collect();
    server_dry_run(c, &yaml);
    let off = objects(
        c,
        &helm_render("credgate-system", &["uninstallHook.enabled=false"], true),
    );
    assert!(
        !off.contains_key(&("Job".into(), "credgate-uninstall".into())),
        "uninstallHook.enabled=false renders no hook"
    );
}

/// The objects of a YAML stream, keyed by kind and name.
fn objects(_c: &Cluster, yaml: &str) -> BTreeMap<(String, String), Value> {
    use serde::Deserialize as _;
    let mut out = BTreeMap::new();
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let item = Value::deserialize(doc).unwrap();
        if item.is_null() {
            continue;
        }
        let key = (
            item["kind"].as_str().unwrap().to_owned(),
            item["metadata"]["name"].as_str().unwrap().to_owned(),
        );
        assert!(out.insert(key.clone(), item).is_none(), "{key:?} twice");
    }
    out
}

fn server_dry_run(c: &Cluster, yaml: &str) {
    let out = c.kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(yaml));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "server-side dry run refused: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const CERT_MANAGER_KINDS: [&str; 2] = ["Certificate", "Issuer"];

fn rendered_objects(c: &Cluster) {
    // The base: every object accepted by the apiserver (server-side dry run).
    let base_yaml = kustomize(c, "manifests");
    let base = objects(c, &base_yaml);
    let kinds: BTreeSet<&str> = base.keys().map(|(k, _)| k.as_str()).collect();
    for wanted in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        assert!(kinds.contains(wanted), "manifests/ lacks a {wanted}");
    }
    server_dry_run(c, &base_yaml);

    // The chart with its defaults renders the same objects (Helm leaves the namespace to --create-namespace).
    let chart_yaml = helm_template("credgate-system", &[]);
    let chart = objects(c, &chart_yaml);
    let mut base_without_ns = base.clone();
    base_without_ns.remove(&("Namespace".into(), "credgate-system".into()));
    assert_eq!(
        chart.keys().collect::<Vec<_>>(),
        base_without_ns.keys().collect::<Vec<_>>()
    );
    for (key, object) in &chart {
        assert_eq!(
            object, &base_without_ns[key],
            "{key:?} differs between the chart and manifests/"
        );
    }
    server_dry_run(c, &chart_yaml);

    // Client authentication: the overlay and the chart's clientCA value agree,
    // and the apiserver accepts them.
    let client_auth_yaml = kustomize(c, "manifests/client-auth");
    let mut client_auth = objects(c, &client_auth_yaml);
    client_auth.remove(&("Namespace".into(), "credgate-system".into()));
    let chart_client_auth = objects(
        c,
        &helm_template(
            "credgate-system",
            &["clientCA.configMap=credgate-client-ca"],
        ),
    );
    assert_eq!(
        chart_client_auth, client_auth,
        "the client-auth overlay and the chart's clientCA.configMap differ"
    );
    let deployment = &client_auth[&("Deployment".into(), "credgate".into())];
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    for arg in [
        "--client-ca=/run/credgate/client-ca/ca.crt",
        "--client-name=kube-apiserver",
    ] {
        assert!(args.contains(arg), "{arg}: {args}");
    }
    server_dry_run(c, &client_auth_yaml);

    // cert-manager: the overlay and the chart agree too. The apiserver has no
    // cert-manager CRDs, so Certificate and Issuer are checked here, the rest dry-run.
    let overlay = objects(c, &kustomize(c, "manifests/cert-manager"));
    let chart_cm = objects(
        c,
        &helm_template("credgate-system", &["certMode=cert-manager"]),
    );
    let mut overlay_without_ns = overlay.clone();
    overlay_without_ns.remove(&("Namespace".into(), "credgate-system".into()));
    assert_eq!(
        chart_cm, overlay_without_ns,
        "the cert-manager overlay and the chart's cert-manager mode differ"
    );
    let certificate = &overlay[&("Certificate".into(), "credgate".into())];
    assert_eq!(certificate["spec"]["secretName"], "credgate-tls");
    assert_eq!(
        certificate["spec"]["dnsNames"][0],
        "credgate.credgate-system.svc"
    );
    for kind in [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        assert_eq!(
            overlay[&(kind.into(), "credgate".into())]["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            "credgate-system/credgate"
        );
    }
    let deployment = &overlay[&("Deployment".into(), "credgate".into())];
    assert_eq!(
        deployment["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"],
        "credgate-tls"
    );
    assert!(
        deployment["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .contains(&json!("--cert-mode=files"))
    );
    let rules = overlay[&("ClusterRole".into(), "credgate".into())]["rules"].to_string();
    assert!(
        !rules.contains("admissionregistration"),
        "no caBundle rights without built-in certificates"
    );
    let rest: Vec<Value> = overlay
        .iter()
        .filter(|((k, _), _)| !CERT_MANAGER_KINDS.contains(&k.as_str()))
        .map(|(_, v)| v.clone())
        .collect();
    server_dry_run(
        c,
        &json!({"apiVersion": "v1", "kind": "List", "items": rest}).to_string(),
    );

    // Another namespace and values: everything follows.
    let other = objects(
        c,
        &helm_template(
            "platform",
            &[
                "replicas=3",
                "failurePolicy.workloads=Ignore",
                "credentialsNamespace=creds",
            ],
        ),
    );
    let deployment = &other[&("Deployment".into(), "credgate".into())];
    assert_eq!(deployment["metadata"]["namespace"], "platform");
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert!(
        deployment
            .to_string()
            .contains("--credentials-namespace=creds")
    );
    // The copies webhook trusts the release's ServiceAccount, and so does credgate.
    assert!(
        deployment
            .to_string()
            .contains("--controller-identity=system:serviceaccount:platform:credgate"),
        "{deployment}"
    );
    let validating = &other[&("ValidatingWebhookConfiguration".into(), "credgate".into())];
    let text = validating.to_string();
    assert!(
        text.contains("system:serviceaccount:platform:credgate") && text.contains("\"platform\"]"),
        "{text}"
    );
    let hooks = validating["webhooks"].as_array().unwrap();
    let policy =
        |name: &str| hooks.iter().find(|h| h["name"] == name).unwrap()["failurePolicy"].clone();
    assert_eq!(policy("workloads.validate.credgate.run.ai"), "Ignore");
    assert_eq!(policy("credentials.validate.credgate.run.ai"), "Fail");

    // Safe by default: every webhook bounded in time and never about system namespaces.
    for kind in [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        for hook in base[&(kind.into(), "credgate".into())]["webhooks"]
            .as_array()
            .unwrap()
        {
            assert!(hook["timeoutSeconds"].as_i64().unwrap() <= 5, "{hook}");
            let excluded = hook["namespaceSelector"]["matchExpressions"].to_string();
            for ns in ["kube-system", "kube-node-lease", "credgate-system"] {
                assert!(excluded.contains(ns), "{} must exclude {ns}", hook["name"]);
            }
            if hook["name"] == "pods.mutate.credgate.run.ai" {
                assert_eq!(hook["reinvocationPolicy"], "IfNeeded");
            }
        }
    }
}

const SA: &str = "system:serviceaccount:credgate-system:credgate";

fn can(c: &Cluster, args: &[&str]) -> bool {
    let out = c.kubectl(&[&["auth", "can-i", "--as", SA], args].concat(), None);
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

fn least_privilege(c: &Cluster) {
    // The whole e2e suite runs credgate with this kubeconfig: its ServiceAccount's token.
    let whoami = c.kubectl_ok(
        &[
            "auth",
            "whoami",
            "--kubeconfig",
            &c.state_file("credgate.kubeconfig").display().to_string(),
            "-o",
            "json",
        ],
        None,
    );
    let whoami: Value = serde_json::from_str(&whoami).unwrap();
    assert_eq!(whoami["status"]["userInfo"]["username"], SA);

    for needed in [
        &["create", "subjectaccessreviews.authorization.k8s.io"][..],
        &[
            "create",
            "rolebindings.rbac.authorization.k8s.io",
            "-n",
            "team-x",
        ],
        &[
            "get",
            "rolebindings.rbac.authorization.k8s.io",
            "-n",
            "team-x",
        ],
        &["watch", "rolebindings.rbac.authorization.k8s.io", "-A"],
        &[
            "patch",
            "rolebindings.rbac.authorization.k8s.io",
            "-n",
            "team-x",
        ],
        &[
            "bind",
            "clusterroles.rbac.authorization.k8s.io/credgate-project-secrets",
        ],
        &["get", "secrets", "-n", "credgate-system"],
        &["watch", "namespaces"],
        &["watch", "pods", "-A"],
        &["list", "cronjobs.batch", "-A"],
        &[
            "create",
            "leases.coordination.k8s.io",
            "-n",
            "credgate-system",
        ],
        &[
            "delete",
            "leases.coordination.k8s.io",
            "-n",
            "credgate-system",
        ],
        &["update", "validatingwebhookconfigurations/credgate"],
        &["update", "mutatingwebhookconfigurations/credgate"],
    ] {
        assert!(can(c, needed), "credgate needs: {needed:?}");
    }
    for refused in [
        // No Secret outside the namespaces it binds itself in (below).
        &["get", "secrets", "-n", "kube-system"][..],
        &["list", "secrets", "-n", "kube-system"],
        &["watch", "secrets", "-n", "kube-system"],
        &["create", "secrets", "-n", "kube-system"],
        &["delete", "secrets", "-n", "default"],
        &["list", "secrets", "-A"],
        &["get", "secrets", "-n", "team-x"],
        // Only its own ClusterRole to bind, and no other RBAC write.
        &["bind", "clusterroles.rbac.authorization.k8s.io/admin"],
        &["escalate", "clusterroles.rbac.authorization.k8s.io"],
        &["create", "roles.rbac.authorization.k8s.io", "-n", "team-x"],
        &[
            "update",
            "rolebindings.rbac.authorization.k8s.io",
            "-n",
            "team-x",
        ],
        &["create", "pods", "-n", "team-x"],
        &["get", "pods", "-n", "team-x"],
        &["update", "deployments.apps", "-n", "team-x"],
        &["delete", "namespaces"],
        &["get", "nodes"],
        &["update", "validatingwebhookconfigurations/other"],
        &["create", "validatingwebhookconfigurations"],
        &["create", "clusterrolebindings"],
        &[
            "create",
            "serviceaccounts",
            "--subresource=token",
            "-n",
            "credgate-system",
        ],
        &["impersonate", "users"],
        // No Lease right outside its own namespace, whatever the verb.
        &["get", "leases.coordination.k8s.io", "-n", "kube-system"],
        &[
            "create",
            "leases.coordination.k8s.io",
            "-n",
            "kube-node-lease",
        ],
        &[
            "update",
            "leases.coordination.k8s.io",
            "-n",
            "kube-node-lease",
        ],
        &["patch", "leases.coordination.k8s.io", "-n", "kube-system"],
        &["delete", "leases.coordination.k8s.io", "-n", "team-x"],
        &["list", "leases.coordination.k8s.io", "-A"],
        &["watch", "leases.coordination.k8s.io", "-A"],
        &[
            "deletecollection",
            "leases.coordination.k8s.io",
            "-n",
            "team-x",
        ],
        // Nothing on other webhook configurations.
        &["get", "mutatingwebhookconfigurations/other"],
        &["patch", "validatingwebhookconfigurations/other"],
        &["delete", "validatingwebhookconfigurations/credgate"],
        &["delete", "mutatingwebhookconfigurations/other"],
        &["list", "validatingwebhookconfigurations"],
        &["get", "configmaps", "-n", "credgate-system"],
    ] {
        assert!(
            !can(c, refused),
            "credgate must not be allowed: {refused:?}"
        );
    }

    // Secrets: credgate binds credgate-project-secrets to itself in each
    // project namespace and the credentials namespace as they appear, and the
    // ValidatingAdmissionPolicy credgate-secret-access (applied by the dev
    // cluster from manifests/base) refuses any other RoleBinding it would write.
    let bind_for = |ns: &str, name: &str, role: &str, subject: &str| {
        c.kubectl(
            &[
                "create",
                "rolebinding",
                name,
                &format!("--clusterrole={role}"),
                &format!("--serviceaccount={subject}"),
                "-n",
                ns,
                "--dry-run=server",
                "--as",
                SA,
            ],
            None,
        )
    };
    let bind =
        |ns: &str, name: &str, role: &str| bind_for(ns, name, role, "credgate-system:credgate");
    for ns in ["kube-system", "kube-node-lease", "default"] {
        let out = bind(ns, "credgate-secrets", "credgate-project-secrets");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && err.contains("credgate may only bind credgate-project-secrets"),
            "credgate binding itself in {ns}: {err}"
        );
    }
    let project = c.namespace("writes", &[("runai/queue", "writes")]);
    for (name, role, refusal) in [
        (
            "other",
            "credgate-project-secrets",
            "credgate may only bind",
        ),
        ("credgate-secrets", "admin", "forbidden"),
    ] {
        let out = bind(&project, name, role);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(refusal),
            "credgate binding {role} as {name}: {err}"
        );
    }
    // ...and only to itself.
    let out = bind_for(
        &project,
        "credgate-secrets",
        "credgate-project-secrets",
        &format!("{project}:default"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("credgate may only bind"),
        "credgate binding its role to another ServiceAccount: {err}"
    );
    let probe = |ns: &str| {
        c.kubectl(
            &[
                "create",
                "secret",
                "generic",
                "probe",
                "-n",
                ns,
                "--from-literal=k=v",
                "--dry-run=server",
                "--as",
                SA,
            ],
            None,
        )
    };
    for ns in ["kube-system", "kube-node-lease", "default"] {
        let out = probe(ns);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("forbidden"),
            "a Secret write by credgate in {ns}: {err}"
        );
    }
    let _ = c.kubectl(&["create", "namespace", "runai"], None);
    for ns in [project.as_str(), "runai"] {
        cluster::eventually(30, &format!("credgate binds itself in {ns}"), || {
            can(c, &["watch", "secrets", "-n", ns])
        });
        let binding = c.kubectl_json(&["get", "rolebinding", "credgate-secrets", "-n", ns]);
        assert_eq!(binding["roleRef"]["name"], "credgate-project-secrets");
    }
    for ns in [project.as_str(), "runai", "credgate-system"] {
        let out = probe(ns);
        assert!(
            out.status.success(),
            "a Secret write by credgate in {ns}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A namespace that stops being a project (holding nothing of credgate's)
    // loses the binding.
    c.kubectl_ok(&["label", "namespace", &project, "runai/queue-"], None);
    cluster::eventually(30, &format!("credgate unbinds itself in {project}"), || {
        !can(c, &["watch", "secrets", "-n", &project])
    });
}

/// Starts credgate again however the test ends.
struct StartAgain<'a>(&'a Cluster);
impl Drop for StartAgain<'_> {
    fn drop(&mut self) {
        self.0.start_credgate();
    }
}

fn pod(name: &str, ns: &str) -> String {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
           "spec": {"containers": [{"name": "c", "image": "registry.example/app:1"}]}})
    .to_string()
}

fn secret(name: &str, ns: &str, labels: Value) -> String {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns, "labels": labels},
           "stringData": {"token": "e2e-deploy"}})
    .to_string()
}

fn credgate_down(c: &Cluster) {
    let plain = c.namespace("down-plain", &[]);
    let project = c.namespace("down-project", &[("runai/queue", "down-project")]);
    let _ = c.kubectl(&["create", "namespace", "runai"], None);
    c.stop_credgate();
    let _again = StartAgain(c);
    let id = std::process::id();
    let credential = json!({"run.ai/resource": "generic"});
    // Never sent to credgate: system namespaces, unlabelled Secrets, pods outside projects.
    for (what, yaml) in [
        (
            "a pod in kube-system",
            pod(&format!("down-{id}"), "kube-system"),
        ),
        (
            "a labelled Secret in kube-system",
            secret(&format!("down-{id}"), "kube-system", credential.clone()),
        ),
        ("a pod outside projects", pod("p", &plain)),
        (
            "a plain Secret outside projects",
            secret("s", &plain, json!({})),
        ),
        (
            "a plain Secret in a project",
            secret("s", &project, json!({})),
        ),
    ] {
        let out = c.kubectl(&["apply", "-f", "-"], Some(&yaml));
        assert!(
            out.status.success(),
            "{what} must not need credgate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Refused while credgate is down (failurePolicy Fail), with the webhook named.
    for (what, yaml) in [
        (
            "a credential",
            secret(
                "c",
                "runai",
                json!({"run.ai/resource": "generic", "run.ai/cluster-wide": "true"}),
            ),
        ),
        (
            "a credential in a project",
            secret("c", &project, credential.clone()),
        ),
        ("a pod in a project", pod("p", &project)),
    ] {
        let out = c.kubectl(&["apply", "-f", "-"], Some(&yaml));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{what} must be refused while credgate is down"
        );
        assert!(
            stderr.contains("failed calling webhook") && stderr.contains("credgate.run.ai"),
            "{what}: {stderr}"
        );
    }
    let name = format!("down-{id}");
    c.kubectl_ok(
        &["delete", "pod", &name, "-n", "kube-system", "--wait=false"],
        None,
    );
    c.kubectl_ok(&["delete", "secret", &name, "-n", "kube-system"], None);
}

/// The certificate a TLS server at `addr` presents, verified against `bundle`.
async fn presented(addr: &str, bundle: &[u8]) -> Result<Vec<u8>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(bundle) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no certificate")?;
    Ok(cert.to_vec())
}

/// A credgate process in built-in certificate mode (as admin; stopped when dropped),
/// and the webhook address it bound (port 0: the kernel picks, so no other
/// process can take it first).
struct BuiltinReplica(std::process::Child, String);
impl Drop for BuiltinReplica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn builtin_replica(c: &Cluster, ns: &str, dir: &Path, log_path: &Path) -> BuiltinReplica {
    let log = std::fs::File::create(log_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_credgate"))
        .env("KUBECONFIG", &c.kubeconfig)
        .args([
            "--log-level",
            "info",
            "--log-format",
            "json",
            "serve",
            "--controller=false",
            "--admin-addr",
            "127.0.0.1:0",
            "--addr",
            "127.0.0.1:0",
        ])
        .args([
            "--cert-mode",
            "builtin",
            "--cert-namespace",
            ns,
            "--cert-secret",
            "rotating-tls",
        ])
        .args([
            "--webhook-config",
            "credgate-rotation",
            "--cert-ip",
            "127.0.0.1",
        ])
        .args([
            "--ca-validity-secs",
            "24",
            "--cert-validity-secs",
            "9",
            "--cert-check-secs",
            "1",
        ])
        .arg("--tls-cert")
        .arg(dir.join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.join("tls.key"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut webhook = None;
    eventually(60, "the replica to log the address it serves on", || {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the replica exited: {}",
            std::fs::read_to_string(log_path).unwrap_or_default()
        );
        webhook = std::fs::read_to_string(log_path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["message"] == "serving")
            .and_then(|v| v["webhook"].as_str().map(str::to_owned));
        webhook.is_some()
    });
    BuiltinReplica(child, webhook.unwrap())
}

fn builtin_rotation(c: &Cluster) {
    let ns = c.namespace("rotation", &[("credgate-e2e/rotation", "yes")]);
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let logs = (
        c.state_file("rotation-a.log"),
        c.state_file("rotation-b.log"),
    );
    let a = builtin_replica(c, &ns, dirs.0.path(), &logs.0);
    let b = builtin_replica(c, &ns, dirs.1.path(), &logs.1);
    let (addr, other_addr) = (a.1.clone(), b.1.clone());
    // One validating webhook of manifests/, pointed at the replica, with no caBundle: credgate fills it in.
    let rendered = c.kubectl_ok(
        &[
            "create",
            "--dry-run=client",
            "-o",
            "json",
            "-f",
            &repo()
                .join("manifests/base/webhooks.yaml")
                .display()
                .to_string(),
        ],
        None,
    );
    let mut config = serde_json::Deserializer::from_str(&rendered)
        .into_iter::<Value>()
        .find_map(|d| {
            d.ok()
                .filter(|d| d["kind"] == "ValidatingWebhookConfiguration")
        })
        .unwrap();
    config["metadata"]["name"] = "credgate-rotation".into();
    let mut hook = config["webhooks"][0].clone();
    hook["clientConfig"] = json!({"url": format!("https://{addr}/validate")});
    hook["namespaceSelector"] = json!({"matchLabels": {"credgate-e2e/rotation": "yes"}});
    config["webhooks"] = json!([hook]);
    // Applied after the replicas serve; credgate keeps its caBundle every --cert-check-secs.
    c.kubectl_ok(&["apply", "-f", "-"], Some(&config.to_string()));
    let bundle = || -> Vec<u8> {
        use base64::Engine as _;
        let config =
            c.kubectl_json(&["get", "validatingwebhookconfiguration", "credgate-rotation"]);
        base64::engine::general_purpose::STANDARD
            .decode(
                config["webhooks"][0]["clientConfig"]["caBundle"]
                    .as_str()
                    .unwrap_or_default(),
            )
            .unwrap_or_default()
    };
    eventually(30, "credgate to publish its CA as the caBundle", || {
        !bundle().is_empty()
    });
    // The bundle may change while the replicas start: wait until one serves with it.
    eventually(30, "the replica to serve with the published CA", || {
        c.runtime.block_on(presented(&addr, &bundle())).is_ok()
    });

    let client = c.client();
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(client, &ns);
    let probe: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "probe", "labels": {"run.ai/resource": "generic"}}
    }))
    .unwrap();
    let params = kube::api::PostParams {
        dry_run: true,
        ..Default::default()
    };
    let (mut answered, mut failures) = (0u32, Vec::new());
    let (mut cas, mut served) = (BTreeSet::new(), BTreeSet::new());
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        // Through the apiserver: credgate's own denial means it answered over TLS.
        match c.runtime.block_on(api.create(&params, &probe)) {
            Err(kube::Error::Api(s))
                if s.message
                    .contains("generic credentials need at least one key") =>
            {
                answered += 1
            }
            other => failures.push(format!("{other:?}")),
        }
        // A new handshake, verified against the bundle published right now.
        let bundle = bundle();
        cas.insert(bundle.clone());
        match c.runtime.block_on(presented(&addr, &bundle)) {
            Ok(cert) => {
                served.insert(cert);
            }
            Err(e) => failures.push(format!("handshake: {e}")),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(&logs.0).unwrap_or_default()
        + &std::fs::read_to_string(&logs.1).unwrap_or_default();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during rotation: {:?}\n{log}",
        failures.len(),
        answered as usize + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(answered >= 50, "only {answered} answers in 30 s");
    assert!(
        served.len() >= 3,
        "the serving certificate should have been renewed (saw {})",
        served.len()
    );
    assert!(
        cas.len() >= 3,
        "the CA should have rotated through staged, overlapping and single bundles (saw {} bundles)",
        cas.len()
    );
    assert!(
        log.contains("PromoteNextCa"),
        "a CA promotion in 30 s: {log}"
    );
    assert!(!log.contains("PRIVATE KEY"), "keys are never logged");
    // Replicas agree: the Secret is the source of truth.
    eventually(10, "both replicas to serve the same certificate", || {
        let bundle = bundle();
        let a = c.runtime.block_on(presented(&addr, &bundle));
        let b = c.runtime.block_on(presented(&other_addr, &bundle));
        matches!((a, b), (Ok(a), Ok(b)) if a == b)
    });
    c.kubectl_ok(
        &[
            "delete",
            "validatingwebhookconfiguration",
            "credgate-rotation",
        ],
        None,
    );
}

/// `scripts/dev-cluster up` three times at once (each with its own state): the
/// ports are chosen and bound without a race, so all three come up, each with
/// its own apiserver and credgate, while this binary's own cluster runs too.
fn three_dev_clusters(c: &Cluster) {
    let states: Vec<_> = (0..3)
        .map(|i| c.state_file(&format!("parallel-{i}")))
        .collect();
    let dev_cluster = |command: &str, state: &Path| {
        Command::new(repo().join("scripts/dev-cluster"))
            .arg(command)
            .env("CREDGATE_DEV_STATE", state)
            .env("CREDGATE_BIN", env!("CARGO_BIN_EXE_credgate"))
            .stdin(Stdio::null())
            .output()
            .expect("scripts/dev-cluster runs")
    };
    let outputs: Vec<_> = std::thread::scope(|scope| {
        let started: Vec<_> = states
            .iter()
            .map(|state| scope.spawn(|| dev_cluster("up", state)))
            .collect();
        started.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut ports = BTreeSet::new();
    for (state, out) in states.iter().zip(&outputs) {
        let ok = out.status.success()
            && c.kubectl
                .parent()
                .map(|bins| {
                    Command::new(bins.join("kubectl"))
                        .env("KUBECONFIG", state.join("kubeconfig"))
                        .args(["get", "--raw", "/readyz"])
                        .output()
                        .is_ok_and(|o| o.status.success())
                })
                .unwrap_or(false);
        let cluster_ports = std::fs::read_to_string(state.join("ports")).unwrap_or_default()
            + " "
            + &std::fs::read_to_string(state.join("credgate.port")).unwrap_or_default();
        ports.extend(cluster_ports.split_whitespace().map(str::to_owned));
        if !ok {
            for state in &states {
                dev_cluster("down", state);
            }
            panic!(
                "dev-cluster {} did not come up: {}",
                state.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    for state in &states {
        assert!(dev_cluster("down", state).status.success());
    }
    assert_eq!(
        ports.len(),
        3 * 4,
        "every cluster has ports of its own: {ports:?}"
    );
}
