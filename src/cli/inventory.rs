//! The credentials of a cluster as the CLI shows them: each with its fields,
//! its managed copies and the workloads that use it (the usage graph).
//!
//! Pure code over what the CLI listed (metadata of Secrets and namespaces,
//! references of workloads): references are resolved with the webhook's own
//! [`resolve`](crate::policy::resolve) rules, so the graph shows what credgate injects.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use crate::cli::table::{Column, Row};
use crate::model::credential::object_meta;
use crate::model::credential::{Scope, annotation};
use crate::model::workload::{Reference, Usage, WorkloadKind};
use crate::policy::Settings;
use crate::policy::resolve;
use crate::state::index::{Index, NamespaceInfo, SecretInfo};

/// A workload as listed: what it references, and whether a listed workload owns it
/// (a Deployment's ReplicaSets and Pods are shown as the Deployment).
#[derive(Clone, Debug)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
    pub references: Vec<Reference>,
    pub owned: bool,
    /// Data sources: `(the credential that fetches it, git:<url> or s3://…)`.
    pub sources: Vec<(String, String)>,
}

impl Workload {
    /// The data sources of a pod or template's annotations, each with the
    /// credential that fetches it (public sources name none and are left out).
    pub fn sources_of(
        annotations: Option<&std::collections::BTreeMap<String, String>>,
    ) -> Vec<(String, String)> {
        use crate::model::datasource::Source;
        let Ok(requests) = crate::model::workload::parse(annotations) else {
            return Vec::new();
        };
        requests
            .sources
            .sources
            .iter()
            .filter_map(|s| {
                let credential = match s.source {
                    Source::Git { .. } => requests.git.clone()?,
                    Source::S3 { .. } => requests.s3.clone()?,
                };
                Some((credential, s.display()))
            })
            .collect()
    }
}

/// Everything listed from the cluster.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    pub namespaces: Vec<(String, NamespaceInfo)>,
    /// Secrets labelled as credentials (or as existing secrets behind one).
    pub secrets: Vec<ObjectMeta>,
    /// Managed copies.
    pub copies: Vec<ObjectMeta>,
    pub workloads: Vec<Workload>,
}

/// A workload that uses a credential.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct User {
    pub namespace: String,
    pub kind: &'static str,
    pub name: String,
    pub usage: &'static str,
    /// For a data-source usage: the sources it fetches (`git:<url>`, `s3://…`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
}

impl User {
    pub fn path(&self) -> String {
        format!(
            "{}/{}/{}",
            self.namespace,
            self.kind.to_lowercase(),
            self.name
        )
    }
}

/// A managed copy where one should be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Copy {
    pub namespace: String,
    pub secret: String,
    /// `present`, `missing`, or (when the source data could be read) `up to date` / `stale`.
    pub state: String,
}

/// One credential, every field the CLI shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Credential {
    pub name: String,
    pub description: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    pub status_message: String,
    /// `cluster`, `department/<d>`, `project/<p>`, or `invalid: <why>`.
    pub scope: String,
    pub namespace: String,
    /// The Secret's name.
    pub kubernetes_name: String,
    pub uid: String,
    pub existing_secret: Option<String>,
    pub keys: Vec<String>,
    pub registries: Vec<String>,
    pub created_by: String,
    pub creation_time: String,
    pub cluster: String,
    pub users: Vec<User>,
    pub copies: Vec<Copy>,
    #[serde(skip)]
    scope_value: Option<Scope>,
}

impl Credential {
    /// The scope, when the labels describe a valid one.
    pub fn scope_value(&self) -> Option<&Scope> {
        self.scope_value.as_ref()
    }

