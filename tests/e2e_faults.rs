//! End to end: faults under load (issue 10). For 60 s, clients create
//! credentials (project and cluster-wide), create pods that name them and
//! delete credentials, while credgate is killed with SIGKILL and restarted,
//! kube-apiserver is restarted and etcd is restarted. Afterwards, from what the
//! API server stored:
//! - no credential a stored pod uses was deleted (credgate runs as shipped,
//!   with its in-use finalizer);
//! - every stored pod carries exactly the injection its annotation asks for;
//! - managed copies converge within 60 s.
//!
//! The counts go to `target/e2e/reports/faults.json` for `make reliability`.

mod cluster;

use cluster::Cluster;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn main() {
    cluster::run(
        "e2e_faults",
        vec![(
            "faults_under_load_lose_nothing",
            faults_under_load as fn(&Cluster),
        )],
    );
}

/// How long the workload runs, and when each fault starts (seconds).
const WORKLOAD_SECS: u64 = 60;
const FAULTS: [(u64, &str); 3] = [
    (10, "kill-credgate"),
    (25, "restart-apiserver"),
    (40, "restart-etcd"),
];
/// A request that takes longer counts as unavailable (its outcome is unknown;
/// the checks read what the API server stored).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const CREDENTIALS_NAMESPACE: &str = "runai";
/// The annotation every workload pod carries.
const ENV_ANNOTATION: &str = "run.ai/credentials-env";

#[derive(Clone, Debug)]
struct Credential {
    name: String,
    /// Where the Secret lives: a project namespace, or `runai` for cluster-wide ones.
    namespace: String,
    cluster_wide: bool,
}

/// What the client tasks share.
#[derive(Clone)]
struct Shared {
    client: kube::Client,
    state: Arc<Mutex<Workload>>,
    stop: Arc<AtomicBool>,
    projects: Vec<String>,
}

#[derive(Default)]
struct Workload {
    live: Vec<Credential>,
    counts: BTreeMap<String, u64>,
}

impl Workload {
    fn count(&mut self, what: String) {
        *self.counts.entry(what).or_default() += 1;
    }
}

/// A small deterministic generator (the workload is the same every run).
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// `refused` (credgate or the API server said no), or `unavailable`.
fn outcome<T>(result: Result<Result<T, kube::Error>, tokio::time::error::Elapsed>) -> &'static str {
    match result {
        Ok(Ok(_)) => "ok",
        Ok(Err(kube::Error::Api(status))) if (400..500).contains(&status.code) => "refused",
        _ => "unavailable",
    }
}

fn credential_secret(c: &Credential, n: u64) -> Secret {
    let mut labels = serde_json::json!({"run.ai/resource": "generic"});
    if c.cluster_wide {
        labels["run.ai/cluster-wide"] = "true".into();
    }
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": c.name, "namespace": c.namespace, "labels": labels},
        "type": "Opaque",
        "stringData": {"token": format!("e2e-secret-fault-{n}")},
    }))
    .unwrap()
}

fn pod(name: &str, credential: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "annotations": {ENV_ANNOTATION: format!("TOKEN={credential}:token")}},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }))
    .unwrap()
}

/// credgate as shipped: with the in-use finalizer (`--in-use-finalizer`
/// defaults to true; the dev cluster turns it off for speed). Records of
/// admitted pods only make a DELETE wait 2 s for the watch (issue 15), so
/// when etcd stalls a pod's write for longer, the finalizer is what keeps
/// its credential until no stored pod names it.
const AS_SHIPPED: [(&str, &str); 1] = [("CREDGATE_IN_USE_FINALIZER", "true")];

