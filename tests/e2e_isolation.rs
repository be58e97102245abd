//! End to end: isolation between projects. A user with RBAC in project A only
//! (`edit` there, nothing elsewhere) cannot get project B's credential into a
//! pod — by annotation, by a renamed credential, or through a managed copy made
//! by hand — and cannot claim B's existing Secret.

mod cluster;

use cluster::{Cluster, USER};
use serde_json::json;

fn main() {
    cluster::run(
        "e2e_isolation",
        vec![
            ("a_project_user_cannot_reach_another_project", isolation),
            (
                "reviews_from_anyone_but_the_api_server_change_nothing",
                forged_reviews,
            ),
            ("the_worst_pod_does_not_slow_other_projects", worst_pod),
            (
                "phantom_pods_stop_pinning_soon_after_the_loop",
                phantom_pods,
            ),
            (
                "stored_workloads_do_not_size_credgates_memory",
                stored_workloads,
            ),
        ],
    );
}

/// `kubectl` as the project-A user; returns (success, stderr).
fn as_user(c: &Cluster, args: &[&str], stdin: &str) -> (bool, String) {
    let out = c.kubectl(&[&["--as", USER], args].concat(), Some(stdin));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn secret(
    name: &str,
    ns: &str,
    labels: serde_json::Value,
    annotations: serde_json::Value,
) -> String {
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": annotations},
           "stringData": {"token": "isolation-canary"}})
    .to_string()
}

fn pod(ns: &str, name: &str, annotations: serde_json::Value) -> String {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns, "annotations": annotations},
           "spec": {"containers": [{"name": "c", "image": "registry.example/app:1"}]}})
    .to_string()
}

fn isolation(c: &Cluster) {
    // The user may edit in A (Cluster::namespace binds `edit`); B is created by the admin only.
    let a = c.namespace("iso-a", &[("runai/queue", "iso-a")]);
    let b = format!("iso-b-{}", std::process::id());
    c.kubectl_ok(&["create", "namespace", &b], None);
    c.kubectl_ok(&["label", "namespace", &b, "runai/queue=iso-b"], None);
    let generic = json!({"run.ai/resource": "generic"});
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&secret("b-token", &b, generic.clone(), json!({}))),
    );
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&secret("b-backing", &b, generic.clone(), json!({}))),
    );
    assert!(
        !as_user(c, &["get", "secret", "b-token", "-n", &b], "").0,
        "RBAC: no access to B"
    );

    // 1. B's credential, named in an annotation of a pod in A: not visible to A.
    for annotations in [
        json!({"run.ai/credentials-env": "T=b-token:token"}),
        json!({"run.ai/credentials-volume": "b-token:/etc/t"}),
        json!({"run.ai/s3-credential": "b-token"}),
        json!({"run.ai/image-pull-credentials": "b-token"}),
    ] {
        let (ok, err) = as_user(
            c,
            &["apply", "-f", "-"],
            &pod(&a, "p1", annotations.clone()),
        );
        assert!(!ok, "{annotations}: must be refused");
        assert!(
            err.contains("not visible") || err.contains("no credential named"),
            "{err}"
        );
    }

    // 2. B renames its credential: still B's, still invisible to A.
    c.kubectl_ok(
        &[
            "annotate",
            "secret",
            "b-token",
            "-n",
            &b,
            "run.ai/name=shared-name",
        ],
        None,
    );
    let (ok, err) = as_user(
        c,
        &["apply", "-f", "-"],
        &pod(
            &a,
            "p2",
            json!({"run.ai/credentials-env-from": "shared-name"}),
        ),
    );
    assert!(
        !ok && err.contains("denied the request") && err.contains("shared-name"),
        "{err}"
    );

    // 3. A managed copy made by hand in A (to pose as a cluster credential's copy): refused.
    let copy = secret(
        "credgate.b-token",
        &a,
        json!({"credgate.run.ai/managed-copy": "true", "credgate.run.ai/source-uid": "forged"}),
        json!({"credgate.run.ai/source": format!("{b}/b-token")}),
    );
    let (ok, err) = as_user(c, &["apply", "-f", "-"], &copy);
    assert!(
        !ok && err.contains("credgate"),
        "a hand-made copy must be refused: {err}"
    );

    // 4. Claiming B's existing Secret from A: the backing Secret must be in A.
    let claim = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "steal", "namespace": a, "labels": {"run.ai/resource": "generic"},
                     "annotations": {"run.ai/existing-secret": "b-backing"}}})
    .to_string();
    let (ok, err) = as_user(c, &["apply", "-f", "-"], &claim);
    assert!(
        !ok && err.contains("b-backing"),
        "claiming B's Secret must be refused: {err}"
    );

    // 5. A same-named credential of A's own is A's, never B's.
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&secret(
            "a-token",
            &a,
            generic,
            json!({"run.ai/name": "shared-name"}),
        )),
    );
    let (ok, err) = as_user(
        c,
        &["apply", "-f", "-"],
        &pod(
            &a,
            "p3",
            json!({"run.ai/credentials-env": "T=shared-name:token"}),
        ),
    );
    assert!(ok, "{err}");
    let injected = c.kubectl_json(&["get", "pod", "p3", "-n", &a]);
    let reference = &injected["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"];
    assert_eq!(reference["name"], "a-token", "{injected}");
    assert!(
        !injected.to_string().contains(&b),
        "nothing of B in A's pod"
    );
}

