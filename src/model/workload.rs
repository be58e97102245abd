//! The workload side of the contract: annotations that name credentials, and
//! the Secret references a pod spec makes natively.
//!
//! Pure parsing; errors quote the bad part of the annotation so kubectl shows
//! the person exactly what to fix.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, PodSpec, PodTemplate, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

use crate::model::credential::is_dns_subdomain;
use crate::model::json::{self, Json};

/// Annotations on a Pod, or on the pod template's metadata of a workload.
pub mod annotation {
    /// `ENV=<credential>:<key>, ...` → env vars from secret keys.
    pub const ENV: &str = "run.ai/credentials-env";
    /// `<credential>, ...` → `envFrom.secretRef`.
    pub const ENV_FROM: &str = "run.ai/credentials-env-from";
    /// `<credential>:<mountPath>, ...` → read-only secret volumes.
    pub const VOLUME: &str = "run.ai/credentials-volume";
    /// `<access-key credential>` → AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
    pub const S3: &str = "run.ai/s3-credential";
    /// `<password credential>` → GIT_SYNC_USERNAME / GIT_SYNC_PASSWORD (git-sync
    /// v3) and GITSYNC_USERNAME / GITSYNC_PASSWORD (v4); also how the Git data
    /// sources of [`crate::model::datasource`] fetch.
    pub const GIT: &str = "run.ai/git-credential";
    /// `auto` (default) | `none` | `<credential>, ...` → imagePullSecrets.
    pub const IMAGE_PULL: &str = "run.ai/image-pull-credentials";
}

/// The kinds of workload credgate follows. Everything about a kind is in
/// [`KINDS`], the one table; [`visit`] reaches the typed object of a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkloadKind {
    Pod,
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    Job,
    CronJob,
    PodTemplate,
}

/// One row of the table of workload kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindInfo {
    pub kind: WorkloadKind,
    /// API group (`""` for the core group) and version.
    pub group: &'static str,
    pub version: &'static str,
    /// The kind's name, as `kind` in an AdmissionReview and in `Kind/ns/name`.
    pub name: &'static str,
    /// The resource, as RBAC and the webhook rules name it.
    pub plural: &'static str,
    /// JSON pointer of the pod template in the object (`""`: the object is the pod).
    pub template: &'static str,
}

/// The one table of workload kinds, in [`WorkloadKind`] order. Listing,
/// watching, admission routing, metrics labels and the CLI derive from it; a
/// unit test checks it against k8s-openapi's types.
pub const KINDS: [KindInfo; 8] = {
    const fn row(
        kind: WorkloadKind,
        group: &'static str,
        name: &'static str,
        plural: &'static str,
        template: &'static str,
    ) -> KindInfo {
        KindInfo {
            kind,
            group,
            version: "v1",
            name,
            plural,
            template,
        }
    }
    use WorkloadKind::*;
    [
        row(Pod, "", "Pod", "pods", ""),
        row(
            Deployment,
            "apps",
            "Deployment",
            "deployments",
            "/spec/template",
        ),
        row(
            StatefulSet,
            "apps",
            "StatefulSet",
            "statefulsets",
            "/spec/template",
        ),
        row(
            DaemonSet,
            "apps",
            "DaemonSet",
            "daemonsets",
            "/spec/template",
        ),
        row(
            ReplicaSet,
            "apps",
            "ReplicaSet",
            "replicasets",
            "/spec/template",
        ),
        row(Job, "batch", "Job", "jobs", "/spec/template"),
        row(
            CronJob,
            "batch",
            "CronJob",
            "cronjobs",
            "/spec/jobTemplate/spec/template",
        ),
        row(PodTemplate, "", "PodTemplate", "podtemplates", "/template"),
    ]
};

impl WorkloadKind {
    /// Every kind, in table order.
    pub const ALL: [WorkloadKind; KINDS.len()] = {
        let mut all = [WorkloadKind::Pod; KINDS.len()];
        let mut i = 0;
        while i < KINDS.len() {
            all[i] = KINDS[i].kind;
            i += 1;
        }
        all
    };

