//! Mutation of credential Secrets: stamp who created them and, for
//! docker-registry credentials, which registries they serve, so later lookups
//! read annotations instead of secret data.

use json_patch::PatchOperation;
use k8s_openapi::api::core::v1::Secret;
use std::io::Write as _;

use crate::model::credential::secret_meta;
use crate::model::credential::{CredentialType, annotation, label};
use crate::model::dockerconfig;
use crate::model::json::{self, Json};
use crate::policy::patch;
use crate::policy::validate::{DOCKER_CONFIG_JSON_KEY, credential_type};
use crate::policy::{Change, Operation, SecretData};

/// The patch for a CREATE or UPDATE of a credential Secret; empty when nothing
/// needs stamping (or when the Secret is not a credential). Broken credentials
/// get no patch: validation denies them with the reason.
pub fn secret(
    settings: &crate::policy::Settings,
    change: &Change<'_, Secret>,
) -> Vec<PatchOperation> {
    let Some(object) = change.object else {
        return Vec::new();
    };
    let meta = secret_meta(object, change.namespace);
    if !meta.is_credential() {
        return Vec::new();
    }
    let mut wanted = Vec::new();
    let mut ops = Vec::new();
    // An UPDATE that makes a Secret a credential (it gains `run.ai/resource`,
    // or the legacy marker) is stamped like a CREATE.
    let born = match change.operation {
        Operation::Create => true,
        Operation::Update => change.old_object.is_none_or(|old| {
            let old = secret_meta(old, change.namespace);
            !old.is_credential()
                || (old.label(label::RESOURCE).is_none() && meta.label(label::RESOURCE).is_some())
        }),
        Operation::Delete | Operation::Connect => return Vec::new(),
    };
    if born {
        // The requester made it a credential; an UPDATE keeps a stamp it already has.
        if change.operation == Operation::Create
            || meta.annotation(annotation::CREATED_BY).is_none()
        {
            wanted.push((annotation::CREATED_BY, change.user.to_owned()));
        }
        // Project credentials need no copies: valid means ready. Wider ones
        // are "Creating…" until the controller has copied them.
        let status = match meta.scope(&settings.credentials_namespace) {
            Ok(crate::model::credential::Scope::Project) => {
                crate::model::credential::status::NO_ISSUES
            }
            _ => crate::model::credential::status::CREATING,
        };
        wanted.push((annotation::STATUS, status.to_owned()));
        // A wider credential keeps its copies' finalizer from birth: a pod
        // may get a copy before the controller (on the leader) has seen
        // the credential, and a DELETE must still wait for the copies to go.
        let mut finalizers = Vec::new();
        if status == crate::model::credential::status::CREATING && settings.propagation {
            finalizers.push(crate::model::credential::COPIES_FINALIZER);
        }
        // The in-use finalizer, on typed credentials (the controller watches those).
        if settings.propagation
            && settings.in_use_finalizer
            && meta.label(label::RESOURCE).is_some()
        {
            finalizers.push(crate::model::credential::IN_USE_FINALIZER);
        }
        ops.extend(add_finalizers(object, &finalizers));
    } else {
        // `kubectl replace` drops annotations the server added: keep the stamp.
        let old_stamp = change
            .old_object
            .and_then(|old| secret_meta(old, change.namespace).annotation(annotation::CREATED_BY));
        if let (Some(old), None) = (old_stamp, meta.annotation(annotation::CREATED_BY)) {
            wanted.push((annotation::CREATED_BY, old.to_owned()));
        }
    }
    if credential_type(object, &meta) == Ok(CredentialType::DockerRegistry)
        && let Some(config) = SecretData(object).get(DOCKER_CONFIG_JSON_KEY)
        && let Ok(hosts) = dockerconfig::registries(config)
    {
        let hosts: Vec<String> = hosts.into_iter().collect();
        wanted.push((annotation::REGISTRIES, hosts.join(",")));
    }
    // A legacy credential is typed by its shape, on every write (its data may change).
    if meta.label(label::RESOURCE).is_none()
        && meta.annotation(annotation::EXISTING_SECRET).is_none()
    {
        let inferred = crate::policy::validate::infer_type(object);
        wanted.push((annotation::INFERRED_TYPE, inferred.as_str().to_owned()));
    }
    // Key names (never values), so workloads can be checked against them later.
    if meta.annotation(annotation::EXISTING_SECRET).is_none() {
        let keys: Vec<&str> = SecretData(object).keys().into_iter().collect();
        if !keys.is_empty() {
            wanted.push((annotation::KEYS, keys.join(",")));
        }
    }
    ops.extend(patch::set_annotations(meta.annotations, &wanted));
    ops
}

