//! End to end (issue 21): rights per scope, through the real API server with
//! impersonated users. A department admin manages their department's
//! credentials only, a cluster admin every one, a project editor only their
//! project's; credgate's controller is never refused.

mod cluster;

use cluster::{Cluster, eventually};
use std::process::{Command, Output, Stdio};

fn main() {
    cluster::run(
        "e2e_rights",
        vec![(
            "each_scope_is_changed_only_with_its_right",
            rights_per_scope,
        )],
    );
}

const D1_ADMIN: &str = "dora@example.com";
const CLUSTER_ADMIN: &str = "carl@example.com";

fn credential(name: &str, ns: &str, scope_label: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {{run.ai/resource: generic{scope_label}}}\ntype: Opaque\nstringData: {{token: t}}\n"
    )
}

fn department(d: &str) -> String {
    format!(", run.ai/department: {d}")
}

const CLUSTER: &str = ", run.ai/cluster-wide: \"true\"";

/// kubectl as `user` (impersonated by the admin).
fn as_user(c: &Cluster, user: &str, args: &[&str], stdin: Option<&str>) -> Output {
    c.kubectl(&[args, &["--as", user]].concat(), stdin)
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Refused by credgate, with `needle` in the message.
fn refused(out: &Output, what: &str, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(needle),
        "{what}: expected a refusal containing {needle:?}, got: {err}"
    );
}