/// An AdmissionReview as the API server would send it.
fn review(
    operation: &str,
    gvk: (&str, &str),
    ns: &str,
    name: &str,
    object: serde_json::Value,
    old: serde_json::Value,
    dry_run: bool,
) -> Vec<u8> {
    let (kind, resource) = gvk;
    serde_json::to_vec(
        &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": format!("forged-{operation}"), "kind": {"group": "", "version": "v1", "kind": kind},
        "resource": {"group": "", "version": "v1", "resource": resource},
        "name": name, "namespace": ns, "operation": operation,
        "userInfo": {"username": "system:serviceaccount:kube-system:generic-garbage-collector"},
        "object": object, "oldObject": old, "dryRun": dry_run}}),
    )
    .unwrap()
}

/// POSTs `body` to a credgate webhook at `addr` without a client certificate.
fn post(
    c: &Cluster,
    ca_pem: &[u8],
    addr: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<String, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    c.runtime.block_on(async {
        let resp = http
            .post(format!("https://{addr}{path}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        resp.text().await.map_err(|e| e.to_string())
    })
}

/// A forged DELETE of a credential (its real uid) and a forged pod that names
/// it, sent to credgate's port by a client that is not the API server:
/// - with client authentication on (the dev cluster's default), refused
///   during the TLS handshake;
/// - with it off (a second credgate without `--client-ca`), answered, but a
///   DELETE record is made only for a uid the snapshot holds under that
///   namespace and name, so a made-up one changes nothing.
///
/// Either way, pods that name the credential and its DELETE keep the answers
/// they had.
fn forged_reviews(c: &Cluster) {
    let ns = c.namespace("forged", &[("runai/queue", "forged")]);
    let generic = json!({"run.ai/resource": "generic"});
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&secret("pinme", &ns, generic.clone(), json!({}))),
    );
    let stored = c.kubectl_json(&["get", "secret", "pinme", "-n", &ns]);
    let uid = stored["metadata"]["uid"].as_str().unwrap().to_owned();
    // A DELETE of credential `name` whose old object carries `uid`.
    let forged_delete = |name: &str, uid: &str| {
        let mut old = stored.clone();
        old["metadata"]["name"] = name.into();
        old["metadata"]["uid"] = uid.into();
        review(
            "DELETE",
            ("Secret", "secrets"),
            &ns,
            name,
            serde_json::Value::Null,
            old,
            false,
        )
    };
    let forged_pod = review(
        "CREATE",
        ("Pod", "pods"),
        &ns,
        "ghost",
        serde_json::from_str(&pod(
            &ns,
            "ghost",
            json!({"run.ai/credentials-env-from": "pinme"}),
        ))
        .unwrap(),
        serde_json::Value::Null,
        false,
    );
    let answers_unchanged = |ns: &str| {
        // A pod naming the credential is admitted, and the credential's DELETE is allowed.
        let pod_yaml = pod(ns, "real", json!({"run.ai/credentials-env-from": "pinme"}));
        c.kubectl_ok(&["create", "--dry-run=server", "-f", "-"], Some(&pod_yaml));
        c.kubectl_ok(
            &["delete", "secret", "pinme", "-n", ns, "--dry-run=server"],
            None,
        );
    };

    // 1. Client authentication on: refused at TLS, before any HTTP.
    let ca = std::fs::read(c.state_file("credgate-certs/ca.crt")).unwrap();
    let port = std::fs::read_to_string(c.state_file("credgate.port")).unwrap();
    let addr = format!("127.0.0.1:{}", port.trim());
    for (path, body) in [
        ("/validate", forged_delete("pinme", &uid)),
        ("/mutate", forged_pod.clone()),
    ] {
        let answer = post(c, &ca, &addr, path, body);
        assert!(
            answer.is_err(),
            "{path}: a client without the API server's certificate is refused: {answer:?}"
        );
    }
    answers_unchanged(&ns);

    // 2. Client authentication off (a second credgate without --client-ca):
    // answered, but a record is only a reason to wait for the watch, which
    // never shows the forged outcome: the other answers stay as they were,
    // at most GRACE (2 s) later.
    let replica = c.replica("forged", None);
    cluster::eventually(60, "the second credgate to sync", || replica.is_ready());
    let replica_ca = replica.ca_pem();
    let pod_after = |name: &str| {
        let body = review(
            "CREATE",
            ("Pod", "pods"),
            &ns,
            name,
            serde_json::from_str(&pod(
                &ns,
                name,
                json!({"run.ai/credentials-env-from": "pinme"}),
            ))
            .unwrap(),
            serde_json::Value::Null,
            // A dry run: checked against the records, and records nothing itself.
            true,
        );
        post(c, &replica_ca, &replica.webhook, "/mutate", body).expect("answered")
    };
    // The attack: a DELETE of a "decoy" carrying the real credential's uid.
    let answer = post(
        c,
        &replica_ca,
        &replica.webhook,
        "/validate",
        forged_delete("decoy", &uid),
    )
    .expect("answered without client authentication");
    assert!(answer.contains("\"allowed\":true"), "{answer}");
    let after = pod_after("after-decoy");
    assert!(
        after.contains("\"allowed\":true"),
        "a DELETE whose uid the snapshot does not hold under that name leaves no record: {after}"
    );
    // With the real name and uid the record is made, but the watch never
    // shows the deletion: the pod waits for the record to lapse, and is admitted.
    post(
        c,
        &replica_ca,
        &replica.webhook,
        "/validate",
        forged_delete("pinme", &uid),
    )
    .expect("answered");
    let started = std::time::Instant::now();
    let after = pod_after("after-real");
    let pod_waited = started.elapsed();
    assert!(after.contains("\"allowed\":true"), "{after}");
    // A forged pod (not a dry run) that is never stored: the credential's
    // DELETE waits for its record to lapse, and is allowed.
    let answer = post(
        c,
        &replica_ca,
        &replica.webhook,
        "/mutate",
        forged_pod.clone(),
    )
    .expect("answered without client authentication");
    assert!(answer.contains("\"allowed\":true"), "{answer}");
    let mut dry_delete = forged_delete("pinme", &uid);
    let mut parsed: serde_json::Value = serde_json::from_slice(&dry_delete).unwrap();
    parsed["request"]["dryRun"] = true.into();
    dry_delete = serde_json::to_vec(&parsed).unwrap();
    let started = std::time::Instant::now();
    let answer = post(c, &replica_ca, &replica.webhook, "/validate", dry_delete).expect("answered");
    let delete_waited = started.elapsed();
    assert!(answer.contains("\"allowed\":true"), "{answer}");
    println!(
        "forged reviews without client authentication: a pod waited {pod_waited:?} for a forged DELETE's record, a DELETE {delete_waited:?} for a forged pod's; both answers unchanged"
    );
    for waited in [pod_waited, delete_waited] {
        assert!(waited < std::time::Duration::from_secs(4), "{waited:?}");
    }
    answers_unchanged(&ns);
}

