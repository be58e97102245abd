//! Rights per scope: which RBAC permission a write of a cluster or department
//! credential needs, beyond Secret RBAC (which cannot tell one Secret of the
//! credentials namespace from another).
//!
//! The permissions are on virtual resources of the API group
//! `credgate.run.ai`, which the API server authorizes like any other (no CRD
//! is needed); credgate asks it with a SubjectAccessReview for the requester:
//! - a cluster credential needs `create`, `update` or `delete` on
//!   `clustercredentials.credgate.run.ai`;
//! - a department credential needs the same on
//!   `departmentcredentials.credgate.run.ai` with the department as the
//!   resource name, so a role can be limited to one department;
//! - a project credential needs nothing more: Secret RBAC in its namespace
//!   already scopes it.
//!
//! The permissions are asked in the credentials namespace, so a RoleBinding
//! there grants them as well as a ClusterRoleBinding. credgate's own identity
//! (its controller's status and finalizer writes) needs none.

use k8s_openapi::api::core::v1::Secret;

use crate::model::credential::{Scope, secret_meta};
use crate::policy::{Change, Operation, Settings};

/// The API group of the virtual resources.
pub const GROUP: &str = "credgate.run.ai";
/// Cluster credentials.
pub const CLUSTER: &str = "clustercredentials";
/// Department credentials; the resource name is the department.
pub const DEPARTMENT: &str = "departmentcredentials";

/// One permission a write needs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Right {
    pub verb: &'static str,
    pub resource: &'static str,
    /// The department, for a department credential.
    pub name: Option<String>,
    /// Where it is asked: the credentials namespace.
    pub namespace: String,
}

impl Right {
    /// What the permission covers, for a message.
    pub fn scope(&self) -> String {
        match &self.name {
            None => "cluster credentials".to_owned(),
            Some(d) => format!("credentials of department {d:?}"),
        }
    }

    /// The permission, as RBAC writes it.
    pub fn rbac(&self) -> String {
        let name = self
            .name
            .as_ref()
            .map(|n| format!(" with resourceNames [{n}]"))
            .unwrap_or_default();
        format!(
            "{} on {}.{GROUP}{name} (in namespace {:?}, or cluster-wide)",
            self.verb, self.resource, self.namespace
        )
    }

    /// The commands an admin runs to grant it to `user` (with the roles of
    /// `manifests/base/roles-for-people.yaml`).
    pub fn how_to_grant(&self, user: &str) -> String {
        let ns = &self.namespace;
        match &self.name {
            None => format!(
                "kubectl create rolebinding {} -n {ns} --clusterrole=credgate:cluster-credentials-admin --user={}",
                quoted(&format!("cluster-credentials:{user}")),
                quoted(user)
            ),
            Some(d) => format!(
                "kubectl apply -f - <<< {}; kubectl create rolebinding {} -n {ns} --clusterrole=credgate:department-credentials-admin:{d} --user={}",
                quoted(&department_role(d)),
                quoted(&format!("department-credentials:{d}:{user}")),
                quoted(user)
            ),
        }
    }
}

/// The ClusterRole `credgate:department-credentials-admin:<d>`, as one line
/// of JSON (`kubectl create clusterrole` refuses a resource that discovery
/// does not list, and these resources are virtual).
pub fn department_role(department: &str) -> String {
    serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": format!("credgate:department-credentials-admin:{department}")},
        "rules": [{"apiGroups": [GROUP], "resources": [DEPARTMENT],
                   "resourceNames": [department], "verbs": ["create", "update", "delete"]}],
    })
    .to_string()
}

/// `s` as one single-quoted shell word: a user name cannot turn the printed
/// command into another one.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The right to `verb` credentials of `scope`; `None` for a project scope.
fn right(settings: &Settings, verb: &'static str, scope: &Scope) -> Option<Right> {
    let (resource, name) = match scope {
        Scope::Project => return None,
        Scope::Cluster => (CLUSTER, None),
        Scope::Department(d) => (DEPARTMENT, Some(d.clone())),
    };
    Some(Right {
        verb,
        resource,
        name,
        namespace: settings.credentials_namespace.clone(),
    })
}

/// The scope of a credential Secret of the credentials namespace; `None` when
/// it is not a credential there (or its labels are invalid: validation says so).
fn scope_of(settings: &Settings, secret: Option<&Secret>, namespace: &str) -> Option<Scope> {
    let secret = secret?;
    let meta = secret_meta(secret, namespace);
    if meta.namespace != settings.credentials_namespace || !meta.is_credential() {
        return None;
    }
    meta.scope(&settings.credentials_namespace).ok()
}

