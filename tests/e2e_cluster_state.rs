//! End to end: the rules that depend on cluster state, through the real
//! kube-apiserver — placement, unique names, existing-secret claims (also with
//! two credgate processes at once), in-use deletion and its race with pod
//! creation, restart and not-yet-synced.

mod cluster;

use cluster::{Cluster, REPLICA_LABEL, eventually};
use std::process::Output;

fn main() {
    cluster::run(
        "e2e_cluster_state",
        vec![
            (
                "credentials_live_in_project_or_credentials_namespaces",
                placement,
            ),
            ("credential_names_are_unique_per_scope", unique_names),
            (
                "an_existing_secret_backs_one_credential",
                existing_secret_rules,
            ),
            (
                "concurrent_claims_through_two_credgates_have_one_winner",
                concurrent_claims,
            ),
            (
                "a_delete_racing_a_pod_create_never_both_win",
                delete_racing_pod_create,
            ),
            ("in_use_credentials_cannot_be_deleted", in_use_deletion),
            (
                "a_project_namespace_with_800_credentials_is_deleted_within_60_s",
                namespace_deletion,
            ),
            (
                "in_use_protection_holds_across_two_replicas",
                protection_across_replicas,
            ),
            (
                "rules_hold_after_a_restart_and_deny_before_sync",
                restart_and_unsynced,
            ),
        ],
    );
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn generic(ns: &str, name: &str, extra_labels: &str, annotations: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {{run.ai/resource: generic{extra_labels}}}\n  annotations: {{{annotations}}}\ntype: Opaque\nstringData: {{token: t}}\n"
    )
}

fn docker(ns: &str, name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {{{labels}}}\ntype: kubernetes.io/dockerconfigjson\nstringData:\n  .dockerconfigjson: '{{\"auths\":{{\"ghcr.io\":{{\"username\":\"u\",\"password\":\"e2e\"}}}}}}'\n"
    )
}

fn backed(ns: &str, name: &str, existing: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {{run.ai/resource: docker-registry}}\n  annotations: {{run.ai/existing-secret: {existing}}}\ntype: Opaque\n"
    )
}

fn placement(c: &Cluster) {
    let plain = c.namespace("not-a-project", &[]);
    let out = c.kubectl(&["apply", "-f", "-"], Some(&generic(&plain, "g", "", "")));
    assert!(
        stderr(&out).contains(&format!(
            "namespace \"{plain}\" is neither a project namespace"
        )),
        "{}",
        stderr(&out)
    );

    let _ = c.kubectl(&["create", "namespace", "runai"], None);
    let lonely = format!("dept-{}", std::process::id());
    let out = c.kubectl(
        &["apply", "-f", "-"],
        Some(&generic(
            "runai",
            &lonely,
            &format!(", run.ai/department: lonely{}", std::process::id()),
            "",
        )),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Warning: no project namespace belongs to department"),
        "kubectl prints the warning: {}",
        stderr(&out)
    );
    c.kubectl_ok(&["delete", "secret", "-n", "runai", &lonely], None);
}

fn unique_names(c: &Cluster) {
    let ns = c.namespace(
        "unique",
        &[
            ("runai/queue", "unique"),
            ("run.ai/department", "uniq-dept"),
        ],
    );
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&generic(&ns, "first", "", "run.ai/name: shared")),
    );
    let out = c.kubectl(
        &["apply", "-f", "-"],
        Some(&generic(&ns, "second", "", "run.ai/name: shared")),
    );
    assert!(
        stderr(&out)
            .contains("the name \"shared\" is already used by the project credential in Secret"),
        "{}",
        stderr(&out)
    );

    // A department credential of the same name; a project one shadowing it gets a warning.
    let _ = c.kubectl(&["create", "namespace", "runai"], None);
    let dept = format!("uniq-dept-{}", std::process::id());
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&generic(
            "runai",
            &dept,
            ", run.ai/department: uniq-dept",
            "run.ai/name: team-token",
        )),
    );
    let out = c.kubectl(
        &["apply", "-f", "-"],
        Some(&generic(&ns, "mine", "", "run.ai/name: team-token")),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("shadows the department uniq-dept credential"),
        "{}",
        stderr(&out)
    );
    c.kubectl_ok(&["delete", "secret", "-n", "runai", &dept], None);
}

