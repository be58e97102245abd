//! The credential model: which Secrets are credentials, of which type and scope.
//!
//! Pure code over labels and annotations: no HTTP, no API client. Everything
//! here reads only metadata, never secret data.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Labels of the credential contract.
pub mod label {
    /// The credential type: `docker-registry | access-key | password | generic`.
    pub const RESOURCE: &str = "run.ai/resource";
    /// `"true"`: a cluster-scoped credential (in the credentials namespace).
    pub const CLUSTER_WIDE: &str = "run.ai/cluster-wide";
    /// Legacy alias of [`CLUSTER_WIDE`].
    pub const CLUSTER_WIDE_LEGACY: &str = "run.ai/cluster-wide-credentials";
    /// On a credential: department scope. On a namespace: the project's department.
    pub const DEPARTMENT: &str = "run.ai/department";
    /// Legacy marker of a project credential (`"true"`), typed by its shape.
    pub const CREDENTIALS_LEGACY: &str = "run.ai/credentials";
    /// On a namespace: the project it belongs to.
    pub const PROJECT: &str = "runai/queue";
}

/// Annotations of the credential contract.
/// Finalizer that keeps a cluster or department credential until its copies are gone.
pub const COPIES_FINALIZER: &str = "credgate.run.ai/copies";
/// Finalizer on credentials (with `--in-use-finalizer`): a DELETE that slipped
/// past the in-use rule (decided by another replica than the pod's) leaves the
/// credential `Deleting…` until no stored workload names it, as Kubernetes
/// protects PersistentVolumeClaims in use.
pub const IN_USE_FINALIZER: &str = "credgate.run.ai/in-use";

/// Values of `run.ai/status` (the seeds' words).
pub mod status {
    pub const CREATING: &str = "Creating…";
    pub const NO_ISSUES: &str = "No issues found";
    pub const ISSUES: &str = "Issues found";
    pub const DELETING: &str = "Deleting…";
}

pub mod annotation {
    /// The credential's name; defaults to `metadata.name`.
    pub const NAME: &str = "run.ai/name";
    /// Free text, at most [`super::MAX_DESCRIPTION_CHARS`] characters.
    pub const DESCRIPTION: &str = "run.ai/description";
    /// The user who created the credential, stamped by credgate.
    pub const CREATED_BY: &str = "run.ai/created-by";
    /// The credential is backed by this existing Secret in the same namespace.
    pub const EXISTING_SECRET: &str = "run.ai/existing-secret";
    /// Registry hosts of a docker-registry credential, stamped by credgate.
    pub const REGISTRIES: &str = "run.ai/registries";
    /// The credential's data keys (names only, never values), stamped by credgate.
    pub const KEYS: &str = "run.ai/keys";
    /// Creating… | No issues found | Issues found | Deleting… (the seeds' statuses).
    pub const STATUS: &str = "run.ai/status";
    /// The namespaces with problems, when the status is "Issues found".
    pub const STATUS_MESSAGE: &str = "run.ai/status-message";
    /// On a legacy credential (`run.ai/credentials: "true"`, no type label):
    /// the type its shape gives, stamped by credgate on every write.
    pub const INFERRED_TYPE: &str = "credgate.run.ai/inferred-type";
    /// On a credential made by `credgate create` with its own data: a new
    /// Secret, which the seeds keep out of the list of existing secrets.
    pub const NEW_SECRET: &str = "credgate.run.ai/new-secret";
    /// On a managed copy: the scope of its source (`cluster` or
    /// `department/<d>`), so a project's view needs no access to the
    /// credentials namespace.
    pub const COPY_SCOPE: &str = "credgate.run.ai/scope";
}

/// Longest `run.ai/description`, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 250;

/// The four credential types of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CredentialType {
    DockerRegistry,
    AccessKey,
    Password,
    Generic,
}

impl CredentialType {
    pub const ALL: [CredentialType; 4] = [
        CredentialType::DockerRegistry,
        CredentialType::AccessKey,
        CredentialType::Password,
        CredentialType::Generic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CredentialType::DockerRegistry => "docker-registry",
            CredentialType::AccessKey => "access-key",
            CredentialType::Password => "password",
            CredentialType::Generic => "generic",
        }
    }

    /// The seeds' name of the type, as the table shows it.
    pub fn display_name(self) -> &'static str {
        match self {
            CredentialType::DockerRegistry => "Docker registry",
            CredentialType::AccessKey => "Access key",
            CredentialType::Password => "Username & password",
            CredentialType::Generic => "Generic",
        }
    }
}

impl fmt::Display for CredentialType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CredentialType {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CredentialType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| ModelError::UnknownType(s.to_owned()))
    }
}

