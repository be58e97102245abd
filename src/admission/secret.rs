//! The Secret handler: `/validate` runs the credential rules (and, for a
//! DELETE, the in-use records and the live check; for an existing-secret
//! credential, its claim); `/mutate` stamps the credential.

use k8s_openapi::api::core::v1::Secret;
use std::time::Instant;
use tracing::warn;

use super::claims::{self, Claim};
use super::{Admission, Endpoint, Patch, change, patch_json, typed};
use crate::model::credential::{annotation, secret_meta};
use crate::policy::{Allow, Change, Deny, Operation, Verdict, mutate, rights, validate};
use crate::state::index::Index;
use crate::state::live;
use crate::state::recent::Doomed;

/// A credential DELETE the snapshot allows, as recorded.
struct Noted {
    doomed: Vec<Doomed>,
    /// A record was made (not a dry run, and the snapshot holds the Secret).
    recorded: bool,
    /// When the records of pods admitted moments ago that use it lapse.
    pods_until: Option<Instant>,
    /// The project namespaces whose workloads could use it.
    reach: Vec<String>,
}

impl Admission {
    pub(super) async fn secret(
        &self,
        endpoint: Endpoint,
        req: &super::review::Request<'_>,
    ) -> (Verdict, Patch) {
        let (object, old_object) = match typed::<Secret>(req) {
            Ok(objects) => objects,
            Err(deny) => return (Err(deny), Patch::new()),
        };
        let change = change(req, object.as_ref(), old_object.as_ref());
        match endpoint {
            Endpoint::Validate => {
                // A namespace being deleted takes its workloads with it, and no
                // pod can be created there any more: a DELETE there is allowed at
                // once, with no rule and no API call, so it never slows down (or
                // wedges) the namespace controller.
                if change.operation == Operation::Delete && self.terminating(change.namespace) {
                    return (Ok(Allow::default()), Patch::new());
                }
                // A Secret being deleted is on its way out (no new workload may
                // name it): an UPDATE of it, such as a controller removing its
                // finalizer, is never blocked by a rule that held at CREATE.
                if change.operation == Operation::Update
                    && change
                        .old_object
                        .is_some_and(|old| old.metadata.deletion_timestamp.is_some())
                {
                    return (Ok(Allow::default()), Patch::new());
                }
                // Rights per scope first: a write the requester may not make
                // leaves no record and no claim.
                let needed = rights::required(&self.settings, &change);
                if let (false, Some(client)) = (needed.is_empty(), &self.client)
                    && let Err(deny) = self.rights.check(client, &req.user_info, &needed).await
                {
                    return (Err(deny), Patch::new());
                }
                let (verdict, noted) = self.decide_on_snapshot(&change, req.dry_run);
                let verdict = match (verdict, noted) {
                    (Ok(allow), Some(noted)) => self.confirm_delete(&change, noted, allow).await,
                    (verdict, _) => verdict,
                };
                let verdict = match verdict {
                    Ok(allow) => self
                        .claim_existing_secret(&change, req.dry_run)
                        .await
                        .map(|()| allow),
                    denied => denied,
                };
                (verdict, Patch::new())
            }
            Endpoint::Mutate => match patch_json(&mutate::secret(&self.settings, &change)) {
                Ok(patch) => (Ok(Allow::default()), patch),
                Err(deny) => (Err(deny), Patch::new()),
            },
        }
    }

    /// True when the snapshot shows `namespace` being deleted.
    fn terminating(&self, namespace: &str) -> bool {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        index.namespace(namespace).is_some_and(|n| n.terminating)
    }

    /// The rules on the snapshot and, for a credential DELETE they allow, its
    /// record: one read of the snapshot, so no watch event falls between them.
    fn decide_on_snapshot(
        &self,
        change: &Change<'_, Secret>,
        dry_run: bool,
    ) -> (Verdict, Option<Noted>) {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let verdict = validate::secret(&self.settings, &index, change);
        let noted = match (&verdict, validate::deletion(&self.settings, &index, change)) {
            (Ok(_), Some(deletion)) => Some(self.note_delete(&index, change, deletion, dry_run)),
            _ => None,
        };
        (verdict, noted)
    }

