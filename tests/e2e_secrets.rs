//! End to end: credential Secrets through a real kube-apiserver that calls
//! credgate over TLS, driven by kubectl and kube-rs. Assertions are on what
//! the API server answers and stores.

mod cluster;

use cluster::{Cluster, USER};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

fn main() {
    cluster::run(
        "e2e_secrets",
        vec![
            (
                "kubectl_apply_of_an_invalid_credential_prints_credgates_reason",
                invalid_credentials_are_refused,
            ),
            (
                "a_valid_credential_is_stamped_with_its_creator_and_registries",
                valid_credential_is_stamped,
            ),
            (
                "a_secret_without_the_label_is_untouched",
                unlabelled_secret_untouched,
            ),
            (
                "scope_labels_are_checked_against_the_namespace",
                scope_rules,
            ),
            ("updates_keep_identity_and_the_creator_stamp", update_rules),
            ("legacy_marker_label_is_validated", legacy_marker),
            (
                "excluded_namespaces_never_reach_credgate",
                excluded_namespaces,
            ),
        ],
    );
}

fn yaml_secret(ns: &str, name: &str, labels: &str, body: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {labels}\n{body}\n"
    )
}

fn invalid_credentials_are_refused(c: &Cluster) {
    let ns = c.namespace("invalid", &[("runai/queue", "team-a")]);
    let cases = [
        (
            yaml_secret(
                &ns,
                "s3",
                "{run.ai/resource: access-key}",
                "type: Opaque\nstringData: {AccessKeyId: AKIA}",
            ),
            "missing or empty: \"SecretKey\"",
        ),
        (
            yaml_secret(
                &ns,
                "reg",
                "{run.ai/resource: docker-registry}",
                "type: kubernetes.io/dockerconfigjson\nstringData:\n  .dockerconfigjson: '{\"auths\":{}}'",
            ),
            "no registries under \"auths\"",
        ),
        (
            yaml_secret(
                &ns,
                "pw",
                "{run.ai/resource: password}",
                "type: Opaque\nstringData: {User: bob}",
            ),
            "password credentials need non-empty keys",
        ),
        (
            yaml_secret(&ns, "g", "{run.ai/resource: generic}", "type: Opaque"),
            "generic credentials need at least one key",
        ),
        (
            yaml_secret(
                &ns,
                "x",
                "{run.ai/resource: ssh}",
                "type: Opaque\nstringData: {k: v}",
            ),
            "unknown credential type \"ssh\"",
        ),
    ];
    for (manifest, fragment) in cases {
        let out = c.kubectl(&["apply", "--as", USER, "-f", "-"], Some(&manifest));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{manifest} was accepted");
        assert!(stderr.contains("denied the request"), "{stderr}");
        assert!(stderr.contains(fragment), "{stderr:?} lacks {fragment:?}");
    }
    let stored = c.kubectl_ok(
        &[
            "get",
            "secrets",
            "-n",
            &ns,
            "-l",
            "run.ai/resource",
            "-o",
            "name",
        ],
        None,
    );
    assert_eq!(stored.trim(), "", "nothing refused was stored");
}

