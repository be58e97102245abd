//! In-use protection across replicas: the in-use finalizer.
//!
//! With two replicas behind the Service, a pod admitted by one and the DELETE
//! of its credential decided by the other can both pass (each replica's
//! records only see its own decisions). As Kubernetes protects
//! PersistentVolumeClaims in use, credentials carry the finalizer
//! [`IN_USE_FINALIZER`] from birth, and this controller (on the leader)
//! removes it from a credential being deleted only:
//! - after [`GRACE`] from its `deletionTimestamp`, longer than the webhook
//!   timeout, so that a pod admitted before the DELETE has been stored;
//! - and when no stored workload names it: the workloads the API server holds
//!   now (the live check of [`crate::state::live`]), or the snapshot for a
//!   credential wider than its namespace limit.
//!
//! Until then the credential shows `Deleting…` with the users, and pods that
//! name it are refused (it has a `deletionTimestamp`). In a namespace being
//! deleted, the finalizer goes at once.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PartialObjectMeta, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::model::credential::IN_USE_FINALIZER;
use crate::model::credential::status::DELETING;
use crate::policy::{Change, Deny, Operation, Settings, validate};
use crate::state::{SharedIndex, live};

/// How long after its `deletionTimestamp` a credential keeps the finalizer
/// at least: the webhooks' 5 s timeout and a margin.
pub const GRACE: Duration = Duration::from_secs(7);
/// How often a credential still in use is checked again.
const RECHECK: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the workloads could not be listed: {0}")]
    Live(#[from] live::LiveError),
    #[error("the cluster index is not synced yet")]
    NotSynced,
}

struct Ctx {
    client: Client,
    index: SharedIndex,
    settings: Settings,
}

/// How often at most the index is scanned for credentials being deleted.
const SCAN_EVERY: Duration = Duration::from_secs(1);
/// How often it is scanned when nothing rings.
const SCAN_AT_LEAST: Duration = Duration::from_secs(30);

/// Runs until cancelled. The credentials being deleted come from the index
/// (credgate reads Secrets only in the namespaces it watches, see
/// [`crate::state::access`]); each is followed by its own task, which reads
/// it again from the API server before every step.
pub async fn controller(client: Client, index: SharedIndex, settings: Settings) {
    let ctx = Arc::new(Ctx {
        client,
        index,
        settings,
    });
    let mut changes = ctx
        .index
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .subscribe();
    // By uid: followed now, or followed to the end (a deleting object gains no finalizer).
    let mut following: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut done: HashSet<String> = HashSet::new();
    let mut tasks: JoinSet<()> = JoinSet::new();
    loop {
        let deleting = ctx
            .index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .deleting_credentials();
        done.retain(|uid| deleting.iter().any(|(_, _, u)| u == uid));
        for (namespace, name, uid) in deleting {
            if done.contains(&uid) || following.values().any(|u| *u == uid) {
                continue;
            }
            let task = tasks.spawn(follow(ctx.clone(), namespace, name, uid.clone()));
            following.insert(task.id(), uid);
        }
        tokio::select! {
            _ = changes.changed() => tokio::time::sleep(SCAN_EVERY).await,
            Some(ended) = tasks.join_next_with_id() => {
                let (id, finished) = match ended {
                    Ok((id, ())) => (id, true),
                    // A panic: followed again at the next scan.
                    Err(error) => (error.id(), false),
                };
                if let Some(uid) = following.remove(&id)
                    && finished
                {
                    done.insert(uid);
                }
            }
            () = tokio::time::sleep(SCAN_AT_LEAST) => {}
        }
    }
}

/// Follows one credential being deleted until its in-use finalizer is gone (or it is).
async fn follow(ctx: Arc<Ctx>, namespace: String, name: String, uid: String) {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    loop {
        let wait = match api.get_metadata_opt(&name).await {
            Ok(Some(secret)) if secret.uid().as_deref() == Some(uid.as_str()) => {
                match reconcile(Arc::new(secret), ctx.clone()).await {
                    Ok(None) => return,
                    Ok(Some(wait)) => wait,
                    Err(error) => error_policy(&error),
                }
            }
            Ok(_) => return,
            Err(error) => error_policy(&Error::Kube(error)),
        };
        tokio::time::sleep(wait).await;
    }
}

fn error_policy(error: &Error) -> Duration {
    match error {
        Error::NotSynced => Duration::from_secs(1),
        Error::Kube(_) | Error::Live(_) => {
            warn!(%error, "in-use protection failed; retrying");
            RECHECK
        }
    }
}