    /// This kind's row of [`KINDS`].
    pub fn info(self) -> &'static KindInfo {
        &KINDS[self as usize]
    }

    pub fn as_str(self) -> &'static str {
        self.info().name
    }

    /// Where the pod template sits in an object of this kind (a JSON pointer).
    pub fn template_pointer(self) -> &'static str {
        self.info().template
    }

    /// The kind an AdmissionReview's `kind.group` and `kind.kind` name.
    pub fn from_group_kind(group: &str, kind: &str) -> Option<WorkloadKind> {
        KINDS
            .iter()
            .find(|k| k.group == group && k.name == kind)
            .map(|k| k.kind)
    }

    /// The kind named `name` (`Deployment`, …), in any group.
    pub fn from_name(name: &str) -> Option<WorkloadKind> {
        KINDS.iter().find(|k| k.name == name).map(|k| k.kind)
    }
}

/// A typed workload object (k8s-openapi) that code can list and watch.
pub trait Workload:
    PodParts
    + kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Workload for K where
    K: PodParts
        + kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// Code that works on any workload type: [`visit`] calls it with the typed
/// object of a kind.
pub trait KindVisitor {
    type Output;
    fn visit<K: Workload>(self) -> Self::Output;
}

/// Calls `visitor` with the k8s-openapi type of `kind`: the one match from a
/// kind to its type.
pub fn visit<V: KindVisitor>(kind: WorkloadKind, visitor: V) -> V::Output {
    match kind {
        WorkloadKind::Pod => visitor.visit::<Pod>(),
        WorkloadKind::Deployment => visitor.visit::<Deployment>(),
        WorkloadKind::StatefulSet => visitor.visit::<StatefulSet>(),
        WorkloadKind::DaemonSet => visitor.visit::<DaemonSet>(),
        WorkloadKind::ReplicaSet => visitor.visit::<ReplicaSet>(),
        WorkloadKind::Job => visitor.visit::<Job>(),
        WorkloadKind::CronJob => visitor.visit::<CronJob>(),
        WorkloadKind::PodTemplate => visitor.visit::<PodTemplate>(),
    }
}

/// An object of a followed kind: where its pod (or pod template) metadata and spec are.
pub trait PodParts {
    const KIND: WorkloadKind;
    /// The metadata that carries the credential annotations, and the pod spec.
    fn pod_parts(&self) -> (&ObjectMeta, Option<&PodSpec>);
}

static EMPTY_META: std::sync::LazyLock<ObjectMeta> = std::sync::LazyLock::new(ObjectMeta::default);

fn template(t: Option<&PodTemplateSpec>) -> (&ObjectMeta, Option<&PodSpec>) {
    match t {
        Some(t) => (t.metadata.as_ref().unwrap_or(&EMPTY_META), t.spec.as_ref()),
        None => (&EMPTY_META, None),
    }
}

impl PodParts for Pod {
    const KIND: WorkloadKind = WorkloadKind::Pod;
    fn pod_parts(&self) -> (&ObjectMeta, Option<&PodSpec>) {
        (&self.metadata, self.spec.as_ref())
    }
}

macro_rules! templated {
    ($($kind:ident => |$o:ident| $template:expr;)*) => {$(
        impl PodParts for $kind {
            const KIND: WorkloadKind = WorkloadKind::$kind;
            fn pod_parts(&self) -> (&ObjectMeta, Option<&PodSpec>) {
                let $o = self;
                template($template)
            }
        }
    )*};
}

templated! {
    Deployment => |d| d.spec.as_ref().map(|s| &s.template);
    StatefulSet => |d| d.spec.as_ref().map(|s| &s.template);
    DaemonSet => |d| d.spec.as_ref().map(|s| &s.template);
    ReplicaSet => |d| d.spec.as_ref().and_then(|s| s.template.as_ref());
    Job => |d| d.spec.as_ref().map(|s| &s.template);
    CronJob => |d| d.spec.as_ref().and_then(|s| s.job_template.spec.as_ref()).map(|s| &s.template);
    PodTemplate => |d| d.template.as_ref();
}

