//! Watches that keep the [`Index`] current: one generic loop over
//! kube-runtime watchers, and one [`Mirror`] per source that says how its
//! objects map into the index (in the style of kube-runtime's `reflector`).
//!
//! - Namespaces and Secrets are watched as metadata only (`PartialObjectMeta`):
//!   credgate never holds secret data in its cache.
//! - Each workload kind of the table ([`crate::model::workload::KINDS`]) is
//!   watched whole, but every object is reduced at once to the names it
//!   references and dropped.
//!
//! A relist applies what it lists as it comes and, when it is done, drops
//! what it did not list ([`Mirror::retain`]), so objects deleted while the
//! watch was down disappear too. A source counts as synced after its first
//! complete list. After [`FAILURES_BEFORE_UNSYNCED`] failures in a row (the
//! watcher backs off between them) it counts as not synced until it has
//! listed again, so state-dependent rules deny instead of trusting a stale
//! cache. The readiness gate [`GATE`] follows the index after every event.

use futures::future::Either;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Client, ResourceExt};
use std::collections::HashSet;
use std::sync::Arc;
use tracing::{debug, info, warn};

use crate::model::copy::{HASH_ANNOTATION, MANAGED_LABEL, SOURCE_ANNOTATION};
use crate::model::credential::{annotation, label, object_meta};
use crate::model::workload::{KindVisitor, Workload, WorkloadKind, references, visit};
use crate::state::SharedIndex;
use crate::state::access::{self, SecretAccess};
use crate::state::connections::{Slot, WatchClients};
use crate::state::health::Health;
use crate::state::index::{Index, NamespaceInfo, SecretInfo};

/// Failures in a row after which a source counts as not synced.
pub const FAILURES_BEFORE_UNSYNCED: u32 = 3;

/// The readiness gate the watches hold closed until every source has synced.
pub const GATE: &str = "cluster state";

/// Workloads per page of a (re)list, where the API server does not stream
/// initial events (see [`initial_events`]). Each object is reduced to its
/// references as it comes, so at most one page of tenants' whole objects is in
/// memory at once, however many they store (the e2e test `stored_workloads`
/// measures the peak with 30 MB of them).
pub const WORKLOAD_PAGE: u32 = 20;

/// Objects per page of a (re)list of metadata (Namespaces, credgate's
/// RoleBindings), where the API server does not stream initial events:
/// kube-runtime's default. Only administrators make these.
const METADATA_PAGE: u32 = 500;

/// Secrets per page of a namespace's (re)list. Tenants make these, each with
/// up to 256 KiB of annotations (and their managed fields), and kube-rs holds
/// a page twice (its text, then the objects): 20 bound that to about 20 MiB
/// however a tenant fills a namespace.
const SECRET_PAGE: u32 = 20;

/// How long a namespace's Secret watch lasts before it is made again, in
/// seconds: drawn from `[5, 10)` minutes (client-go's reflectors' range) once
/// for each namespace's watcher, which keeps its length. kube-rs asks every
/// watch for 290 s; 10,000 watches started together then all came back
/// together every 290 s, a wave of requests to the API server (and through
/// credgate's workers). Each namespace's watch rides an HTTP/2 connection
/// that is pinged every 30 s, so a dead connection is still found in under a
/// minute; a stream stalled on a live connection now waits up to the watch's
/// length (plus kube-rs's 5 s) instead of 295 s.
const SECRET_WATCH_SECONDS: std::ops::Range<u32> = 300..600;

/// A watch length from [`SECRET_WATCH_SECONDS`], drawn anew for each namespace's watcher.
fn secret_watch_seconds() -> u32 {
    fastrand::u32(SECRET_WATCH_SECONDS)
}

/// A watch of `api` whose initial state, and every relist, arrives as a
/// stream of events (`sendInitialEvents`: served from the API server's cache,
/// on by default since Kubernetes 1.34): no pages to wait for, and one object
/// in memory at a time. With 100,000 pods, pages of [`WORKLOAD_PAGE`] took
/// minutes. A server that refuses it (the WatchList feature off, as by
/// default in 1.33: 422 or 400) is listed in pages of `page` objects instead,
/// for as long as the process lives. `config` selects the objects (labels).
pub fn initial_events<K>(
    api: Api<K>,
    config: watcher::Config,
    page: u32,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    struct Watch<K> {
        api: Api<K>,
        config: watcher::Config,
        page: u32,
        streaming: bool,
        events: futures::stream::BoxStream<'static, Result<Event<K>, watcher::Error>>,
    }
    let events = watcher(api.clone(), config.clone().streaming_lists()).boxed();
    let start = Watch {
        api,
        config,
        page,
        streaming: true,
        events,
    };
    futures::stream::unfold(start, |mut watch| async move {
        loop {
            match watch.events.next().await {
                Some(Err(error)) if watch.streaming && refuses_streaming(&error) => {
                    warn!(%error, "the API server does not stream initial events (WatchList); listing in pages instead");
                    watch.streaming = false;
                    let paged = watch.config.clone().page_size(watch.page);
                    watch.events = watcher(watch.api.clone(), paged).boxed();
                }
                Some(item) => return Some((item, watch)),
                None => return None,
            }
        }
    })
}

/// Whether the API server refused a watch with `sendInitialEvents`.
fn refuses_streaming(error: &watcher::Error) -> bool {
    let code = match error {
        watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::InitialListFailed(kube::Error::Api(status)) => status.code,
        watcher::Error::WatchError(status) => status.code,
        _ => return false,
    };
    code == 422 || code == 400
}

/// An object's identity in a relist: (namespace, name); `""` for cluster-scoped objects.
pub type Key = (String, String);

/// Every source, by the name readiness and denials report.
pub fn sources() -> Vec<&'static str> {
    let mut s = vec!["namespaces", "bindings", "secrets"];
    s.extend(WorkloadKind::ALL.iter().map(|k| k.as_str()));
    s
}

/// A new index waiting for every source, and the readiness gate closed.
pub fn new_index(health: &Health) -> SharedIndex {
    health.gate(GATE);
    Arc::new(std::sync::RwLock::new(Index::waiting_for(&sources())))
}

