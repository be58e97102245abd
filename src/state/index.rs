//! The in-memory snapshot of cluster state that admission decisions read.
//!
//! It holds metadata and references only, never secret data:
//! - namespaces: their project and department labels;
//! - labelled Secrets: credential type, scope, name, backing secret, registries;
//! - workloads: each reduced to the names it references (Secrets named in the
//!   pod spec, credentials named in annotations), with names interned so a
//!   typical pod costs well under 150 bytes. Workloads that reference nothing
//!   are not stored at all.
//!
//! Updates are O(references of the object); lookups never call the API.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::model::credential::{CredentialType, Meta, Scope, annotation};
use crate::model::workload::{Reference, WorkloadKind};
use crate::state::recent::Recent;

/// An interned string.
pub type Sym = u32;

/// Names shared by many workloads, stored once. Each [`Sym`] counts its
/// holders (a stored reference, a namespace's entry); a name nothing holds is
/// freed and its id reused, so namespace and credential churn does not grow
/// memory.
#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<Box<str>, Sym>,
    /// By id: the name and how many holders it has (0: free).
    names: Vec<(Box<str>, u32)>,
    free: Vec<Sym>,
}

impl Interner {
    /// The id of `s`, with one more holder.
    fn intern(&mut self, s: &str) -> Sym {
        if let Some(&id) = self.ids.get(s) {
            self.names[id as usize].1 += 1;
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.names[id as usize] = (s.into(), 1);
                id
            }
            None => {
                self.names.push((s.into(), 1));
                (self.names.len() - 1) as Sym
            }
        };
        self.ids.insert(s.into(), id);
        id
    }

    /// One holder less; the name is freed when none is left.
    fn release(&mut self, id: Sym) {
        let entry = &mut self.names[id as usize];
        entry.1 = entry.1.saturating_sub(1);
        if entry.1 == 0 {
            let name = std::mem::take(&mut entry.0);
            self.ids.remove(&name);
            self.free.push(id);
        }
    }

    fn get(&self, s: &str) -> Option<Sym> {
        self.ids.get(s).copied()
    }

    fn name(&self, id: Sym) -> &str {
        &self.names[id as usize].0
    }

    /// Names held now.
    fn len(&self) -> usize {
        self.ids.len()
    }
}

/// What credgate knows of a namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// `runai/queue`.
    pub project: Option<String>,
    /// `run.ai/department`.
    pub department: Option<String>,
    /// Being deleted.
    pub terminating: bool,
}

/// Metadata of a labelled Secret (a credential, or an existing secret eligible to back one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretInfo {
    pub uid: String,
    /// Declared type, or the one inferred for a legacy credential (`None` if unknown).
    pub kind: Option<CredentialType>,
    /// `None` when the labels do not describe a valid scope.
    pub scope: Option<Scope>,
    /// `run.ai/name`, else the Secret's name.
    pub credential_name: String,
    pub existing_secret: Option<String>,
    /// `run.ai/registries` (stamped by credgate on docker-registry credentials).
    pub registries: Vec<String>,
    /// `run.ai/keys`: the data keys, names only (stamped by credgate); `None` if unstamped.
    pub keys: Option<Vec<String>>,
    /// The Secret has a `deletionTimestamp` (a finalizer holds it): no new
    /// workload may name it.
    pub deleting: bool,
}

impl SecretInfo {
    pub fn from_meta(meta: &Meta<'_>, uid: &str, credentials_namespace: &str) -> Self {
        SecretInfo {
            uid: uid.to_owned(),
            kind: meta.known_type(),
            scope: meta.scope(credentials_namespace).ok(),
            credential_name: meta.credential_name().to_owned(),
            existing_secret: meta
                .annotation(annotation::EXISTING_SECRET)
                .map(str::to_owned),
            registries: list(meta.annotation(annotation::REGISTRIES)).unwrap_or_default(),
            keys: list(meta.annotation(annotation::KEYS)),
            deleting: false,
        }
    }
}