fn valid_credential_is_stamped(c: &Cluster) {
    let ns = c.namespace("valid", &[("runai/queue", "team-a")]);
    let manifest = c.kubectl_ok(
        &[
            "create",
            "secret",
            "docker-registry",
            "registry",
            "-n",
            &ns,
            "--docker-server=https://index.docker.io/v1/",
            "--docker-username=bot",
            "--docker-password=e2e-password",
            "--dry-run=client",
            "-o",
            "yaml",
        ],
        None,
    );
    let labelled = c.kubectl_ok(
        &[
            "label",
            "--local",
            "-f",
            "-",
            "run.ai/resource=docker-registry",
            "-o",
            "yaml",
        ],
        Some(&manifest),
    );
    c.kubectl_ok(&["apply", "--as", USER, "-f", "-"], Some(&labelled));

    let secrets: Api<Secret> = Api::namespaced(c.client(), &ns);
    let stored = c.runtime.block_on(secrets.get("registry")).unwrap();
    let annotations = stored.metadata.annotations.unwrap();
    assert_eq!(annotations["run.ai/created-by"], USER);
    assert_eq!(annotations["run.ai/registries"], "docker.io");

    // Issue 17: an existing Secret labelled in place, as the older seed says,
    // is stamped like a created one.
    c.kubectl_ok(
        &["apply", "--as", USER, "-f", "-"],
        Some(&manifest.replace("name: registry", "name: in-place")),
    );
    c.kubectl_ok(
        &[
            "label",
            "--as",
            USER,
            "secret",
            "in-place",
            "-n",
            &ns,
            "run.ai/resource=docker-registry",
        ],
        None,
    );
    let in_place = c.runtime.block_on(secrets.get("in-place")).unwrap();
    let annotations = in_place.metadata.annotations.unwrap();
    assert_eq!(annotations["run.ai/created-by"], USER);
    assert_eq!(annotations["run.ai/status"], "No issues found");
    assert_eq!(annotations["run.ai/registries"], "docker.io");

    // Created through kube-rs by the admin: stamped with the admin.
    let s3: Secret = serde_json::from_value(json!({
        "metadata": {"name": "s3", "labels": {"run.ai/resource": "access-key"}, "annotations": {"run.ai/created-by": "admin"}},
        "type": "Opaque", "stringData": {"AccessKeyId": "AKIA", "SecretKey": "e2e-secret"},
    }))
    .unwrap();
    let created = c
        .runtime
        .block_on(secrets.create(&PostParams::default(), &s3))
        .unwrap();
    assert_eq!(
        created.metadata.annotations.unwrap()["run.ai/created-by"],
        "admin"
    );

    // A spoofed creator is refused.
    let mut spoofed = s3.clone();
    spoofed.metadata.name = Some("s3-spoofed".into());
    spoofed.metadata.annotations =
        Some([("run.ai/created-by".to_owned(), "someone-else".to_owned())].into());
    let as_alice: Api<Secret> = Api::namespaced(c.client_as(USER), &ns);
    let created = c
        .runtime
        .block_on(as_alice.create(&PostParams::default(), &spoofed))
        .unwrap();
    assert_eq!(
        created.metadata.annotations.unwrap()["run.ai/created-by"],
        USER,
        "credgate overwrites a supplied creator"
    );
    assert!(
        !c.credgate_log().contains("e2e-secret"),
        "a secret value reached credgate's log"
    );
    assert!(
        !c.credgate_log().contains("e2e-password"),
        "a secret value reached credgate's log"
    );
}

fn unlabelled_secret_untouched(c: &Cluster) {
    let ns = c.namespace("plain", &[("runai/queue", "team-a")]);
    // Broken as a credential would be, but unlabelled: not credgate's business.
    c.kubectl_ok(&["create", "secret", "generic", "plain", "-n", &ns], None);
    let secrets: Api<Secret> = Api::namespaced(c.client(), &ns);
    let stored = c.runtime.block_on(secrets.get("plain")).unwrap();
    assert!(
        stored
            .metadata
            .annotations
            .unwrap_or_default()
            .keys()
            .all(|k| !k.starts_with("run.ai/"))
    );
    assert!(
        !c.credgate_log().contains(&format!("namespace=\"{ns}\"")),
        "credgate was called for an unlabelled Secret"
    );
}

fn scope_rules(c: &Cluster) {
    let project = c.namespace("scope", &[("runai/queue", "team-a")]);
    let out = c.kubectl(
        &["apply", "-f", "-"],
        Some(&yaml_secret(
            &project,
            "g",
            "{run.ai/resource: generic, run.ai/cluster-wide: \"true\"}",
            "type: Opaque\nstringData: {k: v}",
        )),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cluster credentials live in the credentials namespace \"runai\""),
        "{stderr}"
    );

    let _ = c.kubectl(&["create", "namespace", "runai"], None);
    let name = format!("cluster-cred-{}", std::process::id());
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&yaml_secret(
            "runai",
            &name,
            "{run.ai/resource: generic, run.ai/cluster-wide: \"true\"}",
            "type: Opaque\nstringData: {token: t}",
        )),
    );
    let out = c.kubectl(
        &["apply", "-f", "-"],
        Some(&yaml_secret(
            "runai",
            &format!("{name}-both"),
            "{run.ai/resource: generic, run.ai/cluster-wide: \"true\", run.ai/department: rnd}",
            "type: Opaque\nstringData: {token: t}",
        )),
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("both cluster-wide and of department \"rnd\"")
    );
    c.kubectl_ok(&["delete", "secret", "-n", "runai", &name], None);
}

