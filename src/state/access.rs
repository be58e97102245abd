//! Read access to Secrets, one namespace at a time.
//!
//! credgate's ClusterRole grants no right on Secrets: `kubectl auth can-i get
//! secrets -n kube-system` says no for its ServiceAccount. It binds the
//! ClusterRole [`ROLE`] (Secrets, every verb) to itself with a RoleBinding
//! [`BINDING`] in each namespace whose Secrets it watches (project namespaces
//! and the credentials namespace), before it starts the watch there, and
//! removes that RoleBinding when the namespace no longer needs a watch. A
//! namespace being deleted keeps it (its finalizer [`FINALIZER`]) until
//! credgate has released the credentials there.
//!
//! Creating RoleBindings anywhere would be a way to any Secret, so the
//! manifests hold it in from two sides: RBAC lets credgate `bind` only
//! [`ROLE`], and a ValidatingAdmissionPolicy (`credgate-secret-access`)
//! refuses every RoleBinding credgate writes except [`BINDING`] to [`ROLE`],
//! for itself, in a project namespace or the credentials namespace.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use std::time::Duration;

/// The ClusterRole credgate binds in each namespace it watches.
pub const ROLE: &str = "credgate-project-secrets";
/// The name of each of those RoleBindings.
pub const BINDING: &str = "credgate-secrets";
/// The label on them (`credgate uninstall` removes them by it).
pub const BINDING_LABEL: &str = "credgate.run.ai/secret-access";
/// On each binding: when its namespace is deleted, the binding (and with it
/// credgate's access) stays until credgate has released the credentials
/// there (their in-use and copies finalizers need that access), then
/// credgate removes this finalizer ([`SecretAccess::revoke`]).
pub const FINALIZER: &str = "credgate.run.ai/secret-access";
/// Attempts to remove a binding before leaving it to the next look.
const REVOKE_TRIES: u32 = 8;
/// Longest wait for a new binding to take effect.
const SETTLE: Duration = Duration::from_secs(10);

/// Whom to bind [`ROLE`] to: credgate's own ServiceAccount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretAccess {
    pub namespace: String,
    pub service_account: String,
}

impl SecretAccess {
    /// From credgate's identity (`system:serviceaccount:<namespace>:<name>`);
    /// `None` for any other user (a developer's kubeconfig), who binds nothing.
    pub fn of(identity: &str) -> Option<Self> {
        let rest = identity.strip_prefix("system:serviceaccount:")?;
        let (namespace, name) = rest.split_once(':')?;
        (!namespace.is_empty() && !name.is_empty() && !name.contains(':')).then(|| SecretAccess {
            namespace: namespace.to_owned(),
            service_account: name.to_owned(),
        })
    }

    /// The RoleBinding that lets credgate use the Secrets of `namespace`.
    pub fn binding(&self, namespace: &str) -> RoleBinding {
        RoleBinding {
            metadata: ObjectMeta {
                name: Some(BINDING.to_owned()),
                namespace: Some(namespace.to_owned()),
                finalizers: Some(vec![FINALIZER.to_owned()]),
                labels: Some(
                    [
                        (BINDING_LABEL.to_owned(), "true".to_owned()),
                        ("app.kubernetes.io/name".to_owned(), "credgate".to_owned()),
                    ]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".to_owned(),
                kind: "ClusterRole".to_owned(),
                name: ROLE.to_owned(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".to_owned(),
                name: self.service_account.clone(),
                namespace: Some(self.namespace.clone()),
                api_group: None,
            }]),
        }
    }

    /// Whether `binding` is the one credgate makes (not a look-alike someone
    /// else created under that name, which would leave credgate without access).
    fn is_ours(&self, binding: &RoleBinding) -> bool {
        let wanted = self.binding("");
        binding.role_ref == wanted.role_ref && binding.subjects == wanted.subjects
    }