/// Everything a workload references: annotation credentials and native Secrets.
pub fn references(meta: &ObjectMeta, spec: Option<&PodSpec>) -> Vec<Reference> {
    // A malformed annotation is refused at admission; readers keep what they can read.
    let named: Vec<Reference> = parse(meta.annotations.as_ref())
        .map(|r| r.references().collect())
        .unwrap_or_default();
    let native = spec.into_iter().flat_map(secret_references);
    named.into_iter().chain(native).collect()
}

/// How a workload uses a credential, for the usage graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Usage {
    /// Env vars, envFrom or a volume.
    Environment,
    /// S3 or Git data source.
    DataSource,
    /// imagePullSecrets.
    ImagePull,
}

/// One reference of a workload.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reference {
    /// A Secret named in the pod spec (same namespace).
    Secret(String, Usage),
    /// A credential named by `run.ai/name` in an annotation.
    Credential(String, Usage),
}

/// `ENV=<credential>:<key>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvRef {
    pub env: String,
    pub credential: String,
    pub key: String,
}

/// `<credential>:<mountPath>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeRef {
    pub credential: String,
    pub mount_path: String,
}

/// What `run.ai/image-pull-credentials` asks for.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum ImagePull {
    #[default]
    Auto,
    None,
    Named(Vec<String>),
}

/// The parsed workload annotations.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Requests {
    pub env: Vec<EnvRef>,
    pub env_from: Vec<String>,
    pub volumes: Vec<VolumeRef>,
    pub s3: Option<String>,
    pub git: Option<String>,
    pub image_pull: ImagePull,
    /// `run.ai/git-source`, `run.ai/s3-source` and their settings.
    pub sources: crate::model::datasource::DataSources,
}

/// A malformed annotation; the message quotes the part at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("annotation {annotation}: {problem}")]
pub struct AnnotationError {
    pub annotation: &'static str,
    pub problem: String,
}

/// Items one annotation may list (env vars, credentials, volumes, pull secrets).
pub const MAX_ITEMS_PER_ANNOTATION: usize = 100;
/// Credential references one pod (or pod template) may make across its annotations.
pub const MAX_REFERENCES_PER_POD: usize = 200;
/// Characters of an annotation quoted in a message; the rest is cut.
const QUOTED_CHARS: usize = 120;

fn items(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// The items of `value`, refused past [`MAX_ITEMS_PER_ANNOTATION`] before any is read.
fn bounded_items<'v>(
    annotation: &'static str,
    value: &'v str,
) -> Result<impl Iterator<Item = &'v str>, AnnotationError> {
    items_up_to(annotation, value, MAX_ITEMS_PER_ANNOTATION)
}

/// The comma-separated items of `value`, refused past `limit` before any is
/// read: counting stops past the limit, so the work is bounded by it.
pub(crate) fn items_up_to<'v>(
    annotation: &'static str,
    value: &'v str,
    limit: usize,
) -> Result<impl Iterator<Item = &'v str>, AnnotationError> {
    if items(value).nth(limit).is_some() {
        return Err(AnnotationError {
            annotation,
            problem: format!(
                "lists more than {limit} items; credgate accepts at most {limit} per annotation"
            ),
        });
    }
    Ok(items(value))
}

/// `s` as `{:?}` quotes it, cut after [`QUOTED_CHARS`] characters.
pub(crate) fn quoted(s: &str) -> String {
    match s.char_indices().nth(QUOTED_CHARS) {
        None => format!("{s:?}"),
        Some((at, _)) => format!("{:?}…", &s[..at]),
    }
}

fn credential_name(
    annotation: &'static str,
    name: &str,
    whole: &str,
) -> Result<String, AnnotationError> {
    if is_dns_subdomain(name) {
        Ok(name.to_owned())
    } else {
        Err(AnnotationError {
            annotation,
            problem: format!(
                "{} in {} is not a credential name (lowercase letters, digits, '-', '.')",
                quoted(name),
                quoted(whole)
            ),
        })
    }
}

/// Longest environment variable name and mount path an annotation may give:
/// each is copied into every container, so their size is bounded too.
const MAX_ENV_NAME: usize = 256;
const MAX_MOUNT_PATH: usize = 4096;