fn existing_secret_rules(c: &Cluster) {
    let ns = c.namespace("existing", &[("runai/queue", "existing")]);
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&docker(&ns, "pull", "run.ai/resource: docker-registry")),
    );
    c.kubectl_ok(&["apply", "-f", "-"], Some(&backed(&ns, "reg-one", "pull")));
    let out = c.kubectl(&["apply", "-f", "-"], Some(&backed(&ns, "reg-two", "pull")));
    assert!(
        stderr(&out).contains("already backs credential Secret \"reg-one\""),
        "{}",
        stderr(&out)
    );

    // Not eligible: missing, unlabelled, wrong type.
    let out = c.kubectl(&["apply", "-f", "-"], Some(&backed(&ns, "reg-3", "nope")));
    assert!(
        stderr(&out).contains("the existing Secret \"nope\" does not exist"),
        "{}",
        stderr(&out)
    );
    c.kubectl_ok(
        &[
            "create",
            "secret",
            "generic",
            "unlabelled",
            "-n",
            &ns,
            "--from-literal=k=v",
        ],
        None,
    );
    let out = c.kubectl(
        &["apply", "-f", "-"],
        Some(&backed(&ns, "reg-4", "unlabelled")),
    );
    assert!(
        stderr(&out).contains("label it run.ai/resource: docker-registry"),
        "{}",
        stderr(&out)
    );

    // Dry-run answers the same but leaves no claim behind.
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&docker(&ns, "pull-2", "run.ai/resource: docker-registry")),
    );
    c.kubectl_ok(
        &["apply", "--dry-run=server", "-f", "-"],
        Some(&backed(&ns, "reg-5", "pull-2")),
    );
    // Claims live in credgate's own namespace, none in the project's.
    let leases = c.kubectl_ok(
        &["get", "leases", "-n", "credgate-system", "-o", "name"],
        None,
    );
    assert!(
        leases.contains(&format!("credgate-claim.{ns}.pull\n")),
        "the claim on pull: {leases}"
    );
    assert!(
        !leases.contains(&format!("credgate-claim.{ns}.pull-2")),
        "a dry-run wrote a claim: {leases}"
    );
    let in_project = c.kubectl_ok(&["get", "leases", "-n", &ns, "-o", "name"], None);
    assert!(in_project.trim().is_empty(), "{in_project}");

    // Renaming is fine; changing the backing secret is not.
    c.kubectl_ok(
        &[
            "annotate",
            "secret",
            "reg-one",
            "-n",
            &ns,
            "run.ai/name=registry",
        ],
        None,
    );
    let out = c.kubectl(
        &[
            "annotate",
            "--overwrite",
            "secret",
            "reg-one",
            "-n",
            &ns,
            "run.ai/existing-secret=pull-2",
        ],
        None,
    );
    assert!(
        stderr(&out).contains("the backing existing Secret cannot change"),
        "{}",
        stderr(&out)
    );

    // Once reg-one is gone, its claim is released and pull can back another credential.
    c.kubectl_ok(&["delete", "secret", "reg-one", "-n", &ns], None);
    eventually(
        30,
        "the claim of a deleted credential to be released",
        || {
            c.kubectl(&["apply", "-f", "-"], Some(&backed(&ns, "reg-two", "pull")))
                .status
                .success()
        },
    );
}

