//! Propagation: cluster and department credentials reach their project
//! namespaces as managed copies, and each source shows a status.
//!
//! A kube-runtime `Controller` over credential Secrets of the credentials
//! namespace (metadata only; data is read per reconcile and dropped). It is
//! re-triggered by namespace changes (a namespace joins or leaves a project or
//! department) and by changes to copies. One replica runs it at a time (a
//! coordination.k8s.io Lease); the webhook runs on every replica.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PartialObjectMeta, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

use crate::model::credential::COPIES_FINALIZER as FINALIZER;
use crate::model::credential::status::{DELETING, ISSUES, NO_ISSUES};
use crate::model::credential::{Scope, annotation};
use crate::propagation::copies::{self, Source};
use crate::state::SharedIndex;

/// Copies written at once.
pub const CONCURRENCY: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the cluster index is not synced yet")]
    NotSynced,
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("a workload may still name it: its copies stay until the in-use finalizer goes")]
    InUse,
}

/// The sources of changed copies, from the index's watches (see
/// [`crate::state::watch::Outlets::copy_changes`]); each leadership term's
/// controller takes its turn at the one receiver.
pub type CopyChanges = Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<(String, String)>>>;

struct Ctx {
    client: Client,
    index: SharedIndex,
    credentials_namespace: String,
}