    /// Records a credential DELETE the snapshot allows, for pods about to name it.
    fn note_delete(
        &self,
        index: &Index,
        change: &Change<'_, Secret>,
        deletion: validate::Deletion,
        dry_run: bool,
    ) -> Noted {
        // Records are made only when the snapshot holds the deleted Secret
        // itself, under that namespace and name, with the old object's uid: a
        // review sent by anyone but the API server cannot make one for a
        // Secret that is not there.
        let confirmed = change.old_object.is_some_and(|old| {
            let meta = secret_meta(old, change.namespace);
            index
                .secret(meta.namespace, meta.name)
                .is_some_and(|info| old.metadata.uid.as_deref() == Some(info.uid.as_str()))
        });
        let doomed: Vec<Doomed> = deletion
            .credentials
            .into_iter()
            .filter_map(|((ns, secret), credential)| {
                let uid = index.secret(&ns, &secret)?.uid.clone();
                Some(Doomed {
                    uid,
                    source: (ns, secret),
                    credential,
                })
            })
            .collect();
        let recorded = confirmed && !dry_run;
        let pods_until = index.recent().delete(&doomed, recorded, Instant::now());
        Noted {
            doomed,
            recorded,
            pods_until,
            reach: deletion.reach,
        }
    }

    /// A credential DELETE the snapshot allows: once the pods admitted moments
    /// ago that use it are stored (or their records lapse), decided again on
    /// the snapshot, then on the workloads the API server holds now (see
    /// [`crate::state::live`]). Its record is dropped if it is refused, and
    /// lasts [`crate::state::recent::GRACE`] more if it is allowed.
    async fn confirm_delete(
        &self,
        change: &Change<'_, Secret>,
        noted: Noted,
        allow: Allow,
    ) -> Verdict {
        if let Some(until) = noted.pods_until {
            self.await_snapshot(until, |index| {
                let recent = index.recent();
                recent
                    .pods_using(&noted.doomed, Instant::now())
                    .is_none()
                    .then_some(())
            })
            .await;
        }
        let verdict = match noted.pods_until {
            Some(_) => {
                let index = self.index.read().unwrap_or_else(|e| e.into_inner());
                validate::secret(&self.settings, &index, change).map(|_| allow)
            }
            None => Ok(allow),
        };
        let verdict = match verdict {
            Ok(allow) if noted.reach.len() <= live::MAX_NAMESPACES => {
                self.confirm_unused(change, &noted.reach, allow).await
            }
            verdict => verdict,
        };
        if noted.recorded {
            let index = self.index.read().unwrap_or_else(|e| e.into_inner());
            let mut recent = index.recent();
            for d in &noted.doomed {
                match verdict {
                    Ok(_) => recent.settle_delete(&d.uid, Instant::now()),
                    Err(_) => recent.forget_delete(&d.uid),
                }
            }
            drop(recent);
            // Pods waiting on the record go on.
            index.ring();
        }
        verdict
    }

    /// A credential DELETE decided again on the workloads the API server holds
    /// now (see [`crate::state::live`]).
    async fn confirm_unused(
        &self,
        change: &Change<'_, Secret>,
        namespaces: &[String],
        mut allow: Allow,
    ) -> Verdict {
        let Some(client) = &self.client else {
            return Ok(allow);
        };
        match live::workloads(client, namespaces).await {
            Ok(live) => {
                let index = self.index.read().unwrap_or_else(|e| e.into_inner());
                validate::in_use_live(&self.settings, &index, &live, change).map(|_| allow)
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
        // The claim is made when the credential is born. Its backing Secret
        // cannot change afterwards, so a later UPDATE (a status or finalizer
        // write, a rename) does not claim again, and is not refused because
        // the backing Secret has gone meanwhile.
        let was_credential = change
            .old_object
            .is_some_and(|old| secret_meta(old, change.namespace).is_credential());
        if change.operation == Operation::Update && was_credential {
            return Ok(());
        }
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
            claims_namespace: &self.settings.own_namespace,
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