fn concurrent_claims(c: &Cluster) {
    let ns = c.namespace("race", &[("runai/queue", "race"), (REPLICA_LABEL, "two")]);
    let replica = c.replica("two", None);
    eventually(60, "the second credgate to sync", || replica.is_ready());
    // Requests in this namespace now go through both processes.
    eventually(30, "the second credgate to receive requests", || {
        let _ = c.kubectl(
            &["apply", "--dry-run=server", "-f", "-"],
            Some(&generic(&ns, "probe", "", "")),
        );
        replica.answered() > 0
    });
    let rounds = ROUNDS;
    for round in 0..rounds {
        let existing = format!("pull-{round}");
        c.kubectl_ok(
            &["apply", "-f", "-"],
            Some(&docker(&ns, &existing, "run.ai/resource: docker-registry")),
        );
        let results: Vec<(String, Output)> = std::thread::scope(|s| {
            let handles: Vec<_> = ["a", "b"]
                .into_iter()
                .map(|who| {
                    let name = format!("cred-{round}-{who}");
                    let manifest = backed(&ns, &name, &existing);
                    s.spawn(move || (name, c.kubectl(&["apply", "-f", "-"], Some(&manifest))))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: Vec<&String> = results
            .iter()
            .filter(|(_, o)| o.status.success())
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one claim wins: {:?}",
            results
                .iter()
                .map(|(n, o)| (n, stderr(o)))
                .collect::<Vec<_>>()
        );
        for (name, out) in &results {
            if !out.status.success() {
                let e = stderr(out);
                assert!(
                    e.contains("already backs")
                        || e.contains("is being created for the existing Secret"),
                    "{name}: {e}"
                );
            }
        }
        let stored = c.kubectl_ok(&["get", "secrets", "-n", &ns, "-o", "name"], None);
        let backing: Vec<&str> = stored
            .lines()
            .filter(|l| l.starts_with(&format!("secret/cred-{round}-")))
            .collect();
        assert_eq!(
            backing,
            [format!("secret/{}", winners[0])],
            "round {round}: what the API server stored"
        );
    }
    assert!(
        replica.answered() >= 2 * rounds as u64,
        "the second credgate took part"
    );
    cluster::report(
        "double-claims",
        serde_json::json!({"rounds": rounds, "rounds_with_one_winner": rounds, "credgate_processes": 2}),
    );
}

/// A pod `name` in the namespace of the API that names `credential` in an env var.
fn pod_naming(name: &str, credential: &str) -> k8s_openapi::api::core::v1::Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "annotations": {"run.ai/credentials-env": format!("TOKEN={credential}:token")}},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }))
    .unwrap()
}

type Answer<T> = Result<T, kube::Error>;

/// Once the pods' credgate knows `credential` (a server dry run of a pod
/// naming it is admitted), creates pod `name` naming it and deletes it at the
/// same moment. A stagger of 0-6 ms, alternately before either request,
/// moves the race window across both orders.
fn race(
    c: &Cluster,
    pods: &kube::Api<k8s_openapi::api::core::v1::Pod>,
    secrets: &kube::Api<k8s_openapi::api::core::v1::Secret>,
    round: usize,
    name: &str,
    credential: &str,
) -> (Answer<k8s_openapi::api::core::v1::Pod>, Answer<()>) {
    use kube::api::{DeleteParams, PostParams};
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    eventually(30, "the pods' credgate to see the new credential", || {
        c.runtime
            .block_on(pods.create(&dry_run, &pod_naming("probe", credential)))
            .is_ok()
    });
    let stagger = std::time::Duration::from_millis((round % 7) as u64);
    c.runtime.block_on(async {
        let wait = |first: bool| async move {
            if first == (round.is_multiple_of(2)) {
                tokio::time::sleep(stagger).await;
            }
        };
        tokio::join!(
            async {
                wait(true).await;
                pods.create(&PostParams::default(), &pod_naming(name, credential))
                    .await
            },
            async {
                wait(false).await;
                secrets
                    .delete(credential, &DeleteParams::default())
                    .await
                    .map(drop)
            }
        )
    })
}

/// Rounds of each race (issue 10).
const ROUNDS: usize = 100;