/// Runs the controller while this replica holds the leader Lease.
pub async fn run(
    client: Client,
    index: SharedIndex,
    settings: crate::policy::Settings,
    lease_namespace: String,
    namespaces_changed: tokio::sync::watch::Receiver<u64>,
    copy_changes: CopyChanges,
    stop: tokio_util::sync::CancellationToken,
) {
    while !stop.is_cancelled() {
        let manager =
            kube_lease_manager::LeaseManagerBuilder::new(client.clone(), "credgate-controller")
                .with_namespace(&lease_namespace)
                .with_duration(15)
                .with_grace(5)
                .build()
                .await;
        let manager = match manager {
            Ok(m) => m,
            Err(error) => {
                warn!(%error, namespace = %lease_namespace, "cannot use the leader Lease; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                    () = stop.cancelled() => {}
                }
                continue;
            }
        };
        let (mut leader, task) = manager.watch().await;
        let mut stopped = false;
        while !*leader.borrow_and_update() {
            tokio::select! {
                changed = leader.changed() => if changed.is_err() { break },
                () = stop.cancelled() => { stopped = true; break }
            }
        }
        if !stopped && *leader.borrow() {
            info!("leading: propagating credentials");
            let controller = controller(
                client.clone(),
                index.clone(),
                settings.credentials_namespace.clone(),
                namespaces_changed.clone(),
                copy_changes.clone(),
            );
            let protection = async {
                match settings.in_use_finalizer {
                    true => {
                        crate::propagation::protection::controller(
                            client.clone(),
                            index.clone(),
                            settings.clone(),
                        )
                        .await
                    }
                    false => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = async { tokio::join!(controller, protection) } => {}
                _ = async { while leader.changed().await.is_ok() && *leader.borrow() {} } => {
                    warn!("lost the leader Lease; another replica propagates now");
                }
                () = stop.cancelled() => info!("stopping: handing back the leader Lease"),
            }
        }
        // Closing the channel makes the manager release the Lease.
        drop(leader);
        let _ = task.await;
    }
}

async fn controller(
    client: Client,
    index: SharedIndex,
    credentials_namespace: String,
    namespaces_changed: tokio::sync::watch::Receiver<u64>,
    copy_changes: CopyChanges,
) {
    // credgate may read the credentials namespace once its own watch there
    // has listed (see crate::state::access); before that, this watch would
    // only meet 403s and back off.
    let mut changes = index.read().unwrap_or_else(|e| e.into_inner()).subscribe();
    loop {
        let listed = index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .secrets_listed_in(&credentials_namespace);
        if listed {
            break;
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
    let sources: Api<PartialObjectMeta<Secret>> =
        Api::namespaced(client.clone(), &credentials_namespace);
    let controller = Controller::new(sources, watcher::Config::default());
    // Namespace changes come from the index's own watch, after the index has
    // them: a separate watch here could reconcile before the index knows.
    let namespace_ticks = futures::stream::unfold(namespaces_changed, |mut rx| async move {
        rx.changed().await.ok()?;
        Some(((), rx))
    });
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        index,
        credentials_namespace: credentials_namespace.clone(),
    });
    // A copy that changed or went: its source puts it back. The copies come
    // from the index's watches too (credgate reads Secrets only in the
    // namespaces it watches, see crate::state::access).
    let copy_sources = futures::stream::unfold(copy_changes, |rx| async move {
        let (ns, name) = rx.lock().await.recv().await?;
        Some((ObjectRef::new(&name).within(&ns), rx))
    });
    controller
        .reconcile_all_on(namespace_ticks)
        .reconcile_on(copy_sources)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

fn error_policy(_: Arc<PartialObjectMeta<Secret>>, error: &Error, _: Arc<Ctx>) -> Action {
    match error {
        Error::NotSynced => Action::requeue(Duration::from_secs(1)),
        Error::InUse => Action::requeue(Duration::from_secs(2)),
        Error::Finalizer(e)
            if matches!(
                **e,
                kube::runtime::finalizer::Error::CleanupFailed(Error::InUse)
            ) =>
        {
            Action::requeue(Duration::from_secs(2))
        }
        Error::Kube(_) | Error::Finalizer(_) => {
            warn!(%error, "propagation failed; retrying");
            Action::requeue(Duration::from_secs(5))
        }
    }
}

async fn reconcile(secret: Arc<PartialObjectMeta<Secret>>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let namespace = secret.namespace().unwrap_or_default();
    let name = secret.name_any();
    let meta = crate::model::credential::object_meta(&secret.metadata, &namespace);
    if !meta.is_credential() {
        return Ok(Action::await_change());
    }
    let (scope, targets, backs, existing) = {
        let index = ctx.index.read().unwrap_or_else(|e| e.into_inner());
        if index.not_synced().is_some() {
            return Err(Error::NotSynced);
        }
        let backs: Vec<String> = index
            .backers(&namespace, &name)
            .map(|(n, _)| n.to_owned())
            .collect();
        let scope = meta.scope(&ctx.credentials_namespace).ok();
        let targets: BTreeSet<String> = match &scope {
            Some(s @ (Scope::Cluster | Scope::Department(_))) => index
                .visible_in(s, &namespace)
                .into_iter()
                .filter(|ns| !index.namespace(ns).is_some_and(|n| n.terminating))
                .map(str::to_owned)
                .collect(),
            _ => BTreeSet::new(),
        };
        // Copies that exist now, by namespace, with the hash they carry.
        let existing = index.copies_named(&crate::model::copy::copy_name(&name));
        (scope, targets, backs, existing)
    };
    // An existing Secret behind credentials: its credentials carry the copies.
    if !backs.is_empty() {
        for credential in backs {
            let Some(owner) =
                Api::<PartialObjectMeta<Secret>>::namespaced(ctx.client.clone(), &namespace)
                    .get_opt(&credential)
                    .await?
            else {
                continue;
            };
            Box::pin(reconcile(Arc::new(owner), ctx.clone())).await?;
        }
        return Ok(Action::await_change());
    }
    if !matches!(scope, Some(Scope::Cluster | Scope::Department(_))) {
        return Ok(Action::await_change());
    }
    // kube-runtime's finalizer helper adds the finalizer (mutate already adds
    // it at CREATE), and calls `cleanup` before removing it on deletion.
    let api: Api<PartialObjectMeta<Secret>> = Api::namespaced(ctx.client.clone(), &namespace);
    let work = Work {
        api: api.clone(),
        ctx: ctx.clone(),
        targets,
        existing,
    };
    finalizer(&api, FINALIZER, secret, |event| async move {
        match event {
            FinalizerEvent::Apply(secret) => work.propagate(secret).await,
            FinalizerEvent::Cleanup(secret) => work.cleanup(secret).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// One reconcile of a cluster or department credential.
struct Work {
    api: Api<PartialObjectMeta<Secret>>,
    ctx: Arc<Ctx>,
    /// Project namespaces that should hold a copy.
    targets: BTreeSet<String>,
    /// Copies that exist now, by namespace, with the hash they carry.
    existing: std::collections::HashMap<String, String>,
}

impl Work {
    /// Deleting: removes every copy (found by the source's uid); the helper
    /// then removes the finalizer.
    async fn cleanup(&self, secret: Arc<PartialObjectMeta<Secret>>) -> Result<Action, Error> {
        let (api, ctx) = (&self.api, &self.ctx);
        // While the in-use finalizer holds it, workloads may still use the copies.
        if secret
            .finalizers()
            .iter()
            .any(|f| f == crate::model::credential::IN_USE_FINALIZER)
        {
            return Err(Error::InUse);
        }
        let uid = secret.uid().unwrap_or_default();
        set_status(api, &secret, DELETING, None).await?;
        let source = secret.name_any();
        let copy = crate::model::copy::copy_name(&source);
        // Where the index has copies of that name, and where the credential
        // reaches but the index has not listed the Secrets yet; each is
        // deleted only if it still is a copy of this credential (label,
        // source uid and name together).
        let namespaces: BTreeSet<&String> = {
            let index = ctx.index.read().unwrap_or_else(|e| e.into_inner());
            let unlisted = self
                .targets
                .iter()
                .filter(|ns| !index.secrets_listed_in(ns));
            self.existing.keys().chain(unlisted).collect()
        };
        for ns in namespaces {
            copies::delete_copy(&ctx.client, ns, &copy, &uid, &source).await?;
        }
        info!(namespace = %secret.namespace().unwrap_or_default(), name = %secret.name_any(), "copies removed; credential released");
        Ok(Action::await_change())
    }

    /// Writes the missing and stale copies, removes copies outside the
    /// credential's reach, and sets the status.
    async fn propagate(&self, secret: Arc<PartialObjectMeta<Secret>>) -> Result<Action, Error> {
        let (api, ctx, targets, existing) = (&self.api, &self.ctx, &self.targets, &self.existing);
        let namespace = secret.namespace().unwrap_or_default();
        let name = secret.name_any();
        let uid = secret.uid().unwrap_or_default();
        let Some(source) = Source::read(&ctx.client, &namespace, &name).await? else {
            set_status(
                api,
                &secret,
                ISSUES,
                Some("the existing Secret behind this credential is missing".into()),
            )
            .await?;
            return Ok(Action::requeue(Duration::from_secs(30)));
        };
        // Only copies that are missing or stale are written; the index says which.
        let hash = source.hash();
        let stale: Vec<String> = targets
            .iter()
            .filter(|ns| existing.get(ns.as_str()) != Some(&hash))
            .cloned()
            .collect();
        let results: Vec<_> = futures::stream::iter(stale)
            .map(|ns| {
                let (source, client, present) = (&source, &ctx.client, existing.contains_key(&ns));
                async move {
                    if present {
                        source.ensure(client, &ns).await
                    } else {
                        source.create_first(client, &ns).await
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        drop(source);
        let mut problems: Vec<String> = results
            .into_iter()
            .filter_map(Result::err)
            .map(|e| e.to_string())
            .collect();
        let copy = crate::model::copy::copy_name(&name);
        let orphans: Vec<&String> = existing
            .keys()
            .filter(|ns| !targets.contains(ns.as_str()))
            .collect();
        for ns in orphans {
            if let Err(e) = copies::delete_copy(&ctx.client, ns, &copy, &uid, &name).await {
                problems.push(format!("namespace {ns}: could not remove the copy: {e}"));
            }
        }
        problems.sort();
        if problems.is_empty() {
            set_status(api, &secret, NO_ISSUES, None).await?;
        } else {
            warn!(%namespace, %name, problems = problems.len(), "propagation has issues");
            set_status(api, &secret, ISSUES, Some(problems.join("; "))).await?;
        }
        Ok(Action::requeue(Duration::from_secs(300)))
    }
}

/// Writes `run.ai/status` and `run.ai/status-message` when they differ.
pub(crate) async fn set_status(
    api: &Api<PartialObjectMeta<Secret>>,
    secret: &PartialObjectMeta<Secret>,
    status: &str,
    message: Option<String>,
) -> Result<(), kube::Error> {
    let current = (
        secret.annotations().get(annotation::STATUS),
        secret.annotations().get(annotation::STATUS_MESSAGE),
    );
    if current.0.map(String::as_str) == Some(status) && current.1 == message.as_ref() {
        return Ok(());
    }
    let patch = json!({"metadata": {"annotations": {annotation::STATUS: status, annotation::STATUS_MESSAGE: message}}});
    api.patch_metadata(
        &secret.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}
