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
    // -n: only what is stored there.
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
    assert_eq!(
        names(&in_project),
        [
            "pr-access-key",
            "pr-docker-registry",
            "pr-generic",
            "pr-password"
        ]
    );
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
    assert_eq!(lines[0], "CREDENTIAL          TYPE");
    assert_eq!(lines[1], "pr-access-key       access-key");
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
