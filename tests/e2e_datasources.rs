//! End to end (issue 18): data sources through the real API server. A Pod's
//! Git and S3 sources get their fetchers, volumes and mounts from credgate's
//! `/mutate`; a template's sources are checked at `kubectl apply`; and the S3
//! fetcher credgate injects runs here, with exactly the environment it was
//! given, against a local S3-compatible server (moto, from PyPI): the files
//! appear, and a wrong secret key fails.

mod cluster;

use base64::Engine as _;
use cluster::{Cluster, eventually};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};

fn main() {
    cluster::run(
        "e2e_datasources",
        vec![
            ("pods_get_fetchers_volumes_and_mounts", pods_get_fetchers),
            ("templates_are_checked_at_apply", templates_are_checked),
            ("the_injected_s3_fetcher_syncs_the_bucket", s3_fetcher_runs),
        ],
    );
}

/// A project namespace with a password credential `git` and an access-key credential `s3`.
fn project(c: &Cluster, prefix: &str, access_key: (&str, &str)) -> String {
    let ns = c.namespace(prefix, &[("runai/queue", prefix)]);
    let secrets = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Secret",
         "metadata": {"name": "git", "namespace": ns, "labels": {"run.ai/resource": "password"}},
         "stringData": {"User": "bot", "Password": "ds-e2e-git"}},
        {"apiVersion": "v1", "kind": "Secret",
         "metadata": {"name": "s3", "namespace": ns, "labels": {"run.ai/resource": "access-key"}},
         "stringData": {"AccessKeyId": access_key.0, "SecretKey": access_key.1}},
    ]});
    c.kubectl_ok(&["apply", "-f", "-"], Some(&secrets.to_string()));
    ns
}

fn pod(ns: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "reader", "namespace": ns, "annotations": annotations},
           "spec": {"initContainers": [{"name": "prepare", "image": "busybox"}],
                    "containers": [{"name": "train", "image": "busybox"}, {"name": "log", "image": "busybox"}]}})
}

/// The Pod as the API server would store it (credgate's patch applied), not stored.
fn admitted(c: &Cluster, object: &Value) -> Value {
    let out = c.kubectl(
        &["create", "--dry-run=server", "-o", "json", "-f", "-"],
        Some(&object.to_string()),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn env_of(container: &Value) -> BTreeMap<String, Value> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e.clone()))
        .collect()
}

fn pods_get_fetchers(c: &Cluster) {
    let ns = project(c, "ds-pods", ("AKIADS", "ds-e2e-s3"));
    eventually(30, "credgate to index the credentials", || {
        c.kubectl(
            &["create", "--dry-run=server", "-f", "-"],
            Some(
                &pod(
                    &ns,
                    json!({"run.ai/git-credential": "git", "run.ai/s3-credential": "s3"}),
                )
                .to_string(),
            ),
        )
        .status
        .success()
    });
    let asked = pod(
        &ns,
        json!({"run.ai/git-credential": "git", "run.ai/s3-credential": "s3",
               "run.ai/git-source": "https://git.example.com/acme/models.git#v2:/data/models",
               "run.ai/s3-source": "s3://datasets/train:/data/train",
               "run.ai/s3-endpoint": "https://minio.storage:9000"}),
    );
    let stored = admitted(c, &asked);
    let init = stored["spec"]["initContainers"].as_array().unwrap();
    let names: Vec<&str> = init.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(
        names[0], "prepare",
        "the pod's own init container runs first"
    );
    let (git, s3) = (&init[1], &init[2]);
    assert!(
        git["image"]
            .as_str()
            .unwrap()
            .starts_with("registry.k8s.io/git-sync/git-sync:v4")
    );
    let git_env = env_of(git);
    assert_eq!(
        git_env["GITSYNC_REPO"]["value"],
        "https://git.example.com/acme/models.git"
    );
    assert_eq!(git_env["GITSYNC_REF"]["value"], "v2");
    assert_eq!(git_env["GITSYNC_ROOT"]["value"], "/data/models");
    assert_eq!(git_env["GITSYNC_LINK"]["value"], "models");
    assert_eq!(git_env["GITSYNC_ONE_TIME"]["value"], "true");
    assert_eq!(
        git_env["GITSYNC_PASSWORD"]["valueFrom"],
        json!({"secretKeyRef": {"name": "git", "key": "Password"}}),
        "the credential is referenced, never copied in"
    );
    let s3_env = env_of(s3);
    assert_eq!(
        s3_env["AWS_ENDPOINT_URL"]["value"],
        "https://minio.storage:9000"
    );
    assert_eq!(
        s3_env["AWS_SECRET_ACCESS_KEY"]["valueFrom"],
        json!({"secretKeyRef": {"name": "s3", "key": "SecretKey"}})
    );
    assert_eq!(
        s3["command"],
        json!([
            "aws",
            "s3",
            "sync",
            "--only-show-errors",
            "s3://datasets/train",
            "/data/train"
        ])
    );
    for container in stored["spec"]["containers"].as_array().unwrap() {
        let mounts: Vec<(String, bool)> = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["name"].as_str().unwrap().starts_with("credgate-data-"))
            .map(|m| {
                (
                    m["mountPath"].as_str().unwrap().to_owned(),
                    m["readOnly"] == true,
                )
            })
            .collect();
        assert_eq!(
            mounts,
            [
                ("/data/models".to_owned(), true),
                ("/data/train".to_owned(), true)
            ],
            "{}",
            container["name"]
        );
        // The env-var-only use stays, with git-sync v4's names next to v3's.
        let env = env_of(container);
        for name in [
            "AWS_ACCESS_KEY_ID",
            "GIT_SYNC_USERNAME",
            "GITSYNC_USERNAME",
            "GITSYNC_PASSWORD",
        ] {
            assert!(env.contains_key(name), "{name} in {}", container["name"]);
        }
    }
    let stored_text = stored.to_string();
    assert!(!stored_text.contains("ds-e2e-git") && !stored_text.contains("ds-e2e-s3"));
    // Idempotent: the admitted pod, sent again, comes back the same (a second pass adds nothing).
    let mut again = stored.clone();
    for key in [
        "uid",
        "creationTimestamp",
        "resourceVersion",
        "managedFields",
    ] {
        again["metadata"].as_object_mut().unwrap().remove(key);
    }
    let twice = admitted(c, &again);
    assert_eq!(
        twice["spec"]["initContainers"],
        stored["spec"]["initContainers"]
    );
    assert_eq!(twice["spec"]["volumes"], stored["spec"]["volumes"]);
    assert_eq!(twice["spec"]["containers"], stored["spec"]["containers"]);
    // Periodic: git-sync is a native sidecar.
    let periodic = admitted(
        c,
        &pod(
            &ns,
            json!({"run.ai/git-source": "https://git.example.com/acme/models.git:/src", "run.ai/git-sync": "periodic"}),
        ),
    );
    assert_eq!(
        periodic["spec"]["initContainers"][1]["restartPolicy"],
        "Always"
    );
}