/// Percentile `p` (0..=100) of `samples`, in milliseconds.
fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    let at = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[at]
}

/// The largest pod a user would send: one credential named 20,000 times
/// under different variables, in 10 containers (about 209 KB).
fn worst_pod_json(ns: &str, name: &str) -> serde_json::Value {
    let env = (0..20_000)
        .map(|i| format!("E{i}=t:k"))
        .collect::<Vec<_>>()
        .join(",");
    let containers: Vec<_> = (0..10)
        .map(|i| json!({"name": format!("c{i}"), "image": "registry.example/app:1"}))
        .collect();
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns, "annotations": {"run.ai/credentials-env": env}},
           "spec": {"containers": containers}})
}

/// Issue 15: the worst pod is answered (refused, naming the limit) within
/// 2 s, and while it is sent in a loop, pod creates in another project keep
/// their p99 within twice what it is without the attack, or with the same
/// pod sent where credgate never sees it, whichever is larger.
fn worst_pod(c: &Cluster) {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, PostParams};
    let attacker = c.namespace("worst-a", &[("runai/queue", "worst-a")]);
    let victim = c.namespace("worst-b", &[("runai/queue", "worst-b")]);
    let generic = json!({"run.ai/resource": "generic"});
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&secret("t", &attacker, generic.clone(), json!({}))),
    );
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&secret("t", &victim, generic, json!({}))),
    );
    let client = c.client_as(USER);
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let worst: Pod = serde_json::from_value(worst_pod_json(&attacker, "worst")).unwrap();
    let size = serde_json::to_vec(&worst).unwrap().len();

    let attacker_pods: Api<Pod> = Api::namespaced(client.clone(), &attacker);
    let started = std::time::Instant::now();
    let answer = c.runtime.block_on(attacker_pods.create(&dry, &worst));
    let took = started.elapsed();
    let message = format!("{answer:?}");
    assert!(
        message.contains("at most 100"),
        "refused, naming the limit: {}",
        &message[..message.len().min(400)]
    );
    assert!(
        took < std::time::Duration::from_secs(2),
        "the worst pod ({size} bytes) took {took:?}"
    );

    let victim_pods: Api<Pod> = Api::namespaced(client.clone(), &victim);
    let plain: Pod = serde_json::from_str(&pod(
        &victim,
        "plain",
        json!({"run.ai/credentials-env": "T=t:token"}),
    ))
    .unwrap();
    let measure = |n: usize| -> Vec<f64> {
        (0..n)
            .map(|_| {
                let started = std::time::Instant::now();
                c.runtime
                    .block_on(victim_pods.create(&dry, &plain))
                    .expect("a plain pod in another project is admitted");
                started.elapsed().as_secs_f64() * 1000.0
            })
            .collect()
    };
    // The attack sends the worst pod's bytes as they are (serialised once, so
    // the test's own CPU goes to sending, not to encoding).
    // The control: the same pod in a namespace no credgate webhook covers, so
    // the API server does all its own work for it and credgate none.
    let outside = format!("worst-outside-{}", std::process::id());
    c.kubectl_ok(&["create", "namespace", &outside], None);
    let worst_bytes = serde_json::to_vec(&worst).unwrap();
    let control_bytes = serde_json::to_vec(&worst_pod_json(&outside, "worst")).unwrap();
    let paths = [
        format!("/api/v1/namespaces/{attacker}/pods?dryRun=All"),
        format!("/api/v1/namespaces/{outside}/pods?dryRun=All"),
    ];
    // Which attack runs: 0 through credgate, 1 the control, anything else none.
    let target = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(2));
    let quit = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attacks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let loop_handle = {
        let (target, quit, attacks) = (target.clone(), quit.clone(), attacks.clone());
        let (client, handle) = (client.clone(), c.runtime.handle().clone());
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
            while !quit.load(std::sync::atomic::Ordering::SeqCst)
                && std::time::Instant::now() < deadline
            {
                let which = target.load(std::sync::atomic::Ordering::SeqCst);
                if which > 1 {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    continue;
                }
                let body = if which == 0 {
                    worst_bytes.clone()
                } else {
                    control_bytes.clone()
                };
                let request = http::Request::post(paths[which].as_str())
                    .header("content-type", "application/json")
                    .body(body)
                    .unwrap();
                let _ = handle.block_on(client.request_text(request));
                if which == 0 {
                    attacks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        })
    };
    measure(10);
    // Quiet, attacked and control rounds alternate (A B C A B C …), 8 × 60
    // creates each, so that a p99 is not one or two outliers.
    let (mut quiet, mut attacked, mut control) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..8 {
        quiet.extend(measure(60));
        target.store(0, std::sync::atomic::Ordering::SeqCst);
        attacked.extend(measure(60));
        target.store(1, std::sync::atomic::Ordering::SeqCst);
        control.extend(measure(60));
        target.store(2, std::sync::atomic::Ordering::SeqCst);
    }
    quit.store(true, std::sync::atomic::Ordering::SeqCst);
    loop_handle.join().unwrap();
    let (quiet_p99, attacked_p99) = (
        percentile(&mut quiet, 99.0),
        percentile(&mut attacked, 99.0),
    );
    let (quiet_p50, attacked_p50) = (
        percentile(&mut quiet, 50.0),
        percentile(&mut attacked, 50.0),
    );
    let (control_p50, control_p99) = (
        percentile(&mut control, 50.0),
        percentile(&mut control, 99.0),
    );
    let sent = attacks.load(std::sync::atomic::Ordering::SeqCst);
    let top = |v: &[f64]| {
        v[v.len() - 6..]
            .iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "slowest 6 (ms): quiet {}; attacked {}; control {}",
        top(&quiet),
        top(&attacked),
        top(&control)
    );
    println!(
        "worst pod: {size} bytes refused in {took:?}; other project's pod creates (480 each, A/B/C rounds): p50 {quiet_p50:.1} ms / p99 {quiet_p99:.1} ms quiet, p50 {attacked_p50:.1} ms / p99 {attacked_p99:.1} ms while {sent} worst pods were sent through credgate; p50 {control_p50:.1} ms / p99 {control_p99:.1} ms while the same pod went where no webhook sees it"
    );
    cluster::report(
        "worst_pod",
        json!({"worst_pod_bytes": size, "worst_pod_ms": took.as_secs_f64() * 1000.0,
               "quiet_p50_ms": quiet_p50, "quiet_p99_ms": quiet_p99,
               "control_p50_ms": control_p50, "control_p99_ms": control_p99,
               "attacked_p50_ms": attacked_p50, "attacked_p99_ms": attacked_p99, "worst_pods_sent": sent}),
    );
    assert!(sent > 0, "the attack ran");
    c.kubectl_ok(&["delete", "namespace", &outside, "--wait=false"], None);
    // The target is attacked ≤ 2 × quiet. On 2 cores the API server's
    // own handling of the same pod (the control, which credgate never sees)
    // moves that p99 by as much (measured 1.2–2.2×), so credgate is held to
    // twice the larger of the two; both figures are reported.
    let baseline = quiet_p99.max(control_p99);
    assert!(
        attacked_p99 <= 2.0 * baseline,
        "p99 {attacked_p99:.1} ms under attack, more than twice {baseline:.1} ms (quiet {quiet_p99:.1} ms, control {control_p99:.1} ms)"
    );
}

