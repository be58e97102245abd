//! End to end: the credentials table CLI against the real apiserver — every
//! type at every scope with workloads that use them; CSV that parses back to
//! the same rows; filters, search, sort and columns; describe; rename; watch;
//! the kubectl plugin; and one-line errors.

mod cluster;

use cluster::{Cluster, eventually};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

fn main() {
    cluster::run(
        "e2e_cli",
        vec![
            ("csv_parses_back_to_the_same_rows", csv_round_trip),
            (
                "filters_search_sort_and_columns",
                filters_search_sort_columns,
            ),
            ("describe_shows_copies_and_users", describe_copies_and_users),
            ("rename_shows_up_in_the_next_list", rename),
            ("watch_prints_again_on_change", watch),
            ("works_as_the_kubectl_credentials_plugin", kubectl_plugin),
            ("bad_input_is_one_line_and_a_failure", bad_input),
            ("a_project_user_sees_what_the_project_may_use", project_view),
            ("create_existing_secrets_and_delete", create_and_delete),
            ("check_manifests_like_the_webhook", check_manifests),
            ("statuses_of_a_cluster_credential", statuses),
            (
                "a_legacy_label_in_place_makes_a_typed_credential",
                legacy_label,
            ),
        ],
    );
}

/// Names of what the fixture made.
struct Fixture {
    project: String,
    other: String,
    department: String,
}

const DESCRIPTION: &str = "shared, \"read-only\"\nsecond line";

fn secret(
    name: &str,
    ns: &str,
    kind: &str,
    scope: Option<(&str, &str)>,
    data: serde_json::Value,
) -> String {
    let mut labels = BTreeMap::from([("run.ai/resource".to_owned(), kind.to_owned())]);
    if let Some((k, v)) = scope {
        labels.insert(k.to_owned(), v.to_owned());
    }
    let (type_, data) = if kind == "docker-registry" {
        (
            "kubernetes.io/dockerconfigjson",
            json!({".dockerconfigjson": json!({"auths": {"ghcr.io": {"username": "bot", "password": "e2e-cli"}}}).to_string()}),
        )
    } else {
        ("Opaque", data)
    };
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns, "labels": labels,
                     "annotations": {"run.ai/description": format!("{kind} of {ns}")}},
        "type": type_, "stringData": data,
    })
    .to_string()
}

fn data(kind: &str) -> serde_json::Value {
    match kind {
        "access-key" => json!({"AccessKeyId": "AKIACLI", "SecretKey": "e2e-cli"}),
        "password" => json!({"User": "cli", "Password": "e2e-cli"}),
        _ => json!({"token": "e2e-cli"}),
    }
}

const TYPES: [&str; 4] = ["docker-registry", "access-key", "password", "generic"];

/// Every type at every scope, and workloads that use some of them (made once).
fn fixture(c: &Cluster) -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let department = "cli-rnd".to_owned();
        let project = c.namespace("cli-a", &[("runai/queue", "cli-a"), ("run.ai/department", &department)]);
        let other = c.namespace("cli-b", &[("runai/queue", "cli-b")]);
        let _ = c.kubectl(&["create", "namespace", "runai"], None);
        for kind in TYPES {
            for (name, ns, scope) in [
                (format!("cl-{kind}"), "runai", Some(("run.ai/cluster-wide", "true"))),
                (format!("dep-{kind}"), "runai", Some(("run.ai/department", department.as_str()))),
                (format!("pr-{kind}"), project.as_str(), None),
            ] {
                c.kubectl_ok(&["apply", "-f", "-"], Some(&secret(&name, ns, kind, scope, data(kind))));
            }
        }
        // Quoting in CSV: a description with a comma, quotes and a newline.
        c.kubectl_ok(
            &["annotate", "secret", "cl-generic", "-n", "runai", "--overwrite", &format!("run.ai/description={DESCRIPTION}")],
            None,
        );
        eventually(60, "cluster and department credentials to settle", || {
            let out = c.kubectl_ok(
                &["get", "secrets", "-n", "runai", "-l", "run.ai/resource", "-o", "jsonpath={range .items[*]}{.metadata.annotations.run\\.ai/status}{\"\\n\"}{end}"],
                None,
            );
            out.lines().count() == 8 && out.lines().all(|l| l == "No issues found")
        });
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "trainer", "namespace": project},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "trainer"}},
                "template": {"metadata": {"labels": {"app": "trainer"}, "annotations": {
                    "run.ai/credentials-env": "PASSWORD=pr-password:Password",
                    "run.ai/credentials-volume": "cl-generic:/etc/token",
                    "run.ai/s3-credential": "dep-access-key"}},
                    "spec": {"containers": [{"name": "c", "image": "ghcr.io/e2e/trainer:1"}]}}}
        });
        let job = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "sync", "namespace": other},
            "spec": {"template": {"metadata": {"annotations": {
                    "run.ai/git-credential": "cl-password",
                    "run.ai/credentials-env-from": "cl-generic"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "ghcr.io/e2e/sync:1"}]}}}
        });
        for object in [deployment, job] {
            c.kubectl_ok(&["apply", "-f", "-"], Some(&object.to_string()));
        }
        Fixture { project, other, department }
    })
}