fn faults_under_load(c: &Cluster) {
    c.stop_credgate();
    c.start_credgate_with(&AS_SHIPPED);
    let _ = c.kubectl(&["create", "namespace", CREDENTIALS_NAMESPACE], None);
    let projects: Vec<String> = (0..2)
        .map(|i| {
            let p = format!("fault-{i}");
            c.namespace(&p, &[("runai/queue", &p)])
        })
        .collect();
    let client = c.client();
    let shared = Shared {
        client: client.clone(),
        state: Arc::new(Mutex::new(Workload::default())),
        stop: Arc::new(AtomicBool::new(false)),
        projects: projects.clone(),
    };
    let (state, stop) = (shared.state.clone(), shared.stop.clone());
    let started = Instant::now();

    let creator = c.runtime.spawn(create_credentials(shared.clone()));
    let pod_clients: Vec<_> = (0..2u64)
        .map(|worker| c.runtime.spawn(create_pods(shared.clone(), worker)))
        .collect();
    let deleter = c.runtime.spawn(delete_credentials(shared.clone()));
    // The faults, on schedule, while the clients run.
    let mut recoveries = BTreeMap::new();
    for (at, fault) in FAULTS {
        let wait = Duration::from_secs(at).saturating_sub(started.elapsed());
        std::thread::sleep(wait);
        let begun = Instant::now();
        c.inject_with(fault, &AS_SHIPPED);
        recoveries.insert(fault, begun.elapsed().as_secs_f64());
        eprintln!(
            "fault {fault} at {:.1}s: serving again after {:.1}s",
            at as f64,
            begun.elapsed().as_secs_f64()
        );
    }
    std::thread::sleep(Duration::from_secs(WORKLOAD_SECS).saturating_sub(started.elapsed()));
    stop.store(true, Ordering::SeqCst);
    c.runtime.block_on(async {
        for task in pod_clients.into_iter().chain([creator, deleter]) {
            task.await.unwrap();
        }
    });
    let workload_secs = started.elapsed().as_secs_f64();
    let counts = state.lock().unwrap().counts.clone();
    eprintln!("workload of {workload_secs:.1}s: {counts:?}");

    // What the API server stored.
    let secrets_of = |ns: &str| -> BTreeMap<String, Secret> {
        let api: Api<Secret> = Api::namespaced(client.clone(), ns);
        c.runtime
            .block_on(api.list(&ListParams::default()))
            .unwrap()
            .items
            .into_iter()
            .map(|s| (s.metadata.name.clone().unwrap_or_default(), s))
            .collect()
    };
    let cluster_credentials: BTreeMap<String, Secret> = secrets_of(CREDENTIALS_NAMESPACE)
        .into_iter()
        .filter(|(name, _)| name.starts_with("cl-"))
        .collect();
    let mut stored_pods = 0;
    let mut lost = Vec::new();
    let mut wrong = Vec::new();
    for ns in &projects {
        let secrets = secrets_of(ns);
        let api: Api<Pod> = Api::namespaced(client.clone(), ns);
        for p in c
            .runtime
            .block_on(api.list(&ListParams::default()))
            .unwrap()
        {
            stored_pods += 1;
            let name = format!("{ns}/{}", p.metadata.name.clone().unwrap_or_default());
            let annotation = p
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ENV_ANNOTATION))
                .cloned()
                .unwrap_or_default();
            let credential = annotation
                .strip_prefix("TOKEN=")
                .and_then(|r| r.strip_suffix(":token"))
                .unwrap_or_default()
                .to_owned();
            let (exists, expected_secret) = if credential.starts_with("cl-") {
                (
                    cluster_credentials.contains_key(&credential),
                    credgate::model::copy::copy_name(&credential),
                )
            } else {
                (secrets.contains_key(&credential), credential.clone())
            };
            if !exists {
                lost.push(format!("{name} uses {credential}, which was deleted"));
            }
            // Exactly one injection: TOKEN from the credential's Secret (or copy).
            let spec = p.spec.unwrap_or_default();
            let injected: Vec<(String, Option<String>, Option<String>)> = spec
                .containers
                .iter()
                .flat_map(|c| c.env.clone().unwrap_or_default())
                .map(|e| {
                    let from = e.value_from.and_then(|v| v.secret_key_ref);
                    (
                        e.name,
                        from.as_ref().map(|r| r.name.clone()),
                        from.map(|r| r.key),
                    )
                })
                .collect();
            let expected = vec![(
                "TOKEN".to_owned(),
                Some(expected_secret),
                Some("token".to_owned()),
            )];
            let other = spec.volumes.as_ref().is_some_and(|v| !v.is_empty())
                || spec
                    .image_pull_secrets
                    .as_ref()
                    .is_some_and(|v| !v.is_empty())
                || spec.containers.iter().any(|c| c.env_from.is_some());
            if injected != expected || other {
                wrong.push(format!("{name}: {injected:?}"));
            }
        }
    }
    assert!(lost.is_empty(), "in-use credentials were deleted: {lost:?}");
    assert!(
        wrong.is_empty(),
        "pods with the wrong injections: {wrong:?}"
    );

    // Managed copies converge: every project has exactly the live cluster
    // credentials' copies, with their data.
    let converge_start = Instant::now();
    let token = |s: &Secret| s.data.as_ref().and_then(|d| d.get("token")).cloned();
    // What still differs: copies missing, extra or with other data (empty when converged).
    let differences = || -> Vec<String> {
        let sources: BTreeMap<String, Secret> = secrets_of(CREDENTIALS_NAMESPACE)
            .into_iter()
            .filter(|(name, _)| name.starts_with("cl-"))
            .collect();
        let mut out = Vec::new();
        for ns in &projects {
            let copies: BTreeMap<String, Secret> = secrets_of(ns)
                .into_iter()
                .filter(|(_, s)| {
                    s.metadata
                        .labels
                        .as_ref()
                        .is_some_and(|l| l.contains_key(credgate::model::copy::MANAGED_LABEL))
                })
                .collect();
            for (name, source) in &sources {
                let meta = &source.metadata;
                match copies.get(&credgate::model::copy::copy_name(name)) {
                    None => out.push(format!(
                        "{ns}: no copy of {name} (deleting: {}, finalizers: {:?}, annotations: {:?})",
                        meta.deletion_timestamp.is_some(),
                        meta.finalizers,
                        meta.annotations
                    )),
                    Some(copy) if token(copy) != token(source) => {
                        out.push(format!("{ns}: the copy of {name} holds other data"))
                    }
                    Some(_) => {}
                }
            }
            let wanted: BTreeSet<String> = sources
                .keys()
                .map(|n| credgate::model::copy::copy_name(n))
                .collect();
            out.extend(
                copies
                    .keys()
                    .filter(|c| !wanted.contains(*c))
                    .map(|c| format!("{ns}: {c} has no source")),
            );
        }
        out
    };
    cluster::until_none_left(60, "managed copies to converge", differences);
    let converged_secs = converge_start.elapsed().as_secs_f64();
    eprintln!(
        "{stored_pods} stored pods checked; copies converged {converged_secs:.1}s after the workload"
    );

    let get = |k: &str| counts.get(k).copied().unwrap_or_default();
    assert!(
        get("pod creates ok") >= 100,
        "enough pods were admitted to mean something: {counts:?}"
    );
    assert!(
        get("credential deletes ok") > 0 && get("credential deletes refused (in use)") > 0,
        "deletes were both allowed and refused: {counts:?}"
    );
    cluster::report(
        "faults",
        serde_json::json!({
            "workload_secs": workload_secs,
            "faults": FAULTS.iter().map(|(at, f)| serde_json::json!({"fault": f, "at_secs": at, "serving_again_after_secs": recoveries[f]})).collect::<Vec<_>>(),
            "faults_survived": FAULTS.len(),
            "counts": counts,
            "stored_pods_checked": stored_pods,
            "in_use_credentials_deleted": lost.len(),
            "pods_with_wrong_injections": wrong.len(),
            "copies_converged_after_secs": converged_secs,
        }),
    );
}