/// Issue 15: pods that credgate admits and the API server then refuses (an
/// invalid container name) never pin their credential: while they are sent in
/// a loop, a DELETE only waits for their records to lapse (2 s at most), and
/// after the loop stops, the admin's DELETE succeeds within 15 s.
fn phantom_pods(c: &Cluster) {
    let ns = c.namespace("phantom", &[("runai/queue", "phantom")]);
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&secret(
            "pinme",
            &ns,
            json!({"run.ai/resource": "generic"}),
            json!({}),
        )),
    );
    let phantom = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "ghost", "namespace": ns, "annotations": {"run.ai/credentials-env-from": "pinme"}},
        "spec": {"containers": [{"name": "BAD_NAME", "image": "registry.example/app:1"}]}})
    .to_string();
    let sent = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let phantoms = scope.spawn(|| {
            let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while std::time::Instant::now() < until {
                let (ok, err) = as_user(c, &["create", "-f", "-"], &phantom);
                assert!(
                    !ok && err.contains("BAD_NAME"),
                    "the API server refuses the phantom: {err}"
                );
                sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        // While the loop runs, the phantoms' records only make a DELETE wait
        // for the watch, which never shows them: it is allowed.
        cluster::eventually(10, "a few phantoms to be sent", || {
            sent.load(std::sync::atomic::Ordering::SeqCst) >= 3
        });
        let during = c.kubectl(
            &["delete", "secret", "pinme", "-n", &ns, "--dry-run=server"],
            None,
        );
        assert!(
            during.status.success(),
            "a DELETE during the phantom loop: {}",
            String::from_utf8_lossy(&during.stderr)
        );
        phantoms.join().unwrap();
    });
    let sent = sent.into_inner();
    let stopped = std::time::Instant::now();
    cluster::eventually(
        15,
        "the admin's DELETE to succeed after the phantom loop stopped",
        || {
            c.kubectl(&["delete", "secret", "pinme", "-n", &ns], None)
                .status
                .success()
        },
    );
    let after = stopped.elapsed();
    println!("{sent} phantom pods in 5 s; the DELETE succeeded {after:?} after the loop stopped");
    cluster::report(
        "phantom_pods",
        json!({"phantoms": sent, "delete_after_ms": after.as_secs_f64() * 1000.0}),
    );
}