fn credgate(c: &Cluster, args: &[&str]) -> Output {
    credgate_with(c, &c.kubeconfig, args)
}

fn credgate_with(_c: &Cluster, kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_credgate"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("RUST_BACKTRACE")
        // The CLI's own default (no logs), even when the suite runs credgate at trace.
        .env_remove("CREDGATE_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("credgate runs")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "credgate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// CSV parsed with the csv crate: header and rows.
fn parse_csv(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

/// `credential -> column -> cell` from `-o json`.
fn by_name(json_text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let rows: Vec<BTreeMap<String, String>> = serde_json::from_str(json_text).unwrap();
    rows.into_iter()
        .map(|r| (r["credential"].clone(), r))
        .collect()
}

fn csv_round_trip(c: &Cluster) {
    let f = fixture(c);
    let (header, rows) = parse_csv(&ok(credgate(c, &["list", "-o", "csv"])));
    assert_eq!(
        header,
        [
            "Credential",
            "Description",
            "Type",
            "Status",
            "Scope",
            "Kubernetes name",
            "Environment(s)",
            "Data source(s)",
            "Created by",
            "Creation time",
            "Cluster"
        ]
    );
    let ours: Vec<&Vec<String>> = rows
        .iter()
        .filter(|r| r[0].starts_with("cl-") || r[0].starts_with("dep-") || r[0].starts_with("pr-"))
        .collect();
    assert_eq!(ours.len(), 12, "{rows:?}");
    // The same rows as JSON, cell for cell.
    let json_rows = by_name(&ok(credgate(c, &["list", "-o", "json"])));
    let keys = [
        "credential",
        "description",
        "type",
        "status",
        "scope",
        "kubernetes-name",
        "environments",
        "data-sources",
        "created-by",
        "creation-time",
        "cluster",
    ];
    for row in &ours {
        let j = &json_rows[&row[0]];
        let from_json: Vec<&str> = keys.iter().map(|k| j[*k].as_str()).collect();
        assert_eq!(
            row.iter().map(String::as_str).collect::<Vec<_>>(),
            from_json
        );
    }
    let row = |name: &str| {
        ours.iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("no row {name}"))
    };
    for kind in TYPES {
        assert_eq!(row(&format!("cl-{kind}"))[2], kind);
        assert_eq!(row(&format!("cl-{kind}"))[4], "cluster");
        assert_eq!(
            row(&format!("dep-{kind}"))[4],
            format!("department/{}", f.department)
        );
        assert_eq!(row(&format!("pr-{kind}"))[4], "project/cli-a");
        for prefix in ["cl", "dep", "pr"] {
            let r = row(&format!("{prefix}-{kind}"));
            assert_eq!(r[3], "No issues found", "{r:?}");
            assert_eq!(r[5], format!("{prefix}-{kind}"));
            assert_eq!(r[8], "admin");
            assert_eq!(r[10], "credgate-dev");
            assert!(
                r[9].ends_with('Z') && r[9].contains('T'),
                "RFC 3339 time: {r:?}"
            );
        }
    }
    assert_eq!(
        row("cl-generic")[1],
        DESCRIPTION,
        "quotes, comma and newline survive CSV"
    );
    let deployment = format!("{}/deployment/trainer", f.project);
    let job = format!("{}/job/sync", f.other);
    assert_eq!(row("pr-password")[6], deployment);
    assert_eq!(row("cl-generic")[6], format!("{deployment}, {job}"));
    assert_eq!(row("dep-access-key")[7], deployment);
    assert_eq!(row("cl-password")[7], job);
    assert_eq!(
        (
            row("cl-access-key")[6].as_str(),
            row("cl-access-key")[7].as_str()
        ),
        ("", "")
    );
}

fn names(csv_text: &str) -> Vec<String> {
    parse_csv(csv_text)
        .1
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
}

fn filters_search_sort_columns(c: &Cluster) {
    let f = fixture(c);
    let list = |args: &[&str]| {
        ok(credgate(
            c,
            &[
                &["list", "-o", "csv", "--columns", "credential,scope"],
                args,
            ]
            .concat(),
        ))
    };
    // Exactly the chosen columns, in the chosen order.
    let (header, _) = parse_csv(&ok(credgate(
        c,
        &[
            "list",
            "-o",
            "csv",
            "--columns",
            "scope,Kubernetes name,type",
        ],
    )));
    assert_eq!(header, ["Scope", "Kubernetes name", "Type"]);
    assert_eq!(
        names(&list(&[
            "--filter",
            "type=password",
            "--filter",
            "credential=*-password",
            "--sort",
            "credential"
        ])),
        ["cl-password", "dep-password", "pr-password"]
    );
    assert_eq!(
        names(&list(&[
            "--filter",
            "scope=department/*",
            "--sort",
            "credential:desc"
        ])),
        [
            "dep-password",
            "dep-generic",
            "dep-docker-registry",
            "dep-access-key"
        ]
    );
    // Search is case-insensitive over every column (here: the description).
    assert_eq!(names(&list(&["--search", "READ-ONLY"])), ["cl-generic"]);
    assert_eq!(
        names(&list(&["--search", "trainer", "--sort", "credential"])),
        ["cl-generic", "dep-access-key", "pr-password"]
    );
    // -n of a project: its own credentials, its department's and the cluster's.
    let in_project = ok(credgate(
        c,
        &[
            "list",
            "-o",
            "csv",
            "--columns",
            "credential",
            "-n",
            &f.project,
            "--sort",
            "credential",
        ],
    ));
    let expected: Vec<String> = ["cl", "dep", "pr"]
        .iter()
        .flat_map(|scope| TYPES.map(|t| format!("{scope}-{t}")))
        .collect();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(names(&in_project), expected_sorted);
    // The table fits the terminal it is given; here, no terminal: full width, header first.
    let text = ok(credgate(
        c,
        &[
            "list",
            "--columns",
            "credential,type",
            "--filter",
            "credential=pr-*",
            "--sort",
            "type",
        ],
    ));
    let lines: Vec<&str> = text.lines().collect();
    // The table shows the seeds' type names; filters take both forms.
    assert_eq!(lines[0], "CREDENTIAL          TYPE");
    assert_eq!(lines[1], "pr-access-key       Access key");
    assert_eq!(lines[2], "pr-docker-registry  Docker registry");
    assert_eq!(lines[4], "pr-password         Username & password");
    assert_eq!(
        names(&list(&[
            "--filter",
            "type=Username & password",
            "--filter",
            "credential=pr-*"
        ])),
        ["pr-password"]
    );
    assert_eq!(lines.len(), 5);
}

fn describe_copies_and_users(c: &Cluster) {
    let f = fixture(c);
    let text = ok(credgate(c, &["describe", "cl-generic"]));
    assert!(text.contains("Scope:           cluster"), "{text}");
    assert!(text.contains("Keys:            token"), "{text}");
    for ns in [&f.project, &f.other] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(ns.as_str()) && l.contains("credgate.cl-generic"));
        assert!(
            line.is_some_and(|l| l.ends_with("up to date")),
            "copy in {ns}: {text}"
        );
    }
    assert!(
        text.contains(&format!("{}  Deployment  trainer  environment", f.project)),
        "{text}"
    );
    assert!(text.contains("Used by (2):"), "{text}");
    let described: serde_json::Value = serde_json::from_str(&ok(credgate(
        c,
        &["describe", "dep-access-key", "-o", "json"],
    )))
    .unwrap();
    assert_eq!(described["scope"], format!("department/{}", f.department));
    assert_eq!(
        described["copies"],
        json!([{"namespace": f.project, "secret": "credgate.dep-access-key", "state": "up to date"}])
    );
    assert_eq!(
        described["users"],
        json!([{"namespace": f.project, "kind": "Deployment", "name": "trainer", "usage": "data source"}])
    );
    assert!(
        !serde_json::to_string(&described)
            .unwrap()
            .contains("AKIACLI"),
        "describe never shows data"
    );
}