/// The rights a write of a Secret needs from its requester, sorted: none for
/// credgate itself, for a Secret that is not a cluster or department
/// credential, or for a project credential.
/// - CREATE: `create` on the new scope;
/// - DELETE: `delete` on the old one;
/// - UPDATE: `update` on both the old and the new scope (moving a credential
///   to another department changes both); `create` when the Secret becomes a
///   credential, `delete` when it stops being one.
pub fn required(settings: &Settings, change: &Change<'_, Secret>) -> Vec<Right> {
    if change.user == settings.controller_identity {
        return Vec::new();
    }
    let old = scope_of(settings, change.old_object, change.namespace);
    let new = scope_of(settings, change.object, change.namespace);
    let mut rights: Vec<Right> = match change.operation {
        Operation::Create => new
            .iter()
            .filter_map(|s| right(settings, "create", s))
            .collect(),
        Operation::Delete => old
            .iter()
            .filter_map(|s| right(settings, "delete", s))
            .collect(),
        Operation::Update => {
            let was = change
                .old_object
                .is_some_and(|o| secret_meta(o, change.namespace).is_credential());
            let is = change
                .object
                .is_some_and(|o| secret_meta(o, change.namespace).is_credential());
            let verb = |fallback| if was && is { "update" } else { fallback };
            old.iter()
                .filter_map(|s| right(settings, verb("delete"), s))
                .chain(
                    new.iter()
                        .filter_map(|s| right(settings, verb("create"), s)),
                )
                .collect()
        }
        Operation::Connect => Vec::new(),
    };
    rights.sort();
    rights.dedup();
    rights
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn secret(labels: &[(&str, &str)]) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("c".into()),
                namespace: Some("runai".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            ..Secret::default()
        }
    }

    fn change<'a>(
        operation: Operation,
        user: &'a str,
        namespace: &'a str,
        object: Option<&'a Secret>,
        old_object: Option<&'a Secret>,
    ) -> Change<'a, Secret> {
        Change {
            operation,
            user,
            namespace,
            object,
            old_object,
        }
    }

    fn rights(c: &Change<'_, Secret>) -> Vec<(&'static str, &'static str, Option<String>)> {
        required(&Settings::default(), c)
            .into_iter()
            .map(|r| (r.verb, r.resource, r.name))
            .collect()
    }

    #[test]
    fn each_write_needs_the_right_on_its_scope() {
        use Operation::{Create, Delete, Update};
        let d1 = secret(&[("run.ai/resource", "generic"), ("run.ai/department", "d1")]);
        let d2 = secret(&[("run.ai/resource", "generic"), ("run.ai/department", "d2")]);
        let cluster = secret(&[
            ("run.ai/resource", "generic"),
            ("run.ai/cluster-wide", "true"),
        ]);
        let plain = secret(&[]);
        let project = secret(&[("run.ai/resource", "generic")]);
        let credgate = Settings::default().controller_identity;
        let d = |verb: &'static str, d: &str| (verb, DEPARTMENT, Some(d.to_owned()));
        // (operation, user, namespace, object, old object, rights needed)
        let cases = [
            (
                Create,
                "bob",
                "runai",
                Some(&d1),
                None,
                vec![d("create", "d1")],
            ),
            (
                Delete,
                "bob",
                "runai",
                None,
                Some(&cluster),
                vec![("delete", CLUSTER, None)],
            ),
            // Moving d1 to d2 needs both departments.
            (
                Update,
                "bob",
                "runai",
                Some(&d2),
                Some(&d1),
                vec![d("update", "d1"), d("update", "d2")],
            ),
            (
                Update,
                "bob",
                "runai",
                Some(&d1),
                Some(&d1),
                vec![d("update", "d1")],
            ),
            // Becoming a credential is a create; ceasing to be one, a delete.
            (
                Update,
                "bob",
                "runai",
                Some(&d1),
                Some(&plain),
                vec![d("create", "d1")],
            ),
            (
                Update,
                "bob",
                "runai",
                Some(&plain),
                Some(&d1),
                vec![d("delete", "d1")],
            ),
            // Project credentials, other Secrets and credgate itself need nothing more.
            (Create, "bob", "team-a", Some(&project), None, vec![]),
            (Create, "bob", "runai", Some(&plain), None, vec![]),
            (
                Update,
                credgate.as_str(),
                "runai",
                Some(&d1),
                Some(&d1),
                vec![],
            ),
        ];
        for (operation, user, namespace, object, old_object, expected) in cases {
            let c = change(operation, user, namespace, object, old_object);
            assert_eq!(
                rights(&c),
                expected,
                "{operation:?} by {user} in {namespace}"
            );
        }
    }

    #[test]
    fn a_user_name_cannot_change_the_printed_command() {
        let right = Right {
            verb: "create",
            resource: CLUSTER,
            name: None,
            namespace: "runai".into(),
        };
        let printed = right.how_to_grant("x'; rm -rf /; '");
        assert!(
            printed.ends_with(r"--user='x'\''; rm -rf /; '\'''"),
            "{printed}"
        );
    }

    #[test]
    fn denials_say_how_to_grant() {
        let right = Right {
            verb: "create",
            resource: DEPARTMENT,
            name: Some("d2".into()),
            namespace: "runai".into(),
        };
        assert_eq!(right.scope(), "credentials of department \"d2\"");
        assert_eq!(
            right.rbac(),
            "create on departmentcredentials.credgate.run.ai with resourceNames [d2] (in namespace \"runai\", or cluster-wide)"
        );
        assert_eq!(
            right.how_to_grant("bob"),
            format!(
                "kubectl apply -f - <<< '{}'; kubectl create rolebinding 'department-credentials:d2:bob' -n runai --clusterrole=credgate:department-credentials-admin:d2 --user='bob'",
                department_role("d2")
            )
        );
    }
}