/// The operations that add `wanted` finalizers the Secret lacks.
fn add_finalizers(object: &Secret, wanted: &[&str]) -> Vec<PatchOperation> {
    let present = object.metadata.finalizers.as_deref().unwrap_or_default();
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|f| !present.iter().any(|p| p == f))
        .collect();
    match (object.metadata.finalizers.is_some(), missing.is_empty()) {
        (_, true) => Vec::new(),
        (true, false) => missing
            .into_iter()
            .map(|f| patch::add(&["metadata", "finalizers", "-"], f.into()))
            .collect(),
        (false, false) => vec![patch::add(
            &["metadata", "finalizers"],
            serde_json::json!(missing),
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Settings;
    use base64::Engine as _;
    use serde_json::{Value, json};

    fn docker_secret(annotations: Value) -> Secret {
        let config = r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"},"ghcr.io":{"auth":"dTpw"}}}"#;
        serde_json::from_value(json!({
            "metadata": {"name": "reg", "namespace": "team-a", "labels": {"run.ai/resource": "docker-registry"}, "annotations": annotations},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(config)},
        }))
        .unwrap()
    }

    fn apply(secret: &Secret, ops: Vec<PatchOperation>) -> Secret {
        let mut doc = serde_json::to_value(secret).unwrap();
        json_patch::patch(&mut doc, &ops).unwrap();
        serde_json::from_value(doc).unwrap()
    }

    fn change<'a>(
        op: Operation,
        object: &'a Secret,
        old: Option<&'a Secret>,
    ) -> Change<'a, Secret> {
        Change {
            operation: op,
            user: "alice",
            namespace: "team-a",
            object: Some(object),
            old_object: old,
        }
    }

    #[test]
    fn create_stamps_user_and_registries_idempotently() {
        for annotations in [
            Value::Null,
            json!({"run.ai/created-by": "mallory", "other": "kept"}),
        ] {
            let object = docker_secret(annotations);
            let patched = apply(
                &object,
                secret(
                    &Settings::default(),
                    &change(Operation::Create, &object, None),
                ),
            );
            let got = patched.metadata.annotations.clone().unwrap();
            assert_eq!(got["run.ai/created-by"], "alice");
            assert_eq!(got["run.ai/registries"], "docker.io,ghcr.io");
            assert_eq!(got["run.ai/keys"], ".dockerconfigjson");
            assert!(
                secret(
                    &Settings::default(),
                    &change(Operation::Create, &patched, None)
                )
                .is_empty(),
                "second pass must be empty"
            );
        }
    }

    #[test]
    fn wider_credentials_get_the_copies_finalizer_at_create() {
        let cluster: Secret = serde_json::from_value(json!({
            "metadata": {"name": "shared", "namespace": "runai", "finalizers": ["other.io/keep"],
                "labels": {"run.ai/resource": "generic", "run.ai/cluster-wide": "true"}},
            "type": "Opaque", "data": {"token": "dA=="},
        }))
        .unwrap();
        let mut c = change(Operation::Create, &cluster, None);
        c.namespace = "runai";
        let patched = apply(&cluster, secret(&Settings::default(), &c));
        assert_eq!(
            patched.metadata.finalizers.as_deref(),
            Some(
                &[
                    "other.io/keep".to_owned(),
                    crate::model::credential::COPIES_FINALIZER.to_owned()
                ][..]
            )
        );
        let again = change(Operation::Create, &patched, None);
        let again = Change {
            namespace: "runai",
            ..again
        };
        assert!(
            secret(&Settings::default(), &again).is_empty(),
            "second pass must be empty"
        );
        // Without a propagation controller (--controller=false) nothing would
        // remove it: no finalizer.
        let without = Settings {
            propagation: false,
            ..Settings::default()
        };
        let unpatched = apply(&cluster, secret(&without, &c));
        assert_eq!(
            unpatched.metadata.finalizers.as_deref(),
            Some(&["other.io/keep".to_owned()][..])
        );
        // Project credentials have no copies, so no finalizer.
        let project = docker_secret(Value::Null);
        let patched = apply(
            &project,
            secret(
                &Settings::default(),
                &change(Operation::Create, &project, None),
            ),
        );
        assert_eq!(patched.metadata.finalizers, None);
        // With --in-use-finalizer, every typed credential gets it too, once.
        let protecting = Settings {
            in_use_finalizer: true,
            ..Settings::default()
        };
        let in_use = crate::model::credential::IN_USE_FINALIZER.to_owned();
        let patched = apply(&cluster, secret(&protecting, &c));
        assert_eq!(
            patched.metadata.finalizers.as_deref(),
            Some(
                &[
                    "other.io/keep".to_owned(),
                    crate::model::credential::COPIES_FINALIZER.to_owned(),
                    in_use.clone()
                ][..]
            )
        );
        let again = Change {
            namespace: "runai",
            ..change(Operation::Create, &patched, None)
        };
        assert!(
            secret(&protecting, &again).is_empty(),
            "second pass must be empty"
        );
        let create = change(Operation::Create, &project, None);
        let patched = apply(&project, secret(&protecting, &create));
        assert_eq!(patched.metadata.finalizers.as_deref(), Some(&[in_use][..]));
    }

    #[test]
    fn update_restores_a_dropped_stamp_and_never_sets_a_new_one() {
        let old = docker_secret(json!({"run.ai/created-by": "alice"}));
        let replaced = docker_secret(Value::Null);
        let mut c = change(Operation::Update, &replaced, Some(&old));
        c.user = "bob";
        let patched = apply(&replaced, secret(&Settings::default(), &c));
        assert_eq!(
            patched.metadata.annotations.unwrap()["run.ai/created-by"],
            "alice"
        );
    }

    /// Issue 17: labelling an existing Secret as a credential (or adding
    /// `run.ai/resource` to a legacy one) stamps it like a CREATE.
    #[test]
    fn an_update_that_makes_a_credential_is_stamped_like_a_create() {
        let mut plain = docker_secret(Value::Null);
        plain.metadata.labels = None;
        let mut legacy = docker_secret(Value::Null);
        legacy.metadata.labels =
            Some([("run.ai/credentials".to_owned(), "true".to_owned())].into());
        let labelled = docker_secret(Value::Null);
        for before in [&plain, &legacy] {
            let mut c = change(Operation::Update, &labelled, Some(before));
            c.user = "bob";
            let got = apply(&labelled, secret(&Settings::default(), &c))
                .metadata
                .annotations
                .unwrap();
            assert_eq!(got["run.ai/created-by"], "bob");
            assert_eq!(got["run.ai/status"], "No issues found");
            assert_eq!(got["run.ai/registries"], "docker.io,ghcr.io");
        }
        // An UPDATE of what was already a typed credential sets no new stamp or status.
        let c = change(Operation::Update, &labelled, Some(&labelled));
        let got = apply(&labelled, secret(&Settings::default(), &c))
            .metadata
            .annotations
            .unwrap_or_default();
        assert!(
            !got.contains_key("run.ai/created-by") && !got.contains_key("run.ai/status"),
            "{got:?}"
        );
    }

    /// Issue 17: a legacy credential is typed by its shape, so the table shows
    /// that type and pods can name it like any other.
    #[test]
    fn a_legacy_credential_gets_the_type_of_its_shape() {
        let mut legacy = docker_secret(Value::Null);
        legacy.metadata.labels =
            Some([("run.ai/credentials".to_owned(), "true".to_owned())].into());
        let c = change(Operation::Create, &legacy, None);
        let got = apply(&legacy, secret(&Settings::default(), &c));
        let annotations = got.metadata.annotations.clone().unwrap();
        assert_eq!(
            annotations["credgate.run.ai/inferred-type"],
            "docker-registry"
        );
        let meta = crate::model::credential::secret_meta(&got, "team-a");
        assert_eq!(meta.known_type(), Some(CredentialType::DockerRegistry));
        // A typed credential gets no inferred type, and a forged one is not read.
        let plain = docker_secret(Value::Null);
        let c = change(Operation::Create, &plain, None);
        let typed = apply(&plain, secret(&Settings::default(), &c));
        assert!(
            !typed
                .metadata
                .annotations
                .unwrap()
                .contains_key("credgate.run.ai/inferred-type")
        );
        // On a legacy credential backed by an existing Secret, nothing is inferred or read.
        let mut backed = docker_secret(
            json!({"run.ai/existing-secret": "other", "credgate.run.ai/inferred-type": "docker-registry"}),
        );
        backed.metadata.labels = legacy.metadata.labels.clone();
        assert_eq!(
            crate::model::credential::secret_meta(&backed, "team-a").known_type(),
            None
        );
        let mut forged = docker_secret(json!({"credgate.run.ai/inferred-type": "generic"}));
        forged.metadata.labels = legacy.metadata.labels.clone();
        let c = change(Operation::Update, &forged, Some(&got));
        let fixed = apply(&forged, secret(&Settings::default(), &c));
        assert_eq!(
            fixed.metadata.annotations.unwrap()["credgate.run.ai/inferred-type"],
            "docker-registry"
        );
    }

    #[test]
    fn plain_and_broken_secrets_get_no_stamp_of_registries() {
        let mut plain = docker_secret(Value::Null);
        plain.metadata.labels = None;
        assert!(
            secret(
                &Settings::default(),
                &change(Operation::Create, &plain, None)
            )
            .is_empty()
        );

        let mut broken = docker_secret(Value::Null);
        broken.data = None;
        let patched = apply(
            &broken,
            secret(
                &Settings::default(),
                &change(Operation::Create, &broken, None),
            ),
        );
        let got = patched.metadata.annotations.unwrap();
        assert!(!got.contains_key("run.ai/registries"));
        assert_eq!(got["run.ai/created-by"], "alice");
    }
}