fn rename(c: &Cluster) {
    let f = fixture(c);
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&secret(
            "to-rename",
            &f.project,
            "generic",
            None,
            data("generic"),
        )),
    );
    let out = ok(credgate(
        c,
        &[
            "rename",
            "to-rename",
            "--to",
            "renamed",
            "--description",
            "now with a name",
        ],
    ));
    assert!(out.contains("\"renamed\""), "{out}");
    let rows = by_name(&ok(credgate(c, &["list", "-o", "json", "-n", &f.project])));
    assert_eq!(rows["renamed"]["kubernetes-name"], "to-rename");
    assert_eq!(rows["renamed"]["description"], "now with a name");
    assert!(!rows.contains_key("to-rename"));
    // The webhook keeps names unique in a scope: the refusal is one line.
    let refused = credgate(c, &["rename", "renamed", "--to", "pr-generic"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("pr-generic"), "{stderr}");
    // A description alone needs no --to.
    ok(credgate(
        c,
        &["rename", "renamed", "--description", "only this"],
    ));
    let rows = by_name(&ok(credgate(c, &["list", "-o", "json", "-n", &f.project])));
    assert_eq!(rows["renamed"]["description"], "only this");
    // Issue 17: while a Deployment names it, a rename is refused like a
    // DELETE, naming the Deployment; the DELETE stays refused too.
    let deployment = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: {}}}\nspec:\n  replicas: 0\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata:\n      labels: {{app: web}}\n      annotations: {{run.ai/credentials-env-from: renamed}}\n    spec: {{containers: [{{name: c, image: busybox}}]}}\n",
        f.project
    );
    c.kubectl_ok(&["apply", "-f", "-"], Some(&deployment));
    cluster::eventually(30, "credgate to index the Deployment", || {
        let probe = [
            "annotate",
            "--overwrite",
            "secret",
            "to-rename",
            "-n",
            &f.project,
            "run.ai/name=gone",
            "--dry-run=server",
        ];
        !c.kubectl(&probe, None).status.success()
    });
    let refused = credgate(c, &["rename", "renamed", "--to", "gone"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && stderr.contains("cannot be renamed to \"gone\"")
            && stderr.contains("Deployment/"),
        "{stderr}"
    );
    let delete = c.kubectl(
        &[
            "delete",
            "secret",
            "to-rename",
            "-n",
            &f.project,
            "--dry-run=server",
        ],
        None,
    );
    assert!(!delete.status.success(), "the DELETE is still refused");
    c.kubectl_ok(&["delete", "deployment", "web", "-n", &f.project], None);
}

