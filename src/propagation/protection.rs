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

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PartialObjectMeta, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

use crate::model::credential::status::DELETING;
use crate::model::credential::{IN_USE_FINALIZER, label};
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

/// Runs until the stream of credential Secrets ends (it does not).
pub async fn controller(client: Client, index: SharedIndex, settings: Settings) {
    let credentials: Api<PartialObjectMeta<Secret>> = Api::all(client.clone());
    let ctx = Arc::new(Ctx {
        client,
        index,
        settings,
    });
    Controller::new(
        credentials,
        watcher::Config::default().labels(label::RESOURCE),
    )
    .run(reconcile, error_policy, ctx)
    .for_each(|_| async {})
    .await;
}

fn error_policy(_: Arc<PartialObjectMeta<Secret>>, error: &Error, _: Arc<Ctx>) -> Action {
    match error {
        Error::NotSynced => Action::requeue(Duration::from_secs(1)),
        Error::Kube(_) | Error::Live(_) => {
            warn!(%error, "in-use protection failed; retrying");
            Action::requeue(RECHECK)
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

async fn reconcile(secret: Arc<PartialObjectMeta<Secret>>, ctx: Arc<Ctx>) -> Result<Action, Error> {
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
        Next::Nothing => return Ok(Action::await_change()),
        Next::Wait(left) => return Ok(Action::requeue(left)),
        Next::Release => {}
        Next::Check => {
            if let Err(Deny(why)) = in_use(&ctx, &secret, &namespace).await? {
                set_deleting(&api, &secret, &why).await?;
                return Ok(Action::requeue(RECHECK));
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
    Ok(Action::await_change())
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