/// The CLI as `user`.
fn credgate_as(c: &Cluster, user: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_credgate"))
        .args(args)
        .env("KUBECONFIG", c.kubeconfig_as(user))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    ok(&out, &format!("credgate {args:?} as {user}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn rights_per_scope(c: &Cluster) {
    let _ = c.kubectl(&["create", "namespace", "runai"], None);
    let project = c.namespace(
        "rights",
        &[("runai/queue", "rights"), ("run.ai/department", "d1")],
    );
    c.kubectl_ok(
        &["apply", "-f", "manifests/base/roles-for-people.yaml"],
        None,
    );
    // The README's recipe: the Secrets of the credentials namespace, and a
    // role for department d1 only.
    c.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&credgate::policy::rights::department_role("d1")),
    );
    for (binding, role, user) in [
        ("dora", "credgate:department-credentials-admin", D1_ADMIN),
        (
            "dora-d1",
            "credgate:department-credentials-admin:d1",
            D1_ADMIN,
        ),
        ("carl", "credgate:cluster-credentials-admin", CLUSTER_ADMIN),
    ] {
        c.kubectl_ok(
            &[
                "create",
                "rolebinding",
                binding,
                "-n",
                "runai",
                &format!("--clusterrole={role}"),
                &format!("--user={user}"),
            ],
            None,
        );
    }

    // The department admin: creates, renames and deletes d1 credentials.
    let d1 = credential("d1-token", "runai", &department("d1"));
    ok(
        &as_user(c, D1_ADMIN, &["apply", "-f", "-"], Some(&d1)),
        "d1 admin creates a d1 credential",
    );
    ok(
        &as_user(
            c,
            D1_ADMIN,
            &[
                "annotate",
                "secret",
                "d1-token",
                "-n",
                "runai",
                "run.ai/name=d1-renamed",
            ],
            None,
        ),
        "d1 admin renames it",
    );
    // ... and is refused for d2 and for the cluster, with how to get the right.
    let d2 = credential("d2-token", "runai", &department("d2"));
    let out = as_user(c, D1_ADMIN, &["apply", "-f", "-"], Some(&d2));
    refused(
        &out,
        "d1 admin creates a d2 credential",
        "may not create credentials of department \"d2\"",
    );
    refused(
        &out,
        "the refusal says how to grant it",
        &format!(
            "kubectl apply -f - <<< '{}'",
            credgate::policy::rights::department_role("d2")
        ),
    );
    let cluster_wide = credential("everyone", "runai", CLUSTER);
    let out = as_user(c, D1_ADMIN, &["apply", "-f", "-"], Some(&cluster_wide));
    refused(
        &out,
        "d1 admin creates a cluster credential",
        "may not create cluster credentials",
    );
    // Moving a d1 credential to d2 needs d2 as well.
    let moved = as_user(
        c,
        D1_ADMIN,
        &[
            "label",
            "--overwrite",
            "secret",
            "d1-token",
            "-n",
            "runai",
            "run.ai/department=d2",
        ],
        None,
    );
    refused(
        &moved,
        "d1 admin moves a credential to d2",
        "may not update credentials of department \"d2\"",
    );

    // The cluster admin may do all of them.
    for yaml in [&d2, &cluster_wide] {
        ok(
            &as_user(c, CLUSTER_ADMIN, &["apply", "-f", "-"], Some(yaml)),
            "cluster admin creates",
        );
    }
    ok(
        &as_user(
            c,
            CLUSTER_ADMIN,
            &[
                "annotate",
                "secret",
                "d2-token",
                "-n",
                "runai",
                "run.ai/description=by carl",
            ],
            None,
        ),
        "cluster admin changes a d2 credential",
    );
    // The d1 admin cannot delete d2's; the cluster admin can.
    refused(
        &as_user(
            c,
            D1_ADMIN,
            &["delete", "secret", "d2-token", "-n", "runai"],
            None,
        ),
        "d1 admin deletes a d2 credential",
        "may not delete credentials of department \"d2\"",
    );
    ok(
        &as_user(
            c,
            CLUSTER_ADMIN,
            &[
                "delete",
                "secret",
                "d2-token",
                "-n",
                "runai",
                "--timeout=60s",
            ],
            None,
        ),
        "cluster admin deletes a d2 credential",
    );

    // credgate's controller is never refused: it stamps the status of the
    // cluster credential, copies it into the project, and removes its
    // finalizer when it is deleted.
    eventually(
        60,
        "the controller to propagate the cluster credential",
        || {
            c.kubectl_json(&["get", "secret", "everyone", "-n", "runai"])["metadata"]["annotations"]
                ["run.ai/status"]
                == "No issues found"
                && c.kubectl(
                    &["get", "secret", "credgate.everyone", "-n", &project],
                    None,
                )
                .status
                .success()
        },
    );

    // The project editor manages their project's credentials only.
    let own = credential("mine", &project, "");
    ok(
        &as_user(c, cluster::USER, &["apply", "-f", "-"], Some(&own)),
        "editor creates a project credential",
    );
    ok(
        &as_user(
            c,
            cluster::USER,
            &["delete", "secret", "mine", "-n", &project],
            None,
        ),
        "editor deletes it",
    );
    let out = as_user(
        c,
        cluster::USER,
        &["apply", "-f", "-"],
        Some(&credential("sneaky", "runai", &department("d1"))),
    );
    refused(&out, "editor creates a department credential", "forbidden");

    // The table's per-role view: --mine lists what the current user may change.
    let d1_view = credgate_as(c, D1_ADMIN, &["list", "-n", "runai", "--mine", "-o", "csv"]);
    assert!(d1_view.contains("d1-renamed"), "{d1_view}");
    assert!(!d1_view.contains("everyone"), "{d1_view}");
    let carl_view = credgate_as(
        c,
        CLUSTER_ADMIN,
        &["list", "-n", "runai", "--mine", "-o", "csv"],
    );
    assert!(
        carl_view.contains("d1-renamed") && carl_view.contains("everyone"),
        "{carl_view}"
    );

    ok(
        &as_user(
            c,
            D1_ADMIN,
            &[
                "delete",
                "secret",
                "d1-token",
                "-n",
                "runai",
                "--timeout=60s",
            ],
            None,
        ),
        "d1 admin deletes a d1 credential",
    );
    ok(
        &as_user(
            c,
            CLUSTER_ADMIN,
            &[
                "delete",
                "secret",
                "everyone",
                "-n",
                "runai",
                "--timeout=60s",
            ],
            None,
        ),
        "cluster admin deletes the cluster credential (the controller removes its finalizer)",
    );
}