fn watch(c: &Cluster) {
    use std::io::BufRead as _;
    let f = fixture(c);
    let mut child = Command::new(env!("CARGO_BIN_EXE_credgate"))
        .args([
            "list",
            "--watch",
            "-o",
            "csv",
            "--columns",
            "credential",
            "-n",
            &f.other,
        ])
        .env("KUBECONFIG", &c.kubeconfig)
        .env_remove("CREDGATE_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Stopped (by pid) however the test ends.
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _stop = Stop(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let wait_for = |wanted: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line == wanted => return,
                Ok(_) => {}
                Err(_) => panic!("credgate list --watch never printed {wanted:?}"),
            }
        }
    };
    wait_for("Credential");
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&secret(
            "watched",
            &f.other,
            "generic",
            None,
            data("generic"),
        )),
    );
    wait_for("watched");
}

fn kubectl_plugin(c: &Cluster) {
    fixture(c);
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_credgate"),
        dir.path().join("kubectl-credentials"),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(&c.kubectl)
        .args([
            "credentials",
            "list",
            "-o",
            "csv",
            "--columns",
            "credential,type",
            "--filter",
            "credential=cl-*",
            "--sort",
            "credential",
        ])
        .env("KUBECONFIG", &c.kubeconfig)
        .env("PATH", path)
        .env_remove("CREDGATE_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (header, rows) = parse_csv(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(header, ["Credential", "Type"]);
    assert_eq!(rows[0], ["cl-access-key", "access-key"]);
    assert_eq!(rows.len(), 4);
}

fn one_line_failure(out: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "should fail: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.contains(expected), "{expected:?} in {stderr:?}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

fn bad_input(c: &Cluster) {
    one_line_failure(
        &credgate(c, &["list", "--columns", "credential,colour"]),
        "unknown column \"colour\": use one of credential,",
    );
    one_line_failure(
        &credgate(c, &["list", "--filter", "type"]),
        "is not COLUMN=VALUE",
    );
    one_line_failure(
        &credgate(c, &["list", "--sort", "type:sideways"]),
        "--sort \"type:sideways\"",
    );
    one_line_failure(
        &credgate(c, &["describe", "no-such-credential"]),
        "no credential named \"no-such-credential\"",
    );

    // No cluster at the address of the kubeconfig.
    let dead = c.kubeconfig.with_file_name("kubeconfig-dead");
    let text = std::fs::read_to_string(&c.kubeconfig).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("server:") {
                "      server: https://127.0.0.1:1".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&dead, text).unwrap();
    one_line_failure(
        &credgate_with(c, &dead, &["list"]),
        "cannot reach the cluster \"credgate-dev\"",
    );
    one_line_failure(
        &credgate_with(c, Path::new("/nonexistent/kubeconfig"), &["list"]),
        "no cluster to read",
    );

    // RBAC: a user with no rights at all.
    let nobody = c.kubeconfig_as("nobody@example.com");
    one_line_failure(
        &credgate_with(c, &nobody, &["list", "-o", "csv"]),
        "forbidden: your RBAC does not allow you to list Secrets in any namespace",
    );
}

/// `credgate` with `stdin` piped in.
fn credgate_stdin(c: &Cluster, kubeconfig: Option<&Path>, args: &[&str], stdin: &str) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_credgate"))
        .args(args)
        .env("KUBECONFIG", kubeconfig.unwrap_or(&c.kubeconfig))
        .env_remove("CREDGATE_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("credgate runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Issue 17: a user who may read Secrets in their project's namespace only
/// (no namespaces, nothing in the credentials namespace) lists everything
/// their pods may name, with its scope, read from the managed copies there.
fn project_view(c: &Cluster) {
    let f = fixture(c);
    let user = "reader@cli-a";
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "secret-reader", "namespace": f.project},
        "rules": [{"apiGroups": [""], "resources": ["secrets", "pods"], "verbs": ["get", "list", "watch"]},
                  {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]}]
    });
    c.kubectl_ok(&["apply", "-f", "-"], Some(&role.to_string()));
    c.kubectl_ok(
        &[
            "create",
            "rolebinding",
            "secret-reader",
            "-n",
            &f.project,
            "--role",
            "secret-reader",
            "--user",
            user,
        ],
        None,
    );
    let kubeconfig = c.kubeconfig_as(user);
    // Not even the credentials namespace is readable to them.
    let denied = credgate_with(c, &kubeconfig, &["list", "-n", "runai"]);
    assert!(!denied.status.success());
    let out = credgate_with(c, &kubeconfig, &["list", "-n", &f.project, "-o", "json"]);
    let rows = by_name(&ok(out));
    for kind in TYPES {
        assert_eq!(rows[&format!("pr-{kind}")]["scope"], "project", "{rows:?}");
        assert_eq!(
            rows[&format!("dep-{kind}")]["scope"],
            format!("department/{}", f.department)
        );
        assert_eq!(rows[&format!("cl-{kind}")]["scope"], "cluster");
        assert_eq!(
            rows[&format!("cl-{kind}")]["type"],
            kind,
            "JSON keeps the stable key"
        );
    }
    // Usage in the namespace shows through the copies too.
    assert_eq!(
        rows["dep-access-key"]["data-sources"],
        format!("{}/deployment/trainer", f.project)
    );
    assert!(
        !rows.keys().any(|k| k.starts_with("credgate.")),
        "copies are not rows of their own"
    );
    // The table shows the seeds' names.
    let table = ok(credgate_with(
        c,
        &kubeconfig,
        &[
            "list",
            "-n",
            &f.project,
            "--columns",
            "credential,type,scope",
            "--filter",
            "credential=cl-*",
        ],
    ));
    assert!(
        table.contains("cl-docker-registry  Docker registry      cluster"),
        "{table}"
    );
    // The admin gets the same set with --project, and the sources' statuses.
    let admin = by_name(&ok(credgate(
        c,
        &["list", "--project", "cli-a", "-o", "json"],
    )));
    for name in rows.keys() {
        assert!(admin.contains_key(name), "{name} missing from {admin:?}");
    }
    assert_eq!(admin["cl-generic"]["status"], "No issues found");
    // A project user cannot resolve --project (namespaces are not theirs to list).
    let out = credgate_with(c, &kubeconfig, &["list", "--project", "cli-a"]);
    assert!(text(&out).contains("pass -n NAMESPACE"), "{}", text(&out));
    // The other project sees the cluster credentials but not cli-rnd's.
    let other = by_name(&ok(credgate(c, &["list", "-n", &f.other, "-o", "json"])));
    assert!(
        other.contains_key("cl-generic") && !other.contains_key("dep-generic"),
        "{other:?}"
    );
}

