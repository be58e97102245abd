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

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Client, ResourceExt};
use std::collections::HashSet;
use std::sync::Arc;
use tracing::{info, warn};

use crate::model::copy::{HASH_ANNOTATION, MANAGED_LABEL};
use crate::model::credential::{annotation, label, object_meta};
use crate::model::workload::{KindVisitor, Workload, WorkloadKind, references, visit};
use crate::state::SharedIndex;
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

/// Objects per page of a (re)list of metadata (Namespaces, Secrets), where the
/// API server does not stream initial events: kube-runtime's default.
const METADATA_PAGE: u32 = 500;

/// A watch of `api` whose initial state, and every relist, arrives as a
/// stream of events (`sendInitialEvents`: served from the API server's cache,
/// on by default since Kubernetes 1.34): no pages to wait for, and one object
/// in memory at a time. With 100,000 pods, pages of [`WORKLOAD_PAGE`] took
/// minutes. A server that refuses it (the WatchList feature off, as by
/// default in 1.33: 422 or 400) is listed in pages of `page` objects instead,
/// for as long as the process lives.
pub fn initial_events<K>(
    api: Api<K>,
    page: u32,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    struct Watch<K> {
        api: Api<K>,
        page: u32,
        streaming: bool,
        events: futures::stream::BoxStream<'static, Result<Event<K>, watcher::Error>>,
    }
    let events = watcher(api.clone(), watcher::Config::default().streaming_lists()).boxed();
    let start = Watch {
        api,
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
                    let paged = watcher::Config::default().page_size(watch.page);
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
    let mut s = vec!["namespaces", "secrets"];
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

    /// Applies one event of the watch stream to `index`.
    pub fn handle<E: std::fmt::Display>(
        &mut self,
        index: &mut Index,
        event: Result<Event<M::Object>, E>,
    ) {
        let source = self.mirror.source();
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                self.failures += 1;
                let failures = self.failures;
                warn!(source, %error, failures, "watch failed; retrying with backoff");
                if failures == FAILURES_BEFORE_UNSYNCED {
                    index.mark_unsynced(source, "watch failing");
                }
                return;
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
                index.mark_synced(source);
                info!(source, "watch synced");
            }
        }
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
        index.ring();
        match index.not_synced() {
            None => self.health.open(GATE),
            Some(_) => self.health.gate(GATE),
        }
        result
    }

    /// Drives `stream` through `mirror` until the stream ends (it does not,
    /// for a kube-runtime watcher with backoff); returns the source's name.
    pub async fn mirror<M: Mirror>(
        &self,
        stream: impl Stream<Item = Result<Event<M::Object>, watcher::Error>>,
        mirror: M,
    ) -> &'static str {
        let source = mirror.source();
        let mut reflector = Reflector::new(mirror);
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            self.update(|index| reflector.handle(index, event));
        }
        source
    }
}

/// A credential backed by an existing Secret was deleted: its claim can go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimRelease {
    pub namespace: String,
    pub existing_secret: String,
    pub holder: String,
}

/// Runs every watch; returns (with the source's name) as soon as one ends,
/// which the process treats as fatal.
/// - `namespaces_changed` ticks after each namespace event has reached the
///   index (the controller reconciles every source on it);
/// - `claim_releases` receives deleted credentials that were backed by an
///   existing Secret (best effort: a full channel drops one, and a stale claim
///   is taken over later anyway).
pub async fn run(
    client: Client,
    writer: Writer,
    credentials_namespace: String,
    namespaces_changed: tokio::sync::watch::Sender<u64>,
    claim_releases: tokio::sync::mpsc::Sender<ClaimRelease>,
) -> &'static str {
    let mut all: Vec<futures::future::BoxFuture<'static, &'static str>> = Vec::new();
    {
        let writer = writer.clone();
        let stream = initial_events(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            METADATA_PAGE,
        )
        .default_backoff();
        all.push(Box::pin(async move {
            writer.mirror(stream, Namespaces(namespaces_changed)).await
        }));
    }
    {
        let writer = writer.clone();
        let stream = initial_events(
            Api::<PartialObjectMeta<Secret>>::all(client.clone()),
            METADATA_PAGE,
        )
        .default_backoff();
        let secrets = Secrets {
            credentials_namespace,
            claim_releases,
        };
        all.push(Box::pin(
            async move { writer.mirror(stream, secrets).await },
        ));
    }
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

/// Watches one workload kind (reached through the table's [`visit`]).
struct WatchKind {
    client: Client,
    writer: Writer,
}