fn is_env_name(s: &str) -> bool {
    if s.len() > MAX_ENV_NAME {
        return false;
    }
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
}

fn is_secret_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// Parses the credential annotations of a pod or pod template.
pub fn parse(annotations: Option<&BTreeMap<String, String>>) -> Result<Requests, AnnotationError> {
    let mut requests = Requests::default();
    let Some(annotations) = annotations else {
        return Ok(requests);
    };
    let get = |k: &str| annotations.get(k).map(String::as_str);
    if let Some(value) = get(annotation::ENV) {
        for item in bounded_items(annotation::ENV, value)? {
            let bad = |problem: String| AnnotationError {
                annotation: annotation::ENV,
                problem,
            };
            let (env, source) = item.split_once('=').ok_or_else(|| {
                bad(format!(
                    "{} must look like ENV=<credential>:<key>",
                    quoted(item)
                ))
            })?;
            let (credential, key) = source.split_once(':').ok_or_else(|| {
                bad(format!(
                    "{} must look like ENV=<credential>:<key>",
                    quoted(item)
                ))
            })?;
            let (env, credential, key) = (env.trim(), credential.trim(), key.trim());
            if !is_env_name(env) {
                return Err(bad(format!(
                    "{} in {} is not an environment variable name",
                    quoted(env),
                    quoted(item)
                )));
            }
            if !is_secret_key(key) {
                return Err(bad(format!(
                    "{} in {} is not a Secret key",
                    quoted(key),
                    quoted(item)
                )));
            }
            requests.env.push(EnvRef {
                env: env.to_owned(),
                credential: credential_name(annotation::ENV, credential, item)?,
                key: key.to_owned(),
            });
        }
    }
    if let Some(value) = get(annotation::ENV_FROM) {
        for item in bounded_items(annotation::ENV_FROM, value)? {
            requests
                .env_from
                .push(credential_name(annotation::ENV_FROM, item, value)?);
        }
    }
    if let Some(value) = get(annotation::VOLUME) {
        for item in bounded_items(annotation::VOLUME, value)? {
            let bad = |problem: String| AnnotationError {
                annotation: annotation::VOLUME,
                problem,
            };
            let (credential, path) = item.split_once(':').ok_or_else(|| {
                bad(format!(
                    "{} must look like <credential>:<mountPath>",
                    quoted(item)
                ))
            })?;
            let path = path.trim();
            if !path.starts_with('/') || path.contains(':') || path.len() > MAX_MOUNT_PATH {
                return Err(bad(format!(
                    "{} in {} must be an absolute path",
                    quoted(path),
                    quoted(item)
                )));
            }
            requests.volumes.push(VolumeRef {
                credential: credential_name(annotation::VOLUME, credential.trim(), item)?,
                mount_path: path.to_owned(),
            });
        }
    }
    for (key, slot) in [
        (annotation::S3, &mut requests.s3),
        (annotation::GIT, &mut requests.git),
    ] {
        if let Some(value) = get(key) {
            let value = value.trim();
            *slot = Some(credential_name(key, value, value)?);
        }
    }
    if let Some(value) = get(annotation::IMAGE_PULL) {
        requests.image_pull = match value.trim() {
            "" | "auto" => ImagePull::Auto,
            "none" => ImagePull::None,
            list => ImagePull::Named(
                bounded_items(annotation::IMAGE_PULL, list)?
                    .map(|n| credential_name(annotation::IMAGE_PULL, n, list))
                    .collect::<Result<_, _>>()?,
            ),
        };
    }
    requests.sources =
        crate::model::datasource::parse(annotations).map_err(|e| AnnotationError {
            annotation: e.annotation,
            problem: e.problem,
        })?;
    let named = match &requests.image_pull {
        ImagePull::Named(names) => names.len(),
        _ => 0,
    };
    let total = requests.env.len()
        + requests.env_from.len()
        + requests.volumes.len()
        + usize::from(requests.s3.is_some())
        + usize::from(requests.git.is_some())
        + named;
    if total > MAX_REFERENCES_PER_POD {
        return Err(AnnotationError {
            annotation: "run.ai/credentials-*",
            problem: format!(
                "the annotations make {total} credential references; credgate accepts at most {MAX_REFERENCES_PER_POD} per pod"
            ),
        });
    }
    Ok(requests)
}