/// Issue 17: create each way, pick an existing secret, and delete with the plan shown.
fn create_and_delete(c: &Cluster) {
    let f = fixture(c);
    let password = "cr3ate-secret-value";
    // A password credential, the value from stdin, never echoed.
    let out = credgate_stdin(
        c,
        None,
        &[
            "create",
            "password",
            "cr-db",
            "-n",
            &f.project,
            "--username",
            "app",
            "--password-stdin",
            "--description",
            "made by the CLI",
        ],
        &format!("{password}\n"),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(password));
    assert!(
        text(&out).contains(&format!("Secret {}/cr-db", f.project)),
        "{}",
        text(&out)
    );
    let stored = c.kubectl_json(&["get", "secret", "cr-db", "-n", &f.project]);
    use base64::Engine as _;
    let value = base64::engine::general_purpose::STANDARD
        .decode(stored["data"]["Password"].as_str().unwrap())
        .unwrap();
    assert_eq!(value, password.as_bytes());
    assert_eq!(stored["metadata"]["labels"]["run.ai/resource"], "password");
    assert_eq!(
        stored["metadata"]["annotations"]["run.ai/status"],
        "No issues found"
    );
    assert!(
        stored["metadata"]["annotations"]["run.ai/created-by"]
            .as_str()
            .is_some()
    );
    // A dry run prints the Secret without its values and creates nothing.
    let out = credgate_stdin(
        c,
        None,
        &[
            "create",
            "access-key",
            "cr-s3",
            "--cluster",
            "--access-key-id",
            "AKIADRY",
            "--secret-key-stdin",
            "--dry-run=server",
        ],
        password,
    );
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    assert!(
        !printed.contains(password)
            && printed.contains("(hidden, ")
            && printed.contains("run.ai/cluster-wide"),
        "{printed}"
    );
    assert!(
        printed.contains("Creating…"),
        "the server's answer, stamped by credgate: {printed}"
    );
    assert!(
        !c.kubectl(&["get", "secret", "cr-s3", "-n", "runai"], None)
            .status
            .success()
    );
    // credgate's refusal is printed as is.
    let out = credgate(
        c,
        &[
            "create",
            "generic",
            "cr-nope",
            "-n",
            &f.project,
            "--existing-secret",
            "not-there",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("the existing Secret \"not-there\" does not exist"),
        "{}",
        text(&out)
    );

    // Existing secrets: one prepared in advance is offered; a credential made
    // by `credgate create` is not; once used, the prepared one is not either.
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&secret(
            "prepared-token",
            &f.project,
            "generic",
            None,
            data("generic"),
        )),
    );
    let listed = |args: &[&str]| -> Vec<String> {
        let out = ok(credgate(
            c,
            &[&["existing-secrets", "-n", &f.project, "-o", "json"], args].concat(),
        ));
        let rows: Vec<BTreeMap<String, String>> = serde_json::from_str(&out).unwrap();
        rows.into_iter().map(|r| r["name"].clone()).collect()
    };
    let offered = listed(&[]);
    assert!(
        offered.contains(&"prepared-token".to_owned()),
        "{offered:?}"
    );
    assert!(
        !offered.contains(&"cr-db".to_owned()),
        "new secrets are not offered: {offered:?}"
    );
    assert!(!listed(&["--type", "password"]).contains(&"prepared-token".to_owned()));
    ok(credgate(
        c,
        &[
            "create",
            "generic",
            "cr-token",
            "-n",
            &f.project,
            "--existing-secret",
            "prepared-token",
        ],
    ));
    assert!(
        !listed(&[]).contains(&"prepared-token".to_owned()),
        "a used Secret is not offered again"
    );
    // Department scope: Secrets there need the department's label.
    let out = ok(credgate(
        c,
        &[
            "existing-secrets",
            "--department",
            &f.department,
            "-o",
            "json",
        ],
    ));
    let rows: Vec<BTreeMap<String, String>> = serde_json::from_str(&out).unwrap();
    assert!(rows.iter().all(|r| r["namespace"] == "runai"), "{rows:?}");

    // Delete: no terminal and no --yes changes nothing.
    let out = credgate(c, &["delete", "cr-db", "-n", &f.project]);
    assert!(
        !out.status.success() && text(&out).contains("pass --yes"),
        "{}",
        text(&out)
    );
    assert!(
        c.kubectl(&["get", "secret", "cr-db", "-n", &f.project], None)
            .status
            .success()
    );
    // In use: the plan names the user and credgate's refusal is printed.
    let out = credgate(c, &["delete", "pr-password", "-n", &f.project, "--yes"]);
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(
        shown.contains(&format!("used by {}/deployment/trainer", f.project)),
        "{shown}"
    );
    assert!(
        shown.contains("denied the request") && shown.contains("trainer"),
        "{shown}"
    );
    assert!(
        c.kubectl(&["get", "secret", "pr-password", "-n", &f.project], None)
            .status
            .success()
    );
    for name in ["cr-db", "cr-token"] {
        let out = ok(credgate(c, &["delete", name, "-n", &f.project, "--yes"]));
        assert!(out.contains("deleted"), "{out}");
    }
    assert!(
        !c.kubectl(&["get", "secret", "cr-db", "-n", &f.project], None)
            .status
            .success()
    );
    assert!(
        c.kubectl(&["get", "secret", "prepared-token", "-n", &f.project], None)
            .status
            .success(),
        "the existing Secret stays"
    );
}

