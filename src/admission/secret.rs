//! The Secret handler: `/validate` runs the credential rules (and, for a
//! DELETE, the in-use records and the live check; for an existing-secret
//! credential, its claim); `/mutate` stamps the credential.

use json_patch::PatchOperation;
use k8s_openapi::api::core::v1::Secret;
use kube::core::DynamicObject;
use kube::core::admission::AdmissionRequest;
use std::time::Instant;
use tracing::warn;

use super::claims::{self, Claim};
use super::{Admission, Endpoint, change, typed};
use crate::model::credential::{annotation, secret_meta};
use crate::policy::{Allow, Change, Deny, Operation, Verdict, mutate, validate};
use crate::state::index::Index;
use crate::state::live;
use crate::state::recent::AdmittedUsers;

impl Admission {
    pub(super) async fn secret(
        &self,
        endpoint: Endpoint,
        req: &AdmissionRequest<DynamicObject>,
    ) -> (Verdict, Vec<PatchOperation>) {
        let (object, old_object) = match typed::<Secret>(req) {
            Ok(objects) => objects,
            Err(deny) => return (Err(deny), Vec::new()),
        };
        let change = change(req, object.as_ref(), old_object.as_ref());
        match endpoint {
            Endpoint::Validate => {
                // A namespace being deleted takes its workloads with it, and no
                // pod can be created there any more: a DELETE there is allowed at
                // once, with no rule and no API call, so it never slows down (or
                // wedges) the namespace controller.
                if change.operation == Operation::Delete && self.terminating(change.namespace) {
                    return (Ok(Allow::default()), Vec::new());
                }
                // One read of the snapshot for the rules and the DELETE
                // record: no watch event can fall between them.
                let (verdict, reach) = {
                    let index = self.index.read().unwrap_or_else(|e| e.into_inner());
                    let deletion = validate::deletion(&self.settings, &index, &change);
                    let verdict =
                        validate::secret(&self.settings, &index, &change).and_then(|allow| {
                            match &deletion {
                                Some(d) => self
                                    .note_delete(&index, &change, d, req.dry_run)
                                    .map(|keys| (allow, keys)),
                                None => Ok((allow, Vec::new())),
                            }
                        });
                    (verdict, deletion.map(|d| d.reach))
                };
                let verdict = match (verdict, reach) {
                    (Ok((allow, keys)), Some(namespaces))
                        if namespaces.len() <= live::MAX_NAMESPACES =>
                    {
                        self.confirm_unused(&change, &namespaces, &keys, allow)
                            .await
                    }
                    (verdict, _) => verdict.map(|(allow, _)| allow),
                };
                let verdict = match verdict {
                    Ok(allow) => self
                        .claim_existing_secret(&change, req.dry_run)
                        .await
                        .map(|()| allow),
                    denied => denied,
                };
                (verdict, Vec::new())
            }
            Endpoint::Mutate => (
                Ok(Allow::default()),
                mutate::secret(&self.settings, &change),
            ),
        }
    }

    /// True when the snapshot shows `namespace` being deleted.
    fn terminating(&self, namespace: &str) -> bool {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        index.namespace(namespace).is_some_and(|n| n.terminating)
    }

    /// A credential DELETE the snapshot allows is refused while a pod admitted
    /// moments ago uses it, else recorded for pods about to name it. Returns
    /// the uids recorded.
    fn note_delete(
        &self,
        index: &Index,
        change: &Change<'_, Secret>,
        deletion: &validate::Deletion,
        dry_run: bool,
    ) -> Result<Vec<String>, Deny> {
        let Some(old) = change.old_object else {
            return Ok(Vec::new());
        };
        let meta = secret_meta(old, change.namespace);
        // Records are made only when the snapshot holds the deleted Secret
        // itself, under that namespace and name, with the old object's uid: a
        // review sent by anyone but the API server cannot make one for a
        // Secret that is not there (it is still refused while pods use it).
        let confirmed = index
            .secret(meta.namespace, meta.name)
            .is_some_and(|info| old.metadata.uid.as_deref() == Some(info.uid.as_str()));
        let record = confirmed && !dry_run;
        let keys: Vec<(String, String)> = deletion
            .credentials
            .iter()
            .filter_map(|((ns, secret), credential)| {
                let uid = index.secret(ns, secret).map(|info| info.uid.clone())?;
                Some((uid, credential.clone()))
            })
            .collect();
        index
            .recent()
            .delete(&keys, record, Instant::now())
            .map(|()| match record {
                true => keys.into_iter().map(|(uid, _)| uid).collect(),
                false => Vec::new(),
            })
            .map_err(|AdmittedUsers(pods)| {
                Deny(format!(
                    "credential {:?} is in use by {} admitted moments ago: {}; remove these references (or delete the pods) first",
                    meta.credential_name(),
                    if pods.len() == 1 { "a pod" } else { "pods" },
                    pods.join(", ")
                ))
            })
    }

    /// A credential DELETE the snapshot allows, decided again on the workloads
    /// the API server holds now (see [`crate::state::live`]).
    async fn confirm_unused(
        &self,
        change: &Change<'_, Secret>,
        namespaces: &[String],
        recorded: &[String],
        mut allow: Allow,
    ) -> Verdict {
        let Some(client) = &self.client else {
            return Ok(allow);
        };
        match live::workloads(client, namespaces).await {
            Ok(live) => {
                let index = self.index.read().unwrap_or_else(|e| e.into_inner());
                validate::in_use_live(&self.settings, &index, &live, change)
                    .map(|_| allow)
                    .inspect_err(|_| {
                        let mut recent = index.recent();
                        for uid in recorded {
                            recent.forget_delete(uid);
                        }
                    })
            }
            Err(error) => {
                warn!(%error, namespace = change.namespace, "could not confirm a credential DELETE with the API server; the cached view decides");
                allow.warnings.push(format!(
                    "credgate could not confirm with the API server that no workload uses this credential ({error}); it decided on its cached view"
                ));
                Ok(allow)
            }
        }
    }

    /// A credential backed by an existing Secret claims it through the API server.
    async fn claim_existing_secret(
        &self,
        change: &Change<'_, Secret>,
        dry_run: bool,
    ) -> Result<(), Deny> {
        let (Operation::Create | Operation::Update, Some(object)) =
            (change.operation, change.object)
        else {
            return Ok(());
        };
        let meta = secret_meta(object, change.namespace);
        let Some(existing) = meta.annotation(annotation::EXISTING_SECRET) else {
            return Ok(());
        };
        let Some(client) = &self.client else {
            return Err(Deny(
                "credgate runs without API access and cannot check existing secrets".into(),
            ));
        };
        // Validation passed, so type and scope are known to be valid.
        let kind = validate::credential_type(object, &meta)?;
        let scope = meta
            .scope(&self.settings.credentials_namespace)
            .map_err(|e| Deny(e.to_string()))?;
        let claim = Claim {
            namespace: meta.namespace,
            existing_secret: existing,
            holder: meta.name,
            kind,
            scope: &scope,
            dry_run,
        };
        claims::claim(client, &claim).await.map_err(|Deny(why)| {
            Deny(format!(
                "credential {:?} ({kind}): {why}",
                meta.credential_name()
            ))
        })
    }
}