/// Where a credential is visible.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Every project of the cluster.
    Cluster,
    /// Every project of one department.
    Department(String),
    /// The project whose namespace holds the Secret.
    Project,
}

impl Scope {
    /// `cluster`, `department/<d>` or `project`: the scope as the table and
    /// a copy's [`annotation::COPY_SCOPE`] write it.
    pub fn key(&self) -> String {
        match self {
            Scope::Cluster => "cluster".to_owned(),
            Scope::Department(d) => format!("department/{d}"),
            Scope::Project => "project".to_owned(),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Cluster => f.write_str("cluster"),
            Scope::Department(d) => write!(f, "department {d}"),
            Scope::Project => f.write_str("project"),
        }
    }
}

/// Why a Secret's labels do not describe a credential credgate can accept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error(
        "unknown credential type {0:?} in label run.ai/resource: use one of docker-registry, access-key, password, generic"
    )]
    UnknownType(String),
    #[error("label {label} must be \"true\" or \"false\", not {value:?}")]
    NotABool { label: &'static str, value: String },
    #[error("label run.ai/department must name a department (a non-empty DNS label), not {0:?}")]
    BadDepartment(String),
    #[error(
        "a credential cannot be both cluster-wide and of department {0:?}: keep only one of the labels run.ai/cluster-wide and run.ai/department"
    )]
    ClusterAndDepartment(String),
    #[error(
        "{scope} credentials live in the credentials namespace {credentials_namespace:?}, not in {namespace:?}: create it there, or remove the scope label to make it a project credential"
    )]
    ScopeOutsideCredentialsNamespace {
        scope: String,
        namespace: String,
        credentials_namespace: String,
    },
    #[error(
        "a credential in the credentials namespace {0:?} needs a scope: add label run.ai/cluster-wide: \"true\" or run.ai/department: <department>"
    )]
    NoScopeInCredentialsNamespace(String),
}

/// Labels and annotations of one object, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct Meta<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub labels: Option<&'a BTreeMap<String, String>>,
    pub annotations: Option<&'a BTreeMap<String, String>>,
}

impl<'a> Meta<'a> {
    pub fn label(&self, key: &str) -> Option<&'a str> {
        self.labels?.get(key).map(String::as_str)
    }

    pub fn annotation(&self, key: &str) -> Option<&'a str> {
        self.annotations?.get(key).map(String::as_str)
    }

    /// True when the labels mark this Secret as a credential (type label or legacy marker).
    pub fn is_credential(&self) -> bool {
        self.label(label::RESOURCE).is_some()
            || self.label(label::CREDENTIALS_LEGACY) == Some("true")
    }

    /// The credential type from the `run.ai/resource` label, if the label is set.
    pub fn declared_type(&self) -> Result<Option<CredentialType>, ModelError> {
        self.label(label::RESOURCE).map(str::parse).transpose()
    }

    /// The declared type or, for a legacy credential, the type credgate
    /// inferred from its shape and stamped ([`annotation::INFERRED_TYPE`]).
    pub fn known_type(&self) -> Option<CredentialType> {
        match self.declared_type() {
            Ok(Some(kind)) => Some(kind),
            // An existing-secret credential has no shape of its own to infer
            // from, so the annotation (which credgate does not stamp there) is not read.
            Ok(None)
                if self.label(label::CREDENTIALS_LEGACY) == Some("true")
                    && self.annotation(annotation::EXISTING_SECRET).is_none() =>
            {
                self.annotation(annotation::INFERRED_TYPE)
                    .and_then(|t| t.parse().ok())
            }
            _ => None,
        }
    }

    /// The credential's name: `run.ai/name`, else `metadata.name`.
    pub fn credential_name(&self) -> &'a str {
        self.annotation(annotation::NAME).unwrap_or(self.name)
    }

    /// The scope the labels give, checked against the namespace.
    pub fn scope(&self, credentials_namespace: &str) -> Result<Scope, ModelError> {
        let cluster =
            self.bool_label(label::CLUSTER_WIDE)? || self.bool_label(label::CLUSTER_WIDE_LEGACY)?;
        let department = match self.label(label::DEPARTMENT) {
            None => None,
            Some(d) if is_dns_label(d) => Some(d),
            Some(d) => return Err(ModelError::BadDepartment(d.to_owned())),
        };
        let scope = match (cluster, department) {
            (true, Some(d)) => return Err(ModelError::ClusterAndDepartment(d.to_owned())),
            (true, None) => Scope::Cluster,
            (false, Some(d)) => Scope::Department(d.to_owned()),
            (false, None) => Scope::Project,
        };
        let in_credentials_namespace = self.namespace == credentials_namespace;
        match (&scope, in_credentials_namespace) {
            (Scope::Project, true) => Err(ModelError::NoScopeInCredentialsNamespace(
                credentials_namespace.to_owned(),
            )),
            (Scope::Cluster | Scope::Department(_), false) => {
                Err(ModelError::ScopeOutsideCredentialsNamespace {
                    scope: scope.to_string(),
                    namespace: self.namespace.to_owned(),
                    credentials_namespace: credentials_namespace.to_owned(),
                })
            }
            _ => Ok(scope),
        }
    }

    fn bool_label(&self, key: &'static str) -> Result<bool, ModelError> {
        match self.label(key) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(ModelError::NotABool {
                label: key,
                value: other.to_owned(),
            }),
        }
    }
}