impl Requests {
    /// The references of `self` that `old` did not have (what an UPDATE adds
    /// or changes); `auto` and `none` pull settings add nothing to check.
    pub fn added_since(&self, old: &Requests) -> Requests {
        let named = |p: &ImagePull| match p {
            ImagePull::Named(names) => names.clone(),
            _ => Vec::new(),
        };
        let old_named = named(&old.image_pull);
        let new_named: Vec<String> = named(&self.image_pull)
            .into_iter()
            .filter(|n| !old_named.contains(n))
            .collect();
        Requests {
            env: self
                .env
                .iter()
                .filter(|e| !old.env.contains(e))
                .cloned()
                .collect(),
            env_from: self
                .env_from
                .iter()
                .filter(|e| !old.env_from.contains(e))
                .cloned()
                .collect(),
            volumes: self
                .volumes
                .iter()
                .filter(|v| !old.volumes.contains(v))
                .cloned()
                .collect(),
            s3: self.s3.clone().filter(|s| old.s3.as_ref() != Some(s)),
            git: self.git.clone().filter(|g| old.git.as_ref() != Some(g)),
            image_pull: if new_named.is_empty() {
                ImagePull::default()
            } else {
                ImagePull::Named(new_named)
            },
            sources: if self.sources == old.sources {
                Default::default()
            } else {
                self.sources.clone()
            },
        }
    }

    /// The credentials these annotations name, with how they are used.
    pub fn references(&self) -> impl Iterator<Item = Reference> + '_ {
        let env = self
            .env
            .iter()
            .map(|e| &e.credential)
            .chain(&self.env_from)
            .chain(self.volumes.iter().map(|v| &v.credential));
        let data = self.s3.iter().chain(&self.git);
        let pull: &[String] = match &self.image_pull {
            ImagePull::Named(names) => names,
            _ => &[],
        };
        env.map(|c| Reference::Credential(c.clone(), Usage::Environment))
            .chain(data.map(|c| Reference::Credential(c.clone(), Usage::DataSource)))
            .chain(
                pull.iter()
                    .map(|c| Reference::Credential(c.clone(), Usage::ImagePull)),
            )
    }
}

/// The credential requests of a Pod or pod template given as JSON.
pub fn pod_json_requests(pod: &serde_json::Value) -> Result<Requests, AnnotationError> {
    let annotations: Option<BTreeMap<String, String>> = pod
        .pointer("/metadata/annotations")
        .and_then(|a| serde_json::from_value(a.clone()).ok());
    parse(annotations.as_ref())
}

/// The container and init-container images of a pod spec.
pub fn images<'s>(spec: Option<&'s Json<'_>>) -> Vec<&'s str> {
    ["containers", "initContainers"]
        .iter()
        .filter_map(|list| json::array_at(spec?, list))
        .flatten()
        .filter_map(|c| json::str_at(c, "image"))
        .collect()
}

/// Secrets a pod spec names natively: pull secrets, env, envFrom, volumes and projected sources.
pub fn secret_references(spec: &PodSpec) -> impl Iterator<Item = Reference> + '_ {
    let pulls = spec
        .image_pull_secrets
        .iter()
        .flatten()
        .map(|r| Reference::Secret(r.name.clone(), Usage::ImagePull));
    let env = all_containers(spec).flat_map(|(env, env_from)| {
        let keys = env
            .iter()
            .flatten()
            .filter_map(|e| e.value_from.as_ref()?.secret_key_ref.as_ref())
            .map(|r| Reference::Secret(r.name.clone(), Usage::Environment));
        let from = env_from
            .iter()
            .flatten()
            .filter_map(|e| e.secret_ref.as_ref())
            .map(|r| Reference::Secret(r.name.clone(), Usage::Environment));
        keys.chain(from)
    });
    let volumes = spec.volumes.iter().flatten().flat_map(|v| {
        let direct = v.secret.as_ref().and_then(|s| s.secret_name.clone());
        let projected = v
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
            .filter_map(|s| s.secret.as_ref().map(|s| s.name.clone()));
        direct
            .into_iter()
            .chain(projected)
            .map(|n| Reference::Secret(n, Usage::Environment))
    });
    pulls.chain(env).chain(volumes)
}

