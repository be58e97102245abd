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
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

use crate::copies::{self, MANAGED_LABEL, SOURCE_ANNOTATION, Source};
use crate::credential::{Scope, annotation};
use crate::watch::SharedIndex;

/// Finalizer that keeps a source until its copies are gone.
pub const FINALIZER: &str = "credgate.run.ai/copies";
/// Status values (the seeds' words).
pub const CREATING: &str = "Creating…";
pub const NO_ISSUES: &str = "No issues found";
pub const ISSUES: &str = "Issues found";
pub const DELETING: &str = "Deleting…";
/// Copies written at once.
pub const CONCURRENCY: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the cluster index is not synced yet")]
    NotSynced,
}

struct Ctx {
    client: Client,
    index: SharedIndex,
    credentials_namespace: String,
}

/// Runs the controller while this replica holds the leader Lease.
pub async fn run(
    client: Client,
    index: SharedIndex,
    credentials_namespace: String,
    lease_namespace: String,
    namespaces_changed: tokio::sync::watch::Receiver<u64>,
) {
    loop {
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
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        let (mut leader, task) = manager.watch().await;
        while !*leader.borrow_and_update() {
            if leader.changed().await.is_err() {
                break;
            }
        }
        if *leader.borrow() {
            info!("leading: propagating credentials");
            let controller = controller(
                client.clone(),
                index.clone(),
                credentials_namespace.clone(),
                namespaces_changed.clone(),
            );
            tokio::select! {
                () = controller => {}
                _ = async { while leader.changed().await.is_ok() && *leader.borrow() {} } => {
                    warn!("lost the leader Lease; another replica propagates now");
                }
            }
        }
        drop(leader);
        let _ = task.await;
    }
}

async fn controller(
    client: Client,
    index: SharedIndex,
    credentials_namespace: String,
    namespaces_changed: tokio::sync::watch::Receiver<u64>,
) {
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
    controller
        .reconcile_all_on(namespace_ticks)
        .watches(
            Api::<PartialObjectMeta<Secret>>::all(client),
            watcher::Config::default().labels(&format!("{MANAGED_LABEL}=true")),
            |copy| {
                let source = copy
                    .annotations()
                    .get(SOURCE_ANNOTATION)
                    .cloned()
                    .unwrap_or_default();
                source
                    .split_once('/')
                    .map(|(ns, name)| ObjectRef::new(name).within(ns))
            },
        )
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

fn error_policy(_: Arc<PartialObjectMeta<Secret>>, error: &Error, _: Arc<Ctx>) -> Action {
    match error {
        Error::NotSynced => Action::requeue(Duration::from_secs(1)),
        Error::Kube(e) => {
            warn!(error = %e, "propagation failed; retrying");
            Action::requeue(Duration::from_secs(5))
        }
    }
}

async fn reconcile(secret: Arc<PartialObjectMeta<Secret>>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let namespace = secret.namespace().unwrap_or_default();
    let name = secret.name_any();
    let meta = crate::policy::object_meta(&secret.metadata, &namespace);
    if !meta.is_credential() {
        return Ok(Action::await_change());
    }
    let (scope, targets, backs, existing) = {
        let index = ctx.index.read().unwrap_or_else(|e| e.into_inner());
        if index.not_synced().is_some() {
            return Err(Error::NotSynced);
        }
        let backs: Vec<String> = index
            .secrets_in(&namespace)
            .filter(|(_, info)| info.existing_secret.as_deref() == Some(name.as_str()))
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
        let existing = index.copies_named(&copies::copy_name(&name));
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
    let uid = secret.uid().unwrap_or_default();
    let api: Api<PartialObjectMeta<Secret>> = Api::namespaced(ctx.client.clone(), &namespace);

    if secret.metadata.deletion_timestamp.is_some() {
        set_status(&api, &secret, DELETING, None).await?;
        for (ns, copy) in copies::copies_of(&ctx.client, &uid).await? {
            copies::delete_copy(&ctx.client, &ns, &copy, &uid).await?;
        }
        let finalizers: Vec<String> = secret
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": secret.resource_version()}});
        api.patch_metadata(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        info!(%namespace, %name, "copies removed; credential released");
        return Ok(Action::await_change());
    }
    if !secret.finalizers().iter().any(|f| f == FINALIZER) {
        let mut finalizers = secret.finalizers().to_vec();
        finalizers.push(FINALIZER.to_owned());
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": secret.resource_version()}});
        api.patch_metadata(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        // The change re-triggers this reconcile.
        return Ok(Action::await_change());
    }
    let Some(source) = Source::read(&ctx.client, &namespace, &name).await? else {
        set_status(
            &api,
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
    let copy = copies::copy_name(&name);
    let orphans: Vec<&String> = existing
        .keys()
        .filter(|ns| !targets.contains(ns.as_str()))
        .collect();
    for ns in orphans {
        if let Err(e) = copies::delete_copy(&ctx.client, ns, &copy, &uid).await {
            problems.push(format!("namespace {ns}: could not remove the copy: {e}"));
        }
    }
    problems.sort();
    if problems.is_empty() {
        set_status(&api, &secret, NO_ISSUES, None).await?;
    } else {
        warn!(%namespace, %name, problems = problems.len(), "propagation has issues");
        set_status(&api, &secret, ISSUES, Some(problems.join("; "))).await?;
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Writes `run.ai/status` and `run.ai/status-message` when they differ.
async fn set_status(
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