/// Issue 17: `credgate check` gives the webhook's answers offline, with its
/// messages, from the cluster or from `credgate list -A -o json`.
fn check_manifests(c: &Cluster) {
    let f = fixture(c);
    let dir = tempfile::tempdir().unwrap();
    let good = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: checked, namespace: {ns}}}\nspec:\n  selector: {{matchLabels: {{app: c}}}}\n  template:\n    metadata:\n      labels: {{app: c}}\n      annotations: {{run.ai/s3-credential: dep-access-key, run.ai/credentials-env-from: pr-generic}}\n    spec: {{containers: [{{name: c, image: busybox}}]}}\n",
        ns = f.project
    );
    let bad = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: bad, namespace: {ns}, annotations: {{run.ai/credentials-env-from: no-such-credential}}}}\nspec: {{containers: [{{name: c, image: busybox}}]}}\n",
        ns = f.project
    );
    std::fs::write(dir.path().join("good.yaml"), &good).unwrap();
    std::fs::write(dir.path().join("bad.yaml"), &bad).unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    // Against the cluster: exit 1, the refusal and the pass both shown.
    let out = credgate(c, &["check", "-f", dir_arg]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains(&format!("ok       Deployment {}/checked", f.project)),
        "{shown}"
    );
    let line = shown
        .lines()
        .find(|l| l.starts_with("refused  Pod"))
        .expect(&shown);
    let message = line.split_once(".yaml): ").unwrap().1;
    // The webhook says the same to kubectl.
    let kubectl = c.kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&bad));
    let kubectl_says = String::from_utf8_lossy(&kubectl.stderr);
    assert!(
        kubectl_says.contains(message),
        "check: {message}\nkubectl: {kubectl_says}"
    );
    // Offline, from the JSON of `credgate list -A -o json`.
    let creds = dir.path().join("credentials.list");
    std::fs::write(&creds, ok(credgate(c, &["list", "-A", "-o", "json"]))).unwrap();
    let good_file = dir.path().join("good.yaml");
    let offline = |extra: &[&str]| {
        credgate(
            c,
            &[
                &[
                    "check",
                    "-f",
                    good_file.to_str().unwrap(),
                    "--credentials",
                    creds.to_str().unwrap(),
                    "--project",
                    "cli-a",
                ][..],
                extra,
            ]
            .concat(),
        )
    };
    let out = offline(&["--department", &f.department]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("1 checked, 0 refused"),
        "{}",
        text(&out)
    );
    // Without the project's department, its department credential is not visible.
    let out = offline(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("dep-access-key"), "{}", text(&out));
}