/// A pod naming a credential and the DELETE of that credential, sent at the
/// same moment through the API server (two credgate processes validate the
/// DELETE; one mutates pods). Whichever credgate decides second sees the
/// first's record and waits for the watch to show its outcome: never are both
/// allowed, so no pod is ever stored with a credential deleted under it.
fn delete_racing_pod_create(c: &Cluster) {
    use k8s_openapi::api::core::v1::{Pod, Secret};
    use kube::api::{Api, DeleteParams};
    let ns = c.namespace(
        "delrace",
        &[("runai/queue", "delrace"), (REPLICA_LABEL, "del")],
    );
    let replica = c.replica("del", None);
    eventually(60, "the second credgate to sync", || replica.is_ready());
    let client = c.client();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let refused =
        |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.code == 400 || s.code == 403);
    let message = |e: &kube::Error| match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    };
    let mut tally: std::collections::BTreeMap<&str, usize> = Default::default();
    for round in 0..ROUNDS {
        let credential = format!("db-{round}");
        c.kubectl_ok(
            &["apply", "-f", "-"],
            Some(&generic(&ns, &credential, "", "")),
        );
        let name = format!("p-{round}");
        let (created, deleted) = race(c, &pods, &secrets, round, &name, &credential);
        let outcome = match (&created, &deleted) {
            (Ok(_), Ok(_)) => "both allowed",
            (Ok(_), Err(e)) if refused(e) => {
                let m = message(e);
                assert!(m.contains("in use by"), "round {round}: {m}");
                "pod first; delete refused"
            }
            (Err(e), Ok(_)) if refused(e) => {
                let m = message(e);
                assert!(
                    m.contains("is being deleted") || m.contains("no credential named"),
                    "round {round}: {m}"
                );
                "delete first; pod refused"
            }
            (Err(p), Err(d)) if refused(p) && refused(d) => "both refused",
            _ => panic!("round {round}: unexpected answers: pod {created:?}, delete {deleted:?}"),
        };
        *tally.entry(outcome).or_default() += 1;
        // The end state: a stored pod's credential is still there.
        let stored_pod = c.runtime.block_on(pods.get_opt(&name)).unwrap();
        let stored_secret = c.runtime.block_on(secrets.get_opt(&credential)).unwrap();
        assert!(
            stored_pod.is_none() || stored_secret.is_some(),
            "round {round}: pod {name} is stored but credential {credential} was deleted ({outcome}; pod {created:?}; delete {deleted:?})"
        );
        if stored_pod.is_some() {
            c.runtime
                .block_on(pods.delete(&name, &DeleteParams::default()))
                .unwrap();
        }
    }
    eprintln!("delete racing pod create, {ROUNDS} rounds: {tally:?}");
    assert_eq!(tally.get("both allowed"), None, "{tally:?}");
    assert!(
        replica.answered() >= ROUNDS as u64,
        "the second credgate took part"
    );
    cluster::report(
        "delete-race",
        serde_json::json!({"rounds": ROUNDS, "outcomes": tally, "protected_credentials_deleted_under_a_pod": 0}),
    );
}

/// Waits until credgate's index sees the user, then checks the denial names it
/// (a Deployment's ReplicaSet is a user too).
fn assert_delete_blocked(c: &Cluster, ns: &str, secret: &str, user: &str) {
    eventually(30, &format!("{user} to block the delete"), || {
        !c.kubectl(
            &["delete", "secret", secret, "-n", ns, "--dry-run=server"],
            None,
        )
        .status
        .success()
    });
    let out = c.kubectl(&["delete", "secret", secret, "-n", ns], None);
    let e = stderr(&out);
    assert!(
        !out.status.success(),
        "delete of an in-use credential was allowed"
    );
    assert!(
        e.contains(&format!("credential \"{secret}\" is in use by ")) && e.contains(user),
        "{e}"
    );
}