/// RFC 1123 label: lowercase alphanumerics and '-', 1..=63, alphanumeric at both ends.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters (Kubernetes object names).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Borrowed metadata of a Secret for the credential model.
pub fn secret_meta<'a>(
    secret: &'a k8s_openapi::api::core::v1::Secret,
    namespace: &'a str,
) -> Meta<'a> {
    object_meta(&secret.metadata, namespace)
}

/// Borrowed labels and annotations of any object's metadata (`namespace` when it has none).
pub fn object_meta<'a>(
    md: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    namespace: &'a str,
) -> Meta<'a> {
    Meta {
        namespace: md.namespace.as_deref().unwrap_or(namespace),
        name: md.name.as_deref().unwrap_or_default(),
        labels: md.labels.as_ref(),
        annotations: md.annotations.as_ref(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn scope_of(namespace: &str, labels: &[(&str, &str)]) -> Result<Scope, ModelError> {
        let labels = map(labels);
        let meta = Meta {
            namespace,
            name: "c",
            labels: Some(&labels),
            annotations: None,
        };
        meta.scope("runai")
    }

    #[test]
    fn types_round_trip() {
        for t in CredentialType::ALL {
            assert_eq!(t.as_str().parse::<CredentialType>(), Ok(t));
        }
        assert!(matches!(
            "docker".parse::<CredentialType>(),
            Err(ModelError::UnknownType(s)) if s == "docker"
        ));
    }

    #[test]
    fn scopes() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Result<Scope, &'a str>);
        let cases: &[Case] = &[
            (
                "runai",
                &[("run.ai/cluster-wide", "true")],
                Ok(Scope::Cluster),
            ),
            (
                "runai",
                &[("run.ai/cluster-wide-credentials", "true")],
                Ok(Scope::Cluster),
            ),
            (
                "runai",
                &[("run.ai/department", "rnd")],
                Ok(Scope::Department("rnd".into())),
            ),
            (
                "runai",
                &[
                    ("run.ai/cluster-wide", "false"),
                    ("run.ai/department", "rnd"),
                ],
                Ok(Scope::Department("rnd".into())),
            ),
            ("team-a", &[], Ok(Scope::Project)),
            (
                "team-a",
                &[("run.ai/cluster-wide", "false")],
                Ok(Scope::Project),
            ),
            ("runai", &[], Err("needs a scope")),
            (
                "team-a",
                &[("run.ai/cluster-wide", "true")],
                Err("live in the credentials namespace"),
            ),
            (
                "team-a",
                &[("run.ai/department", "rnd")],
                Err("live in the credentials namespace"),
            ),
            (
                "runai",
                &[
                    ("run.ai/cluster-wide", "true"),
                    ("run.ai/department", "rnd"),
                ],
                Err("both cluster-wide and of department"),
            ),
            (
                "runai",
                &[("run.ai/cluster-wide", "yes")],
                Err("must be \"true\" or \"false\""),
            ),
            (
                "runai",
                &[("run.ai/department", "R&D")],
                Err("must name a department"),
            ),
        ];
        for (ns, labels, want) in cases {
            let got = scope_of(ns, labels);
            match want {
                Ok(scope) => assert_eq!(got.as_ref(), Ok(scope), "{ns} {labels:?}"),
                Err(fragment) => {
                    let err = got
                        .expect_err(&format!("{ns} {labels:?} should be refused"))
                        .to_string();
                    assert!(err.contains(fragment), "{err:?} lacks {fragment:?}");
                }
            }
        }
    }

    #[test]
    fn credential_name_defaults_to_metadata_name() {
        let annotations = map(&[("run.ai/name", "registry")]);
        let mut meta = Meta {
            namespace: "n",
            name: "secret-1",
            labels: None,
            annotations: None,
        };
        assert_eq!(meta.credential_name(), "secret-1");
        meta.annotations = Some(&annotations);
        assert_eq!(meta.credential_name(), "registry");
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_label("a-1"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label("A"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_dns_subdomain("a.b-c.d"));
        assert!(!is_dns_subdomain("a..b"));
    }
}