fn update_rules(c: &Cluster) {
    let ns = c.namespace("update", &[("runai/queue", "team-a")]);
    let secrets: Api<Secret> = Api::namespaced(c.client_as(USER), &ns);
    let original: Secret = serde_json::from_value(json!({
        "metadata": {"name": "git", "labels": {"run.ai/resource": "password"}},
        "type": "Opaque", "stringData": {"User": "bot", "Password": "e2e-pass"},
    }))
    .unwrap();
    let created = c
        .runtime
        .block_on(secrets.create(&PostParams::default(), &original))
        .unwrap();

    // Rename and describe: allowed.
    let mut renamed = created.clone();
    renamed
        .metadata
        .annotations
        .get_or_insert_default()
        .insert("run.ai/name".into(), "git-bot".into());
    renamed
        .metadata
        .annotations
        .get_or_insert_default()
        .insert("run.ai/description".into(), "CI access".into());
    let renamed = c
        .runtime
        .block_on(secrets.replace("git", &PostParams::default(), &renamed))
        .unwrap();

    // A replace that drops the stamp keeps it (restored by the mutating webhook).
    let mut dropped = renamed.clone();
    dropped
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .remove("run.ai/created-by");
    let kept = c
        .runtime
        .block_on(secrets.replace("git", &PostParams::default(), &dropped))
        .unwrap();
    assert_eq!(
        kept.metadata.annotations.as_ref().unwrap()["run.ai/created-by"],
        USER
    );

    // Changing the stamp or the type: refused with the reason.
    let mut forged = kept.clone();
    forged
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("run.ai/created-by".into(), "mallory".into());
    let err = c
        .runtime
        .block_on(secrets.replace("git", &PostParams::default(), &forged))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("run.ai/created-by is stamped by credgate and cannot change"),
        "{err}"
    );
    let mut retyped = kept.clone();
    retyped
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("run.ai/resource".into(), "generic".into());
    let err = c
        .runtime
        .block_on(secrets.replace("git", &PostParams::default(), &retyped))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("type cannot change from password to generic"),
        "{err}"
    );
    let mut unlabelled = kept.clone();
    unlabelled.metadata.labels = None;
    let err = c
        .runtime
        .block_on(secrets.replace("git", &PostParams::default(), &unlabelled))
        .unwrap_err();
    assert!(err.to_string().contains("removing its type label"), "{err}");

    // Description over 250 characters through kubectl annotate.
    let out = c.kubectl(
        &[
            "annotate",
            "--as",
            USER,
            "secret",
            "git",
            "-n",
            &ns,
            &format!("run.ai/description={}", "d".repeat(251)),
            "--overwrite",
        ],
        None,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("has 251 characters"));

    // Delete is allowed (in-use protection comes with the cluster index).
    c.runtime
        .block_on(secrets.delete("git", &DeleteParams::default()))
        .unwrap();
}

fn legacy_marker(c: &Cluster) {
    let ns = c.namespace("legacy", &[("runai/queue", "team-a")]);
    let out = c.kubectl(
        &["apply", "-f", "-"],
        Some(&yaml_secret(
            &ns,
            "old",
            "{run.ai/credentials: \"true\"}",
            "type: kubernetes.io/basic-auth\nstringData: {username: bob}",
        )),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("credential \"old\" (password)"), "{stderr}");
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&yaml_secret(
            &ns,
            "old",
            "{run.ai/credentials: \"true\"}",
            "type: kubernetes.io/basic-auth\nstringData: {username: bob, password: pw}",
        )),
    );
    let created_by = c.kubectl_ok(
        &[
            "get",
            "secret",
            "old",
            "-n",
            &ns,
            "-o",
            "jsonpath={.metadata.annotations.run\\.ai/created-by}",
        ],
        None,
    );
    assert_eq!(created_by, "admin");
}

fn excluded_namespaces(c: &Cluster) {
    let name = format!("not-checked-{}", std::process::id());
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&yaml_secret(
            "kube-system",
            &name,
            "{run.ai/resource: generic}",
            "type: Opaque",
        )),
    );
    c.kubectl_ok(&["delete", "secret", "-n", "kube-system", &name], None);
    // The control: the same invalid credential anywhere else is refused by credgate,
    // so the create above succeeded because kube-system is excluded, not by chance.
    let elsewhere = c.kubectl(
        &["apply", "-f", "-"],
        Some(&yaml_secret(
            "default",
            &name,
            "{run.ai/resource: generic}",
            "type: Opaque",
        )),
    );
    let stderr = String::from_utf8_lossy(&elsewhere.stderr);
    assert!(
        !elsewhere.status.success() && stderr.contains("generic credentials need at least one key"),
        "the same Secret in namespace default must be refused by credgate: {stderr}"
    );
}