/// How the objects of one watched resource map into the index.
pub trait Mirror {
    type Object;
    /// The source's name, as readiness and denials report it.
    fn source(&self) -> &'static str;
    /// Applies an object the watch shows (listed, created or changed). Returns
    /// its key when the index now holds something for it.
    fn apply(&mut self, index: &mut Index, object: Self::Object) -> Option<Key>;
    /// Removes a deleted object.
    fn delete(&mut self, index: &mut Index, object: Self::Object);
    /// After a complete list: drops whatever the index holds that it did not list.
    fn retain(&mut self, index: &mut Index, listed: &HashSet<Key>);
    /// Marks the source synced after a complete list (by default, the
    /// source's own entry of the index); returns whether to say so in the log.
    fn synced(&mut self, index: &mut Index) -> bool {
        index.mark_synced(self.source());
        true
    }
    /// Marks the source not synced, and why.
    fn unsynced(&mut self, index: &mut Index, why: &str) {
        index.mark_unsynced(self.source(), why);
    }
}

/// The generic watch → index step: applies one watch event through a
/// [`Mirror`], tracks a relist, and counts failures in a row.
pub struct Reflector<M> {
    mirror: M,
    failures: u32,
    /// Keys listed so far by the relist in progress.
    listed: Option<HashSet<Key>>,
}

impl<M: Mirror> Reflector<M> {
    pub fn new(mirror: M) -> Self {
        Reflector {
            mirror,
            failures: 0,
            listed: None,
        }
    }

    /// Applies one event of the watch stream to `index`. Returns true when
    /// the source has just been marked not synced: the watch should start
    /// again, so that it lists (a watcher that resumes from its last version
    /// after failures never does, and the source would stay not synced).
    pub fn handle<E: std::fmt::Display>(
        &mut self,
        index: &mut Index,
        event: Result<Event<M::Object>, E>,
    ) -> bool {
        let source = self.mirror.source();
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                self.failures += 1;
                let failures = self.failures;
                warn!(source, %error, failures, "watch failed; retrying with backoff");
                if failures == FAILURES_BEFORE_UNSYNCED {
                    self.mirror.unsynced(index, "watch failing");
                    return true;
                }
                return false;
            }
        };
        self.failures = 0;
        match event {
            Event::Init => self.listed = Some(HashSet::new()),
            Event::InitApply(object) | Event::Apply(object) => {
                let key = self.mirror.apply(index, object);
                if let (Some(listed), Some(key)) = (self.listed.as_mut(), key) {
                    listed.insert(key);
                }
            }
            Event::Delete(object) => self.mirror.delete(index, object),
            Event::InitDone => {
                let listed = self.listed.take().unwrap_or_default();
                self.mirror.retain(index, &listed);
                if self.mirror.synced(index) {
                    info!(source, "watch synced");
                }
            }
        }
        false
    }
}

/// Where the watches write: the index, and the readiness that follows it.
#[derive(Clone)]
pub struct Writer {
    pub index: SharedIndex,
    pub health: Arc<Health>,
}

impl Writer {
    fn update<R>(&self, f: impl FnOnce(&mut Index) -> R) -> R {
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        let result = f(&mut index);
        index.settle_secrets();
        index.ring();
        match index.not_synced() {
            None => self.health.open(GATE),
            Some(_) => self.health.gate(GATE),
        }
        result
    }

    /// Drives the watch `watch` makes through `mirror` until it ends (it
    /// does not, for a kube-runtime watcher with backoff), making a new one
    /// when the source has failed [`FAILURES_BEFORE_UNSYNCED`] times in a row;
    /// returns the source's name.
    pub async fn mirror<M: Mirror, S>(
        &self,
        mut watch: impl FnMut() -> S,
        mirror: M,
    ) -> &'static str
    where
        S: Stream<Item = Result<Event<M::Object>, watcher::Error>>,
    {
        let source = mirror.source();
        let mut reflector = Reflector::new(mirror);
        loop {
            let stream = watch();
            futures::pin_mut!(stream);
            loop {
                let Some(event) = stream.next().await else {
                    return source;
                };
                if self.update(|index| reflector.handle(index, event)) {
                    break;
                }
            }
        }
    }
}

/// A credential backed by an existing Secret was deleted: its claim can go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimRelease {
    pub namespace: String,
    pub existing_secret: String,
    pub holder: String,
}

/// What the Secret watches tell the rest of credgate.
#[derive(Clone)]
pub struct Outlets {
    /// Ticks after each namespace event has reached the index (the controller
    /// reconciles every source on it, and the Secret watches follow it); also
    /// when a copy change could not be queued.
    pub namespaces_changed: tokio::sync::watch::Sender<u64>,
    /// Deleted credentials that were backed by an existing Secret (best
    /// effort: a full channel drops one, and a stale claim is taken over later
    /// anyway).
    pub claim_releases: tokio::sync::mpsc::Sender<ClaimRelease>,
    /// The source credential (namespace, name) of each managed copy that
    /// changed or went (the controller puts it back). When full, a tick of
    /// `namespaces_changed` has the controller look at every source instead.
    pub copy_changes: tokio::sync::mpsc::Sender<(String, String)>,
}