type EnvLists<'a> = (
    &'a Option<Vec<k8s_openapi::api::core::v1::EnvVar>>,
    &'a Option<Vec<k8s_openapi::api::core::v1::EnvFromSource>>,
);

fn all_containers(spec: &PodSpec) -> impl Iterator<Item = EnvLists<'_>> {
    let main = spec.containers.iter().map(|c| (&c.env, &c.env_from));
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| (&c.env, &c.env_from));
    let ephemeral = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .map(|c| (&c.env, &c.env_from));
    main.chain(init).chain(ephemeral)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hostile pod is refused before its references are read, with a message
    /// that names the limit and quotes no more than a few words.
    #[test]
    fn limits_per_annotation_and_per_pod() {
        let many = (0..20_000)
            .map(|i| format!("E{i}=t:k"))
            .collect::<Vec<_>>()
            .join(",");
        let err = parse(Some(&annotations(&[(annotation::ENV, &many)]))).unwrap_err();
        assert_eq!(err.annotation, annotation::ENV);
        assert!(
            err.problem.contains("lists more than 100 items")
                && err.problem.contains("at most 100"),
            "{err}"
        );
        let at_limit = (0..MAX_ITEMS_PER_ANNOTATION)
            .map(|i| format!("E{i}=t:k"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(
            parse(Some(&annotations(&[(annotation::ENV, &at_limit)])))
                .unwrap()
                .env
                .len(),
            100
        );

        let names = |prefix: &str| {
            (0..90)
                .map(|i| format!("{prefix}{i}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let vars = (0..90)
            .map(|i| format!("V{i}=t:k"))
            .collect::<Vec<_>>()
            .join(",");
        let (env_from, pulls) = (names("a"), names("b"));
        let err = parse(Some(&annotations(&[
            (annotation::ENV, &vars),
            (annotation::ENV_FROM, &env_from),
            (annotation::IMAGE_PULL, &pulls),
        ])))
        .unwrap_err();
        assert!(
            err.problem.contains("270 credential references")
                && err.problem.contains("at most 200"),
            "{err}"
        );

        let long = "x".repeat(100_000);
        let err = parse(Some(&annotations(&[(
            annotation::ENV_FROM,
            &long.to_uppercase(),
        )])))
        .unwrap_err();
        assert!(
            err.to_string().len() < 400,
            "a long value is cut when quoted: {} bytes",
            err.to_string().len()
        );
    }

    /// The table agrees with k8s-openapi's types, row by row, and with the enum's order.
    #[test]
    fn the_table_of_kinds_matches_the_api_types() {
        struct Check(WorkloadKind);
        impl KindVisitor for Check {
            type Output = ();
            fn visit<K: Workload>(self) {
                let info = self.0.info();
                assert_eq!(K::KIND, self.0);
                assert_eq!(info.kind, self.0);
                assert_eq!(K::group(&()), info.group);
                assert_eq!(K::version(&()), info.version);
                assert_eq!(K::kind(&()), info.name);
                assert_eq!(K::plural(&()), info.plural);
            }
        }
        for kind in WorkloadKind::ALL {
            visit(kind, Check(kind));
            assert_eq!(
                WorkloadKind::from_group_kind(kind.info().group, kind.as_str()),
                Some(kind)
            );
        }
        assert_eq!(WorkloadKind::from_group_kind("apps", "Pod"), None);
        assert_eq!(
            WorkloadKind::CronJob.template_pointer(),
            "/spec/jobTemplate/spec/template"
        );
    }
    use serde_json::json;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_annotation() {
        let a = annotations(&[
            (annotation::ENV, "DB_USER=db:User, DB_PASS = db:Password"),
            (annotation::ENV_FROM, "app-env, shared"),
            (annotation::VOLUME, "tls:/etc/tls"),
            (annotation::S3, "s3"),
            (annotation::GIT, " git "),
            (annotation::IMAGE_PULL, "reg-a, reg-b"),
        ]);
        let r = parse(Some(&a)).unwrap();
        assert_eq!(
            r.env[1],
            EnvRef {
                env: "DB_PASS".into(),
                credential: "db".into(),
                key: "Password".into()
            }
        );
        assert_eq!(r.env_from, ["app-env", "shared"]);
        assert_eq!(
            r.volumes,
            [VolumeRef {
                credential: "tls".into(),
                mount_path: "/etc/tls".into()
            }]
        );
        assert_eq!(
            (r.s3.as_deref(), r.git.as_deref()),
            (Some("s3"), Some("git"))
        );
        assert_eq!(
            r.image_pull,
            ImagePull::Named(vec!["reg-a".into(), "reg-b".into()])
        );
        let refs: Vec<_> = r.references().collect();
        assert!(refs.contains(&Reference::Credential("git".into(), Usage::DataSource)));
        assert!(refs.contains(&Reference::Credential("reg-b".into(), Usage::ImagePull)));
        assert_eq!(refs.len(), 9);
        assert_eq!(parse(None).unwrap().image_pull, ImagePull::Auto);
        let none = annotations(&[(annotation::IMAGE_PULL, "none")]);
        assert_eq!(parse(Some(&none)).unwrap().image_pull, ImagePull::None);
    }

    #[test]
    fn malformed_annotations_quote_the_bad_part() {
        let cases = [
            (
                annotation::ENV,
                "DB_USER=db",
                "\"DB_USER=db\" must look like ENV=<credential>:<key>",
            ),
            (
                annotation::ENV,
                "1X=db:k",
                "\"1X\" in \"1X=db:k\" is not an environment variable name",
            ),
            (
                annotation::ENV,
                "X=Db:k",
                "\"Db\" in \"X=Db:k\" is not a credential name",
            ),
            (
                annotation::ENV,
                "X=db:k/y",
                "\"k/y\" in \"X=db:k/y\" is not a Secret key",
            ),
            (
                annotation::VOLUME,
                "tls",
                "must look like <credential>:<mountPath>",
            ),
            (
                annotation::VOLUME,
                "tls:etc",
                "\"etc\" in \"tls:etc\" must be an absolute path",
            ),
            (
                annotation::S3,
                "My S3",
                "\"My S3\" in \"My S3\" is not a credential name",
            ),
            (annotation::IMAGE_PULL, "a, B", "\"B\" in \"a, B\""),
        ];
        for (key, value, fragment) in cases {
            let err = parse(Some(&annotations(&[(key, value)])))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(fragment) && err.contains(key),
                "{err:?} lacks {fragment:?}"
            );
        }
    }

    #[test]
    fn native_secret_references() {
        let spec: PodSpec = serde_json::from_value(json!({
            "imagePullSecrets": [{"name": "pull"}],
            "containers": [{"name": "c", "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}}, {"name": "B", "value": "x"}],
                            "envFrom": [{"secretRef": {"name": "from-secret"}}, {"configMapRef": {"name": "cm"}}]}],
            "initContainers": [{"name": "i", "env": [{"name": "C", "valueFrom": {"secretKeyRef": {"name": "init-secret", "key": "k"}}}]}],
            "volumes": [{"name": "v", "secret": {"secretName": "vol-secret"}},
                        {"name": "p", "projected": {"sources": [{"secret": {"name": "proj-secret"}}, {"serviceAccountToken": {"path": "t"}}]}}],
        }))
        .unwrap();
        let mut names: Vec<String> = secret_references(&spec)
            .map(|r| match r {
                Reference::Secret(n, _) => n,
                Reference::Credential(..) => unreachable!(),
            })
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "env-secret",
                "from-secret",
                "init-secret",
                "proj-secret",
                "pull",
                "vol-secret"
            ]
        );
    }
}