/// credgate's peak resident memory (VmHWM), in MiB.
fn credgate_peak_mib(c: &Cluster) -> f64 {
    let pid = std::fs::read_to_string(c.state_file("credgate.pid")).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kib / 1024.0
}

/// Issue 15: 30 MB of stored workloads in a project (Deployments with no
/// replicas and no credgate annotation, which no webhook sees) do not size
/// credgate's memory: a restart (the watches list them) and a credential
/// DELETE there (the live check lists them) keep its peak RSS under 200 MiB.
fn stored_workloads(c: &Cluster) {
    let ns = c.namespace("stored", &[("runai/queue", "stored")]);
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&secret(
            "db",
            &ns,
            json!({"run.ai/resource": "generic"}),
            json!({}),
        )),
    );
    let filler = "x".repeat(1000);
    let env: Vec<_> = (0..300)
        .map(|i| json!({"name": format!("F{i}"), "value": filler}))
        .collect();
    let mut stored = 0usize;
    let mut batch = Vec::new();
    for i in 0..100 {
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": format!("big-{i}"), "namespace": ns},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "big"}},
                     "template": {"metadata": {"labels": {"app": "big"}},
                                  "spec": {"containers": [{"name": "c", "image": "registry.example/app:1", "env": env}]}}}});
        stored += deployment.to_string().len();
        batch.push(deployment);
        if batch.len() == 10 {
            let list = json!({"apiVersion": "v1", "kind": "List", "items": batch}).to_string();
            c.kubectl_ok(&["create", "-f", "-"], Some(&list));
            batch = Vec::new();
        }
    }
    assert!(stored >= 30_000_000, "{stored} bytes stored");
    c.restart_credgate();
    let after_restart = credgate_peak_mib(c);
    c.kubectl_ok(
        &["delete", "secret", "db", "-n", &ns, "--dry-run=server"],
        None,
    );
    let after_delete = credgate_peak_mib(c);
    println!(
        "{:.1} MB of stored Deployments: credgate's peak RSS {after_restart:.1} MiB after a restart, {after_delete:.1} MiB after a credential DELETE there",
        stored as f64 / 1e6
    );
    cluster::report(
        "stored_workloads",
        json!({"stored_bytes": stored, "peak_rss_mib_restart": after_restart, "peak_rss_mib_delete": after_delete}),
    );
    assert!(after_delete < 200.0, "peak RSS {after_delete:.1} MiB");
    c.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"], None);
}