fn in_use_deletion(c: &Cluster) {
    let ns = c.namespace("inuse", &[("runai/queue", "inuse")]);
    let template = |annotations: &str| {
        format!(
            "metadata:\n      annotations: {{{annotations}}}\n    spec:\n      containers: [{{name: c, image: busybox}}]\n      restartPolicy: Never"
        )
    };
    let users = [
        (
            "Deployment",
            "web",
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  replicas: 0\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    {}\n",
                template("run.ai/credentials-env-from: db")
                    .replace("metadata:\n", "metadata:\n      labels: {app: web}\n")
                    .replace("restartPolicy: Never", "restartPolicy: Always")
            ),
        ),
        (
            "CronJob",
            "nightly",
            format!(
                "apiVersion: batch/v1\nkind: CronJob\nmetadata: {{name: nightly, namespace: {ns}}}\nspec:\n  schedule: '0 0 * * *'\n  jobTemplate:\n    spec:\n      template:\n        {}\n",
                template("run.ai/credentials-volume: 'db:/etc/db'").replace("\n    ", "\n        ")
            ),
        ),
        (
            "PodTemplate",
            "tpl",
            format!(
                "apiVersion: v1\nkind: PodTemplate\nmetadata: {{name: tpl, namespace: {ns}}}\ntemplate:\n  metadata:\n    annotations: {{run.ai/credentials-env: 'X=db:token'}}\n  spec:\n    containers: [{{name: c, image: busybox}}]\n"
            ),
        ),
        (
            "Pod",
            "bare",
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: bare, namespace: {ns}}}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    env: [{{name: T, valueFrom: {{secretKeyRef: {{name: db, key: token}}}}}}]\n"
            ),
        ),
    ];
    for (kind, name, manifest) in users {
        c.kubectl_ok(&["apply", "-f", "-"], Some(&generic(&ns, "db", "", "")));
        c.kubectl_ok(&["apply", "-f", "-"], Some(&manifest));
        assert_delete_blocked(c, &ns, "db", &format!("{kind}/{ns}/{name}"));
        c.kubectl_ok(
            &[
                "delete",
                &kind.to_lowercase(),
                name,
                "-n",
                &ns,
                "--wait=true",
            ],
            None,
        );
        eventually(30, "the delete to be allowed once the user is gone", || {
            c.kubectl(&["delete", "secret", "db", "-n", &ns], None)
                .status
                .success()
        });
    }
}