/// Issue 17: a cluster credential is `Creating…` until copied, `Deleting…`
/// while its copies go, and `Issues found` with its message when a copy
/// cannot be made; seen through a watch, so every stored version counts.
fn statuses(c: &Cluster) {
    use futures::StreamExt as _;
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, PartialObjectMeta};
    use kube::runtime::watcher;
    let f = fixture(c);
    let api: Api<PartialObjectMeta<Secret>> = Api::namespaced(c.client(), "runai");
    // Every version the watch sees, after it has listed (`None` marks that).
    let (tx, rx) = std::sync::mpsc::channel::<Option<(String, bool)>>();
    let config = watcher::Config::default().fields("metadata.name=st-cluster");
    let watch = c.runtime.spawn(async move {
        let mut stream = std::pin::pin!(watcher(api, config));
        while let Some(Ok(event)) = stream.next().await {
            let md = match event {
                watcher::Event::InitDone => {
                    let _ = tx.send(None);
                    continue;
                }
                watcher::Event::Apply(md) | watcher::Event::InitApply(md) => md,
                watcher::Event::Init | watcher::Event::Delete(_) => continue,
            };
            let status = md
                .metadata
                .annotations
                .unwrap_or_default()
                .get("run.ai/status")
                .cloned()
                .unwrap_or_default();
            let _ = tx.send(Some((status, md.metadata.deletion_timestamp.is_some())));
        }
    });
    let deadline = || std::time::Instant::now() + std::time::Duration::from_secs(60);
    let listed = deadline();
    assert_eq!(
        rx.recv_timeout(listed.saturating_duration_since(std::time::Instant::now())),
        Ok(None),
        "the watch lists first"
    );
    let seen = |until: &dyn Fn(&str, bool) -> bool| -> Vec<String> {
        let mut seen = Vec::new();
        let deadline = deadline();
        while let Ok(Some((status, deleting))) =
            rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
        {
            let done = until(&status, deleting);
            seen.push(status);
            if done {
                return seen;
            }
        }
        panic!("watch ended or timed out; saw {seen:?}");
    };
    let out = credgate_stdin(
        c,
        None,
        &[
            "create",
            "access-key",
            "st-cluster",
            "--cluster",
            "--access-key-id",
            "AKIAST",
            "--secret-key-stdin",
        ],
        "st-value",
    );
    assert!(out.status.success(), "{}", text(&out));
    let created = seen(&|s, _| s == "No issues found");
    assert_eq!(
        created.first().map(String::as_str),
        Some("Creating…"),
        "{created:?}"
    );
    let out = ok(credgate(c, &["delete", "st-cluster", "--yes"]));
    assert!(out.contains("is being deleted"), "{out}");
    let deleting = seen(&|s, deleting| deleting && s == "Deleting…");
    assert!(deleting.contains(&"Deleting…".to_owned()), "{deleting:?}");
    eventually(60, "the cluster credential to go", || {
        !c.kubectl(&["get", "secret", "st-cluster", "-n", "runai"], None)
            .status
            .success()
    });
    watch.abort();

    // A Secret of the copy's name that is not credgate's copy: Issues found, and why.
    c.kubectl_ok(
        &[
            "create",
            "secret",
            "generic",
            "credgate.st-blocked",
            "-n",
            &f.other,
            "--from-literal=mine=1",
        ],
        None,
    );
    ok(credgate(
        c,
        &[
            "create",
            "generic",
            "st-blocked",
            "--cluster",
            "--from-literal",
            "k=v",
        ],
    ));
    eventually(60, "the status to report the collision", || {
        let rows = by_name(&ok(credgate(
            c,
            &[
                "list",
                "-n",
                "runai",
                "-o",
                "json",
                "--filter",
                "credential=st-blocked",
            ],
        )));
        rows.get("st-blocked")
            .is_some_and(|r| r["status"] == "Issues found")
    });
    let described = ok(credgate(c, &["describe", "st-blocked"]));
    assert!(
        described.contains("Issues found")
            && described.contains(&format!(
                "namespace {}: a Secret named \"credgate.st-blocked\" exists",
                f.other
            )),
        "{described}"
    );
    ok(credgate(c, &["delete", "st-blocked", "--yes"]));
    c.kubectl_ok(
        &["delete", "secret", "credgate.st-blocked", "-n", &f.other],
        None,
    );
}