/// Default mode of injected secret volumes: read-only for the owner (0400).
pub const SECRET_VOLUME_MODE: i64 = 0o400;

/// Entries one pod's injection may add: every container (and init
/// container) gets each env var, envFrom and volume mount, so this bounds
/// containers × references.
pub const MAX_INJECTED_ENTRIES: usize = 10_000;

/// The plan for a Pod CREATE in a project namespace: the two steps of
/// [`pod_requests`] and [`pod_plan`] (the only one that reads the snapshot).
/// [`pod_inject`] then makes the patch and the warnings from it.
pub fn pod(
    settings: &crate::policy::Settings,
    index: &crate::state::index::Index,
    namespace: &str,
    annotations: Option<&std::collections::BTreeMap<String, String>>,
    spec: Option<&Json<'_>>,
) -> Result<crate::policy::resolve::Plan, crate::policy::Deny> {
    let requests = pod_requests(annotations, spec)?;
    pod_plan(settings, index, namespace, &requests, spec)
}

/// What the pod's annotations ask for, within the limits; reads no state.
pub fn pod_requests(
    annotations: Option<&std::collections::BTreeMap<String, String>>,
    spec: Option<&Json<'_>>,
) -> Result<crate::model::workload::Requests, crate::policy::Deny> {
    use crate::policy::Deny;
    let requests = crate::model::workload::parse(annotations).map_err(|e| Deny(e.to_string()))?;
    let containers: usize = ["initContainers", "containers"]
        .iter()
        .filter_map(|list| json::array_at(spec?, list).map(<[_]>::len))
        .sum();
    // S3 credentials add two variables to every container, Git ones four
    // (git-sync v3's and v4's names), and each data source a mount.
    let per_container = requests.env.len()
        + requests.env_from.len()
        + requests.volumes.len()
        + 2 * usize::from(requests.s3.is_some())
        + 4 * usize::from(requests.git.is_some())
        + requests.sources.sources.len();
    let entries = containers.saturating_mul(per_container);
    if entries > MAX_INJECTED_ENTRIES {
        return Err(Deny(format!(
            "injecting this pod's credentials would add {entries} entries ({containers} containers × {per_container} references); credgate adds at most {MAX_INJECTED_ENTRIES} to one pod"
        )));
    }
    crate::policy::fetch::conflicts(spec, &requests).map_err(Deny)?;
    Ok(requests)
}

/// Resolves the requests against the snapshot: the only step under its lock.
pub fn pod_plan(
    settings: &crate::policy::Settings,
    index: &crate::state::index::Index,
    namespace: &str,
    requests: &crate::model::workload::Requests,
    spec: Option<&Json<'_>>,
) -> Result<crate::policy::resolve::Plan, crate::policy::Deny> {
    let images = crate::model::workload::images(spec);
    crate::policy::resolve::plan(settings, index, namespace, requests, images)
        .map_err(crate::policy::Deny)
}

/// What a Pod CREATE gets from its plan: the entries to add, and warnings
/// for kubectl.
#[derive(Debug)]
pub struct Injection<'p> {
    /// Written as the patch by [`patch::SpecAdditions::patch_json`].
    pub additions: patch::SpecAdditions<Entry<'p>>,
    pub warnings: Vec<String>,
}

/// The entries that inject `plan` into the pod; reads no state.
///
/// Reads the Pod's spec as JSON (fields credgate does not know are never
/// touched) and appends only what is missing to each list, so a second pass
/// (reinvocation) adds nothing. The entries borrow the plan's strings (only
/// volume names are made, one per volume), no JSON tree is built for them
/// but a fetcher container's, and nothing of the Pod is copied. The work is
/// linear in the size of the pod, and bounded by the limits of
/// [`crate::model::workload`] and [`MAX_INJECTED_ENTRIES`].
pub fn pod_inject<'p>(
    fetchers: &crate::policy::Fetchers,
    spec: Option<&Json<'_>>,
    plan: &'p crate::policy::resolve::Plan,
) -> Injection<'p> {
    let (additions, warnings) = inject(fetchers, spec, plan);
    Injection {
        additions,
        warnings,
    }
}