fn list(value: Option<&str>) -> Option<Vec<String>> {
    value.map(|v| {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

/// A reference, interned: a Secret name or a credential name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Ref {
    Secret(Sym),
    Credential(Sym),
}

impl Ref {
    fn sym(self) -> Sym {
        match self {
            Ref::Secret(s) | Ref::Credential(s) => s,
        }
    }
}

type WorkloadKey = (WorkloadKind, Box<str>);

/// Most workloads hold one or two references: kept inline, no allocation.
type Refs = smallvec::SmallVec<[Ref; 2]>;

#[derive(Debug, Default)]
struct NamespaceWorkloads {
    workloads: HashMap<WorkloadKey, Refs>,
    /// How many workloads of this namespace hold each reference.
    counts: HashMap<Ref, u32>,
}

/// The labelled Secrets of one namespace, with two small indexes so that a
/// lookup by credential name, or of the credential an existing Secret backs,
/// costs O(matches), not O(Secrets of the namespace).
#[derive(Debug, Default)]
struct NamespaceSecrets {
    by_name: HashMap<String, SecretInfo>,
    /// Credential name → the Secrets that carry it.
    named: HashMap<String, BTreeSet<String>>,
    /// Existing Secret → the credentials it backs.
    backing: HashMap<String, BTreeSet<String>>,
}

impl NamespaceSecrets {
    fn insert(&mut self, name: &str, info: SecretInfo) {
        self.remove(name);
        self.named
            .entry(info.credential_name.clone())
            .or_default()
            .insert(name.to_owned());
        if let Some(existing) = &info.existing_secret {
            self.backing
                .entry(existing.clone())
                .or_default()
                .insert(name.to_owned());
        }
        self.by_name.insert(name.to_owned(), info);
    }

    fn remove(&mut self, name: &str) {
        let Some(info) = self.by_name.remove(name) else {
            return;
        };
        forget(&mut self.named, &info.credential_name, name);
        if let Some(existing) = &info.existing_secret {
            forget(&mut self.backing, existing, name);
        }
    }
}

/// Removes `name` from the set under `key`, and the set once empty.
fn forget(map: &mut HashMap<String, BTreeSet<String>>, key: &str, name: &str) {
    if let Some(set) = map.get_mut(key) {
        set.remove(name);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

/// The sources that must have synced before state-dependent rules may answer.
pub const SOURCES: [&str; 3] = ["namespaces", "secrets", "workloads"];

/// Users of a credential: the first few, and how many in all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Users {
    pub total: usize,
    /// `Kind/namespace/name`, sorted, at most the number asked for.
    pub first: Vec<String>,
}

/// Where the Secret watch of one namespace is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum WatchState {
    Unlisted,
    Listed,
    Failing(String),
}

/// The Secret watch of one namespace: its state, and its generation (a
/// namespace dropped and watched again gets a new one, and a new watch).
#[derive(Debug)]
struct SecretWatch {
    state: WatchState,
    generation: u64,
}

/// The snapshot.
#[derive(Debug, Default)]
pub struct Index {
    strings: Interner,
    namespaces: HashMap<String, NamespaceInfo>,
    /// Managed copies: copy name → namespace → hash of the data it holds.
    copies: HashMap<String, HashMap<String, String>>,
    /// Labelled Secrets by namespace, then name.
    secrets: HashMap<String, NamespaceSecrets>,
    workloads: HashMap<Sym, NamespaceWorkloads>,
    /// Sources whose first full list has not arrived, or whose watch is failing.
    not_synced: BTreeMap<String, String>,
    /// Namespaces whose Secrets credgate watches (project namespaces, the
    /// credentials namespace, and any that still hold a credential or a copy).
    secret_watches: HashMap<String, SecretWatch>,
    /// How many of `secret_watches` have not listed yet (readiness waits for them).
    secret_watches_unlisted: usize,
    /// Namespaces whose entry in `secret_watches` came, went or was made
    /// again since [`Index::take_secret_watch_changes`] last looked.
    secret_watch_changes: HashSet<String>,
    /// The generation the next watch gets.
    next_generation: u64,
    /// Namespaces being deleted whose watch ended once they held nothing of
    /// credgate's: not watched again.
    released: HashSet<String>,
    /// Namespaces where credgate's RoleBinding is (see [`crate::state::access`]).
    bound: HashSet<String>,
    /// Managed copies per namespace.
    copies_in: HashMap<String, usize>,
    /// Decisions the watches have not shown yet (see [`crate::state::recent`]).
    recent: std::sync::Mutex<Recent>,
    /// Rings after each change the watches make, for decisions waiting on one.
    changes: Changes,
}

/// A bell for [`Index::subscribe`]rs (a `tokio::sync::watch` channel of nothing).
#[derive(Debug)]
struct Changes(tokio::sync::watch::Sender<()>);

impl Default for Changes {
    fn default() -> Self {
        Changes(tokio::sync::watch::Sender::new(()))
    }
}

impl Index {
    /// An index that is not ready until each of `sources` is marked synced.
    pub fn waiting_for(sources: &[&str]) -> Self {
        let mut index = Index::default();
        for s in sources {
            index
                .not_synced
                .insert((*s).to_owned(), "not listed yet".to_owned());
        }
        index
    }

    pub fn mark_synced(&mut self, source: &str) {
        self.not_synced.remove(source);
    }

    pub fn mark_unsynced(&mut self, source: &str, why: &str) {
        self.not_synced.insert(source.to_owned(), why.to_owned());
    }

    /// Whether `source` has listed, and its watch is not failing.
    pub fn source_synced(&self, source: &str) -> bool {
        !self.not_synced.contains_key(source)
    }

    /// `None` when every source is synced; otherwise which are not, and why.
    pub fn not_synced(&self) -> Option<String> {
        if self.not_synced.is_empty() {
            None
        } else {
            Some(
                self.not_synced
                    .iter()
                    .map(|(s, why)| format!("{s} ({why})"))
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        }
    }

    // ---- Secret watches, one per namespace ----

    /// Starts tracking the Secret watch of `namespace` (not listed yet), with
    /// a new generation; a no-op if tracked, or released.
    pub fn watch_secrets_in(&mut self, namespace: &str) {
        if self.secret_watches.contains_key(namespace) || self.released.contains(namespace) {
            return;
        }
        self.next_generation += 1;
        self.secret_watch_changes.insert(namespace.to_owned());
        self.secret_watches.insert(
            namespace.to_owned(),
            SecretWatch {
                state: WatchState::Unlisted,
                generation: self.next_generation,
            },
        );
        self.secret_watches_unlisted += 1;
    }

    /// The watch of generation `generation` of `namespace` listed everything
    /// (`None`), or is failing (`Some`, why). Ignored from a watch that is no
    /// longer the namespace's.
    pub fn set_secret_watch(&mut self, namespace: &str, generation: u64, failing: Option<&str>) {
        let Some(watch) = self
            .secret_watches
            .get_mut(namespace)
            .filter(|w| w.generation == generation)
        else {
            return;
        };
        if watch.state == WatchState::Unlisted {
            self.secret_watches_unlisted -= 1;
        }
        watch.state = match failing {
            None => WatchState::Listed,
            Some(why) => WatchState::Failing(why.to_owned()),
        };
    }

    /// Stops tracking the Secret watch of `namespace`, and forgets its Secrets and copies.
    pub fn unwatch_secrets_in(&mut self, namespace: &str) {
        if let Some(watch) = self.secret_watches.remove(namespace) {
            self.secret_watch_changes.insert(namespace.to_owned());
            if watch.state == WatchState::Unlisted {
                self.secret_watches_unlisted -= 1;
            }
        }
        self.secrets.remove(namespace);
        self.retain_copies_in(namespace, |_| false);
    }

    /// Stops watching the Secrets of `namespace` once its watch has listed,
    /// it holds no credential or copy, and it is being deleted or is neither
    /// a project namespace nor the credentials namespace; returns whether it did.
    pub fn unwatch_secrets_if_idle(
        &mut self,
        namespace: &str,
        credentials_namespace: &str,
    ) -> bool {
        let terminating = self.namespace(namespace).is_some_and(|n| n.terminating);
        let idle = self.secrets_listed_in(namespace)
            && !self.holds_secrets_in(namespace)
            && (terminating
                || (namespace != credentials_namespace && self.project_of(namespace).is_none()));
        if idle {
            self.unwatch_secrets_in(namespace);
            if terminating {
                self.released.insert(namespace.to_owned());
            }
        }
        idle
    }

    /// The namespaces whose Secrets are watched, with their watch's generation.
    pub fn secret_watches(&self) -> impl Iterator<Item = (&str, u64)> {
        self.secret_watches
            .iter()
            .map(|(ns, w)| (ns.as_str(), w.generation))
    }

    /// The namespaces whose Secret watch came, went or was made again since
    /// the last call, each with the generation its watch has now (`None`: not
    /// watched). The watches' supervisor follows these, so that a change costs
    /// it the namespaces that changed, not all of them.
    pub fn take_secret_watch_changes(&mut self) -> Vec<(String, Option<u64>)> {
        std::mem::take(&mut self.secret_watch_changes)
            .into_iter()
            .map(|namespace| {
                let generation = self.secret_watch_generation(&namespace);
                (namespace, generation)
            })
            .collect()
    }

    /// The generation of the Secret watch of `namespace`, if watched.
    pub fn secret_watch_generation(&self, namespace: &str) -> Option<u64> {
        self.secret_watches.get(namespace).map(|w| w.generation)
    }

    /// Whether the index holds a credential or a copy in `namespace`.
    pub fn holds_secrets_in(&self, namespace: &str) -> bool {
        self.secrets.contains_key(namespace) || self.copies_in.contains_key(namespace)
    }

    /// Whether the Secrets of `namespace` are watched and listed.
    pub fn secrets_listed_in(&self, namespace: &str) -> bool {
        self.secret_watches
            .get(namespace)
            .is_some_and(|w| w.state == WatchState::Listed)
    }

    /// Why the Secrets of `namespace` are not known yet; `None` when they
    /// are (or when they are not watched: no credential can live there).
    pub fn secrets_not_synced_in(&self, namespace: &str) -> Option<&str> {
        match &self.secret_watches.get(namespace)?.state {
            WatchState::Listed => None,
            WatchState::Unlisted => Some("not listed yet"),
            WatchState::Failing(why) => Some(why),
        }
    }

    /// Records whether credgate's RoleBinding is in `namespace`. A namespace
    /// with one is watched (it may hold credentials of a project it no longer
    /// is, even after a restart) until it holds nothing of credgate's.
    pub fn set_bound(&mut self, namespace: &str, bound: bool) {
        if bound {
            self.bound.insert(namespace.to_owned());
            self.watch_secrets_in(namespace);
        } else {
            self.bound.remove(namespace);
        }
    }

    /// Whether credgate's RoleBinding is in `namespace`, as last seen.
    pub fn is_bound(&self, namespace: &str) -> bool {
        self.bound.contains(namespace)
    }

    /// Keeps only the bindings `keep` accepts, by namespace (after a full list).
    pub fn retain_bound(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.bound.retain(|ns| keep(ns));
    }

    /// The source `secrets` counts as synced once the namespaces are listed and
    /// every namespace they made watched has listed, or failed (at start;
    /// afterwards a namespace's watch only holds back the decisions about that
    /// namespace, and a failing one never holds back readiness).
    pub fn settle_secrets(&mut self) {
        if self.secret_watches_unlisted == 0
            && !self.not_synced.contains_key("namespaces")
            && !self.not_synced.contains_key("bindings")
            && self.not_synced.contains_key("secrets")
        {
            self.not_synced.remove("secrets");
        }
    }

    // ---- namespaces ----

    pub fn set_namespace(&mut self, name: &str, info: NamespaceInfo) {
        if !info.terminating {
            // Made again under the same name.
            self.released.remove(name);
        }
        self.namespaces.insert(name.to_owned(), info);
    }

    pub fn remove_namespace(&mut self, name: &str) {
        self.namespaces.remove(name);
        self.released.remove(name);
    }

    /// Keeps only the namespaces `keep` accepts (after a full list).
    pub fn retain_namespaces(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.released.retain(|name| keep(name));
        self.namespaces.retain(|name, _| keep(name));
    }

    pub fn namespace(&self, name: &str) -> Option<&NamespaceInfo> {
        self.namespaces.get(name)
    }

    /// The project of a namespace, if it is a project namespace.
    pub fn project_of(&self, namespace: &str) -> Option<&str> {
        self.namespaces.get(namespace)?.project.as_deref()
    }

    /// True when at least one project namespace names department `d`.
    pub fn department_has_projects(&self, d: &str) -> bool {
        self.namespaces
            .values()
            .any(|n| n.project.is_some() && n.department.as_deref() == Some(d))
    }

    /// Project namespaces where a credential of `scope` living in `namespace` is visible.
    pub fn visible_in<'a>(&'a self, scope: &Scope, namespace: &'a str) -> Vec<&'a str> {
        let projects = self.namespaces.iter().filter(|(_, n)| n.project.is_some());
        let mut out: Vec<&str> = match scope {
            Scope::Project => return vec![namespace],
            Scope::Cluster => projects.map(|(k, _)| k.as_str()).collect(),
            Scope::Department(d) => projects
                .filter(|(_, n)| n.department.as_deref() == Some(d.as_str()))
                .map(|(k, _)| k.as_str())
                .collect(),
        };
        out.sort_unstable();
        out
    }

    // ---- labelled secrets ----

    pub fn set_secret(&mut self, namespace: &str, name: &str, info: SecretInfo) {
        self.secrets
            .entry(namespace.to_owned())
            .or_default()
            .insert(name, info);
    }

    pub fn remove_secret(&mut self, namespace: &str, name: &str) {
        if let Some(in_ns) = self.secrets.get_mut(namespace) {
            in_ns.remove(name);
            if in_ns.by_name.is_empty() {
                self.secrets.remove(namespace);
            }
        }
    }

    /// Keeps only the labelled Secrets `keep` accepts, by namespace and name (after a full list).
    pub fn retain_secrets(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        self.secrets.retain(|ns, in_ns| {
            let gone: Vec<String> = in_ns
                .by_name
                .keys()
                .filter(|name| !keep(ns, name))
                .cloned()
                .collect();
            for name in gone {
                in_ns.remove(&name);
            }
            !in_ns.by_name.is_empty()
        });
    }

    /// Keeps only the labelled Secrets of `namespace` that `keep` accepts, by name.
    pub fn retain_secrets_in(&mut self, namespace: &str, mut keep: impl FnMut(&str) -> bool) {
        let Some(in_ns) = self.secrets.get_mut(namespace) else {
            return;
        };
        let gone: Vec<String> = in_ns
            .by_name
            .keys()
            .filter(|name| !keep(name))
            .cloned()
            .collect();
        for name in gone {
            in_ns.remove(&name);
        }
        if in_ns.by_name.is_empty() {
            self.secrets.remove(namespace);
        }
    }

    /// Every credential being deleted, as (namespace, name, uid): O(labelled Secrets).
    pub fn deleting_credentials(&self) -> Vec<(String, String, String)> {
        self.secrets
            .iter()
            .flat_map(|(ns, in_ns)| {
                in_ns
                    .by_name
                    .iter()
                    .filter(|(_, info)| info.deleting)
                    .map(move |(name, info)| (ns.clone(), name.clone(), info.uid.clone()))
            })
            .collect()
    }

    pub fn secret(&self, namespace: &str, name: &str) -> Option<&SecretInfo> {
        self.secrets.get(namespace)?.by_name.get(name)
    }

    /// Labelled Secrets of one namespace, as `(name, info)`: O(Secrets of that namespace).
    pub fn secrets_in<'a>(
        &'a self,
        namespace: &str,
    ) -> impl Iterator<Item = (&'a str, &'a SecretInfo)> + 'a {
        self.secrets
            .get(namespace)
            .into_iter()
            .flat_map(|in_ns| in_ns.by_name.iter())
            .map(|(name, info)| (name.as_str(), info))
    }

    /// Labelled Secrets of one namespace whose credential name is `credential`,
    /// by Secret name: O(those Secrets), whatever the size of the namespace.
    pub fn secrets_named<'a>(
        &'a self,
        namespace: &str,
        credential: &str,
    ) -> impl Iterator<Item = (&'a str, &'a SecretInfo)> + 'a {
        self.listed(namespace, |in_ns| in_ns.named.get(credential))
    }

    /// The credential of `namespace` that the existing Secret `secret` backs, as `(name, info)`.
    pub fn backed_by<'a>(
        &'a self,
        namespace: &str,
        secret: &str,
    ) -> Option<(&'a str, &'a SecretInfo)> {
        self.backers(namespace, secret).next()
    }

    /// Every credential of `namespace` that the existing Secret `secret` backs, by name.
    pub fn backers<'a>(
        &'a self,
        namespace: &str,
        secret: &str,
    ) -> impl Iterator<Item = (&'a str, &'a SecretInfo)> + 'a {
        self.listed(namespace, |in_ns| in_ns.backing.get(secret))
    }

    /// The Secrets of `namespace` named in the set `pick` chooses, by name.
    fn listed<'a>(
        &'a self,
        namespace: &str,
        pick: impl FnOnce(&'a NamespaceSecrets) -> Option<&'a BTreeSet<String>>,
    ) -> impl Iterator<Item = (&'a str, &'a SecretInfo)> + 'a {
        self.secrets
            .get(namespace)
            .and_then(|in_ns| Some((in_ns, pick(in_ns)?)))
            .into_iter()
            .flat_map(|(in_ns, names)| {
                names
                    .iter()
                    .filter_map(|n| Some((n.as_str(), in_ns.by_name.get(n)?)))
            })
    }

    /// True when another labelled Secret of `namespace` is backed by the Secret `name`.
    pub fn backs_a_credential(&self, namespace: &str, name: &str) -> bool {
        self.backed_by(namespace, name).is_some()
    }

    // ---- managed copies ----

    /// Records a managed copy (with the source hash it carries), or forgets it with `None`.
    pub fn set_copy(&mut self, namespace: &str, name: &str, hash: Option<&str>) {
        match hash {
            Some(h) => {
                let new = self
                    .copies
                    .entry(name.to_owned())
                    .or_default()
                    .insert(namespace.to_owned(), h.to_owned())
                    .is_none();
                if new {
                    *self.copies_in.entry(namespace.to_owned()).or_default() += 1;
                }
            }
            None => {
                let Some(by_ns) = self.copies.get_mut(name) else {
                    return;
                };
                let removed = by_ns.remove(namespace).is_some();
                if by_ns.is_empty() {
                    self.copies.remove(name);
                }
                if removed {
                    self.uncount_copy(namespace);
                }
            }
        }
    }

    fn uncount_copy(&mut self, namespace: &str) {
        if let Some(n) = self.copies_in.get_mut(namespace) {
            *n -= 1;
            if *n == 0 {
                self.copies_in.remove(namespace);
            }
        }
    }

    /// Keeps only the copies of `namespace` that `keep` accepts, by name (after a full list).
    pub fn retain_copies_in(&mut self, namespace: &str, mut keep: impl FnMut(&str) -> bool) {
        if !self.copies_in.contains_key(namespace) {
            return;
        }
        let gone: Vec<String> = self
            .copies
            .iter()
            .filter(|(name, by_ns)| by_ns.contains_key(namespace) && !keep(name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            self.set_copy(namespace, &name, None);
        }
    }

    pub fn has_copy(&self, namespace: &str, name: &str) -> bool {
        self.copy_hash(namespace, name).is_some()
    }

    /// The source hash the copy `name` in `namespace` carries.
    pub fn copy_hash(&self, namespace: &str, name: &str) -> Option<&str> {
        self.copies.get(name)?.get(namespace).map(String::as_str)
    }

    /// Where copies named `name` exist, with their hashes.
    pub fn copies_named(&self, name: &str) -> HashMap<String, String> {
        self.copies.get(name).cloned().unwrap_or_default()
    }

    // ---- decisions not yet shown by the watches ----

    /// The records of [`crate::state::recent`]: checked and updated in one step by
    /// the pod and DELETE decisions, which hold only a read lock on the index.
    pub fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A receiver that wakes at the next change after this call. Subscribe
    /// under the same lock as the check that decides to wait, so that no
    /// change falls between the two.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<()> {
        self.changes.0.subscribe()
    }

    /// Wakes the subscribers: the watches changed the index, or a record was dropped.
    pub fn ring(&self) {
        self.changes.0.send_replace(());
    }

    fn recent_mut(&mut self) -> &mut Recent {
        self.recent.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    // ---- workloads ----

    /// Records (or replaces) what a workload references; an empty list removes it.
    pub fn set_workload(
        &mut self,
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
        references: impl IntoIterator<Item = Reference>,
    ) {
        if kind == WorkloadKind::Pod {
            self.recent_mut().pod_stored(namespace, name);
        }
        // Deduplicated before interning: each stored reference holds its name once.
        let mut named: Vec<(bool, String)> = references
            .into_iter()
            .map(|r| match r {
                Reference::Secret(n, _) => (true, n),
                Reference::Credential(n, _) => (false, n),
            })
            .collect();
        named.sort_unstable();
        named.dedup();
        let mut refs: Refs = named
            .iter()
            .map(|(secret, n)| match secret {
                true => Ref::Secret(self.strings.intern(n)),
                false => Ref::Credential(self.strings.intern(n)),
            })
            .collect();
        refs.sort_unstable();
        // This call's hold on the namespace's name; the entry keeps one of its own.
        let ns = self.strings.intern(namespace);
        let existed = self.workloads.contains_key(&ns);
        let entry = self.workloads.entry(ns).or_default();
        let key: WorkloadKey = (kind, name.into());
        let old = entry.workloads.remove(&key);
        if let Some(old) = &old {
            uncount(&mut entry.counts, old);
        }
        if !refs.is_empty() {
            for r in &refs {
                *entry.counts.entry(*r).or_default() += 1;
            }
            refs.shrink_to_fit();
            entry.workloads.insert(key, refs);
        }
        let now_empty = entry.workloads.is_empty();
        if now_empty {
            self.workloads.remove(&ns);
        }
        for r in old.iter().flatten() {
            self.strings.release(r.sym());
        }
        // Keep this call's hold only for an entry it created and that stays.
        if existed || now_empty {
            self.strings.release(ns);
        }
        if existed && now_empty {
            self.strings.release(ns);
        }
    }

    /// Names the index holds (namespaces and references of stored workloads).
    pub fn interned(&self) -> usize {
        self.strings.len()
    }

    pub fn remove_workload(&mut self, kind: WorkloadKind, namespace: &str, name: &str) {
        self.set_workload(kind, namespace, name, []);
    }

    /// Drops every workload of `kind` not in `keep` (after a full list).
    pub fn retain_workloads(
        &mut self,
        kind: WorkloadKind,
        keep: &std::collections::HashSet<(String, String)>,
    ) {
        let mut gone = Vec::new();
        for (ns, entry) in &self.workloads {
            let ns_name = self.strings.name(*ns);
            for (k, name) in entry.workloads.keys() {
                if *k == kind && !keep.contains(&(ns_name.to_owned(), name.to_string())) {
                    gone.push((ns_name.to_owned(), name.to_string()));
                }
            }
        }
        for (ns, name) in gone {
            self.remove_workload(kind, &ns, &name);
        }
    }

    /// Number of indexed workloads (those that reference something).
    pub fn workload_count(&self) -> usize {
        self.workloads.values().map(|n| n.workloads.len()).sum()
    }

    /// Workloads in `namespaces` that reference the Secret `secret` (by name, same
    /// namespace as the workload) or the credential `credential` (by `run.ai/name`).
    /// Lists at most `limit` of them (sorted), and counts all.
    pub fn users(
        &self,
        namespaces: &[&str],
        secret: Option<&str>,
        credential: Option<&str>,
        limit: usize,
    ) -> Users {
        let secret = secret.and_then(|s| self.strings.get(s)).map(Ref::Secret);
        let credential = credential
            .and_then(|c| self.strings.get(c))
            .map(Ref::Credential);
        let wanted: Vec<Ref> = secret.into_iter().chain(credential).collect();
        let mut users = Users::default();
        if wanted.is_empty() {
            return users;
        }
        let mut found: Vec<(&str, &str, &str)> = Vec::new();
        for ns_name in namespaces {
            let Some(entry) = self
                .strings
                .get(ns_name)
                .and_then(|ns| self.workloads.get(&ns))
            else {
                continue;
            };
            if !wanted.iter().any(|r| entry.counts.contains_key(r)) {
                continue;
            }
            for ((kind, name), refs) in &entry.workloads {
                if refs.iter().any(|r| wanted.contains(r)) {
                    found.push((kind.as_str(), ns_name, name));
                }
            }
        }
        users.total = found.len();
        // Only the listed few are sorted and formatted.
        if found.len() > limit && limit > 0 {
            found.select_nth_unstable(limit - 1);
        }
        found.truncate(limit);
        found.sort_unstable();
        let names = found
            .into_iter()
            .map(|(kind, ns, name)| format!("{kind}/{ns}/{name}"))
            .collect();
        users.first = names;
        users
    }
}