fn templates_are_checked(c: &Cluster) {
    let ns = project(c, "ds-apply", ("AKIADS", "ds-e2e-s3"));
    let deployment = |annotations: Value, mounts: Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "trainer", "namespace": ns},
               "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "t"}},
                        "template": {"metadata": {"labels": {"app": "t"}, "annotations": annotations},
                                     "spec": {"containers": [{"name": "c", "image": "busybox", "volumeMounts": mounts}],
                                              "volumes": [{"name": "cache", "emptyDir": {}}]}}}})
        .to_string()
    };
    let refused = |object: String, needle: &str| {
        let mut last = String::new();
        eventually(30, &format!("a refusal with {needle:?}"), || {
            let out = c.kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&object));
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            !out.status.success() && last.contains(needle)
        });
        assert!(last.contains("credgate"), "{last}");
    };
    refused(
        deployment(
            json!({"run.ai/git-source": "ssh://git@github.com/acme/x.git:/src"}),
            json!([]),
        ),
        "use the repository's https:// URL",
    );
    refused(
        deployment(
            json!({"run.ai/git-source": "https://github.com/acme/x.git:/src", "run.ai/git-credential": "s3"}),
            json!([]),
        ),
        "must be of type password",
    );
    refused(
        deployment(
            json!({"run.ai/s3-source": "s3://datasets:/data"}),
            json!([{"name": "cache", "mountPath": "/data/cache"}]),
        ),
        "already mounts volume \"cache\" at /data/cache",
    );
    let fine = deployment(
        json!({"run.ai/s3-source": "s3://datasets:/data", "run.ai/s3-credential": "s3"}),
        json!([{"name": "cache", "mountPath": "/cache"}]),
    );
    c.kubectl_ok(&["apply", "-f", "-"], Some(&fine));
    // The table shows the source with the workload that fetches it.
    let out = Command::new(env!("CARGO_BIN_EXE_credgate"))
        .args(["list", "-n", &ns, "-o", "json", "--filter", "credential=s3"])
        .env("KUBECONFIG", &c.kubeconfig)
        .env_remove("CREDGATE_LOG")
        .output()
        .unwrap();
    let rows: Vec<BTreeMap<String, String>> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        rows[0]["data-sources"],
        format!("s3://datasets ({ns}/deployment/trainer)")
    );
}