/// One entry credgate adds to a list of a Pod, borrowing the plan's strings.
#[derive(Debug, PartialEq)]
pub enum Entry<'p> {
    /// An env var from a Secret's key.
    Env {
        name: &'p str,
        secret: &'p str,
        key: &'p str,
    },
    /// All of a Secret's keys as env vars.
    EnvFrom { secret: &'p str },
    /// A read-only volume mount.
    Mount { name: String, path: &'p str },
    /// A credential's Secret as a volume.
    SecretVolume { name: String, secret: &'p str },
    /// A data source's emptyDir.
    EmptyDir { name: String },
    /// An image pull secret.
    PullSecret { name: &'p str },
    /// A data source's fetcher.
    Container(serde_json::Value),
}

impl patch::WriteJson for Entry<'_> {
    /// The entry as the Kubernetes API spells it: member names written as
    /// they are, strings escaped by serde.
    fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        use json::write_str;
        match self {
            Entry::Env { name, secret, key } => {
                out.extend_from_slice(br#"{"name":"#);
                write_str(out, name)?;
                out.extend_from_slice(br#","valueFrom":{"secretKeyRef":{"name":"#);
                write_str(out, secret)?;
                out.extend_from_slice(br#","key":"#);
                write_str(out, key)?;
                out.extend_from_slice(b"}}}");
            }
            Entry::EnvFrom { secret } => {
                out.extend_from_slice(br#"{"secretRef":{"name":"#);
                write_str(out, secret)?;
                out.extend_from_slice(b"}}");
            }
            Entry::Mount { name, path } => {
                out.extend_from_slice(br#"{"name":"#);
                write_str(out, name)?;
                out.extend_from_slice(br#","mountPath":"#);
                write_str(out, path)?;
                out.extend_from_slice(br#","readOnly":true}"#);
            }
            Entry::SecretVolume { name, secret } => {
                out.extend_from_slice(br#"{"name":"#);
                write_str(out, name)?;
                out.extend_from_slice(br#","secret":{"secretName":"#);
                write_str(out, secret)?;
                write!(out, r#","defaultMode":{SECRET_VOLUME_MODE}}}}}"#)
                    .map_err(serde_json::Error::io)?;
            }
            Entry::EmptyDir { name } => {
                out.extend_from_slice(br#"{"name":"#);
                write_str(out, name)?;
                out.extend_from_slice(br#","emptyDir":{}}"#);
            }
            Entry::PullSecret { name } => {
                out.extend_from_slice(br#"{"name":"#);
                write_str(out, name)?;
                out.push(b'}');
            }
            Entry::Container(value) => serde_json::to_writer(out, value)?,
        }
        Ok(())
    }
}

/// Entries to append to one list of the Pod, found by a key (a name or a
/// path) in [`Keys`]: checking an item costs O(1) (at most 16 compared), so
/// injection stays linear.
/// The keys are borrowed from the pod and from the plan: nothing is copied to
/// look up.
struct Append<'k, 'p> {
    list: &'static str,
    existing: Option<&'k [Json<'k>]>,
    added: Vec<Entry<'p>>,
    /// Key → (true: added, false: existing; position).
    by_key: Keys<'k>,
}

/// Keys of a list's items, each to its first item: scanned while the list is
/// short (most pods), hashed once it is long, so a check stays O(1).
enum Keys<'k> {
    Few(Vec<(&'k str, (bool, usize))>),
    Many(std::collections::HashMap<&'k str, (bool, usize)>),
}

impl<'k> Keys<'k> {
    /// Past this many keys, a map.
    const FEW: usize = 16;

    fn get(&self, key: &str) -> Option<(bool, usize)> {
        match self {
            Keys::Few(keys) => keys.iter().find(|(k, _)| *k == key).map(|(_, at)| *at),
            Keys::Many(keys) => keys.get(key).copied(),
        }
    }

    /// Records `key` at `at`, unless an earlier item has it.
    fn insert(&mut self, key: &'k str, at: (bool, usize)) {
        match self {
            Keys::Few(keys) if keys.iter().any(|(k, _)| *k == key) => {}
            Keys::Few(keys) if keys.len() < Self::FEW => keys.push((key, at)),
            Keys::Few(keys) => {
                let mut map: std::collections::HashMap<_, _> = keys.drain(..).collect();
                map.insert(key, at);
                *self = Keys::Many(map);
            }
            Keys::Many(keys) => {
                keys.entry(key).or_insert(at);
            }
        }
    }
}

/// An item of a list with the key looked for.
enum Found<'x, 'p> {
    /// The Pod's own.
    Existing(&'x Json<'x>),
    /// Added by this injection.
    Added(&'x Entry<'p>),
}

impl<'k, 'p> Append<'k, 'p> {
    fn new(
        parent: &'k Json<'k>,
        list: &'static str,
        key: fn(&'k Json<'k>) -> Option<&'k str>,
    ) -> Self {
        let existing = json::array_at(parent, list);
        let mut by_key = Keys::Few(Vec::new());
        for (i, item) in existing.into_iter().flatten().enumerate() {
            if let Some(k) = key(item) {
                by_key.insert(k, (false, i));
            }
        }
        Append {
            list,
            existing,
            added: Vec::new(),
            by_key,
        }
    }

    /// The first item (existing or added) whose key is `k`.
    fn find(&self, k: &str) -> Option<Found<'_, 'p>> {
        match self.by_key.get(k)? {
            (false, i) => self.existing?.get(i).map(Found::Existing),
            (true, i) => self.added.get(i).map(Found::Added),
        }
    }

    /// Appends `entry`, found by `key` from now on.
    fn push(&mut self, key: &'k str, entry: Entry<'p>) {
        self.by_key.insert(key, (true, self.added.len()));
        self.added.push(entry);
    }

    /// What is appended to the list (or the list added, when the Pod has none).
    fn finish(self, into: &mut Vec<patch::ListAddition<Entry<'p>>>) {
        if !self.added.is_empty() {
            into.push(patch::ListAddition {
                list: self.list,
                existing: self.existing.is_some(),
                entries: self.added,
            });
        }
    }
}

fn by_name<'k>(v: &'k Json<'k>) -> Option<&'k str> {
    json::str_at(v, "name")
}

fn by_secret_ref<'k>(v: &'k Json<'k>) -> Option<&'k str> {
    json::str_at(json::get(v, "secretRef")?, "name")
}

fn by_mount_path<'k>(v: &'k Json<'k>) -> Option<&'k str> {
    json::str_at(v, "mountPath")
}

/// A pod volume name for a credential: a DNS label, stable for the same credential.
pub fn volume_name(credential: &str) -> String {
    let mut name: String = format!("credential-{credential}").replace('.', "-");
    name.truncate(63);
    name.trim_end_matches('-').to_owned()
}

fn inject<'p>(
    fetchers: &crate::policy::Fetchers,
    spec: Option<&Json<'_>>,
    plan: &'p crate::policy::resolve::Plan,
) -> (patch::SpecAdditions<Entry<'p>>, Vec<String>) {
    use crate::policy::fetch;
    let mut warnings = Vec::new();
    let mut additions = patch::SpecAdditions::default();
    let Some(spec) = spec.filter(|s| s.is_object()) else {
        return (additions, warnings);
    };
    let volume_names: Vec<String> = plan
        .volumes
        .iter()
        .map(|(credential, _, _)| volume_name(credential))
        .collect();
    let mut volumes = Append::new(spec, "volumes", by_name);
    for ((_, secret, _), name) in plan.volumes.iter().zip(&volume_names) {
        if volumes.find(name).is_none() {
            volumes.push(
                name,
                Entry::SecretVolume {
                    name: name.clone(),
                    secret,
                },
            );
        }
    }
    // (volume, fetcher container) of each data source, named once.
    let fetch_names: Vec<(String, String)> = plan
        .fetches
        .iter()
        .map(|f| {
            (
                fetch::volume_name(&f.source.mount_path),
                fetch::container_name(&f.source),
            )
        })
        .collect();
    for (volume, _) in &fetch_names {
        if volumes.find(volume).is_none() {
            volumes.push(
                volume,
                Entry::EmptyDir {
                    name: volume.clone(),
                },
            );
        }
    }
    volumes.finish(&mut additions.spec);
    // The fetchers run after the pod's own init containers.
    let mut fetchers_added = Append::new(spec, "initContainers", by_name);
    for (f, (_, container)) in plan.fetches.iter().zip(&fetch_names) {
        if fetchers_added.find(container).is_none() {
            fetchers_added.push(
                container,
                Entry::Container(fetch::container(fetchers, plan, f)),
            );
        }
    }
    fetchers_added.finish(&mut additions.spec);
    let mut pulls = Append::new(spec, "imagePullSecrets", by_name);
    for secret in &plan.pull_secrets {
        if pulls.find(secret).is_none() {
            pulls.push(secret, Entry::PullSecret { name: secret });
        }
    }
    pulls.finish(&mut additions.spec);
    for list in ["initContainers", "containers"] {
        let Some(containers) = json::array_at(spec, list) else {
            continue;
        };
        for (i, container) in containers.iter().enumerate() {
            // The API server sends containers as objects; anything else (only
            // a client posting to credgate itself can send it) gets nothing,
            // and the API server would refuse such a pod anyway.
            if !container.is_object() {
                continue;
            }
            // A fetcher credgate added (seen again on a second pass) has what it needs.
            let name = json::str_at(container, "name").unwrap_or_default();
            if list == "initContainers" && fetch_names.iter().any(|(_, c)| c == name) {
                continue;
            }
            // Cut to the 63 characters a valid container name has: it is quoted in warnings.
            let cname: String = name.chars().take(63).collect();
            let mut lists = Vec::new();
            let mut vars = Append::new(container, "env", by_name);
            for (env, secret, key) in &plan.env {
                let entry = Entry::Env {
                    name: env,
                    secret,
                    key,
                };
                match vars.find(env) {
                    None => vars.push(env, entry),
                    Some(Found::Added(added)) if *added == entry => {}
                    Some(Found::Existing(own))
                        if patch::WriteJson::to_value(&entry).is_ok_and(|e| e == json::to_value(own)) => {}
                    Some(_) => warnings.push(format!(
                        "container {cname:?} sets {env} itself; its own value wins over the credential annotation"
                    )),
                }
            }
            vars.finish(&mut lists);
            let mut sources = Append::new(container, "envFrom", by_secret_ref);
            for secret in &plan.env_from {
                if sources.find(secret).is_none() {
                    sources.push(secret, Entry::EnvFrom { secret });
                }
            }
            sources.finish(&mut lists);
            let mut mounts = Append::new(container, "volumeMounts", by_mount_path);
            for ((credential, _, path), name) in plan.volumes.iter().zip(&volume_names) {
                match mounts.find(path) {
                    None => mounts.push(
                        path,
                        Entry::Mount {
                            name: name.clone(),
                            path,
                        },
                    ),
                    Some(Found::Existing(m)) if json::str_at(m, "name") == Some(name.as_str()) => {}
                    Some(Found::Added(Entry::Mount { name: added, .. })) if added == name => {}
                    Some(_) => warnings.push(format!(
                        "container {cname:?} already mounts something at {path}; credential {credential:?} is not mounted there"
                    )),
                }
            }
            // Every workload container reads the data sources (the fetchers write them).
            if list == "containers" {
                for (f, (name, _)) in plan.fetches.iter().zip(&fetch_names) {
                    let path = &f.source.mount_path;
                    if mounts.find(path).is_none() {
                        mounts.push(
                            path,
                            Entry::Mount {
                                name: name.clone(),
                                path,
                            },
                        );
                    }
                }
            }
            mounts.finish(&mut lists);
            if !lists.is_empty() {
                additions.containers.push(patch::ContainerAdditions {
                    list,
                    index: i,
                    lists,
                });
            }
        }
    }
    warnings.sort();
    warnings.dedup();
    if warnings.len() > MAX_WARNINGS {
        let more = warnings.len() - MAX_WARNINGS;
        warnings.truncate(MAX_WARNINGS);
        warnings.push(format!("… and {more} more warnings like these"));
    }
    (additions, warnings)
}

/// Warnings kubectl prints for one pod, at most.
const MAX_WARNINGS: usize = 20;

#[cfg(test)]
mod pod_tests {
    use crate::policy::Settings;
    use crate::policy::resolve::tests::index;
    use serde_json::{Value, json};

    fn pod(annotations: Value, containers: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "p", "namespace": "team-a", "annotations": annotations},
               "spec": {"containers": containers, "initContainers": [{"name": "init", "image": "busybox"}]}})
    }

    /// `mutate::pod` on a Pod given as JSON: its plan.
    fn decide(p: &Value) -> Result<crate::policy::resolve::Plan, crate::policy::Deny> {
        let annotations: Option<std::collections::BTreeMap<String, String>> =
            serde_json::from_value(p["metadata"]["annotations"].clone()).ok();
        super::pod(
            &Settings::default(),
            &index(),
            "team-a",
            annotations.as_ref(),
            spec_of(p).as_ref(),
        )
    }

    /// The Pod's spec as the webhook reads it.
    fn spec_of(p: &Value) -> Option<crate::model::json::Json<'_>> {
        p.get("spec").map(crate::model::json::from_value)
    }

    /// Containers × references is bounded, S3 and Git counting two each, and
    /// a long variable name is refused before it is copied into every container.
    #[test]
    fn the_injection_is_bounded() {
        let containers = |n: usize| {
            Value::Array(
                (0..n)
                    .map(|i| json!({"name": format!("c{i}"), "image": "busybox"}))
                    .collect(),
            )
        };
        let s3_and_git = json!({"run.ai/s3-credential": "s3", "run.ai/git-credential": "git"});
        // S3 adds two variables per container, Git four (v3 and v4 names).
        assert!(decide(&pod(s3_and_git.clone(), containers(1_600))).is_ok());
        let err = decide(&pod(s3_and_git, containers(1_700))).unwrap_err();
        assert!(
            err.0.contains("10000") && err.0.contains("× 6 references"),
            "{err}"
        );
        let long = format!("{}=db:Password", "A".repeat(300));
        let err = decide(&pod(json!({"run.ai/credentials-env": long}), containers(1))).unwrap_err();
        assert!(
            err.0.contains("is not an environment variable name"),
            "{err}"
        );
        assert!(
            err.0.len() < 500,
            "quoted, not copied: {} bytes",
            err.0.len()
        );
    }

    /// Strings that need escaping stay whole; a container's list that is not
    /// an array is replaced by the injected one, and a container that is not
    /// an object gets nothing; a container with more than 16 variables of
    /// its own still sees the one that is already there.
    #[test]
    fn odd_pods_get_the_same_object_either_way() {
        let mut own: Vec<Value> = (0..20)
            .map(|i| json!({"name": format!("OWN_{i}"), "value": "x"}))
            .collect();
        own.push(json!({"name": "DB_URL", "valueFrom": {"secretKeyRef": {"name": "db-secret", "key": "url"}}}));
        let p = pod(
            json!({"run.ai/credentials-env": "DB_URL=db:url", "run.ai/credentials-volume": "db:/etc/d\"b\\ é",
                   "run.ai/image-pull-credentials": "none"}),
            json!([
                {"name": "q\"uote", "image": "nginx", "env": {"not": "a list"}},
                "not a container",
                {"name": "many", "image": "nginx", "env": own}
            ]),
        );
        let (once, warnings) = mutated(&p);
        assert!(warnings.is_empty(), "{warnings:?}");
        let containers = &once["spec"]["containers"];
        assert_eq!(
            containers[0]["env"],
            json!([{"name": "DB_URL", "valueFrom": {"secretKeyRef": {"name": "db-secret", "key": "url"}}}])
        );
        assert_eq!(
            containers[0]["volumeMounts"][0]["mountPath"],
            "/etc/d\"b\\ é"
        );
        assert_eq!(containers[1], "not a container");
        assert_eq!(containers[2]["env"].as_array().unwrap().len(), 21);
    }

    /// A spec with a key twice (only a client other than the API server can
    /// send one) reads as serde_json reads it, as its last member, and the one
    /// `replace` gives the same Pod as the small operations.
    #[test]
    fn a_key_twice_reads_as_its_last_member() {
        let text = r#"{"containers":"x","containers":[{"name":"a","image":"nginx"}],"volumes":[],"volumes":[{"name":"v","emptyDir":{}}]}"#;
        let spec: crate::model::json::Json = serde_json::from_str(text).unwrap();
        let mut p = pod(
            json!({"run.ai/credentials-env": "DB_URL=db:url", "run.ai/credentials-volume": "db:/etc/db",
                   "run.ai/image-pull-credentials": "none"}),
            Value::Null,
        );
        p["spec"] = serde_json::from_str(text).unwrap();
        let plan = decide(&p).unwrap();
        let injection = super::pod_inject(&Settings::default().fetchers, Some(&spec), &plan);
        let mut small = p.clone();
        json_patch::patch(&mut small, &injection.additions.ops().unwrap()).unwrap();
        let sent: Vec<json_patch::PatchOperation> =
            serde_json::from_slice(&injection.additions.patch_json(Some(&spec)).unwrap()).unwrap();
        assert_eq!(sent.len(), 1, "{sent:?}");
        let mut replaced = p.clone();
        json_patch::patch(&mut replaced, &sent).unwrap();
        assert_eq!(replaced, small);
        assert_eq!(small["spec"]["containers"][0]["env"][0]["name"], "DB_URL");
        assert_eq!(small["spec"]["volumes"].as_array().map(Vec::len), Some(2));
    }

    /// A list's keys find the first item with each, whether few or many.
    #[test]
    fn keys_find_the_first_item_few_or_many() {
        let names: Vec<String> = (0..40).map(|i| format!("K{}", i % 30)).collect();
        let mut keys = super::Keys::Few(Vec::new());
        for (i, k) in names.iter().enumerate() {
            keys.insert(k, (false, i));
            let many = matches!(keys, super::Keys::Many(_));
            assert_eq!(many, i >= super::Keys::FEW, "{i}");
        }
        for i in 0..30 {
            assert_eq!(keys.get(&format!("K{i}")), Some((false, i)));
        }
        assert_eq!(keys.get("K30"), None);
        let mut few = super::Keys::Few(Vec::new());
        few.insert("a", (false, 0));
        few.insert("a", (true, 5));
        assert_eq!(few.get("a"), Some((false, 0)));
    }

    /// The small operations and the warnings of a Pod's injection.
    fn injected(p: &Value) -> (Vec<json_patch::PatchOperation>, Vec<String>) {
        let plan = decide(p).unwrap();
        let spec = spec_of(p);
        let injection = super::pod_inject(&Settings::default().fetchers, spec.as_ref(), &plan);
        (injection.additions.ops().unwrap(), injection.warnings)
    }

    /// The Pod once injected, and the warnings; the patch the webhook sends
    /// (one `replace` of the spec) gives the same Pod as the small operations.
    fn mutated(p: &Value) -> (Value, Vec<String>) {
        let (ops, warnings) = injected(p);
        let mut out = p.clone();
        json_patch::patch(&mut out, &ops).unwrap();
        let plan = decide(p).unwrap();
        let spec = spec_of(p);
        let injection = super::pod_inject(&Settings::default().fetchers, spec.as_ref(), &plan);
        let sent: Vec<json_patch::PatchOperation> =
            serde_json::from_slice(&injection.additions.patch_json(spec.as_ref()).unwrap())
                .unwrap();
        assert!(
            sent.len() == 1 && sent[0].path().as_str() == "/spec",
            "{sent:?}"
        );
        let mut replaced = p.clone();
        json_patch::patch(&mut replaced, &sent).unwrap();
        assert_eq!(replaced, out);
        (out, warnings)
    }

    #[test]
    fn injects_everything_once() {
        let p = pod(
            json!({"run.ai/credentials-env": "DB_URL=db:url", "run.ai/credentials-env-from": "db",
                   "run.ai/credentials-volume": "db:/etc/db", "run.ai/s3-credential": "s3", "run.ai/git-credential": "git"}),
            json!([{"name": "a", "image": "ghcr.io/org/a"}, {"name": "b", "image": "nginx", "env": [{"name": "X", "value": "1"}]}, {"name": "c", "image": "busybox"}]),
        );
        let (once, warnings) = mutated(&p);
        assert!(warnings.is_empty(), "{warnings:?}");
        for c in once["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .chain(once["spec"]["initContainers"].as_array().unwrap())
        {
            let env: Vec<&str> = c["env"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap())
                .collect();
            for wanted in [
                "DB_URL",
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "GIT_SYNC_USERNAME",
                "GIT_SYNC_PASSWORD",
            ] {
                assert_eq!(
                    env.iter().filter(|e| **e == wanted).count(),
                    1,
                    "{wanted} in {}",
                    c["name"]
                );
            }
            assert_eq!(c["envFrom"], json!([{"secretRef": {"name": "db-secret"}}]));
            assert_eq!(
                c["volumeMounts"],
                json!([{"name": "credential-db", "mountPath": "/etc/db", "readOnly": true}])
            );
        }
        assert_eq!(
            once["spec"]["containers"][1]["env"][0],
            json!({"name": "X", "value": "1"}),
            "user env kept first"
        );
        assert_eq!(
            once["spec"]["containers"][1]["env"][1],
            json!({"name": "DB_URL", "valueFrom": {"secretKeyRef": {"name": "db-secret", "key": "url"}}}),
            "the Kubernetes API's shape, after the user's own"
        );
        assert_eq!(
            once["spec"]["volumes"],
            json!([{"name": "credential-db", "secret": {"secretName": "db-secret", "defaultMode": 256}}])
        );
        assert_eq!(
            once["spec"]["imagePullSecrets"],
            json!([{"name": "ghcr"}, {"name": "hub"}])
        );
        let (ops, _) = injected(&once);
        assert!(ops.is_empty(), "a second pass changes nothing: {ops:?}");
    }

    /// Issue 18: a Git and an S3 data source get an emptyDir each, a fetcher
    /// after the pod's own init containers (credentials as secretKeyRefs,
    /// never values) and a read-only mount in every container; a second
    /// pass adds nothing.
    #[test]
    fn data_sources_get_fetchers_volumes_and_mounts() {
        let p = pod(
            json!({"run.ai/git-credential": "git", "run.ai/s3-credential": "s3",
                   "run.ai/git-source": "https://github.com/acme/models.git#v2:/data/models",
                   "run.ai/s3-source": "s3://datasets/train:/data/train",
                   "run.ai/s3-endpoint": "http://minio.storage:9000",
                   "run.ai/image-pull-credentials": "none"}),
            json!([{"name": "a", "image": "nginx"}, {"name": "b", "image": "nginx"}]),
        );
        let (once, warnings) = mutated(&p);
        assert!(warnings.is_empty(), "{warnings:?}");
        let init = once["spec"]["initContainers"].as_array().unwrap();
        let names: Vec<&str> = init.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names[0], "init", "the user's init container stays first");
        assert!(
            names[1].starts_with("credgate-git-") && names[2].starts_with("credgate-s3-"),
            "{names:?}"
        );
        let git = &init[1];
        assert_eq!(git["image"], crate::policy::GIT_SYNC_IMAGE);
        let env = |c: &Value, name: &str| {
            c["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == name)
                .cloned()
                .unwrap_or(Value::Null)
        };
        assert_eq!(
            env(git, "GITSYNC_REPO")["value"],
            "https://github.com/acme/models.git"
        );
        assert_eq!(env(git, "GITSYNC_REF")["value"], "v2");
        assert_eq!(env(git, "GITSYNC_ROOT")["value"], "/data/models");
        assert_eq!(env(git, "GITSYNC_LINK")["value"], "models");
        assert_eq!(env(git, "GITSYNC_ONE_TIME")["value"], "true");
        assert_eq!(
            env(git, "GITSYNC_PASSWORD"),
            json!({"name": "GITSYNC_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "git-secret", "key": "password"}}})
        );
        assert!(git.get("restartPolicy").is_none());
        assert_eq!(git["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            git["securityContext"]["capabilities"]["drop"],
            json!(["ALL"])
        );
        let s3 = &init[2];
        assert_eq!(
            s3["command"],
            json!([
                "aws",
                "s3",
                "sync",
                "--only-show-errors",
                "s3://datasets/train",
                "/data/train"
            ])
        );
        assert_eq!(
            env(s3, "AWS_ENDPOINT_URL")["value"],
            "http://minio.storage:9000"
        );
        assert_eq!(
            env(s3, "AWS_SECRET_ACCESS_KEY")["valueFrom"]["secretKeyRef"]["key"],
            "SecretKey"
        );
        // The user's init container is not a fetcher: it gets the credentials' variables, not the mounts.
        assert!(init[0].get("volumeMounts").is_none());
        for c in once["spec"]["containers"].as_array().unwrap() {
            let mounts = c["volumeMounts"].as_array().unwrap();
            let paths: Vec<(&str, bool)> = mounts
                .iter()
                .map(|m| (m["mountPath"].as_str().unwrap(), m["readOnly"] == true))
                .collect();
            assert_eq!(
                paths,
                [("/data/models", true), ("/data/train", true)],
                "{}",
                c["name"]
            );
            // v3 and v4 names of the Git credential, for workloads that fetch themselves.
            for name in ["GIT_SYNC_USERNAME", "GITSYNC_USERNAME", "GITSYNC_PASSWORD"] {
                assert!(!env(c, name).is_null(), "{name}");
            }
        }
        let volumes = once["spec"]["volumes"].as_array().unwrap();
        assert!(
            volumes.iter().all(|v| v["emptyDir"] == json!({})),
            "{volumes:?}"
        );
        assert_eq!(volumes.len(), 2);
        let (ops, _) = injected(&once);
        assert!(ops.is_empty(), "a second pass changes nothing: {ops:?}");
        let text = serde_json::to_string(&once).unwrap();
        assert!(
            !text.contains("e2e-secret"),
            "no secret value is ever in a pod"
        );
    }

    #[test]
    fn periodic_git_sync_is_a_native_sidecar_and_public_sources_sign_nothing() {
        let p = pod(
            json!({"run.ai/git-source": "https://github.com/acme/public.git:/src",
                   "run.ai/git-sync": "periodic",
                   "run.ai/s3-source": "s3://open-data:/data",
                   "run.ai/image-pull-credentials": "none"}),
            json!([{"name": "a", "image": "nginx"}]),
        );
        let (once, _) = mutated(&p);
        let init = once["spec"]["initContainers"].as_array().unwrap();
        assert_eq!(init[1]["restartPolicy"], "Always");
        assert!(
            init[1]["env"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["name"] != "GITSYNC_ONE_TIME")
        );
        assert!(
            init[1]["env"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e.get("valueFrom").is_none())
        );
        assert_eq!(
            init[2]["command"].as_array().unwrap().last().unwrap(),
            "--no-sign-request"
        );
    }

    #[test]
    fn a_data_source_may_not_take_a_mounts_place_nor_use_the_wrong_credential() {
        let taken = pod(
            json!({"run.ai/git-source": "https://h/x.git:/data", "run.ai/image-pull-credentials": "none"}),
            json!([{"name": "a", "image": "nginx", "volumeMounts": [{"name": "mine", "mountPath": "/data/cache"}]}]),
        );
        let err = decide(&taken).unwrap_err().0;
        assert!(
            err.contains("cannot be mounted at /data") && err.contains("\"mine\""),
            "{err}"
        );
        let credential_volume = pod(
            json!({"run.ai/s3-source": "s3://bucket:/config", "run.ai/credentials-volume": "db:/config/db", "run.ai/image-pull-credentials": "none"}),
            json!([{"name": "a", "image": "nginx"}]),
        );
        assert!(
            decide(&credential_volume)
                .unwrap_err()
                .0
                .contains("credential \"db\"")
        );
        // A container or a volume with a fetcher's name is refused, not silently reused.
        let named = pod(
            json!({"run.ai/git-source": "https://h/x.git:/src", "run.ai/image-pull-credentials": "none"}),
            json!([{"name": super::super::fetch::container_name(&crate::model::datasource::DataSource {
                source: crate::model::datasource::Source::Git { repo: "https://h/x.git".into(), git_ref: "HEAD".into() },
                mount_path: "/src".into() }), "image": "nginx"}]),
        );
        assert!(
            decide(&named)
                .unwrap_err()
                .0
                .contains("has a container named")
        );
        let mut volume = pod(
            json!({"run.ai/git-source": "https://h/x.git:/src", "run.ai/image-pull-credentials": "none"}),
            json!([{"name": "a", "image": "nginx"}]),
        );
        volume["spec"]["volumes"] = json!([{"name": super::super::fetch::volume_name("/src"), "persistentVolumeClaim": {"claimName": "x"}}]);
        assert!(
            decide(&volume)
                .unwrap_err()
                .0
                .contains("not credgate's emptyDir")
        );
        let wrong_type = pod(
            json!({"run.ai/git-source": "https://h/x.git:/src", "run.ai/git-credential": "s3", "run.ai/image-pull-credentials": "none"}),
            json!([{"name": "a", "image": "nginx"}]),
        );
        let err = decide(&wrong_type).unwrap_err().0;
        assert!(err.contains("must be of type password"), "{err}");
    }

    #[test]
    fn the_users_own_values_win_with_a_warning() {
        let p = pod(
            json!({"run.ai/credentials-env": "DB_URL=db:url", "run.ai/credentials-volume": "db:/etc/db", "run.ai/image-pull-credentials": "none"}),
            json!([{"name": "a", "image": "nginx", "env": [{"name": "DB_URL", "value": "postgres://local"}],
                    "volumeMounts": [{"name": "mine", "mountPath": "/etc/db"}]}]),
        );
        let (once, warnings) = mutated(&p);
        assert_eq!(
            once["spec"]["containers"][0]["env"],
            json!([{"name": "DB_URL", "value": "postgres://local"}])
        );
        assert_eq!(
            once["spec"]["containers"][0]["volumeMounts"],
            json!([{"name": "mine", "mountPath": "/etc/db"}])
        );
        assert!(once["spec"].get("imagePullSecrets").is_none());
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].contains("\"a\" already mounts something at /etc/db"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].contains("\"a\" sets DB_URL itself"),
            "{warnings:?}"
        );
    }

    #[test]
    fn refusals() {
        let p = pod(
            json!({"run.ai/s3-credential": "ghcr"}),
            json!([{"name": "a", "image": "nginx"}]),
        );
        let err = decide(&p).unwrap_err();
        assert!(err.0.contains("must be of type access-key"), "{err}");
        let p = pod(
            json!({"run.ai/credentials-env": "nope"}),
            json!([{"name": "a", "image": "nginx"}]),
        );
        let err = decide(&p).unwrap_err();
        assert!(
            err.0
                .contains("\"nope\" must look like ENV=<credential>:<key>"),
            "{err}"
        );
    }
}