/// What to do with a credential's in-use finalizer now.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Not being deleted, or not protected: nothing.
    Nothing,
    /// Keep it; look again after this long.
    Wait(Duration),
    /// Decide whether a stored workload names it.
    Check,
    /// Remove it now.
    Release,
}

/// The decision that needs no API call: `age` is the time since the
/// `deletionTimestamp` (`None`: not being deleted).
fn next(protected: bool, age: Option<Duration>, namespace_terminating: bool) -> Next {
    match (protected, age) {
        (false, _) | (_, None) => Next::Nothing,
        _ if namespace_terminating => Next::Release,
        (true, Some(age)) if age < GRACE => Next::Wait(GRACE - age),
        (true, Some(_)) => Next::Check,
    }
}

/// One step for a credential being deleted: `None` when there is nothing
/// more to do, else when to look again.
async fn reconcile(
    secret: Arc<PartialObjectMeta<Secret>>,
    ctx: Arc<Ctx>,
) -> Result<Option<Duration>, Error> {
    let namespace = secret.namespace().unwrap_or_default();
    let name = secret.name_any();
    let protected = secret.finalizers().iter().any(|f| f == IN_USE_FINALIZER);
    let age = secret.metadata.deletion_timestamp.as_ref().map(|t| {
        k8s_openapi::jiff::Timestamp::now()
            .duration_since(t.0)
            .unsigned_abs()
    });
    let terminating = {
        let index = ctx.index.read().unwrap_or_else(|e| e.into_inner());
        if index.not_synced().is_some() {
            return Err(Error::NotSynced);
        }
        index.namespace(&namespace).is_none_or(|n| n.terminating)
    };
    let api: Api<PartialObjectMeta<Secret>> = Api::namespaced(ctx.client.clone(), &namespace);
    match next(protected, age, terminating) {
        Next::Nothing => return Ok(None),
        Next::Wait(left) => return Ok(Some(left)),
        Next::Release => {}
        Next::Check => {
            if let Err(Deny(why)) = in_use(&ctx, &secret, &namespace).await? {
                set_deleting(&api, &secret, &why).await?;
                return Ok(Some(RECHECK));
            }
        }
    }
    let remaining: Vec<&String> = secret
        .finalizers()
        .iter()
        .filter(|f| *f != IN_USE_FINALIZER)
        .collect();
    // Only as read: a finalizer added meanwhile is not dropped.
    let patch = json!({"metadata": {"finalizers": remaining, "resourceVersion": secret.resource_version()}});
    api.patch_metadata(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    info!(%namespace, %name, "no workload names the credential: in-use finalizer removed");
    Ok(None)
}

/// The in-use rule of a DELETE, on the workloads the API server holds now
/// (the snapshot's, for a credential wider than the live check's limit).
async fn in_use(
    ctx: &Ctx,
    secret: &PartialObjectMeta<Secret>,
    namespace: &str,
) -> Result<Result<(), Deny>, Error> {
    let old = Secret {
        metadata: secret.metadata.clone(),
        ..Secret::default()
    };
    let change = Change {
        operation: Operation::Delete,
        user: "",
        namespace,
        object: None,
        old_object: Some(&old),
    };
    let reach = {
        let index = ctx.index.read().unwrap_or_else(|e| e.into_inner());
        match validate::deletion(&ctx.settings, &index, &change) {
            None => return Ok(Ok(())),
            Some(d) if d.reach.len() > live::MAX_NAMESPACES => {
                return Ok(validate::in_use_live(&ctx.settings, &index, &index, &change).map(drop));
            }
            Some(d) => d.reach,
        }
    };
    let workloads = live::workloads(&ctx.client, &reach).await?;
    let index = ctx.index.read().unwrap_or_else(|e| e.into_inner());
    Ok(validate::in_use_live(&ctx.settings, &index, &workloads, &change).map(drop))
}

/// `Deleting…`, and why it waits.
async fn set_deleting(
    api: &Api<PartialObjectMeta<Secret>>,
    secret: &PartialObjectMeta<Secret>,
    why: &str,
) -> Result<(), kube::Error> {
    let message = format!("waiting until no workload names it: {why}");
    crate::propagation::controller::set_status(api, secret, DELETING, Some(message)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_finalizer_goes_after_the_grace_and_at_once_in_a_namespace_being_deleted() {
        let s = Duration::from_secs;
        assert_eq!(next(true, None, false), Next::Nothing);
        assert_eq!(next(false, Some(s(60)), false), Next::Nothing);
        assert_eq!(next(true, Some(s(2)), false), Next::Wait(s(5)));
        assert_eq!(next(true, Some(GRACE), false), Next::Check);
        assert_eq!(next(true, Some(s(1)), true), Next::Release);
    }
}