/// Credentials: two project ones, then a cluster-wide one, every 250 ms.
async fn create_credentials(s: Shared) {
    let mut n = 0u64;
    while !s.stop.load(Ordering::SeqCst) {
        n += 1;
        let cluster_wide = n.is_multiple_of(3);
        let credential = Credential {
            name: format!("{}-{n}", if cluster_wide { "cl" } else { "c" }),
            namespace: if cluster_wide {
                CREDENTIALS_NAMESPACE.to_owned()
            } else {
                s.projects[n as usize % s.projects.len()].clone()
            },
            cluster_wide,
        };
        let api: Api<Secret> = Api::namespaced(s.client.clone(), &credential.namespace);
        let result = tokio::time::timeout(
            REQUEST_TIMEOUT,
            api.create(&PostParams::default(), &credential_secret(&credential, n)),
        )
        .await;
        let what = outcome(result);
        {
            let mut state = s.state.lock().unwrap();
            state.count(format!("credential creates {what}"));
            if what == "ok" {
                state.live.push(credential);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Pods naming a live credential, every 100 ms (per client).
async fn create_pods(s: Shared, worker: u64) {
    let mut random = XorShift(0x9e37_79b9_7f4a_7c15 + worker);
    let mut n = 0u64;
    while !s.stop.load(Ordering::SeqCst) {
        let pick = {
            let state = s.state.lock().unwrap();
            (!state.live.is_empty()).then(|| state.live[random.below(state.live.len())].clone())
        };
        if let Some(credential) = pick {
            n += 1;
            let namespace = if credential.cluster_wide {
                s.projects[random.below(s.projects.len())].clone()
            } else {
                credential.namespace.clone()
            };
            let api: Api<Pod> = Api::namespaced(s.client.clone(), &namespace);
            let result = tokio::time::timeout(
                REQUEST_TIMEOUT,
                api.create(
                    &PostParams::default(),
                    &pod(&format!("w{worker}-{n}"), &credential.name),
                ),
            )
            .await;
            let what = outcome(result);
            s.state.lock().unwrap().count(format!("pod creates {what}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Deletes of a live credential, every 500 ms.
async fn delete_credentials(s: Shared) {
    let mut random = XorShift(0x2545_f491_4f6c_dd1d);
    while !s.stop.load(Ordering::SeqCst) {
        let pick = {
            let state = s.state.lock().unwrap();
            (!state.live.is_empty()).then(|| state.live[random.below(state.live.len())].clone())
        };
        if let Some(credential) = pick {
            let api: Api<Secret> = Api::namespaced(s.client.clone(), &credential.namespace);
            let result = tokio::time::timeout(
                REQUEST_TIMEOUT,
                api.delete(&credential.name, &DeleteParams::default()),
            )
            .await;
            let what = match &result {
                Ok(Err(kube::Error::Api(status))) if status.message.contains("in use by") => {
                    "refused (in use)"
                }
                _ => outcome(result),
            };
            let mut state = s.state.lock().unwrap();
            state.count(format!("credential deletes {what}"));
            if what == "ok" {
                state.live.retain(|l| l.name != credential.name);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
