//! Watches that keep the [`Index`] current (kube-runtime watchers).
//!
//! - Namespaces and Secrets are watched as metadata only (`PartialObjectMeta`):
//!   credgate never holds secret data in its cache.
//! - Each workload kind is watched whole, but every object is reduced at once
//!   to the names it references and dropped.
//!
//! A source counts as synced after its first complete list. After
//! [`FAILURES_BEFORE_UNSYNCED`] failures in a row (the watcher backs off between
//! them) it counts as not synced until it has listed again, so state-dependent
//! rules deny instead of trusting a stale cache.

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Pod, PodTemplate, Secret};
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::{Arc, RwLock};
use tracing::{info, warn};

use crate::credential::label;
use crate::index::{Index, NamespaceInfo, SecretInfo};
use crate::server::health::Health;
use crate::workload::{PodParts, WorkloadKind, references};

/// Failures in a row after which a source counts as not synced.
pub const FAILURES_BEFORE_UNSYNCED: u32 = 3;

/// The readiness gate the watches hold closed until every source has synced.
pub const GATE: &str = "cluster state";

/// The shared snapshot.
pub type SharedIndex = Arc<RwLock<Index>>;

/// Every source, by the name readiness and denials report.
pub fn sources() -> Vec<&'static str> {
    let mut s = vec!["namespaces", "secrets"];
    s.extend(WorkloadKind::ALL.iter().map(|k| k.as_str()));
    s
}

/// A new index waiting for every source, and the readiness gate closed.
pub fn new_index(health: &Health) -> SharedIndex {
    health.gate(GATE);
    Arc::new(RwLock::new(Index::waiting_for(&sources())))
}