fn uncount(counts: &mut HashMap<Ref, u32>, refs: &[Ref]) {
    for r in refs {
        if let Some(c) = counts.get_mut(r) {
            *c -= 1;
            if *c == 0 {
                counts.remove(r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::workload::Usage;

    fn labelled(credential_name: &str, existing: Option<&str>) -> SecretInfo {
        SecretInfo {
            uid: format!("uid-{credential_name}"),
            kind: None,
            scope: Some(Scope::Project),
            credential_name: credential_name.into(),
            existing_secret: existing.map(str::to_owned),
            registries: Vec::new(),
            keys: None,
            deleting: false,
        }
    }

    /// Lookups by credential name and by backing Secret follow every change:
    /// a rename, a new backing Secret, a removal, a relist.
    #[test]
    fn name_and_backing_lookups_follow_changes() {
        let mut index = Index::default();
        let names = |index: &Index, credential: &str| -> Vec<String> {
            index
                .secrets_named("a", credential)
                .map(|(n, _)| n.to_owned())
                .collect()
        };
        index.set_secret("a", "s2", labelled("db", None));
        index.set_secret("a", "s1", labelled("db", Some("raw")));
        assert_eq!(names(&index, "db"), ["s1", "s2"], "by Secret name");
        assert_eq!(index.backed_by("a", "raw").map(|(n, _)| n), Some("s1"));
        // Renamed, and backed by another Secret.
        index.set_secret("a", "s1", labelled("cache", Some("other")));
        assert_eq!(names(&index, "db"), ["s2"]);
        assert_eq!(names(&index, "cache"), ["s1"]);
        assert!(!index.backs_a_credential("a", "raw"));
        assert!(index.backs_a_credential("a", "other"));
        index.remove_secret("a", "s2");
        assert!(names(&index, "db").is_empty());
        index.retain_secrets(|_, name| name != "s1");
        assert!(names(&index, "cache").is_empty());
        assert!(!index.backs_a_credential("a", "other"));
        assert!(index.secrets.is_empty(), "nothing left behind");
    }

    /// Names nothing references any more are freed: namespace churn does not grow the index.
    #[test]
    fn the_interner_frees_names_nothing_holds() {
        let mut index = Index::default();
        for round in 0..3 {
            for i in 0..100 {
                let ns = format!("ns-{round}-{i}");
                index.set_workload(
                    WorkloadKind::Pod,
                    &ns,
                    "p",
                    [secret_ref("db"), cred_ref("s3")],
                );
                index.set_workload(
                    WorkloadKind::Deployment,
                    &ns,
                    "d",
                    [cred_ref("s3"), cred_ref("s3")],
                );
            }
            assert_eq!(index.interned(), 100 + 2);
            // Replacing what a workload references frees the old name.
            index.set_workload(
                WorkloadKind::Pod,
                &format!("ns-{round}-0"),
                "p",
                [secret_ref("other")],
            );
            index.set_workload(
                WorkloadKind::Pod,
                &format!("ns-{round}-0"),
                "p",
                [secret_ref("db")],
            );
            assert_eq!(index.interned(), 100 + 2);
            for i in 0..100 {
                let ns = format!("ns-{round}-{i}");
                index.remove_workload(WorkloadKind::Pod, &ns, "p");
                index.remove_workload(WorkloadKind::Deployment, &ns, "d");
            }
            assert_eq!(index.interned(), 0, "round {round}");
            assert_eq!(index.workload_count(), 0);
        }
        // Ids are reused, so the table stays the size of the peak.
        assert!(index.strings.names.len() <= 103);
        index.set_workload(WorkloadKind::Pod, "a", "p", [secret_ref("db")]);
        assert_eq!(index.users(&["a"], Some("db"), None, 5).total, 1);
    }

    fn secret_ref(n: &str) -> Reference {
        Reference::Secret(n.into(), Usage::Environment)
    }
    fn cred_ref(n: &str) -> Reference {
        Reference::Credential(n.into(), Usage::DataSource)
    }

    fn project(index: &mut Index, ns: &str, department: Option<&str>) {
        index.set_namespace(
            ns,
            NamespaceInfo {
                project: Some(ns.into()),
                department: department.map(Into::into),
                ..Default::default()
            },
        );
    }

    #[test]
    fn users_by_secret_and_by_credential_name() {
        let mut index = Index::default();
        project(&mut index, "a", Some("rnd"));
        project(&mut index, "b", Some("rnd"));
        project(&mut index, "c", None);
        index.set_namespace("plain", NamespaceInfo::default());
        index.set_workload(
            WorkloadKind::Deployment,
            "a",
            "web",
            [secret_ref("db"), cred_ref("s3")],
        );
        index.set_workload(WorkloadKind::Pod, "a", "web-1", [secret_ref("db")]);
        index.set_workload(WorkloadKind::CronJob, "b", "sync", [cred_ref("s3")]);
        index.set_workload(WorkloadKind::Pod, "c", "other", [cred_ref("s3")]);
        index.set_workload(WorkloadKind::Pod, "a", "nothing", []);
        assert_eq!(index.workload_count(), 4);

        let project_a = index.users(&["a"], Some("db"), None, 5);
        assert_eq!(project_a.total, 2);
        assert_eq!(project_a.first, ["Deployment/a/web", "Pod/a/web-1"]);

        let rnd = index.visible_in(&Scope::Department("rnd".into()), "runai");
        assert_eq!(rnd, ["a", "b"]);
        let users = index.users(&rnd, None, Some("s3"), 1);
        assert_eq!(
            (users.total, users.first.as_slice()),
            (2, &["CronJob/b/sync".to_owned()][..])
        );
        assert_eq!(index.visible_in(&Scope::Cluster, "runai"), ["a", "b", "c"]);

        // Updates replace references; deletes forget them.
        index.set_workload(WorkloadKind::Deployment, "a", "web", [secret_ref("other")]);
        assert_eq!(index.users(&["a"], None, Some("s3"), 5).total, 0);
        index.remove_workload(WorkloadKind::Pod, "a", "web-1");
        assert_eq!(index.users(&["a"], Some("db"), None, 5).total, 0);
        let keep = [("b".to_owned(), "sync".to_owned())].into_iter().collect();
        index.retain_workloads(WorkloadKind::CronJob, &keep);
        index.retain_workloads(WorkloadKind::Pod, &Default::default());
        assert_eq!(index.workload_count(), 2);
    }

    /// The supervisor of the Secret watches hears of each namespace whose
    /// watch came, went or was made again, once, with its generation now.
    #[test]
    fn secret_watch_changes_name_each_namespace_once() {
        let mut index = Index::default();
        index.watch_secrets_in("a");
        index.watch_secrets_in("b");
        index.watch_secrets_in("a"); // already watched: no change
        let mut changes = index.take_secret_watch_changes();
        changes.sort();
        let (a, b) = (
            index.secret_watch_generation("a"),
            index.secret_watch_generation("b"),
        );
        assert_eq!(changes, [("a".into(), a), ("b".into(), b)]);
        assert!(index.take_secret_watch_changes().is_empty(), "taken");

        // Dropped and watched again before the supervisor looks: one change,
        // with the new generation (the old watch must stop).
        index.unwatch_secrets_in("a");
        index.watch_secrets_in("a");
        let again = index.secret_watch_generation("a");
        assert_ne!(again, a);
        assert_eq!(index.take_secret_watch_changes(), [("a".into(), again)]);

        index.unwatch_secrets_in("b");
        index.unwatch_secrets_in("never-watched");
        assert_eq!(index.take_secret_watch_changes(), [("b".into(), None)]);
    }

    #[test]
    fn sync_state() {
        let mut index = Index::waiting_for(&SOURCES);
        assert!(
            index
                .not_synced()
                .unwrap()
                .contains("namespaces (not listed yet)")
        );
        for s in SOURCES {
            index.mark_synced(s);
        }
        assert_eq!(index.not_synced(), None);
        index.mark_unsynced("secrets", "watch failing");
        assert_eq!(
            index.not_synced().as_deref(),
            Some("secrets (watch failing)")
        );
    }
}