fn restart_and_unsynced(c: &Cluster) {
    let ns = c.namespace("restart", &[("runai/queue", "restart")]);
    c.kubectl_ok(&["apply", "-f", "-"], Some(&generic(&ns, "db", "", "")));
    c.kubectl_ok(
        &[
            "create",
            "deployment",
            "app",
            "--image=busybox",
            "--replicas=0",
            "-n",
            &ns,
        ],
        None,
    );
    c.kubectl_ok(
        &[
            "annotate",
            "deployment",
            "app",
            "-n",
            &ns,
            "--overwrite",
            "run.ai/unused=x",
        ],
        None,
    );
    c.kubectl_ok(&["patch", "deployment", "app", "-n", &ns, "--type=merge", "-p", r#"{"spec":{"template":{"metadata":{"annotations":{"run.ai/credentials-env-from":"db"}}}}}"#], None);
    assert_delete_blocked(c, &ns, "db", &format!("Deployment/{ns}/app"));

    // Restarted: ready only after its watches synced, and the rule holds at once.
    c.restart_credgate();
    let out = c.kubectl(&["delete", "secret", "db", "-n", &ns], None);
    assert!(
        stderr(&out).contains(&format!(
            "is in use by 2 workloads: Deployment/{ns}/app, ReplicaSet/{ns}/app-"
        )),
        "{}",
        stderr(&out)
    );

    // A credgate whose watches cannot sync denies rather than allows.
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("kubeconfig");
    std::fs::write(&dead, "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n").unwrap();
    let replica = c.replica("unsynced", Some(&dead));
    assert!(!replica.is_ready(), "an unsynced credgate is not ready");
    c.kubectl_ok(
        &[
            "label",
            "namespace",
            &ns,
            &format!("{REPLICA_LABEL}=unsynced"),
        ],
        None,
    );
    c.kubectl_ok(&["delete", "deployment", "app", "-n", &ns], None);
    eventually(30, "the unsynced credgate to answer", || {
        let out = c.kubectl(
            &["delete", "secret", "db", "-n", &ns, "--dry-run=server"],
            None,
        );
        stderr(&out).contains("view of the cluster is not complete yet")
    });
    let out = c.kubectl(&["delete", "secret", "db", "-n", &ns], None);
    assert!(
        !out.status.success() && stderr(&out).contains("retry in a few seconds"),
        "{}",
        stderr(&out)
    );
    drop(replica);
    eventually(
        30,
        "the delete to pass once only synced credgates answer",
        || {
            c.kubectl(&["delete", "secret", "db", "-n", &ns], None)
                .status
                .success()
        },
    );
}

/// Issue 16: deleting a project namespace that holds 800 credentials, one in
/// use by a pod, completes in under 60 s: in a namespace being deleted, a
/// credential DELETE is allowed at once, with no rule and no API call. As
/// shipped: each credential has the in-use finalizer, which credgate removes
/// through its RoleBinding there, which stays until then (its finalizer).
fn namespace_deletion(c: &Cluster) {
    const CREDENTIALS: usize = 800;
    c.stop_credgate();
    c.start_credgate_with(&[("CREDGATE_IN_USE_FINALIZER", "true")]);
    let ns = c.namespace("bulk", &[("runai/queue", "bulk")]);
    let all: String = (0..CREDENTIALS)
        .map(|i| format!("---\n{}", generic(&ns, &format!("cred-{i}"), "", "")))
        .collect();
    c.kubectl_ok(&["apply", "-f", "-"], Some(&all));
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: user\n  namespace: {ns}\n  annotations: {{run.ai/credentials-env: \"T=cred-0:token\"}}\nspec:\n  containers: [{{name: main, image: busybox}}]\n"
    );
    c.kubectl_ok(&["apply", "-f", "-"], Some(&pod));
    // The control: outside a deletion, the credential in use cannot go.
    let refused = c.kubectl(
        &["delete", "secret", "cred-0", "-n", &ns, "--dry-run=server"],
        None,
    );
    assert!(
        stderr(&refused).contains("in use by"),
        "{}",
        stderr(&refused)
    );

    let started = std::time::Instant::now();
    c.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"], None);
    eventually(
        120,
        "the namespace with 800 credentials to be deleted",
        || {
            let out = c.kubectl(&["get", "namespace", &ns, "-o", "name"], None);
            !out.status.success() && stderr(&out).contains("NotFound")
        },
    );
    let took = started.elapsed();
    println!(
        "a project namespace with {CREDENTIALS} credentials (one in use by a pod, each with the in-use finalizer) was deleted in {took:?}"
    );
    cluster::report(
        "namespace_deletion",
        serde_json::json!({"credentials": CREDENTIALS, "seconds": took.as_secs_f64()}),
    );
    assert!(
        took < std::time::Duration::from_secs(60),
        "deleting the namespace took {took:?}"
    );
}

/// Issue 16: in-use protection across replicas. One credgate (the leader,
/// with the in-use finalizer) mutates pods; another alone validates the
/// credentials' DELETEs, so neither sees the other's records, as with two
/// replicas behind a Service. 100 rounds of a pod create racing the DELETE of
/// its credential: a DELETE that slips through leaves the credential
/// `Deleting…` (its finalizer) while the pod is stored, pods naming it are
/// refused, and it goes once the pod does. Never is a pod stored whose
/// credential is gone.
fn protection_across_replicas(c: &Cluster) {
    use k8s_openapi::api::core::v1::{Pod, Secret};
    use kube::api::{Api, DeleteParams, PostParams};
    c.stop_credgate();
    c.start_credgate_with(&[("CREDGATE_IN_USE_FINALIZER", "true")]);
    let ns = c.namespace(
        "protect",
        &[("runai/queue", "protect"), (REPLICA_LABEL, "protect")],
    );
    let replica = c.replica("protect", None);
    eventually(60, "the second credgate to sync", || replica.is_ready());
    // Only the second credgate validates Secrets there: the first one's
    // validating webhooks skip namespaces with the replica label.
    let original = c.kubectl_json(&["get", "validatingwebhookconfiguration", "credgate"]);
    let mut split = original.clone();
    for hook in split["webhooks"].as_array_mut().unwrap() {
        let selector = &mut hook["namespaceSelector"];
        if selector["matchExpressions"].is_null() {
            selector["matchExpressions"] = serde_json::json!([]);
        }
        selector["matchExpressions"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"key": REPLICA_LABEL, "operator": "DoesNotExist"}));
    }
    c.kubectl_ok(&["replace", "-f", "-"], Some(&split.to_string()));

    let client = c.client();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let mut tally: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut stored: Vec<(String, String)> = Vec::new();
    for round in 0..ROUNDS {
        let credential = format!("guard-{round}");
        c.kubectl_ok(
            &["apply", "-f", "-"],
            Some(&generic(&ns, &credential, "", "")),
        );
        let finalizers =
            c.kubectl_json(&["get", "secret", &credential, "-n", &ns])["metadata"]["finalizers"]
                .to_string();
        assert!(
            finalizers.contains("credgate.run.ai/in-use"),
            "{finalizers}"
        );
        let name = format!("p-{round}");
        let (created, deleted) = race(c, &pods, &secrets, round, &name, &credential);
        let outcome = match (&created, &deleted) {
            (Ok(_), Ok(_)) => "both allowed: the finalizer holds the credential",
            (Ok(_), Err(_)) => "pod admitted, delete refused",
            (Err(_), Ok(_)) => "delete allowed, pod refused",
            (Err(_), Err(_)) => "both refused",
        };
        *tally.entry(outcome).or_default() += 1;
        if created.is_ok() {
            stored.push((name, credential));
        }
    }
    eprintln!("pod create racing the DELETE on another credgate, {ROUNDS} rounds: {tally:?}");

    // Pods naming a credential being deleted are refused.
    let being_deleted = stored.iter().find(|(_, credential)| {
        c.kubectl_json(&["get", "secret", credential, "-n", &ns])["metadata"]["deletionTimestamp"]
            .is_string()
    });
    if let Some((_, credential)) = being_deleted {
        let refused = c
            .runtime
            .block_on(pods.create(&dry_run, &pod_naming("late", credential)));
        let message = format!("{refused:?}");
        assert!(message.contains("is being deleted"), "{message}");
    }
    // The controller releases the credentials no pod names (after its grace
    // and a live check) and keeps the others.
    let deleting = || -> Vec<String> {
        c.runtime
            .block_on(secrets.list(&Default::default()))
            .unwrap()
            .items
            .into_iter()
            .filter(|s| s.metadata.deletion_timestamp.is_some())
            .map(|s| s.metadata.name.unwrap_or_default())
            .collect()
    };
    eventually(90, "deleted credentials that no pod names to go", || {
        deleting()
            .iter()
            .all(|name| stored.iter().any(|(_, credential)| credential == name))
    });
    for (pod_name, credential) in &stored {
        assert!(
            c.runtime
                .block_on(secrets.get_opt(credential))
                .unwrap()
                .is_some(),
            "pod {pod_name} is stored but its credential {credential} is gone"
        );
    }
    // Once the pods go, so do the credentials being deleted.
    for (pod_name, _) in &stored {
        c.runtime
            .block_on(pods.delete(pod_name, &DeleteParams::default()))
            .unwrap();
    }
    eventually(
        90,
        "the credentials being deleted to go once no pod names them",
        || deleting().is_empty(),
    );
    cluster::report(
        "protection-across-replicas",
        serde_json::json!({"rounds": ROUNDS, "outcomes": tally, "stored_pods_whose_credential_is_gone": 0}),
    );

    let mut restored = original;
    restored["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    c.kubectl_ok(&["replace", "-f", "-"], Some(&restored.to_string()));
    drop(replica);
    c.stop_credgate();
    c.start_credgate();
}