/// moto's S3 server on 127.0.0.1 (its port read from its log), stopped on drop.
struct S3Server {
    child: Child,
    url: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s3_tools() -> std::path::PathBuf {
    let out = Command::new("scripts/s3-tools")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("scripts/s3-tools runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().into()
}

fn start_s3(bin: &Path) -> S3Server {
    // After three unauthenticated calls (the IAM user, its policy, its key),
    // moto checks every request's signature and the user's policy.
    let mut child = Command::new(bin.join("moto_server"))
        .args(["-H", "127.0.0.1", "-p", "0"])
        .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("moto_server starts");
    let stderr = child.stderr.take().unwrap();
    let mut url = None;
    for line in std::io::BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if let Some(at) = line.find("http://127.0.0.1:") {
            url = Some(line[at..].trim().to_owned());
            break;
        }
    }
    S3Server {
        child,
        url: url.expect("moto prints its address"),
    }
}

fn aws(bin: &Path, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    Command::new(bin.join("aws"))
        .args(args)
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("HOME", std::env::temp_dir())
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn s3_fetcher_runs(c: &Cluster) {
    let bin = s3_tools();
    let server = start_s3(&bin);
    let admin = [
        ("AWS_ENDPOINT_URL", server.url.as_str()),
        ("AWS_ACCESS_KEY_ID", "admin"),
        ("AWS_SECRET_ACCESS_KEY", "admin"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ];
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
    for args in [
        &["iam", "create-user", "--user-name", "fetcher"][..],
        &[
            "iam",
            "put-user-policy",
            "--user-name",
            "fetcher",
            "--policy-name",
            "s3",
            "--policy-document",
            policy,
        ],
    ] {
        let out = aws(&bin, &admin, args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = aws(
        &bin,
        &admin,
        &["iam", "create-access-key", "--user-name", "fetcher"],
    );
    let key: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (id, secret) = (
        key["AccessKey"]["AccessKeyId"].as_str().unwrap().to_owned(),
        key["AccessKey"]["SecretAccessKey"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let owner = [
        ("AWS_ENDPOINT_URL", server.url.as_str()),
        ("AWS_ACCESS_KEY_ID", id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", secret.as_str()),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ];
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("labels.csv"), "cat,1\n").unwrap();
    std::fs::create_dir(files.path().join("images")).unwrap();
    std::fs::write(files.path().join("images/0001.txt"), "pixels").unwrap();
    for args in [
        &["s3", "mb", "s3://datasets"][..],
        &[
            "s3",
            "sync",
            files.path().to_str().unwrap(),
            "s3://datasets/train",
        ],
    ] {
        let out = aws(&bin, &owner, args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // credgate injects the fetcher for a pod of a project whose access-key
    // credential holds that key.
    let ns = project(c, "ds-s3", (&id, &secret));
    let asked = pod(
        &ns,
        json!({"run.ai/s3-credential": "s3", "run.ai/s3-source": "s3://datasets/train:/data/train",
               "run.ai/s3-endpoint": server.url}),
    );
    let mut stored = Value::Null;
    eventually(30, "credgate to index the credential", || {
        let out = c.kubectl(
            &["create", "--dry-run=server", "-o", "json", "-f", "-"],
            Some(&asked.to_string()),
        );
        if out.status.success() {
            stored = serde_json::from_slice(&out.stdout).unwrap();
        }
        out.status.success()
    });
    let fetcher = stored["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().starts_with("credgate-s3-"))
        .unwrap()
        .clone();

    // Its environment exactly as injected, each secretKeyRef resolved from the Secret.
    let secret_data = c.kubectl_json(&["get", "secret", "s3", "-n", &ns]);
    let resolve = |e: &Value| -> String {
        match e.get("value") {
            Some(v) => v.as_str().unwrap().to_owned(),
            None => {
                let r = &e["valueFrom"]["secretKeyRef"];
                assert_eq!(r["name"], "s3");
                let b64 = secret_data["data"][r["key"].as_str().unwrap()]
                    .as_str()
                    .unwrap();
                String::from_utf8(
                    base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .unwrap(),
                )
                .unwrap()
            }
        }
    };
    let env: Vec<(String, String)> = fetcher["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), resolve(e)))
        .collect();
    assert!(env.iter().any(|(k, _)| k == "AWS_ENDPOINT_URL"));
    // The mount path is the pod's emptyDir; here, a fresh directory stands for it.
    let run = |env: &[(String, String)]| {
        let volume = tempfile::tempdir().unwrap();
        let command: Vec<String> = fetcher["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                a.as_str()
                    .unwrap()
                    .replace("/data/train", volume.path().to_str().unwrap())
            })
            .collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let out = aws(
            &bin,
            &env,
            &command[1..].iter().map(String::as_str).collect::<Vec<_>>(),
        );
        (out, volume)
    };
    let (out, volume) = run(&env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(volume.path().join("labels.csv")).unwrap(),
        "cat,1\n"
    );
    assert_eq!(
        std::fs::read_to_string(volume.path().join("images/0001.txt")).unwrap(),
        "pixels"
    );

    // A wrong secret key: the sync fails and fetches nothing.
    let wrong: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| match k.as_str() {
            "AWS_SECRET_ACCESS_KEY" => (k.clone(), "not-the-key".to_owned()),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    let (out, volume) = run(&wrong);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SignatureDoesNotMatch"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_dir(volume.path()).unwrap().count(), 0);
    drop(server);
}
