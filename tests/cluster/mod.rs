//! One real control plane per e2e test binary: `scripts/dev-cluster up` with a
//! state folder of its own, the credgate binary under test behind the webhooks
//! from `manifests/`, and helpers to drive it with kubectl and kube-rs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The user tests act as (impersonated by the admin), with `edit` in each test namespace.
pub const USER: &str = "alice@example.com";

pub struct Cluster {
    repo: PathBuf,
    state: PathBuf,
    pub kubeconfig: PathBuf,
    pub kubectl: PathBuf,
    namespaces: AtomicUsize,
    pub runtime: tokio::runtime::Runtime,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl Cluster {
    /// Starts (or reuses) the control plane for the test binary `name`. Fails
    /// loudly when it cannot: e2e tests never skip.
    pub fn up(name: &str) -> Cluster {
        let repo = repo();
        let state = repo.join("target/e2e").join(name);
        let out = Command::new(repo.join("scripts/dev-cluster"))
            .arg("up")
            .env("CREDGATE_DEV_STATE", &state)
            .env("CREDGATE_BIN", env!("CARGO_BIN_EXE_credgate"))
            .stdin(Stdio::null())
            .output()
            .expect("scripts/dev-cluster runs");
        if !out.status.success() {
            panic!(
                "the local control plane could not be started (scripts/dev-cluster up failed; the Kubernetes binaries come from scripts/k8s-bins):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let bins = std::fs::read_to_string(state.join("bins")).expect("state/bins");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Cluster {
            kubeconfig: state.join("kubeconfig"),
            kubectl: Path::new(bins.trim()).join("kubectl"),
            repo,
            state,
            namespaces: AtomicUsize::new(0),
            runtime,
        }
    }

    /// Runs the built kubectl against the cluster, optionally with `stdin`.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write as _;
        let mut child = Command::new(&self.kubectl)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl starts");
        let mut input = child.stdin.take().unwrap();
        input
            .write_all(stdin.unwrap_or_default().as_bytes())
            .unwrap();
        drop(input);
        child.wait_with_output().unwrap()
    }

    /// kubectl that must succeed; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// kubectl `args` with `-o json`, parsed.
    pub fn kubectl_json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.kubectl_ok(&[args, &["-o", "json"]].concat(), None)).unwrap()
    }

    /// A fresh namespace, with `labels`, where [`USER`] may edit.
    pub fn namespace(&self, prefix: &str, labels: &[(&str, &str)]) -> String {
        let n = self.namespaces.fetch_add(1, Ordering::SeqCst);
        let name = format!("{prefix}-{n}-{}", std::process::id());
        self.kubectl_ok(&["create", "namespace", &name], None);
        if !labels.is_empty() {
            let mut args = vec!["label".to_owned(), "namespace".to_owned(), name.clone()];
            args.extend(labels.iter().map(|(k, v)| format!("{k}={v}")));
            self.kubectl_ok(&args.iter().map(String::as_str).collect::<Vec<_>>(), None);
        }
        self.kubectl_ok(
            &[
                "create",
                "rolebinding",
                "alice-edit",
                "--clusterrole=edit",
                &format!("--user={USER}"),
                "-n",
                &name,
            ],
            None,
        );
        name
    }

    /// A kube-rs client for the cluster admin.
    pub fn client(&self) -> kube::Client {
        self.runtime.block_on(async {
            let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap();
            let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .unwrap();
            kube::Client::try_from(config).unwrap()
        })
    }

    /// A kube-rs client acting as `user` (impersonation by the admin).
    pub fn client_as(&self, user: &str) -> kube::Client {
        self.runtime.block_on(async {
            let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap();
            let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .unwrap();
            config.auth_info.impersonate = Some(user.to_owned());
            kube::Client::try_from(config).unwrap()
        })
    }

    /// A kubeconfig in which the admin impersonates `user` (for kubectl and the CLI).
    pub fn kubeconfig_as(&self, user: &str) -> PathBuf {
        let text = std::fs::read_to_string(&self.kubeconfig).unwrap();
        let mut out = String::new();
        for line in text.lines() {
            out.push_str(line);
            out.push('\n');
            if line.trim_start().starts_with("token:") {
                let indent = &line[..line.len() - line.trim_start().len()];
                out.push_str(&format!("{indent}as: {user:?}\n"));
            }
        }
        let path = self
            .state
            .join(format!("kubeconfig-as-{}", user.replace('@', "-at-")));
        std::fs::write(&path, out).unwrap();
        path
    }

    /// A file of the cluster's state folder (e.g. `credgate.kubeconfig`).
    pub fn state_file(&self, name: &str) -> PathBuf {
        self.state.join(name)
    }

    /// The folder of the control-plane binaries.
    pub fn bins(&self) -> PathBuf {
        self.kubectl.parent().unwrap().to_owned()
    }

    /// `scripts/dev-cluster stop-credgate`: credgate is down (by pid) when this returns.
    pub fn stop_credgate(&self) {
        self.dev_cluster("stop-credgate");
    }

    /// `scripts/dev-cluster start-credgate`: returns once credgate is ready.
    pub fn start_credgate(&self) {
        self.dev_cluster("start-credgate");
    }

    /// Like [`Cluster::start_credgate`], with `env` for `scripts/dev-cluster`
    /// (e.g. `CREDGATE_IN_USE_FINALIZER`).
    pub fn start_credgate_with(&self, env: &[(&str, &str)]) {
        self.dev_cluster_with("start-credgate", env);
    }

    fn dev_cluster(&self, command: &str) {
        self.dev_cluster_with(command, &[]);
    }

    fn dev_cluster_with(&self, command: &str, env: &[(&str, &str)]) {
        let out = Command::new(self.repo.join("scripts/dev-cluster"))
            .arg(command)
            .envs(env.iter().copied())
            .env("CREDGATE_DEV_STATE", &self.state)
            .env("CREDGATE_BIN", env!("CARGO_BIN_EXE_credgate"))
            .stdin(Stdio::null())
            .output()
            .expect("scripts/dev-cluster runs");
        assert!(
            out.status.success(),
            "scripts/dev-cluster {command} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A fault of `scripts/dev-cluster`: `kill-credgate`, `restart-apiserver`
    /// or `restart-etcd`; returns once the process serves again.
    pub fn inject(&self, fault: &str) {
        self.dev_cluster(fault);
    }

    /// Like [`Cluster::inject`], with `env` for `scripts/dev-cluster` (a
    /// restarted credgate keeps the flags it was started with).
    pub fn inject_with(&self, fault: &str, env: &[(&str, &str)]) {
        self.dev_cluster_with(fault, env);
    }

    /// `scripts/dev-cluster restart-credgate`: returns once credgate is ready again.
    pub fn restart_credgate(&self) {
        self.dev_cluster("restart-credgate");
    }

    pub fn credgate_log(&self) -> String {
        std::fs::read_to_string(self.state.join("credgate.log")).unwrap_or_default()
    }

    pub fn down(&self) {
        let _ = Command::new(self.repo.join("scripts/dev-cluster"))
            .arg("down")
            .env("CREDGATE_DEV_STATE", &self.state)
            .status();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.down();
    }
}

/// A named end-to-end test.
pub type Test = (&'static str, fn(&Cluster));

/// Runs `tests` as libtest trials against one cluster, then stops it.
pub fn run(name: &str, tests: Vec<Test>) {
    let mut args = libtest_mimic::Arguments::from_args();
    // Tests share one control plane and one restarts credgate: run them one by one.
    args.test_threads.get_or_insert(1);
    let cluster = std::sync::Arc::new(Cluster::up(name));
    let trials = tests
        .into_iter()
        .map(|(test_name, test)| {
            let cluster = cluster.clone();
            libtest_mimic::Trial::test(test_name, move || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(&cluster))).map_err(
                    |panic| {
                        panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                            .unwrap_or_else(|| "test panicked".to_owned())
                            .into()
                    },
                )
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    drop(cluster);
    conclusion.exit();
}

/// Another credgate process behind a ValidatingWebhookConfiguration of its own
/// (the one in `manifests/`, renamed), limited to namespaces labelled
/// `credgate-e2e/replica=<name>`. Stopped by pid when dropped.
pub struct Replica {
    pub name: String,
    pub admin: String,
    /// `127.0.0.1:<port>` of its webhook (no client authentication).
    pub webhook: String,
    child: Option<std::process::Child>,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

pub const REPLICA_LABEL: &str = "credgate-e2e/replica";

impl Cluster {
    /// Starts a credgate replica watching the API through `kubeconfig`
    /// (the cluster's own by default) and registers it.
    pub fn replica(&self, name: &str, kubeconfig: Option<&Path>) -> Replica {
        use std::io::BufRead as _;
        let bin = env!("CARGO_BIN_EXE_credgate");
        let dir = tempfile::tempdir().unwrap();
        let bundle = Command::new(bin)
            .args([
                "--log-level",
                "warn",
                "certs",
                "--dns",
                "localhost",
                "--ip",
                "127.0.0.1",
                "--out",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        let bundle = String::from_utf8(bundle.stdout).unwrap().trim().to_owned();
        let mut child = Command::new(bin)
            .env("KUBECONFIG", kubeconfig.unwrap_or(&self.kubeconfig))
            .args([
                "--log-format",
                "json",
                "serve",
                "--controller=false",
                "--addr",
                "127.0.0.1:0",
                "--admin-addr",
                "127.0.0.1:0",
                "--tls-cert",
            ])
            .arg(dir.path().join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.path().join("tls.key"))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = std::io::BufReader::new(stderr).lines();
        let serving: serde_json::Value = lines
            .by_ref()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
            .find(|v| v["message"] == "serving")
            .expect("the replica logs 'serving'");
        // Keep draining its log so it never blocks on a full pipe, into a file
        // the reliability suite's leak check reads (`credgate.log.*`).
        let mut kept =
            std::fs::File::create(self.state.join(format!("credgate.log.replica-{name}")))
                .expect("the replica's log file");
        std::thread::spawn(move || {
            use std::io::Write as _;
            for line in lines.map_while(Result::ok) {
                let _ = writeln!(kept, "{line}");
            }
        });
        let webhook = serving["webhook"].as_str().unwrap().to_owned();
        let admin = serving["admin"].as_str().unwrap().to_owned();

        let rendered = self.kubectl_ok(
            &[
                "create",
                "--dry-run=client",
                "-o",
                "json",
                "-f",
                &format!("{}/manifests/base/webhooks.yaml", self.repo.display()),
            ],
            None,
        );
        let mut stream =
            serde_json::Deserializer::from_str(&rendered).into_iter::<serde_json::Value>();
        let mut config = stream
            .find_map(|doc| {
                doc.ok()
                    .filter(|d| d["kind"] == "ValidatingWebhookConfiguration")
            })
            .expect("manifests/base/webhooks.yaml has a ValidatingWebhookConfiguration");
        config["metadata"]["name"] = format!("credgate-replica-{name}").into();
        for hook in config["webhooks"].as_array_mut().unwrap() {
            let path = hook["clientConfig"]["service"]["path"]
                .as_str()
                .unwrap()
                .to_owned();
            hook["clientConfig"] =
                serde_json::json!({"url": format!("https://{webhook}{path}"), "caBundle": bundle});
            hook["namespaceSelector"]["matchLabels"] = serde_json::json!({REPLICA_LABEL: name});
        }
        self.kubectl_ok(&["apply", "-f", "-"], Some(&config.to_string()));
        Replica {
            name: name.to_owned(),
            admin,
            webhook,
            child: Some(child),
            kubectl: self.kubectl.clone(),
            kubeconfig: self.kubeconfig.clone(),
            _dir: dir,
        }
    }
}

impl Replica {
    /// The CA that signed the replica's serving certificate (PEM).
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self._dir.path().join("ca.crt")).expect("the replica's ca.crt")
    }

    /// GET `path` on the replica's admin port: the status and the body, or
    /// the probe's own failure (which callers report as a failure, never as
    /// "not ready").
    fn admin_get(&self, path: &str) -> Result<(u16, String), String> {
        // reqwest is built without a default TLS provider (plain HTTP here needs none).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        let response = client
            .get(format!("http://{}{path}", self.admin))
            .send()
            .map_err(|e| format!("GET {path} on {}: {e}", self.admin))?;
        let status = response.status().as_u16();
        let body = response.text().map_err(|e| e.to_string())?;
        Ok((status, body))
    }

    /// How many admission requests the replica has answered.
    pub fn answered(&self) -> u64 {
        let (status, text) = self
            .admin_get("/metrics")
            .unwrap_or_else(|e| panic!("the replica's /metrics could not be read: {e}"));
        assert_eq!(status, 200, "/metrics answered {status}: {text}");
        text.lines()
            .filter(|l| l.starts_with("credgate_admission_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// `/readyz`: true on 200, false on 503; any other answer, or no answer,
    /// fails the test.
    pub fn is_ready(&self) -> bool {
        match self.admin_get("/readyz") {
            Ok((200, _)) => true,
            Ok((503, _)) => false,
            Ok((status, body)) => panic!("/readyz answered {status}: {body}"),
            Err(e) => panic!("the readiness probe itself failed: {e}"),
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = Command::new(&self.kubectl)
            .env("KUBECONFIG", &self.kubeconfig)
            .args([
                "delete",
                "validatingwebhookconfiguration",
                &format!("credgate-replica-{}", self.name),
                "--ignore-not-found",
            ])
            .output();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Writes a test's figures to `target/e2e/reports/<name>.json` (the
/// reliability summary reads them).
pub fn report(name: &str, figures: serde_json::Value) {
    let dir = repo().join("target/e2e/reports");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.json")), figures.to_string()).unwrap();
}

/// Polls `left` every 100 ms until it returns nothing or `secs` pass; panics
/// with `what` and what was left then.
pub fn until_none_left<T: std::fmt::Debug>(
    secs: u64,
    what: &str,
    mut left: impl FnMut() -> Vec<T>,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let now_left = left();
        if now_left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; left: {now_left:#?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Polls `condition` every 100 ms until it holds or `secs` pass; panics with `what` then.
pub fn eventually(secs: u64, what: &str, mut condition: impl FnMut() -> bool) {
    until_none_left(secs, what, || {
        if condition() {
            Vec::new()
        } else {
            vec!["not yet"]
        }
    });
}