    /// Binds [`ROLE`] in `namespace` (already bound: nothing to do; a
    /// RoleBinding of that name that is not credgate's is replaced). A new
    /// binding takes a moment to reach the API server's authorizer: this
    /// returns once credgate may list Secrets there (at most [`SETTLE`]), so
    /// that the watch does not start with a 403 and a back-off.
    pub async fn grant(&self, client: &Client, namespace: &str) -> Result<(), kube::Error> {
        let api: Api<RoleBinding> = Api::namespaced(client.clone(), namespace);
        let wanted = self.binding(namespace);
        if let Err(error) = api.create(&PostParams::default(), &wanted).await {
            let kube::Error::Api(s) = &error else {
                return Err(error);
            };
            if s.code != 409 {
                return Err(error);
            }
            match api.get_opt(BINDING).await? {
                Some(existing) if existing.metadata.deletion_timestamp.is_some() => {
                    return Err(kube::Error::Service(
                        format!("the RoleBinding {BINDING} is being deleted; binding again once it is gone").into(),
                    ));
                }
                Some(existing) if self.is_ours(&existing) => return Ok(()),
                Some(_) => {
                    tracing::warn!(%namespace, "a RoleBinding {BINDING} that is not credgate's is in the way; replacing it");
                    api.delete(BINDING, &DeleteParams::default()).await?;
                }
                None => {}
            }
            api.create(&PostParams::default(), &wanted).await?;
        }
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let probe = ListParams::default().limit(1);
        let (started, mut wait) = (std::time::Instant::now(), Duration::from_millis(20));
        while started.elapsed() < SETTLE {
            match secrets.list_metadata(&probe).await {
                Err(kube::Error::Api(s)) if s.code == 403 => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_millis(500));
                }
                // Allowed (or another failure, which the watch reports).
                _ => break,
            }
        }
        Ok(())
    }

    /// Removes the binding of `namespace`: deletes it (so that it is seen
    /// going), then removes its finalizer (see [`FINALIZER`]), until it is
    /// gone. Tries [`REVOKE_TRIES`] times; a binding left is found again by
    /// the watch of bindings, and removed when its namespace holds nothing.
    pub async fn revoke(&self, client: &Client, namespace: &str) -> Result<(), kube::Error> {
        let api: Api<RoleBinding> = Api::namespaced(client.clone(), namespace);
        let mut wait = Duration::from_millis(200);
        let mut tries = 0;
        loop {
            tries += 1;
            match self.revoke_once(&api).await {
                Ok(()) => return Ok(()),
                Err(error) if tries >= REVOKE_TRIES => return Err(error),
                Err(_) => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    async fn revoke_once(&self, api: &Api<RoleBinding>) -> Result<(), kube::Error> {
        let gone = |r: Result<(), kube::Error>| match r {
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            other => other,
        };
        gone(
            api.delete(BINDING, &DeleteParams::default())
                .await
                .map(drop),
        )?;
        let Some(binding) = api.get_opt(BINDING).await? else {
            return Ok(());
        };
        if binding
            .metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
        {
            let rest: Vec<&String> = binding
                .metadata
                .finalizers
                .iter()
                .flatten()
                .filter(|f| *f != FINALIZER)
                .collect();
            let release = serde_json::json!({"metadata": {
                "finalizers": rest,
                "resourceVersion": binding.metadata.resource_version,
            }});
            gone(
                api.patch(BINDING, &PatchParams::default(), &Patch::Merge(&release))
                    .await
                    .map(drop),
            )?;
        }
        Ok(())
    }
}

/// Whether a watch failed because credgate may not read there (its RoleBinding is missing).
pub fn forbidden(error: &kube::runtime::watcher::Error) -> bool {
    use kube::runtime::watcher::Error as E;
    match error {
        E::InitialListFailed(kube::Error::Api(s)) | E::WatchStartFailed(kube::Error::Api(s)) => {
            s.code == 403
        }
        E::WatchError(s) => s.code == 403,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_service_account_binds() {
        assert_eq!(
            SecretAccess::of("system:serviceaccount:platform:credgate"),
            Some(SecretAccess {
                namespace: "platform".into(),
                service_account: "credgate".into()
            })
        );
        assert_eq!(SecretAccess::of("admin"), None);
        assert_eq!(SecretAccess::of("system:serviceaccount:platform"), None);
        assert_eq!(SecretAccess::of("system:serviceaccount::credgate"), None);
    }

    #[test]
    fn the_binding_is_the_one_the_admission_policy_allows() {
        let access = SecretAccess::of("system:serviceaccount:credgate-system:credgate").unwrap();
        let b = serde_json::to_value(access.binding("team-a")).unwrap();
        assert_eq!(b["metadata"]["name"], BINDING);
        assert_eq!(b["metadata"]["namespace"], "team-a");
        assert_eq!(b["roleRef"]["kind"], "ClusterRole");
        assert_eq!(b["roleRef"]["name"], ROLE);
        assert_eq!(
            b["subjects"],
            serde_json::json!([{"kind": "ServiceAccount", "name": "credgate", "namespace": "credgate-system"}])
        );
        assert_eq!(b["metadata"]["finalizers"], serde_json::json!([FINALIZER]));
        assert!(access.is_ours(&access.binding("team-b")));
        // A look-alike a project admin made under that name is not credgate's.
        let mut other = access.binding("team-a");
        other.role_ref.name = "view".into();
        assert!(!access.is_ours(&other));
        let mut other = access.binding("team-a");
        other.subjects = None;
        assert!(!access.is_ours(&other));
    }
}