    /// The row of the credentials table.
    pub fn row(&self) -> Row {
        // A data-source user is shown with its sources: `git:<url> (ns/kind/name)`.
        let users = |usage: Usage| {
            self.users
                .iter()
                .filter(|u| u.usage == usage_name(usage))
                .flat_map(|u| match u.sources.as_slice() {
                    [] => vec![u.path()],
                    sources => sources
                        .iter()
                        .map(|s| format!("{s} ({})", u.path()))
                        .collect(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut row = Row::default();
        for column in Column::ALL {
            let value = match column {
                Column::Credential => self.name.clone(),
                Column::Description => self.description.clone(),
                Column::Type => self.kind.clone(),
                Column::Status => self.status.clone(),
                Column::Scope => self.scope.clone(),
                Column::KubernetesName => self.kubernetes_name.clone(),
                Column::Environments => users(Usage::Environment),
                Column::DataSources => users(Usage::DataSource),
                Column::CreatedBy => self.created_by.clone(),
                Column::CreationTime => self.creation_time.clone(),
                Column::Cluster => self.cluster.clone(),
            };
            row.set(column, value);
        }
        row
    }

    /// Cluster and department credentials reach projects as copies.
    pub fn is_propagated(&self) -> bool {
        matches!(
            self.scope_value,
            Some(Scope::Cluster | Scope::Department(_))
        )
    }

    /// `namespace/name` of the Secret.
    pub fn secret_path(&self) -> String {
        format!("{}/{}", self.namespace, self.kubernetes_name)
    }
}

fn usage_name(usage: Usage) -> &'static str {
    match usage {
        Usage::Environment => "environment",
        Usage::DataSource => "data source",
        Usage::ImagePull => "image pull",
    }
}

/// No status stamped: the seeds' "No status".
pub const NO_STATUS: &str = "No status";

/// The webhook's snapshot of what was listed: namespaces, credentials and copies.
pub fn index(settings: &Settings, listing: &Listing) -> Index {
    let mut index = Index::default();
    for (name, info) in &listing.namespaces {
        index.set_namespace(name, info.clone());
    }
    for md in &listing.secrets {
        let (ns, name) = ns_name(md);
        let meta = object_meta(md, ns);
        if meta.is_credential() {
            let info = SecretInfo::from_meta(
                &meta,
                md.uid.as_deref().unwrap_or_default(),
                &settings.credentials_namespace,
            );
            index.set_secret(ns, name, info);
        }
    }
    for md in &listing.copies {
        let (ns, name) = ns_name(md);
        let hash = md
            .annotations
            .as_ref()
            .and_then(|a| a.get(crate::model::copy::HASH_ANNOTATION))
            .map(String::as_str)
            .unwrap_or("");
        index.set_copy(ns, name, Some(hash));
    }
    index
}

/// Builds every credential of `listing`, sorted by namespace and Secret name.
pub fn build(settings: &Settings, cluster: &str, listing: &Listing) -> Vec<Credential> {
    let index = index(settings, listing);
    let mut copy_sources: HashMap<(&str, &str), (String, String)> = HashMap::new();
    for md in &listing.copies {
        let (ns, name) = ns_name(md);
        if let Some((src_ns, src_name)) = md
            .annotations
            .as_ref()
            .and_then(|a| a.get(crate::model::copy::SOURCE_ANNOTATION))
            .and_then(|s| s.split_once('/'))
        {
            copy_sources.insert((ns, name), (src_ns.to_owned(), src_name.to_owned()));
        }
    }

    // Who uses what, keyed by the credential's Secret.
    let mut users: BTreeMap<(String, String), Vec<User>> = BTreeMap::new();
    for w in listing.workloads.iter().filter(|w| !w.owned) {
        for reference in &w.references {
            let (source, usage) = match reference {
                Reference::Credential(name, usage) => (
                    resolve::credential(settings, &index, &w.namespace, name)
                        .ok()
                        .map(|r| (r.source.0.to_owned(), r.source.1.to_owned())),
                    *usage,
                ),
                Reference::Secret(name, usage) => (
                    native_source(&index, &copy_sources, &w.namespace, name),
                    *usage,
                ),
            };
            if let Some(source) = source {
                let sources = match (reference, usage) {
                    (Reference::Credential(name, _), Usage::DataSource) => w
                        .sources
                        .iter()
                        .filter(|(c, _)| c == name)
                        .map(|(_, s)| s.clone())
                        .collect(),
                    _ => Vec::new(),
                };
                users.entry(source).or_default().push(User {
                    namespace: w.namespace.clone(),
                    kind: w.kind.as_str(),
                    name: w.name.clone(),
                    usage: usage_name(usage),
                    sources,
                });
            }
        }
    }

    let mut out = Vec::new();
    for md in &listing.secrets {
        let (ns, name) = ns_name(md);
        let Some(info) = index.secret(ns, name) else {
            continue;
        };
        if index.backs_a_credential(ns, name) {
            continue;
        }
        let meta = object_meta(md, ns);
        let text = |key: &str| meta.annotation(key).unwrap_or_default().to_owned();
        let scope = match meta.scope(&settings.credentials_namespace) {
            Ok(Scope::Cluster) => "cluster".to_owned(),
            Ok(Scope::Department(d)) => format!("department/{d}"),
            Ok(Scope::Project) => match index.project_of(ns) {
                Some(p) => format!("project/{p}"),
                None => format!("invalid: namespace {ns} is not a project"),
            },
            Err(e) => format!("invalid: {e}"),
        };
        let mut credential_users = users
            .remove(&(ns.to_owned(), name.to_owned()))
            .unwrap_or_default();
        credential_users.sort();
        credential_users.dedup();
        let copies = match &info.scope {
            Some(scope @ (Scope::Cluster | Scope::Department(_))) => {
                let copy = crate::model::copy::copy_name(name);
                index
                    .visible_in(scope, ns)
                    .into_iter()
                    .map(|target| Copy {
                        namespace: target.to_owned(),
                        secret: copy.clone(),
                        state: if index.has_copy(target, &copy) {
                            "present"
                        } else {
                            "missing"
                        }
                        .to_owned(),
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        let status = text(annotation::STATUS);
        out.push(Credential {
            name: info.credential_name.clone(),
            description: text(annotation::DESCRIPTION),
            kind: info
                .kind
                .map(|k| k.as_str().to_owned())
                .unwrap_or_else(|| "legacy (untyped)".to_owned()),
            status: if status.is_empty() {
                NO_STATUS.to_owned()
            } else {
                status
            },
            status_message: text(annotation::STATUS_MESSAGE),
            scope,
            namespace: ns.to_owned(),
            kubernetes_name: name.to_owned(),
            uid: info.uid.clone(),
            existing_secret: info.existing_secret.clone(),
            keys: info.keys.clone().unwrap_or_default(),
            registries: info.registries.clone(),
            created_by: text(annotation::CREATED_BY),
            creation_time: md
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
            cluster: cluster.to_owned(),
            users: credential_users,
            copies,
            scope_value: info.scope.clone(),
        });
    }
    out.sort_by(|a, b| (&a.namespace, &a.kubernetes_name).cmp(&(&b.namespace, &b.kubernetes_name)));
    out
}

/// The project's view of `namespace`: every credential its workloads may
/// name, nearest scope first. Its own, and the department's and cluster's
/// ones, known from their managed copies there (a project user may read those
/// without any access to the credentials namespace) or from the credentials
/// themselves when they were listed. Users are this namespace's workloads.
pub fn project_view(
    settings: &Settings,
    cluster: &str,
    listing: &Listing,
    namespace: &str,
) -> Vec<Credential> {
    let mut listing = listing.clone();
    let listed: std::collections::HashSet<(String, String)> = listing
        .secrets
        .iter()
        .map(|md| {
            let (ns, name) = ns_name(md);
            (ns.to_owned(), name.to_owned())
        })
        .collect();
    // A copy stands for its source when the source itself was not readable.
    let mut reached = std::collections::HashSet::new();
    let mut stand_ins = Vec::new();
    for md in listing.copies.iter().filter(|c| ns_name(c).0 == namespace) {
        let Some(stand_in) = stand_in(settings, md) else {
            continue;
        };
        let source = ns_name(&stand_in);
        let source = (source.0.to_owned(), source.1.to_owned());
        if !listed.contains(&source) {
            stand_ins.push(stand_in);
        }
        reached.insert(source);
    }
    let info = listing
        .namespaces
        .iter()
        .find(|(n, _)| n == namespace)
        .map(|(_, i)| i.clone());
    if info.is_none() {
        // Namespaces were not readable: what the copies there show stands in
        // for the namespace's labels, so its workloads' references resolve.
        let department = listing
            .copies
            .iter()
            .filter(|c| ns_name(c).0 == namespace)
            .find_map(|md| {
                let scope = md.annotations.as_ref()?.get(annotation::COPY_SCOPE)?;
                Some(scope.strip_prefix("department/")?.to_owned())
            });
        let stand_in = NamespaceInfo {
            project: Some(namespace.to_owned()),
            department,
            terminating: false,
        };
        listing.namespaces.push((namespace.to_owned(), stand_in));
    }
    listing.secrets.extend(stand_ins);
    let mut view: Vec<Credential> = build(settings, cluster, &listing)
        .into_iter()
        .filter(|c| {
            let visible = match (&c.scope_value, &info) {
                (Some(Scope::Project), _) => c.namespace == namespace,
                (Some(Scope::Cluster), Some(i)) => i.project.is_some(),
                (Some(Scope::Department(d)), Some(i)) => {
                    i.project.is_some() && i.department.as_ref() == Some(d)
                }
                _ => false,
            };
            visible || reached.contains(&(c.namespace.clone(), c.kubernetes_name.clone()))
        })
        .map(|mut c| {
            if info.is_none() && c.scope_value == Some(Scope::Project) {
                // The namespace's labels were not readable: its project is unnamed here.
                c.scope = "project".to_owned();
            }
            c.users.retain(|u| u.namespace == namespace);
            c.copies.retain(|k| k.namespace == namespace);
            c
        })
        .collect();
    let nearness = |c: &Credential| match c.scope_value {
        Some(Scope::Project) => 0,
        Some(Scope::Department(_)) => 1,
        _ => 2,
    };
    view.sort_by(|a, b| (nearness(a), &a.name).cmp(&(nearness(b), &b.name)));
    view
}

/// The metadata of the credential a managed copy was made from, rebuilt from
/// the copy's labels and annotations (no data, no status, no creator: those
/// stay with the source). `None` for what does not look like a copy.
fn stand_in(settings: &Settings, copy: &ObjectMeta) -> Option<ObjectMeta> {
    use crate::model::copy::{MANAGED_LABEL, SOURCE_ANNOTATION, SOURCE_UID_LABEL};
    use crate::model::credential::label;
    let labels = copy.labels.as_ref()?;
    let annotations = copy.annotations.as_ref()?;
    if labels.get(MANAGED_LABEL).map(String::as_str) != Some("true") {
        return None;
    }
    let (source_ns, source) = annotations.get(SOURCE_ANNOTATION)?.split_once('/')?;
    if source_ns != settings.credentials_namespace
        || copy.name.as_deref() != Some(crate::model::copy::copy_name(source).as_str())
    {
        return None;
    }
    let mut new_labels = BTreeMap::new();
    new_labels.insert(
        label::RESOURCE.to_owned(),
        labels.get("credgate.run.ai/type")?.clone(),
    );
    match annotations.get(annotation::COPY_SCOPE).map(String::as_str) {
        Some("cluster") => {
            new_labels.insert(label::CLUSTER_WIDE.to_owned(), "true".to_owned());
        }
        Some(scope) => {
            let department = scope.strip_prefix("department/")?;
            new_labels.insert(label::DEPARTMENT.to_owned(), department.to_owned());
        }
        None => return None,
    }
    let kept = [
        annotation::NAME,
        annotation::DESCRIPTION,
        annotation::KEYS,
        annotation::REGISTRIES,
    ];
    Some(ObjectMeta {
        namespace: Some(source_ns.to_owned()),
        name: Some(source.to_owned()),
        uid: labels.get(SOURCE_UID_LABEL).cloned(),
        labels: Some(new_labels),
        annotations: Some(
            kept.iter()
                .filter_map(|k| Some(((*k).to_owned(), annotations.get(*k)?.clone())))
                .collect(),
        ),
        creation_timestamp: copy.creation_timestamp.clone(),
        ..ObjectMeta::default()
    })
}

/// Marks each copy `up to date` or `stale` against the hash of the source data.
pub fn compare_copies(credential: &mut Credential, source_hash: &str, copies: &[ObjectMeta]) {
    let hashes: HashMap<(&str, &str), &str> = copies
        .iter()
        .filter_map(|md| {
            let (ns, name) = ns_name(md);
            let hash = md
                .annotations
                .as_ref()?
                .get(crate::model::copy::HASH_ANNOTATION)?;
            Some(((ns, name), hash.as_str()))
        })
        .collect();
    for copy in &mut credential.copies {
        if let Some(hash) = hashes.get(&(copy.namespace.as_str(), copy.secret.as_str())) {
            copy.state = if *hash == source_hash {
                "up to date"
            } else {
                "stale"
            }
            .to_owned();
        }
    }
}

fn ns_name(md: &ObjectMeta) -> (&str, &str) {
    (
        md.namespace.as_deref().unwrap_or_default(),
        md.name.as_deref().unwrap_or_default(),
    )
}

/// The credential behind a Secret a pod spec names directly: a managed copy's
/// source, a project credential, or the credential an existing Secret backs.
fn native_source(
    index: &Index,
    copy_sources: &HashMap<(&str, &str), (String, String)>,
    namespace: &str,
    secret: &str,
) -> Option<(String, String)> {
    if let Some(source) = copy_sources.get(&(namespace, secret)) {
        return Some(source.clone());
    }
    if let Some((name, _)) = index.backed_by(namespace, secret) {
        return Some((namespace.to_owned(), name.to_owned()));
    }
    index
        .secret(namespace, secret)
        .map(|_| (namespace.to_owned(), secret.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn secret(
        ns: &str,
        name: &str,
        labels: &[(&str, &str)],
        annotations: &[(&str, &str)],
    ) -> ObjectMeta {
        let map = |kv: &[(&str, &str)]| {
            Some(
                kv.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
        };
        ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            labels: map(labels),
            annotations: map(annotations),
            creation_timestamp: Some(Time("2026-11-22T06:00:00Z".parse().unwrap())),
            ..ObjectMeta::default()
        }
    }

    fn project(name: &str, department: Option<&str>) -> (String, NamespaceInfo) {
        (
            name.to_owned(),
            NamespaceInfo {
                project: Some(name.to_owned()),
                department: department.map(Into::into),
                terminating: false,
            },
        )
    }

    fn workload(kind: WorkloadKind, ns: &str, name: &str, refs: Vec<Reference>) -> Workload {
        Workload {
            kind,
            namespace: ns.into(),
            name: name.into(),
            references: refs,
            owned: false,
            sources: Vec::new(),
        }
    }

    /// A project user reads only their namespace: the cluster and department
    /// credentials come from the copies there, scope included.
    #[test]
    fn project_view_from_copies_alone() {
        let settings = Settings {
            credentials_namespace: "runai".into(),
            ..Settings::default()
        };
        let copy = |name: &str, scope: &str, source_name: &str| {
            secret(
                "team-a",
                &format!("credgate.{name}"),
                &[
                    ("credgate.run.ai/managed-copy", "true"),
                    ("credgate.run.ai/source-uid", &format!("uid-{name}")),
                    ("credgate.run.ai/type", "access-key"),
                ],
                &[
                    ("credgate.run.ai/source", &format!("runai/{name}")),
                    ("credgate.run.ai/scope", scope),
                    ("run.ai/name", source_name),
                    ("run.ai/description", "shared"),
                ],
            )
        };
        let listing = Listing {
            namespaces: Vec::new(),
            secrets: vec![secret(
                "team-a",
                "db",
                &[("run.ai/resource", "password")],
                &[("run.ai/status", "No issues found")],
            )],
            copies: vec![
                copy("s3-all", "cluster", "s3"),
                copy("s3-rnd", "department/rnd", "s3-rnd"),
                // Not a copy: its name is not the copy name of its source.
                secret(
                    "team-a",
                    "forged",
                    &[
                        ("credgate.run.ai/managed-copy", "true"),
                        ("credgate.run.ai/type", "generic"),
                    ],
                    &[
                        ("credgate.run.ai/source", "runai/other"),
                        ("credgate.run.ai/scope", "cluster"),
                    ],
                ),
            ],
            workloads: vec![workload(
                WorkloadKind::Pod,
                "team-a",
                "job",
                vec![Reference::Credential("s3".into(), Usage::DataSource)],
            )],
        };
        let view = project_view(&settings, "", &listing, "team-a");
        let rows: Vec<_> = view
            .iter()
            .map(|c| {
                let row = c.row();
                [
                    row.get(Column::Credential).to_owned(),
                    row.get(Column::Scope).to_owned(),
                    row.get(Column::Type).to_owned(),
                    row.get(Column::Status).to_owned(),
                ]
            })
            .collect();
        assert_eq!(
            rows,
            [
                ["db", "project", "password", "No issues found"],
                ["s3-rnd", "department/rnd", "access-key", NO_STATUS],
                ["s3", "cluster", "access-key", NO_STATUS],
            ]
        );
        assert_eq!(view[2].row().get(Column::DataSources), "team-a/pod/job");
        assert_eq!(view[2].secret_path(), "runai/s3-all");
    }

    #[test]
    fn builds_rows_and_the_usage_graph() {
        let settings = Settings {
            credentials_namespace: "runai".into(),
            controller_identity: "credgate".into(),
            ..Settings::default()
        };
        let listing = Listing {
            namespaces: vec![
                project("team-a", Some("rnd")),
                project("team-b", None),
                ("runai".into(), NamespaceInfo::default()),
            ],
            secrets: vec![
                secret(
                    "runai",
                    "s3-shared",
                    &[
                        ("run.ai/resource", "access-key"),
                        ("run.ai/cluster-wide", "true"),
                    ],
                    &[
                        ("run.ai/name", "s3"),
                        ("run.ai/description", "shared, read-only"),
                        ("run.ai/status", "No issues found"),
                        ("run.ai/created-by", "alice@example.com"),
                        ("run.ai/keys", "AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY"),
                    ],
                ),
                secret(
                    "team-a",
                    "db",
                    &[("run.ai/resource", "password")],
                    &[("run.ai/keys", "username,password")],
                ),
                // An existing Secret behind a credential is not a credential row of its own.
                secret(
                    "team-a",
                    "legacy-token",
                    &[("run.ai/resource", "generic")],
                    &[],
                ),
                secret(
                    "team-a",
                    "token",
                    &[("run.ai/resource", "generic")],
                    &[("run.ai/existing-secret", "legacy-token")],
                ),
            ],
            copies: vec![secret(
                "team-a",
                "credgate.s3-shared",
                &[("credgate.run.ai/managed-copy", "true")],
                &[
                    ("credgate.run.ai/source", "runai/s3-shared"),
                    ("credgate.run.ai/source-hash", "sha256:1"),
                ],
            )],
            workloads: vec![
                Workload {
                    sources: vec![("s3".into(), "s3://datasets/train".into())],
                    ..workload(
                        WorkloadKind::Deployment,
                        "team-a",
                        "trainer",
                        vec![
                            Reference::Credential("s3".into(), Usage::DataSource),
                            Reference::Credential("db".into(), Usage::Environment),
                        ],
                    )
                },
                // Owned by the Deployment: shown as the Deployment.
                Workload {
                    owned: true,
                    ..workload(
                        WorkloadKind::Pod,
                        "team-a",
                        "trainer-1",
                        vec![Reference::Credential("s3".into(), Usage::DataSource)],
                    )
                },
                workload(
                    WorkloadKind::Pod,
                    "team-a",
                    "debug",
                    vec![
                        Reference::Secret("credgate.s3-shared".into(), Usage::Environment),
                        Reference::Secret("legacy-token".into(), Usage::Environment),
                    ],
                ),
                // No credential named s3 is visible outside projects.
                workload(
                    WorkloadKind::Pod,
                    "runai",
                    "x",
                    vec![Reference::Credential("s3".into(), Usage::DataSource)],
                ),
            ],
        };
        let creds = build(&settings, "kind-dev", &listing);
        let names: Vec<_> = creds.iter().map(|c| c.secret_path()).collect();
        assert_eq!(names, ["runai/s3-shared", "team-a/db", "team-a/token"]);

        let s3 = creds[0].row();
        assert_eq!(s3.get(Column::Credential), "s3");
        assert_eq!(s3.get(Column::Scope), "cluster");
        assert_eq!(s3.get(Column::Status), "No issues found");
        assert_eq!(s3.get(Column::Type), "access-key");
        assert_eq!(s3.get(Column::Cluster), "kind-dev");
        assert_eq!(s3.get(Column::CreationTime), "2026-11-22T06:00:00Z");
        // Issue 18: a data-source user is shown with the sources it fetches.
        assert_eq!(
            s3.get(Column::DataSources),
            "s3://datasets/train (team-a/deployment/trainer)"
        );
        assert_eq!(s3.get(Column::Environments), "team-a/pod/debug");
        assert_eq!(
            creds[0].copies,
            [
                Copy {
                    namespace: "team-a".into(),
                    secret: "credgate.s3-shared".into(),
                    state: "present".into()
                },
                Copy {
                    namespace: "team-b".into(),
                    secret: "credgate.s3-shared".into(),
                    state: "missing".into()
                }
            ]
        );

        let db = creds[1].row();
        assert_eq!(db.get(Column::Scope), "project/team-a");
        assert_eq!(db.get(Column::Status), NO_STATUS);
        assert_eq!(db.get(Column::Environments), "team-a/deployment/trainer");
        assert_eq!(creds[2].row().get(Column::Environments), "team-a/pod/debug");

        // Issue 17: team-a's view holds its own credential and the cluster
        // one, with team-a's users only.
        let view = project_view(&settings, "kind-dev", &listing, "team-a");
        let names: Vec<_> = view
            .iter()
            .map(|c| (c.name.as_str(), c.scope.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("db", "project/team-a"),
                ("token", "project/team-a"),
                ("s3", "cluster")
            ]
        );
        assert_eq!(view[2].copies.len(), 1);
        assert!(view[2].users.iter().all(|u| u.namespace == "team-a"));
        assert!(
            project_view(&settings, "kind-dev", &listing, "team-b")
                .iter()
                .all(|c| c.name == "s3")
        );

        let mut s3 = creds[0].clone();
        compare_copies(&mut s3, "sha256:2", &listing.copies);
        assert_eq!(s3.copies[0].state, "stale");
        compare_copies(&mut s3, "sha256:1", &listing.copies);
        assert_eq!(s3.copies[0].state, "up to date");
        assert_eq!(s3.copies[1].state, "missing");
    }
}