impl Outlets {
    fn tick(&self) {
        self.namespaces_changed
            .send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Runs every watch; returns (with the source's name) as soon as one ends,
/// which the process treats as fatal.
pub async fn run(
    client: Client,
    secret_clients: WatchClients,
    writer: Writer,
    access: Option<SecretAccess>,
    credentials_namespace: String,
    outlets: Outlets,
) -> &'static str {
    let mut all: Vec<futures::future::BoxFuture<'static, &'static str>> = Vec::new();
    {
        let writer = writer.clone();
        let api = Api::<PartialObjectMeta<Namespace>>::all(client.clone());
        let watch = move || {
            initial_events(api.clone(), watcher::Config::default(), METADATA_PAGE).default_backoff()
        };
        let namespaces = Namespaces {
            changed: outlets.namespaces_changed.clone(),
            credentials_namespace: credentials_namespace.clone(),
        };
        all.push(Box::pin(
            async move { writer.mirror(watch, namespaces).await },
        ));
    }
    {
        let writer = writer.clone();
        let api = Api::<PartialObjectMeta<RoleBinding>>::all(client.clone());
        let selector = format!("{}=true", access::BINDING_LABEL);
        let watch = move || {
            let config = watcher::Config::default().labels(&selector);
            initial_events(api.clone(), config, METADATA_PAGE).default_backoff()
        };
        let bindings = Bindings {
            changed: outlets.namespaces_changed.clone(),
        };
        all.push(Box::pin(
            async move { writer.mirror(watch, bindings).await },
        ));
    }
    all.push(Box::pin(secret_watches(
        client.clone(),
        secret_clients,
        writer.clone(),
        access,
        credentials_namespace,
        outlets,
    )));
    for kind in WorkloadKind::ALL {
        all.push(visit(
            kind,
            WatchKind {
                client: client.clone(),
                writer: writer.clone(),
            },
        ));
    }
    futures::future::select_all(all).await.0
}

/// Longest wait between two attempts to bind read access in a namespace.
const GRANT_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// The wait after the `refusals`+1-th failed attempt in a row to bind read
/// access: 250 ms, doubling, at most [`GRANT_BACKOFF_MAX`].
fn grant_backoff(refusals: u32) -> std::time::Duration {
    (std::time::Duration::from_millis(250) * 2u32.pow(refusals.min(7))).min(GRANT_BACKOFF_MAX)
}

/// Namespaces whose access is checked or bound, or whose Secrets are listed
/// for the first time, at once (a start in a cluster with 10,000 projects
/// makes 10,000 of them).
const LISTS_AT_ONCE: usize = 32;

/// One running Secret watch.
struct Running {
    task: tokio::task::AbortHandle,
    slot: Slot,
    generation: u64,
}

/// Keeps one Secret watch per namespace the index says to watch (see
/// [`Index::watch_secrets_in`]): project namespaces, the credentials namespace,
/// and any that still hold a credential or a copy. Each starts once credgate
/// may read there ([`SecretAccess::grant`]); one that is no longer needed
/// stops, and its RoleBinding goes; a namespace watched again (a new
/// generation) gets a new watch. Follows the namespace ticks. The watches
/// share HTTP/2 connections ([`WatchClients`]); `client` binds.
async fn secret_watches(
    client: Client,
    mut clients: WatchClients,
    writer: Writer,
    access: Option<SecretAccess>,
    credentials_namespace: String,
    outlets: Outlets,
) -> &'static str {
    let mut ticks = outlets.namespaces_changed.subscribe();
    let mut running: std::collections::HashMap<String, Running> = Default::default();
    // Bindings being removed: a watch that starts again there waits for it.
    let mut revoking: std::collections::HashMap<String, tokio::task::JoinHandle<()>> =
        Default::default();
    let grants = Arc::new(tokio::sync::Semaphore::new(LISTS_AT_ONCE));
    let mut tasks: tokio::task::JoinSet<()> = tokio::task::JoinSet::new();
    let mut bindings_listed = false;
    loop {
        // Once credgate's bindings have been listed, so that a namespace
        // where it is bound starts its watch without checking access first.
        let changes = {
            let mut index = writer.index.write().unwrap_or_else(|e| e.into_inner());
            bindings_listed = bindings_listed || index.source_synced("bindings");
            if bindings_listed {
                index.take_secret_watch_changes()
            } else {
                Vec::new()
            }
        };
        if !changes.is_empty() {
            revoking.retain(|_, revoke| !revoke.is_finished());
        }
        for (namespace, wanted) in changes {
            if running
                .get(&namespace)
                .is_some_and(|watch| Some(watch.generation) == wanted)
            {
                continue;
            }
            if let Some(watch) = running.remove(&namespace) {
                watch.task.abort();
                clients.give_back(watch.slot);
                if wanted.is_none()
                    && let Some(access) = access.clone()
                {
                    let client = client.clone();
                    let revoke = tokio::spawn({
                        let namespace = namespace.clone();
                        async move {
                            if let Err(error) = access.revoke(&client, &namespace).await {
                                warn!(%namespace, %error, "could not remove credgate's read access to Secrets");
                            }
                        }
                    });
                    revoking.insert(namespace.clone(), revoke);
                }
            }
            let Some(generation) = wanted else {
                continue;
            };
            let mirror = Secrets {
                namespace: namespace.clone(),
                generation,
                credentials_namespace: credentials_namespace.clone(),
                outlets: outlets.clone(),
                first_list: None,
            };
            let (slot, watch_client) = clients.take().unwrap_or_else(|error| {
                warn!(%error, "no HTTP/2 client for the Secret watches; using the shared client");
                (Slot::default(), client.clone())
            });
            let start = Start {
                client: client.clone(),
                access: access.clone(),
                after: revoking.remove(&namespace),
                grants: grants.clone(),
            };
            let task = tasks.spawn(watch_namespace(start, watch_client, writer.clone(), mirror));
            running.insert(
                namespace,
                Running {
                    task,
                    slot,
                    generation,
                },
            );
        }
        tokio::select! {
            changed = ticks.changed() => if changed.is_err() {
                return "secrets";
            },
            Some(ended) = tasks.join_next() => if !cancelled(ended) {
                return "secrets";
            },
        }
        // Aborted watches, all at once (not one pass each).
        while let Some(ended) = tasks.try_join_next() {
            if !cancelled(ended) {
                return "secrets";
            }
        }
    }
}

/// Whether a watch task ended because it was stopped (a watch loops with
/// backoff: one that ends or panics otherwise is fatal).
fn cancelled(ended: Result<(), tokio::task::JoinError>) -> bool {
    matches!(ended, Err(e) if e.is_cancelled())
}

/// What a namespace's watch needs before it starts.
struct Start {
    /// Binds access (HTTP/1.1, short requests).
    client: Client,
    access: Option<SecretAccess>,
    /// The removal of an earlier binding there, to wait for.
    after: Option<tokio::task::JoinHandle<()>>,
    grants: Arc<tokio::sync::Semaphore>,
}

/// The Secret watch of one namespace (over `watch_client`), once credgate may
/// read there: it checks with one small list, and binds access if refused.
async fn watch_namespace(start: Start, watch_client: Client, writer: Writer, mut mirror: Secrets) {
    let Start {
        client,
        access,
        after,
        grants,
    } = start;
    let (namespace, generation) = (mirror.namespace.clone(), mirror.generation);
    let api = Api::<PartialObjectMeta<Secret>>::namespaced(watch_client, &namespace);
    if let Some(revoke) = after {
        let _ = revoke.await;
    }
    // Where credgate's binding is (after a restart, in most namespaces), the
    // watch starts at once: a refusal binds again (below).
    let bound = {
        let index = writer.index.read().unwrap_or_else(|e| e.into_inner());
        index.is_bound(&namespace)
    };
    if let Some(access) = access.as_ref().filter(|_| !bound) {
        let mut refusals = 0;
        // A consistent read: its `limit` holds on every API server (a read of
        // any version from the cache may ignore it and return the namespace).
        let probe = kube::api::ListParams::default().limit(1);
        loop {
            // Boxed: the watch that follows does not carry its size.
            let granted = Box::pin(async {
                let _permit = grants.acquire().await;
                match api.list_metadata(&probe).await {
                    Ok(_) => Ok(()),
                    Err(_) => access.grant(&client, &namespace).await,
                }
            })
            .await;
            let Err(error) = granted else {
                break;
            };
            warn!(%namespace, %error, "could not bind credgate's read access to Secrets; retrying");
            let why = format!("credgate could not bind read access to its Secrets ({error})");
            writer.update(|index| index.set_secret_watch(&namespace, generation, Some(&why)));
            tokio::time::sleep(grant_backoff(refusals)).await;
            refusals += 1;
        }
    }
    mirror.first_list = grants.acquire_owned().await.ok();
    // Listed in pages, not streamed: the API server serves a namespace's page
    // from its cache's index by prefix, where a streamed start
    // (`sendInitialEvents`) copies every Secret of the cluster for each
    // namespace, which made 10,000 projects take minutes.
    let listed = watcher::Config::default()
        .page_size(SECRET_PAGE)
        .timeout(secret_watch_seconds());
    // Refusals in a row, across the watches `watch` makes.
    let refusals = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let watch = move || {
        let (client, access, namespace, refusals) = (
            client.clone(),
            access.clone(),
            namespace.clone(),
            refusals.clone(),
        );
        watcher(api.clone(), listed.clone())
            .default_backoff()
            .then(move |event| {
                use std::sync::atomic::Ordering::Relaxed;
                if event.is_ok() {
                    refusals.store(0, Relaxed);
                }
                // Someone removed the RoleBinding: bind again (the watch
                // retries). Boxed, as it is rare: each of 10,000 watches
                // would otherwise carry the binding's state.
                let refused = matches!(&event, Err(error) if access::forbidden(error));
                let Some(access) = access.clone().filter(|_| refused) else {
                    return Either::Left(futures::future::ready(event));
                };
                let wait = grant_backoff(refusals.fetch_add(1, Relaxed));
                let (client, namespace) = (client.clone(), namespace.clone());
                Either::Right(Box::pin(async move {
                    if let Err(error) = access.grant(&client, &namespace).await {
                        warn!(%namespace, %error, "could not bind credgate's read access to Secrets again");
                        // Refused again (say, a look-alike binding where
                        // credgate may not replace it): wait longer each time,
                        // so as not to ask the API server every second.
                        tokio::time::sleep(wait).await;
                    }
                    event
                }))
            })
    };
    // Boxed: held inline, the task took half again as much (rustc lays out
    // the steps before it beside it, not over it).
    Box::pin(writer.mirror(watch, mirror)).await;
}

/// Watches one workload kind (reached through the table's [`visit`]).
struct WatchKind {
    client: Client,
    writer: Writer,
}

impl KindVisitor for WatchKind {
    type Output = futures::future::BoxFuture<'static, &'static str>;
    fn visit<K: Workload>(self) -> Self::Output {
        let api = Api::<K>::all(self.client);
        let watch = move || {
            initial_events(api.clone(), watcher::Config::default(), WORKLOAD_PAGE).default_backoff()
        };
        Box::pin(async move {
            self.writer
                .mirror(watch, Workloads::<K>(std::marker::PhantomData))
                .await
        })
    }
}

/// Namespaces: their project and department labels, and whether credgate
/// watches their Secrets (see [`secret_watches`]).
pub struct Namespaces {
    pub changed: tokio::sync::watch::Sender<u64>,
    pub credentials_namespace: String,
}

impl Namespaces {
    fn changed(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl Mirror for Namespaces {
    type Object = PartialObjectMeta<Namespace>;
    fn source(&self) -> &'static str {
        "namespaces"
    }
    fn apply(&mut self, index: &mut Index, ns: Self::Object) -> Option<Key> {
        let name = ns.name_any();
        index.set_namespace(
            &name,
            NamespaceInfo {
                project: ns.labels().get(label::PROJECT).cloned(),
                department: ns.labels().get(label::DEPARTMENT).cloned(),
                terminating: ns.metadata.deletion_timestamp.is_some(),
            },
        );
        if index.project_of(&name).is_some() || name == self.credentials_namespace {
            index.watch_secrets_in(&name);
        }
        // No longer a project, or being deleted: watched for as long as it
        // holds a credential or a copy (their finalizers can still go).
        index.unwatch_secrets_if_idle(&name, &self.credentials_namespace);
        self.changed();
        Some((String::new(), name))
    }
    fn delete(&mut self, index: &mut Index, ns: Self::Object) {
        let name = ns.name_any();
        index.remove_namespace(&name);
        index.unwatch_secrets_in(&name);
        self.changed();
    }
    fn retain(&mut self, index: &mut Index, listed: &HashSet<Key>) {
        index.retain_namespaces(|name| listed.contains(&(String::new(), name.to_owned())));
        let gone: Vec<String> = index
            .secret_watches()
            .map(|(name, _)| name)
            .filter(|name| !listed.contains(&(String::new(), (*name).to_owned())))
            .map(str::to_owned)
            .collect();
        for name in gone {
            index.unwatch_secrets_in(&name);
        }
        self.changed();
    }
}

/// The Secrets of one namespace: labelled ones (credentials and secrets that
/// may back one) and managed copies.
pub struct Secrets {
    pub namespace: String,
    /// The generation of the namespace's watch this is (see
    /// [`Index::watch_secrets_in`]): a watch no longer current writes nothing.
    pub generation: u64,
    pub credentials_namespace: String,
    pub outlets: Outlets,
    /// Held until the first list is done (or fails): at most
    /// [`LISTS_AT_ONCE`] namespaces list at a time, so that 10,000 of them
    /// starting together are not refused by the API server's fairness limits
    /// (429) and left to back off.
    pub first_list: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Secrets {
    fn current(&self, index: &Index) -> bool {
        index.secret_watch_generation(&self.namespace) == Some(self.generation)
    }

    /// Tells the controller that the copy `s` changed or went.
    fn copy_changed(&self, s: &PartialObjectMeta<Secret>) {
        let Some((ns, name)) = s
            .annotations()
            .get(SOURCE_ANNOTATION)
            .and_then(|source| source.split_once('/'))
        else {
            return;
        };
        if let Err(tokio::sync::mpsc::error::TrySendError::Full(_)) = self
            .outlets
            .copy_changes
            .try_send((ns.to_owned(), name.to_owned()))
        {
            self.outlets.tick();
        }
    }

    /// A namespace that stopped being a project, or is being deleted, is
    /// watched until it holds nothing of credgate's; then its watch stops.
    fn maybe_idle(&self, index: &mut Index) {
        if index.unwatch_secrets_if_idle(&self.namespace, &self.credentials_namespace) {
            self.outlets.tick();
        }
    }
}

/// The index entry of a labelled Secret; `None` for other Secrets.
pub fn secret_info(
    secret: &PartialObjectMeta<Secret>,
    credentials_namespace: &str,
) -> Option<(Key, SecretInfo)> {
    let namespace = secret.namespace().unwrap_or_default();
    let name = secret.name_any();
    let meta = object_meta(&secret.metadata, &namespace);
    if !meta.is_credential() {
        return None;
    }
    let mut info = SecretInfo::from_meta(
        &meta,
        secret.uid().as_deref().unwrap_or_default(),
        credentials_namespace,
    );
    info.deleting = secret.metadata.deletion_timestamp.is_some();
    Some(((namespace.clone(), name.clone()), info))
}

fn is_copy(secret: &PartialObjectMeta<Secret>) -> bool {
    secret.labels().get(MANAGED_LABEL).map(String::as_str) == Some("true")
}

impl Mirror for Secrets {
    type Object = PartialObjectMeta<Secret>;
    fn source(&self) -> &'static str {
        "secrets"
    }
    fn apply(&mut self, index: &mut Index, s: Self::Object) -> Option<Key> {
        if !self.current(index) {
            return None;
        }
        let (namespace, name) = (s.namespace().unwrap_or_default(), s.name_any());
        if is_copy(&s) {
            let hash = s
                .annotations()
                .get(HASH_ANNOTATION)
                .map_or("", String::as_str);
            if index.copy_hash(&namespace, &name) != Some(hash) {
                index.set_copy(&namespace, &name, Some(hash));
                self.copy_changed(&s);
            }
            return Some((namespace, name));
        }
        match secret_info(&s, &self.credentials_namespace) {
            Some((key, info)) => {
                index.set_secret(&key.0, &key.1, info);
                Some(key)
            }
            // Not (or no longer) labelled: not a credential.
            None => {
                index.remove_secret(&namespace, &name);
                if index.has_copy(&namespace, &name) {
                    // A copy that lost its label: no longer counted as one.
                    index.set_copy(&namespace, &name, None);
                    self.copy_changed(&s);
                }
                None
            }
        }
    }
    fn delete(&mut self, index: &mut Index, s: Self::Object) {
        if !self.current(index) {
            return;
        }
        let (namespace, name) = (s.namespace().unwrap_or_default(), s.name_any());
        if is_copy(&s) {
            index.set_copy(&namespace, &name, None);
            self.copy_changed(&s);
            self.maybe_idle(index);
            return;
        }
        index.remove_secret(&namespace, &name);
        if let Some(existing) = s.annotations().get(annotation::EXISTING_SECRET) {
            let _ = self.outlets.claim_releases.try_send(ClaimRelease {
                namespace,
                existing_secret: existing.clone(),
                holder: name,
            });
        }
        self.maybe_idle(index);
    }
    fn retain(&mut self, index: &mut Index, listed: &HashSet<Key>) {
        if !self.current(index) {
            return;
        }
        let ns = self.namespace.clone();
        let kept = |name: &str| listed.contains(&(ns.clone(), name.to_owned()));
        index.retain_secrets_in(&self.namespace, kept);
        index.retain_copies_in(&self.namespace, kept);
        self.maybe_idle(index);
    }
    fn synced(&mut self, index: &mut Index) -> bool {
        self.first_list = None;
        index.set_secret_watch(&self.namespace, self.generation, None);
        self.maybe_idle(index);
        debug!(namespace = %self.namespace, "Secret watch synced");
        false
    }
    fn unsynced(&mut self, index: &mut Index, why: &str) {
        self.first_list = None;
        index.set_secret_watch(&self.namespace, self.generation, Some(why));
    }
}

/// credgate's own RoleBindings (label [`access::BINDING_LABEL`]): a namespace
/// with one is watched until it holds nothing of credgate's, whatever its
/// labels, and after a restart too (see [`Index::set_bound`]).
pub struct Bindings {
    pub changed: tokio::sync::watch::Sender<u64>,
}

impl Mirror for Bindings {
    type Object = PartialObjectMeta<RoleBinding>;
    fn source(&self) -> &'static str {
        "bindings"
    }
    fn apply(&mut self, index: &mut Index, b: Self::Object) -> Option<Key> {
        // One being removed (credgate deletes it first, then its finalizer)
        // starts no watch.
        if b.name_any() != access::BINDING || b.metadata.deletion_timestamp.is_some() {
            return None;
        }
        let namespace = b.namespace().unwrap_or_default();
        index.set_bound(&namespace, true);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        Some((namespace, b.name_any()))
    }
    fn delete(&mut self, index: &mut Index, b: Self::Object) {
        index.set_bound(&b.namespace().unwrap_or_default(), false);
    }
    fn retain(&mut self, index: &mut Index, listed: &HashSet<Key>) {
        index.retain_bound(|ns| listed.contains(&(ns.to_owned(), access::BINDING.to_owned())));
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Workloads of one kind, each reduced to the names it references.
pub struct Workloads<K>(pub std::marker::PhantomData<K>);

fn reduce<K: Workload>(object: &K) -> (String, String, Vec<crate::model::workload::Reference>) {
    let (meta, spec) = object.pod_parts();
    (
        object.meta().namespace.clone().unwrap_or_default(),
        object.meta().name.clone().unwrap_or_default(),
        references(meta, spec),
    )
}

impl<K: Workload> Mirror for Workloads<K> {
    type Object = K;
    fn source(&self) -> &'static str {
        K::KIND.as_str()
    }
    fn apply(&mut self, index: &mut Index, object: K) -> Option<Key> {
        let (ns, name, refs) = reduce(&object);
        drop(object);
        let stored = !refs.is_empty();
        index.set_workload(K::KIND, &ns, &name, refs);
        stored.then_some((ns, name))
    }
    fn delete(&mut self, index: &mut Index, object: K) {
        let (ns, name, _) = reduce(&object);
        index.remove_workload(K::KIND, &ns, &name);
    }
    fn retain(&mut self, index: &mut Index, listed: &HashSet<Key>) {
        index.retain_workloads(K::KIND, listed);
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn namespace_watches_last_five_to_ten_minutes_each_its_own() {
        let lengths: HashSet<u32> = (0..100).map(|_| secret_watch_seconds()).collect();
        assert!(lengths.iter().all(|s| SECRET_WATCH_SECONDS.contains(s)));
        // Spread, not one length for all: 100 draws from 300 values.
        assert!(lengths.len() > 50, "{lengths:?}");
    }

    #[test]
    fn binding_attempts_back_off_to_half_a_minute() {
        let waits: Vec<u64> = [0, 1, 2, 6, 7, 8, 1000]
            .into_iter()
            .map(|n| grant_backoff(n).as_millis() as u64)
            .collect();
        assert_eq!(waits, [250, 500, 1000, 16_000, 30_000, 30_000, 30_000]);
    }

    /// A server without WatchList (422 to `sendInitialEvents`) is listed in
    /// pages instead, and the watch syncs all the same.
    #[tokio::test]
    async fn a_server_that_does_not_stream_initial_events_is_listed() {
        use serde_json::json;
        let service = tower::service_fn(|req: http::Request<kube::client::Body>| async move {
            let query = req.uri().query().unwrap_or_default().to_owned();
            let (status, body) = if query.contains("sendInitialEvents=true") {
                (
                    422,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Invalid",
                           "message": "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled", "code": 422}),
                )
            } else if query.contains("watch=true") {
                (200, json!(null))
            } else {
                assert!(query.contains("limit=7"), "{query}");
                // The selection holds in pages too.
                assert!(query.contains("labelSelector=team%3Da"), "{query}");
                (
                    200,
                    json!({"apiVersion": "v1", "kind": "NamespaceList", "metadata": {"resourceVersion": "5"},
                           "items": [{"metadata": {"name": "team-a", "resourceVersion": "4"}}]}),
                )
            };
            let body = if body.is_null() {
                String::new()
            } else {
                body.to_string()
            };
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .status(status)
                    .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))
                    .unwrap(),
            )
        });
        let client = Client::new(service, "default");
        let events: Vec<_> = initial_events(
            Api::<Namespace>::all(client),
            watcher::Config::default().labels("team=a"),
            7,
        )
        .take(3)
        .collect()
        .await;
        let names: Vec<String> = events
            .into_iter()
            .map(|e| match e.expect("no error reaches the mirror") {
                Event::Init => "init".into(),
                Event::InitApply(ns) => ns.name_any(),
                Event::InitDone => "done".into(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["init", "team-a", "done"]);
    }
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    fn index() -> Index {
        Index::waiting_for(&sources())
    }

    fn secret(ns: &str, name: &str, labels: &[(&str, &str)]) -> PartialObjectMeta<Secret> {
        let mut s = PartialObjectMeta::<Secret>::default();
        s.metadata.namespace = Some(ns.into());
        s.metadata.name = Some(name.into());
        s.metadata.uid = Some(format!("uid-{name}"));
        s.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        s
    }

    fn pod(ns: &str, name: &str, env_from: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": ns, "name": name,
                         "annotations": {"run.ai/credentials-env-from": env_from}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}
        }))
        .unwrap()
    }

    struct Received {
        claims: tokio::sync::mpsc::Receiver<ClaimRelease>,
        copies: tokio::sync::mpsc::Receiver<(String, String)>,
        ticks: tokio::sync::watch::Receiver<u64>,
    }

    fn outlets() -> (Outlets, Received) {
        let (claim_releases, claims) = tokio::sync::mpsc::channel(4);
        let (copy_changes, copies) = tokio::sync::mpsc::channel(1);
        let (namespaces_changed, ticks) = tokio::sync::watch::channel(0);
        (
            Outlets {
                namespaces_changed,
                claim_releases,
                copy_changes,
            },
            Received {
                claims,
                copies,
                ticks,
            },
        )
    }

    /// The Secrets of `namespace`, watched (and not listed yet).
    fn secrets(index: &mut Index, namespace: &str) -> (Secrets, Received) {
        index.watch_secrets_in(namespace);
        let (outlets, received) = outlets();
        (
            Secrets {
                namespace: namespace.into(),
                generation: index.secret_watch_generation(namespace).unwrap(),
                credentials_namespace: "runai".into(),
                outlets,
                first_list: None,
            },
            received,
        )
    }

    const GENERIC: (&str, &str) = (label::RESOURCE, "generic");

    #[test]
    fn a_relist_applies_what_it_lists_and_drops_the_rest() {
        let mut index = index();
        let (mirror, _rx) = secrets(&mut index, "a");
        let mut r = Reflector::new(mirror);
        let ok = |e| Ok::<_, String>(e);
        r.handle(&mut index, ok(Event::Init));
        r.handle(
            &mut index,
            ok(Event::InitApply(secret("a", "one", &[GENERIC]))),
        );
        r.handle(
            &mut index,
            ok(Event::InitApply(secret("a", "two", &[GENERIC]))),
        );
        r.handle(&mut index, ok(Event::InitApply(secret("a", "plain", &[]))));
        assert_eq!(
            index.secrets_not_synced_in("a"),
            Some("not listed yet"),
            "not synced before InitDone"
        );
        r.handle(&mut index, ok(Event::InitDone));
        assert!(index.secret("a", "one").is_some() && index.secret("a", "two").is_some());
        assert!(index.secret("a", "plain").is_none());
        assert_eq!(index.secrets_not_synced_in("a"), None);

        // The watch restarts; "two" was deleted meanwhile and is not listed again.
        r.handle(&mut index, ok(Event::Init));
        r.handle(
            &mut index,
            ok(Event::InitApply(secret("a", "one", &[GENERIC]))),
        );
        assert!(
            index.secret("a", "two").is_some(),
            "kept until the relist is done"
        );
        r.handle(&mut index, ok(Event::InitDone));
        assert!(index.secret("a", "one").is_some());
        assert!(
            index.secret("a", "two").is_none(),
            "dropped: the relist did not show it"
        );

        // A label removed: it is no longer a credential.
        r.handle(&mut index, ok(Event::Apply(secret("a", "one", &[]))));
        assert!(index.secret("a", "one").is_none());
    }

    #[test]
    fn failures_in_a_row_unsync_the_source_until_it_lists_again() {
        let mut index = index();
        let mut r = Reflector::new(Workloads::<Pod>(std::marker::PhantomData));
        r.handle(&mut index, Ok::<_, String>(Event::Init));
        r.handle(
            &mut index,
            Ok::<_, String>(Event::InitApply(pod("a", "p", "db"))),
        );
        r.handle(&mut index, Ok::<_, String>(Event::InitDone));
        assert!(!index.not_synced().unwrap_or_default().contains("Pod ("));
        assert_eq!(index.workload_count(), 1);

        for _ in 0..FAILURES_BEFORE_UNSYNCED - 1 {
            r.handle(&mut index, Err::<Event<Pod>, _>("connection refused"));
        }
        assert!(
            !index.not_synced().unwrap_or_default().contains("Pod ("),
            "a failure or two is retried quietly"
        );
        // A success in between resets the count.
        r.handle(
            &mut index,
            Ok::<_, String>(Event::Apply(pod("a", "q", "db"))),
        );
        for _ in 0..FAILURES_BEFORE_UNSYNCED - 1 {
            r.handle(&mut index, Err::<Event<Pod>, _>("connection refused"));
        }
        assert!(!index.not_synced().unwrap_or_default().contains("Pod ("));
        r.handle(&mut index, Err::<Event<Pod>, _>("connection refused"));
        assert!(
            index
                .not_synced()
                .is_some_and(|s| s.contains("Pod (watch failing)")),
            "{:?}",
            index.not_synced()
        );
        // Listing again syncs it; the pod deleted meanwhile is gone.
        r.handle(&mut index, Ok::<_, String>(Event::Init));
        r.handle(
            &mut index,
            Ok::<_, String>(Event::InitApply(pod("a", "q", "db"))),
        );
        r.handle(&mut index, Ok::<_, String>(Event::InitDone));
        assert!(!index.not_synced().unwrap_or_default().contains("Pod ("));
        assert_eq!(index.workload_count(), 1);
    }

    #[test]
    fn copies_and_namespaces_and_claim_releases() {
        let mut index = index();
        let (mirror, mut received) = secrets(&mut index, "team-a");
        let mut r = Reflector::new(mirror);
        let mut copy = secret("team-a", "credgate.shared", &[(MANAGED_LABEL, "true")]);
        copy.metadata.annotations =
            Some([(HASH_ANNOTATION.to_owned(), "sha256:1".to_owned())].into());
        copy.annotations_mut()
            .insert(SOURCE_ANNOTATION.to_owned(), "runai/shared".to_owned());
        r.handle(&mut index, Ok::<_, String>(Event::Apply(copy.clone())));
        assert_eq!(
            index.copy_hash("team-a", "credgate.shared"),
            Some("sha256:1")
        );
        assert_eq!(
            received.copies.try_recv().ok(),
            Some(("runai".into(), "shared".into())),
            "the controller hears of a new copy"
        );
        r.handle(&mut index, Ok::<_, String>(Event::Apply(copy.clone())));
        assert!(
            received.copies.try_recv().is_err(),
            "nothing changed: nothing to tell"
        );
        let mut other = copy.clone();
        other.metadata.name = Some("credgate.other".into());
        other
            .annotations_mut()
            .insert(HASH_ANNOTATION.to_owned(), "sha256:2".to_owned());
        r.handle(&mut index, Ok::<_, String>(Event::Apply(other)));
        r.handle(&mut index, Ok::<_, String>(Event::Delete(copy)));
        assert!(!index.has_copy("team-a", "credgate.shared"));
        assert!(
            received.ticks.has_changed().unwrap(),
            "a change the queue cannot take makes the controller look at every source"
        );
        received.ticks.mark_unchanged();

        let mut backed = secret("team-a", "db", &[GENERIC]);
        backed.metadata.annotations = Some(
            [(
                annotation::EXISTING_SECRET.to_owned(),
                "db-secret".to_owned(),
            )]
            .into(),
        );
        r.handle(&mut index, Ok::<_, String>(Event::Apply(backed.clone())));
        r.handle(&mut index, Ok::<_, String>(Event::Delete(backed)));
        assert_eq!(
            received.claims.try_recv().ok(),
            Some(ClaimRelease {
                namespace: "team-a".into(),
                existing_secret: "db-secret".into(),
                holder: "db".into()
            })
        );

        let (tx, mut ticks) = tokio::sync::watch::channel(0u64);
        let mut ns = Reflector::new(Namespaces {
            changed: tx,
            credentials_namespace: "runai".into(),
        });
        let mut team = PartialObjectMeta::<Namespace>::default();
        team.metadata.name = Some("team-a".into());
        team.metadata.labels = Some([(label::PROJECT.to_owned(), "a".to_owned())].into());
        ns.handle(&mut index, Ok::<_, String>(Event::Init));
        ns.handle(&mut index, Ok::<_, String>(Event::InitApply(team)));
        ns.handle(&mut index, Ok::<_, String>(Event::InitDone));
        assert_eq!(index.project_of("team-a"), Some("a"));
        assert!(
            ticks.has_changed().unwrap(),
            "the controller hears of namespace changes"
        );
        ticks.mark_unchanged();
        ns.handle(&mut index, Ok::<_, String>(Event::Init));
        ns.handle(&mut index, Ok::<_, String>(Event::InitDone));
        assert_eq!(index.project_of("team-a"), None);
        assert!(ticks.has_changed().unwrap());
    }

    fn ok<T>(e: Event<T>) -> Result<Event<T>, String> {
        Ok(e)
    }

    /// The watch of `namespace`, listed: one credential, `db`.
    fn listed_with_db(index: &mut Index, namespace: &str) -> (Reflector<Secrets>, Received) {
        let (mirror, received) = secrets(index, namespace);
        let mut watch = Reflector::new(mirror);
        watch.handle(index, ok(Event::Init));
        watch.handle(
            index,
            ok(Event::InitApply(secret(namespace, "db", &[GENERIC]))),
        );
        watch.handle(index, ok(Event::InitDone));
        (watch, received)
    }

    fn now() -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time> {
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        ))
    }

    fn namespace(name: &str, project: Option<&str>) -> PartialObjectMeta<Namespace> {
        let mut ns = PartialObjectMeta::<Namespace>::default();
        ns.metadata.name = Some(name.into());
        ns.metadata.labels = project.map(|p| [(label::PROJECT.to_owned(), p.to_owned())].into());
        ns
    }

    /// Issue 16: Secrets are watched per namespace, in project namespaces and
    /// the credentials namespace only, and for as long as a namespace that
    /// stopped being a project holds a credential.
    #[test]
    fn namespaces_decide_whose_secrets_are_watched() {
        let mut index = index();
        for source in sources()
            .into_iter()
            .filter(|s| !["namespaces", "secrets"].contains(s))
        {
            index.mark_synced(source);
        }
        let (tx, _ticks) = tokio::sync::watch::channel(0u64);
        let mut namespaces = Reflector::new(Namespaces {
            changed: tx,
            credentials_namespace: "runai".into(),
        });
        namespaces.handle(&mut index, ok(Event::Init));
        for ns in [
            namespace("team-a", Some("a")),
            namespace("runai", None),
            namespace("kube-system", None),
        ] {
            namespaces.handle(&mut index, ok(Event::InitApply(ns)));
        }
        namespaces.handle(&mut index, ok(Event::InitDone));
        let mut watched: Vec<&str> = index.secret_watches().map(|(ns, _)| ns).collect();
        watched.sort_unstable();
        assert_eq!(watched, ["runai", "team-a"]);

        // Ready once every watched namespace has listed its Secrets.
        index.settle_secrets();
        assert!(index.not_synced().is_some_and(|s| s.contains("secrets")));
        let (mut team, received) = listed_with_db(&mut index, "team-a");
        let runai = index.secret_watch_generation("runai").unwrap();
        index.set_secret_watch("runai", runai, None);
        index.settle_secrets();
        assert_eq!(index.not_synced(), None);

        // A new project holds back the decisions about it only.
        namespaces.handle(&mut index, ok(Event::Apply(namespace("team-b", Some("b")))));
        assert_eq!(index.not_synced(), None);
        assert_eq!(
            index.secrets_not_synced_in("team-b"),
            Some("not listed yet")
        );
        assert_eq!(index.secrets_not_synced_in("team-a"), None);
        let watched = |index: &Index, ns: &str| index.secret_watch_generation(ns).is_some();

        // No longer a project, with a credential left: still watched, until it goes.
        namespaces.handle(&mut index, ok(Event::Apply(namespace("team-a", None))));
        assert!(watched(&index, "team-a"));
        team.handle(
            &mut index,
            ok(Event::Delete(secret("team-a", "db", &[GENERIC]))),
        );
        assert!(!watched(&index, "team-a"));
        assert!(
            received.ticks.has_changed().unwrap(),
            "the watches follow: the one of team-a stops"
        );
        // A project again: a new watch (a new generation); the old one writes nothing.
        namespaces.handle(&mut index, ok(Event::Apply(namespace("team-a", Some("a")))));
        assert!(index.secret_watch_generation("team-a") > Some(team.mirror.generation));
        team.handle(
            &mut index,
            ok(Event::Apply(secret("team-a", "late", &[GENERIC]))),
        );
        assert!(index.secret("team-a", "late").is_none());
        team.handle(&mut index, ok(Event::InitDone));
        assert_eq!(
            index.secrets_not_synced_in("team-a"),
            Some("not listed yet")
        );

        // A namespace deleted is forgotten with its Secrets.
        namespaces.handle(
            &mut index,
            ok(Event::Delete(namespace("team-b", Some("b")))),
        );
        assert!(!watched(&index, "team-b"));
    }

    /// Issue 16: a namespace where credgate's RoleBinding is, project or not
    /// (after a restart, one that stopped being a project), is watched until
    /// it holds nothing of credgate's; a binding being removed starts nothing.
    #[test]
    fn a_namespace_with_credgates_binding_is_watched_until_idle() {
        let mut index = index();
        let (tx, ticks) = tokio::sync::watch::channel(0u64);
        let mut bindings = Reflector::new(Bindings { changed: tx });
        let binding = |ns: &str, deleting: bool| {
            let mut b = PartialObjectMeta::<RoleBinding>::default();
            b.metadata.name = Some(access::BINDING.into());
            b.metadata.namespace = Some(ns.into());
            if deleting {
                b.metadata.deletion_timestamp = now();
            }
            b
        };
        bindings.handle(&mut index, ok(Event::Init));
        bindings.handle(&mut index, ok(Event::InitApply(binding("old-team", false))));
        bindings.handle(&mut index, ok(Event::InitDone));
        assert!(ticks.has_changed().unwrap());
        assert!(index.secret_watch_generation("old-team").is_some());
        let (mut old, _received) = listed_with_db(&mut index, "old-team");
        assert!(
            index.secret_watch_generation("old-team").is_some(),
            "a credential is left"
        );
        old.handle(
            &mut index,
            ok(Event::Delete(secret("old-team", "db", &[GENERIC]))),
        );
        assert!(
            index.secret_watch_generation("old-team").is_none(),
            "idle: its watch stops"
        );
        // The binding going (deleted first, then its finalizer) starts nothing.
        bindings.handle(&mut index, ok(Event::Apply(binding("old-team", true))));
        assert!(index.secret_watch_generation("old-team").is_none());
        bindings.handle(&mut index, ok(Event::Delete(binding("old-team", true))));
        assert!(index.secret_watch_generation("old-team").is_none());
    }

    /// Issue 16: a project namespace being deleted keeps its watch (and
    /// credgate its access) until the credentials there are gone; then the
    /// watch stops for good, whatever the namespace's last events say.
    #[test]
    fn a_namespace_being_deleted_is_watched_until_it_holds_nothing() {
        let mut index = index();
        let (tx, _ticks) = tokio::sync::watch::channel(0u64);
        let mut namespaces = Reflector::new(Namespaces {
            changed: tx,
            credentials_namespace: "runai".into(),
        });
        namespaces.handle(&mut index, ok(Event::Apply(namespace("team-a", Some("a")))));
        let (mut team, _received) = listed_with_db(&mut index, "team-a");

        let mut terminating = namespace("team-a", Some("a"));
        terminating.metadata.deletion_timestamp = now();
        namespaces.handle(&mut index, ok(Event::Apply(terminating.clone())));
        assert!(
            index.secret_watch_generation("team-a").is_some(),
            "a credential is left"
        );
        team.handle(
            &mut index,
            ok(Event::Delete(secret("team-a", "db", &[GENERIC]))),
        );
        assert!(index.secret_watch_generation("team-a").is_none());
        namespaces.handle(&mut index, ok(Event::Apply(terminating)));
        assert!(
            index.secret_watch_generation("team-a").is_none(),
            "not watched again while it is being deleted"
        );
        // Gone, then made again: watched again.
        namespaces.handle(
            &mut index,
            ok(Event::Delete(namespace("team-a", Some("a")))),
        );
        namespaces.handle(&mut index, ok(Event::Apply(namespace("team-a", Some("a")))));
        assert!(index.secret_watch_generation("team-a").is_some());
    }
}