/// Runs every watch until the process ends.
/// `namespaces_changed` ticks after each namespace event has reached the index
/// (the controller reconciles every source on it).
pub async fn run(
    client: Client,
    index: SharedIndex,
    health: Arc<Health>,
    credentials_namespace: String,
    namespaces_changed: tokio::sync::watch::Sender<u64>,
) {
    let ctx = Ctx { index, health };
    let ns = {
        let ctx = ctx.clone();
        let stream = watcher(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff();
        drive(
            ctx.clone(),
            "namespaces",
            stream,
            Buffer::<(String, NamespaceInfo)>::default(),
            move |index, event| {
                let step = namespace_event(index, event);
                namespaces_changed.send_modify(|n| *n = n.wrapping_add(1));
                step
            },
        )
    };
    let secrets = {
        let stream = watcher(
            Api::<PartialObjectMeta<Secret>>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .inspect(release_claims(client.clone()));
        drive(
            ctx.clone(),
            "secrets",
            stream,
            Buffer::default(),
            move |index, event| secret_event(index, event, &credentials_namespace),
        )
    };
    let workloads = futures::future::join_all(vec![
        watch_kind::<Pod>(&client, &ctx),
        watch_kind::<Deployment>(&client, &ctx),
        watch_kind::<StatefulSet>(&client, &ctx),
        watch_kind::<DaemonSet>(&client, &ctx),
        watch_kind::<ReplicaSet>(&client, &ctx),
        watch_kind::<Job>(&client, &ctx),
        watch_kind::<CronJob>(&client, &ctx),
        watch_kind::<PodTemplate>(&client, &ctx),
    ]);
    tokio::join!(ns, secrets, workloads);
}

#[derive(Clone)]
struct Ctx {
    index: SharedIndex,
    health: Arc<Health>,
}

impl Ctx {
    fn update<R>(&self, f: impl FnOnce(&mut Index) -> R) -> R {
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        let result = f(&mut index);
        match index.not_synced() {
            None => self.health.open(GATE),
            Some(_) => self.health.gate(GATE),
        }
        result
    }
}

/// Items of a relist, applied at `InitDone` so that objects deleted while the
/// watch was down disappear too.
type Buffer<T> = Option<Vec<T>>;

fn namespace_event(
    index: &mut Index,
    event: Event<PartialObjectMeta<Namespace>>,
) -> Step<(String, NamespaceInfo)> {
    let info = |ns: &PartialObjectMeta<Namespace>| NamespaceInfo {
        project: ns.labels().get(label::PROJECT).cloned(),
        department: ns.labels().get(label::DEPARTMENT).cloned(),
        terminating: ns.metadata.deletion_timestamp.is_some(),
    };
    match event {
        Event::Apply(ns) => index.set_namespace(&ns.name_any(), info(&ns)),
        Event::Delete(ns) => index.remove_namespace(&ns.name_any()),
        Event::Init => return Step::Begin,
        Event::InitApply(ns) => return Step::Item((ns.name_any(), info(&ns))),
        Event::InitDone => return Step::Done,
    }
    Step::Applied
}

/// When a credential backed by an existing Secret is gone, its claim goes too
/// (best effort: a stale claim is also taken over later; see [`crate::claims`]).
fn release_claims(
    client: Client,
) -> impl FnMut(&Result<Event<PartialObjectMeta<Secret>>, watcher::Error>) {
    move |event| {
        let Ok(Event::Delete(secret)) = event else {
            return;
        };
        let Some(existing) = secret
            .annotations()
            .get(crate::credential::annotation::EXISTING_SECRET)
            .cloned()
        else {
            return;
        };
        let (client, namespace, holder) = (
            client.clone(),
            secret.namespace().unwrap_or_default(),
            secret.name_any(),
        );
        tokio::spawn(async move {
            if let Err(error) =
                crate::claims::release(&client, &namespace, &existing, &holder).await
            {
                warn!(%error, %namespace, %holder, "could not release an existing-secret claim");
            }
        });
    }
}

/// The index entry of a labelled Secret; `None` for other Secrets.
pub fn secret_info(
    secret: &PartialObjectMeta<Secret>,
    credentials_namespace: &str,
) -> Option<((String, String), SecretInfo)> {
    let namespace = secret.namespace().unwrap_or_default();
    let name = secret.name_any();
    let meta = crate::policy::object_meta(&secret.metadata, &namespace);
    if !meta.is_credential() {
        return None;
    }
    let info = SecretInfo::from_meta(
        &meta,
        secret.uid().as_deref().unwrap_or_default(),
        credentials_namespace,
    );
    Some(((namespace.clone(), name.clone()), info))
}

fn is_copy(secret: &PartialObjectMeta<Secret>) -> bool {
    secret
        .labels()
        .get(crate::copies::MANAGED_LABEL)
        .map(String::as_str)
        == Some("true")
}

fn secret_event(
    index: &mut Index,
    event: Event<PartialObjectMeta<Secret>>,
    credentials_namespace: &str,
) -> Step<((String, String), SecretInfo)> {
    match &event {
        Event::Apply(s) | Event::InitApply(s) if is_copy(s) => {
            let hash = s
                .annotations()
                .get(crate::copies::HASH_ANNOTATION)
                .map_or("", String::as_str);
            index.set_copy(
                &s.namespace().unwrap_or_default(),
                &s.name_any(),
                Some(hash),
            );
            return Step::Applied;
        }
        Event::Delete(s) if is_copy(s) => {
            index.set_copy(&s.namespace().unwrap_or_default(), &s.name_any(), None);
            return Step::Applied;
        }
        _ => {}
    }
    match event {
        Event::Apply(s) => match secret_info(&s, credentials_namespace) {
            Some(((ns, name), info)) => index.set_secret(&ns, &name, info),
            // A label removed: it is no longer a credential.
            None => index.remove_secret(&s.namespace().unwrap_or_default(), &s.name_any()),
        },
        Event::Delete(s) => index.remove_secret(&s.namespace().unwrap_or_default(), &s.name_any()),
        Event::Init => return Step::Begin,
        Event::InitApply(s) => {
            return match secret_info(&s, credentials_namespace) {
                Some(item) => Step::Item(item),
                None => Step::Applied,
            };
        }
        Event::InitDone => return Step::Done,
    }
    Step::Applied
}

enum Step<T> {
    Applied,
    Begin,
    Item(T),
    Done,
}

trait Replace: Sized {
    fn replace_all(index: &mut Index, items: Vec<Self>);
}

impl Replace for (String, NamespaceInfo) {
    fn replace_all(index: &mut Index, items: Vec<Self>) {
        index.replace_namespaces(items);
    }
}

impl Replace for ((String, String), SecretInfo) {
    fn replace_all(index: &mut Index, items: Vec<Self>) {
        index.replace_secrets(items);
    }
}

async fn drive<K, T: Replace>(
    ctx: Ctx,
    source: &'static str,
    stream: impl Stream<Item = Result<Event<K>, watcher::Error>>,
    mut buffer: Buffer<T>,
    mut on_event: impl FnMut(&mut Index, Event<K>) -> Step<T>,
) {
    futures::pin_mut!(stream);
    let mut failures = 0u32;
    while let Some(event) = stream.next().await {
        match event {
            Ok(event) => {
                failures = 0;
                ctx.update(|index| match on_event(index, event) {
                    Step::Applied => {}
                    Step::Begin => buffer = Some(Vec::new()),
                    Step::Item(item) => buffer.get_or_insert_default().push(item),
                    Step::Done => {
                        T::replace_all(index, buffer.take().unwrap_or_default());
                        index.mark_synced(source);
                        info!(source, "watch synced");
                    }
                });
            }
            Err(error) => {
                failures += 1;
                warn!(source, %error, failures, "watch failed; retrying with backoff");
                if failures == FAILURES_BEFORE_UNSYNCED {
                    ctx.update(|index| index.mark_unsynced(source, "watch failing"));
                }
            }
        }
    }
}

fn watch_kind<K>(
    client: &Client,
    ctx: &Ctx,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
where
    K: PodParts
        + Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let kind = K::KIND;
    let api = Api::<K>::all(client.clone());
    let ctx = ctx.clone();
    Box::pin(async move {
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        futures::pin_mut!(stream);
        let source = kind.as_str();
        let mut failures = 0u32;
        let mut seen: Option<HashSet<(String, String)>> = None;
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    failures += 1;
                    warn!(source, %error, failures, "watch failed; retrying with backoff");
                    if failures == FAILURES_BEFORE_UNSYNCED {
                        ctx.update(|index| index.mark_unsynced(source, "watch failing"));
                    }
                    continue;
                }
            };
            failures = 0;
            let reduce = |obj: &K| {
                let (meta, spec) = obj.pod_parts();
                (
                    obj.meta().namespace.clone().unwrap_or_default(),
                    obj.meta().name.clone().unwrap_or_default(),
                    references(meta, spec),
                )
            };
            match event {
                Event::Apply(obj) | Event::InitApply(obj) => {
                    let (ns, name, refs) = reduce(&obj);
                    drop(obj);
                    if let Some(seen) = seen.as_mut() {
                        seen.insert((ns.clone(), name.clone()));
                    }
                    ctx.update(|index| index.set_workload(kind, &ns, &name, refs));
                }
                Event::Delete(obj) => {
                    let (ns, name, _) = reduce(&obj);
                    ctx.update(|index| index.remove_workload(kind, &ns, &name));
                }
                Event::Init => seen = Some(HashSet::new()),
                Event::InitDone => {
                    let keep = seen.take().unwrap_or_default();
                    ctx.update(|index| {
                        index.retain_workloads(kind, &keep);
                        index.mark_synced(source);
                    });
                    info!(source, "watch synced");
                }
            }
        }
    })
}