/// Issue 17: `kubectl label secret … run.ai/credentials=true`, as the older
/// seed says, makes a credential stamped like a created one, shown with the
/// type of its shape and usable by name.
fn legacy_label(c: &Cluster) {
    let f = fixture(c);
    c.kubectl_ok(
        &[
            "create",
            "secret",
            "generic",
            "old-db",
            "-n",
            &f.project,
            "--from-literal=User=u",
            "--from-literal=Password=p",
        ],
        None,
    );
    c.kubectl_ok(
        &[
            "label",
            "secret",
            "old-db",
            "-n",
            &f.project,
            "run.ai/credentials=true",
        ],
        None,
    );
    let rows = by_name(&ok(credgate(
        c,
        &[
            "list",
            "-n",
            &f.project,
            "-o",
            "json",
            "--filter",
            "credential=old-db",
        ],
    )));
    let row = &rows["old-db"];
    assert_eq!(row["type"], "password", "{row:?}");
    assert_eq!(row["status"], "No issues found", "{row:?}");
    assert!(!row["created-by"].is_empty(), "{row:?}");
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: legacy-user, namespace: {}, annotations: {{run.ai/git-credential: old-db}}}}\nspec: {{containers: [{{name: c, image: busybox}}]}}\n",
        f.project
    );
    let out = c.kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&pod));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.kubectl_ok(&["delete", "secret", "old-db", "-n", &f.project], None);
}