impl KindVisitor for WatchKind {
    type Output = futures::future::BoxFuture<'static, &'static str>;
    fn visit<K: Workload>(self) -> Self::Output {
        let stream = initial_events(Api::<K>::all(self.client), WORKLOAD_PAGE).default_backoff();
        Box::pin(async move {
            self.writer
                .mirror(stream, Workloads::<K>(std::marker::PhantomData))
                .await
        })
    }
}

/// Namespaces: their project and department labels.
pub struct Namespaces(pub tokio::sync::watch::Sender<u64>);

impl Namespaces {
    fn changed(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
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
        self.changed();
        Some((String::new(), name))
    }
    fn delete(&mut self, index: &mut Index, ns: Self::Object) {
        index.remove_namespace(&ns.name_any());
        self.changed();
    }
    fn retain(&mut self, index: &mut Index, listed: &HashSet<Key>) {
        index.retain_namespaces(|name| listed.contains(&(String::new(), name.to_owned())));
        self.changed();
    }
}

/// Secrets: labelled ones (credentials and secrets that may back one) and managed copies.
pub struct Secrets {
    pub credentials_namespace: String,
    pub claim_releases: tokio::sync::mpsc::Sender<ClaimRelease>,
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
        let (namespace, name) = (s.namespace().unwrap_or_default(), s.name_any());
        if is_copy(&s) {
            let hash = s
                .annotations()
                .get(HASH_ANNOTATION)
                .map_or("", String::as_str);
            index.set_copy(&namespace, &name, Some(hash));
            return None;
        }
        match secret_info(&s, &self.credentials_namespace) {
            Some((key, info)) => {
                index.set_secret(&key.0, &key.1, info);
                Some(key)
            }
            // Not (or no longer) labelled: not a credential.
            None => {
                index.remove_secret(&namespace, &name);
                None
            }
        }
    }
    fn delete(&mut self, index: &mut Index, s: Self::Object) {
        let (namespace, name) = (s.namespace().unwrap_or_default(), s.name_any());
        if is_copy(&s) {
            index.set_copy(&namespace, &name, None);
            return;
        }
        index.remove_secret(&namespace, &name);
        if let Some(existing) = s.annotations().get(annotation::EXISTING_SECRET) {
            let _ = self.claim_releases.try_send(ClaimRelease {
                namespace,
                existing_secret: existing.clone(),
                holder: name,
            });
        }
    }
    fn retain(&mut self, index: &mut Index, listed: &HashSet<Key>) {
        index.retain_secrets(|ns, name| listed.contains(&(ns.to_owned(), name.to_owned())));
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
        let events: Vec<_> = initial_events(Api::<Namespace>::all(client), 7)
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

    fn secrets() -> (Secrets, tokio::sync::mpsc::Receiver<ClaimRelease>) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        (
            Secrets {
                credentials_namespace: "runai".into(),
                claim_releases: tx,
            },
            rx,
        )
    }

    const GENERIC: (&str, &str) = (label::RESOURCE, "generic");

    #[test]
    fn a_relist_applies_what_it_lists_and_drops_the_rest() {
        let mut index = index();
        let (mirror, _rx) = secrets();
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
            index.not_synced().as_deref().map(|s| s.contains("secrets")),
            Some(true),
            "not synced before InitDone"
        );
        r.handle(&mut index, ok(Event::InitDone));
        assert!(index.secret("a", "one").is_some() && index.secret("a", "two").is_some());
        assert!(index.secret("a", "plain").is_none());
        assert!(!index.not_synced().unwrap_or_default().contains("secrets"));

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
        let (mirror, mut released) = secrets();
        let mut r = Reflector::new(mirror);
        let mut copy = secret("team-a", "credgate.shared", &[(MANAGED_LABEL, "true")]);
        copy.metadata.annotations =
            Some([(HASH_ANNOTATION.to_owned(), "sha256:1".to_owned())].into());
        r.handle(&mut index, Ok::<_, String>(Event::Apply(copy.clone())));
        assert_eq!(
            index.copy_hash("team-a", "credgate.shared"),
            Some("sha256:1")
        );
        r.handle(&mut index, Ok::<_, String>(Event::Delete(copy)));
        assert!(!index.has_copy("team-a", "credgate.shared"));

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
            released.try_recv().ok(),
            Some(ClaimRelease {
                namespace: "team-a".into(),
                existing_secret: "db-secret".into(),
                holder: "db".into()
            })
        );

        let (tx, mut ticks) = tokio::sync::watch::channel(0u64);
        let mut ns = Reflector::new(Namespaces(tx));
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
}
