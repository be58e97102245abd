//! Which Secret a credential name means for a workload in a given namespace.
//!
//! Resolution looks in the workload's project first, then its department, then
//! the cluster. The answer is the Secret name that exists in the workload's own
//! namespace (the project Secret, or the existing Secret behind it). Pure code
//! over the [`Index`]: its cost grows with the credentials visible to the
//! namespace, not with the cluster.

use std::borrow::Cow;
use std::collections::BTreeSet;

use crate::model::credential::{CredentialType, Scope};
use crate::policy::Settings;
use crate::state::index::{Index, SecretInfo};

/// A credential resolved for one namespace, borrowed from the snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved<'a> {
    /// The credential name (`run.ai/name`).
    pub name: &'a str,
    /// The Secret to reference from the pod (in the pod's namespace).
    pub secret: Cow<'a, str>,
    /// `(namespace, name)` of the credential's own Secret.
    pub source: (&'a str, &'a str),
    /// The uid of the credential's own Secret.
    pub uid: &'a str,
    pub kind: Option<CredentialType>,
    /// Data key names, when credgate has stamped them.
    pub keys: Option<&'a [String]>,
    pub registries: &'a [String],
    /// A cluster or department credential whose copy is not (yet) in the
    /// namespace: the source Secret's name in the credentials namespace.
    pub missing_copy: Option<&'a str>,
}

/// Credentials of `scope` in `namespace`, excluding existing Secrets that back another credential.
fn credentials_of<'a: 'b, 'b>(
    index: &'a Index,
    namespace: &'b str,
    scope: &'b Scope,
) -> impl Iterator<Item = (&'a str, &'a SecretInfo)> + 'b {
    index
        .secrets_in(namespace)
        .filter(move |(name, info)| in_scope(index, namespace, scope, name, info))
}

/// True when the Secret `name` of `namespace` is a credential of `scope`, and
/// not an existing Secret that backs another credential.
fn in_scope(index: &Index, namespace: &str, scope: &Scope, name: &str, info: &SecretInfo) -> bool {
    info.scope.as_ref() == Some(scope) && !index.backs_a_credential(namespace, name)
}

fn resolved<'a>(
    index: &'a Index,
    namespace: &'a str,
    credential: &'a str,
    info: &'a SecretInfo,
) -> Result<Resolved<'a>, String> {
    if info.deleting {
        return Err(format!(
            "credential {:?} is being deleted, so no new workload may use it; name another credential",
            info.credential_name
        ));
    }
    let (secret, data) = match &info.existing_secret {
        None => (credential, info),
        Some(existing) => {
            let backing = index.secret(namespace, existing).ok_or_else(|| {
                format!(
                    "credential {:?} is backed by the Secret {existing:?}, which does not exist (or lacks its run.ai/resource label) in namespace {namespace:?}",
                    info.credential_name
                )
            })?;
            // Its data goes with it: no new workload may start to depend on it.
            if backing.deleting {
                return Err(format!(
                    "credential {:?} is backed by the Secret {existing:?}, which is being deleted; name another credential",
                    info.credential_name
                ));
            }
            (existing.as_str(), backing)
        }
    };
    Ok(Resolved {
        name: &info.credential_name,
        source: (namespace, credential),
        uid: &info.uid,
        secret: Cow::Borrowed(secret),
        kind: info.kind,
        keys: data.keys.as_deref(),
        registries: &data.registries,
        missing_copy: None,
    })
}

/// Resolution for one namespace, with the scopes visible to it looked up once.
struct Resolver<'a> {
    index: &'a Index,
    namespace: &'a str,
    /// Nearest first: project, department, cluster; `(namespace, scope)`.
    scopes: Vec<(&'a str, Scope)>,
}

impl<'a> Resolver<'a> {
    fn new(settings: &'a Settings, index: &'a Index, namespace: &'a str) -> Self {
        let department = index
            .namespace(namespace)
            .and_then(|n| n.department.clone());
        let credentials = settings.credentials_namespace.as_str();
        let mut scopes = vec![(namespace, Scope::Project)];
        scopes.extend(department.map(|d| (credentials, Scope::Department(d))));
        scopes.push((credentials, Scope::Cluster));
        Resolver {
            index,
            namespace,
            scopes,
        }
    }

    /// A credential found in `ns` under `scope`, as the pod's namespace sees it:
    /// a cluster or department credential by its managed copy.
    fn as_seen(
        &self,
        ns: &'a str,
        scope: &Scope,
        secret: &'a str,
        info: &'a SecretInfo,
    ) -> Result<Resolved<'a>, String> {
        if *scope == Scope::Project {
            return resolved(self.index, self.namespace, secret, info);
        }
        let mut r = resolved(self.index, ns, secret, info)?;
        let copy = crate::model::copy::copy_name(secret);
        if !self.index.has_copy(self.namespace, &copy) {
            r.missing_copy = Some(secret);
        }
        r.secret = Cow::Owned(copy);
        Ok(r)
    }

    /// The credential `name`: the nearest scope's.
    fn credential(&self, name: &str) -> Result<Resolved<'a>, String> {
        let (index, namespace) = (self.index, self.namespace);
        let Some(project) = index.project_of(namespace) else {
            return Err(format!(
                "namespace {namespace:?} is not a project namespace (label runai/queue), so it cannot use credentials"
            ));
        };
        for &(ns, ref scope) in &self.scopes {
            // Secrets come by name, so the first one that qualifies is the smallest name.
            let found = index
                .secrets_named(ns, name)
                .find(|(secret, info)| in_scope(index, ns, scope, secret, info));
            if let Some((secret, info)) = found {
                return self.as_seen(ns, scope, secret, info);
            }
        }
        let department = self.scopes.iter().find_map(|(_, scope)| match scope {
            Scope::Department(d) => Some(d),
            _ => None,
        });
        Err(format!(
            "no credential named {name:?} is visible to project {project:?}: it is neither a credential of this project{} nor of the cluster",
            department
                .map(|d| format!(", of its department {d:?}"))
                .unwrap_or_default()
        ))
    }

    /// Docker-registry credentials whose registries serve at least one of
    /// `hosts`; a nearer credential shadows a wider one of the same name.
    fn auto_pull(&self, hosts: &BTreeSet<String>) -> Vec<Resolved<'a>> {
        if hosts.is_empty() {
            return Vec::new();
        }
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for &(ns, ref scope) in &self.scopes {
            let mut found: Vec<Resolved<'a>> = credentials_of(self.index, ns, scope)
                .filter(|(_, info)| info.kind == Some(CredentialType::DockerRegistry))
                .filter(|(_, info)| !seen.contains(info.credential_name.as_str()))
                .filter_map(|(secret, info)| self.as_seen(ns, scope, secret, info).ok())
                .collect();
            seen.extend(found.iter().map(|r| r.name));
            found.retain(|r| r.registries.iter().any(|h| hosts.contains(h)));
            found.sort_by(|a, b| a.secret.cmp(&b.secret));
            out.extend(found);
        }
        out.dedup_by(|a, b| a.secret == b.secret);
        out
    }
}

/// Resolves the credential `name` for a workload in `namespace`.
pub fn credential<'a>(
    settings: &'a Settings,
    index: &'a Index,
    namespace: &'a str,
    name: &str,
) -> Result<Resolved<'a>, String> {
    Resolver::new(settings, index, namespace).credential(name)
}

/// Everything a workload's annotations ask for, resolved and type-checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// `(ENV, Secret, key)`.
    pub env: Vec<(String, String, String)>,
    /// Secrets for `envFrom`.
    pub env_from: Vec<String>,
    /// `(credential name, Secret, mountPath)`.
    pub volumes: Vec<(String, String, String)>,
    /// Secrets for `imagePullSecrets`.
    pub pull_secrets: Vec<String>,
    /// Sources (in the credentials namespace) whose copies must exist before the pod.
    pub missing_copies: Vec<String>,
    /// The uids of the credentials' own Secrets: what the pod will use.
    pub uses: Vec<String>,
    /// Data sources to fetch, each with the credential's variables
    /// (`(ENV, Secret, key)`) for its fetcher.
    pub fetches: Vec<Fetch>,
    pub git_sync: crate::model::datasource::GitSync,
    pub s3_endpoint: Option<String>,
}

/// One data source and how its fetcher authenticates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetch {
    pub source: crate::model::datasource::DataSource,
    /// `(ENV, Secret, key)`; empty for a public source.
    pub env: Vec<(String, String, String)>,
}

fn require(resolved: &Resolved, kind: CredentialType, annotation: &str) -> Result<(), String> {
    match resolved.kind {
        Some(k) if k == kind => Ok(()),
        Some(k) => Err(format!(
            "annotation {annotation}: credential {:?} is of type {k}; it must be of type {kind}",
            resolved.name
        )),
        None => Err(format!(
            "annotation {annotation}: credential {:?} has no type label (run.ai/resource); it must be of type {kind}",
            resolved.name
        )),
    }
}

fn require_key(resolved: &Resolved, key: &str, annotation: &str) -> Result<(), String> {
    match &resolved.keys {
        Some(keys) if !keys.iter().any(|k| k == key) => Err(format!(
            "annotation {annotation}: credential {:?} has no key {key:?} (its keys: {})",
            resolved.name,
            keys.join(", ")
        )),
        _ => Ok(()),
    }
}

/// Resolves and checks the requests of a pod (or pod template) in `namespace`.
/// `images` are the pod's container images, for `run.ai/image-pull-credentials: auto`.
pub fn plan<'i>(
    settings: &Settings,
    index: &Index,
    namespace: &str,
    requests: &crate::model::workload::Requests,
    images: impl IntoIterator<Item = &'i str>,
) -> Result<Plan, String> {
    use crate::model::workload::{ImagePull, annotation as a};
    let mut plan = Plan::default();
    let missing = std::cell::RefCell::new(Vec::new());
    let uses = std::cell::RefCell::new(Vec::new());
    let resolver = Resolver::new(settings, index, namespace);
    let get = |name: &str| {
        let r = resolver.credential(name)?;
        missing.borrow_mut().extend(r.missing_copy);
        uses.borrow_mut().push(r.uid);
        Ok::<_, String>(r)
    };
    for e in &requests.env {
        let r = get(&e.credential).map_err(|why| format!("annotation {}: {why}", a::ENV))?;
        require_key(&r, &e.key, a::ENV)?;
        plan.env
            .push((e.env.clone(), r.secret.into_owned(), e.key.clone()));
    }
    for name in &requests.env_from {
        plan.env_from.push(
            get(name)
                .map_err(|why| format!("annotation {}: {why}", a::ENV_FROM))?
                .secret
                .into_owned(),
        );
    }
    for v in &requests.volumes {
        let r = get(&v.credential).map_err(|why| format!("annotation {}: {why}", a::VOLUME))?;
        plan.volumes.push((
            r.name.to_owned(),
            r.secret.into_owned(),
            v.mount_path.clone(),
        ));
    }
    // The variables of the S3 and Git credentials: in every container (for
    // workloads that fetch data themselves) and in the data sources' fetchers.
    let mut s3_env = Vec::new();
    if let Some(name) = &requests.s3 {
        let r = get(name).map_err(|why| format!("annotation {}: {why}", a::S3))?;
        require(&r, CredentialType::AccessKey, a::S3)?;
        for (env, key) in [
            ("AWS_ACCESS_KEY_ID", "AccessKeyId"),
            ("AWS_SECRET_ACCESS_KEY", "SecretKey"),
        ] {
            require_key(&r, key, a::S3)?;
            s3_env.push((env.to_owned(), r.secret.to_string(), key.to_owned()));
        }
        plan.env.extend(s3_env.iter().cloned());
    }
    let mut git_env = Vec::new();
    if let Some(name) = &requests.git {
        let r = get(name).map_err(|why| format!("annotation {}: {why}", a::GIT))?;
        require(&r, CredentialType::Password, a::GIT)?;
        let lower = r
            .keys
            .is_some_and(|k| k.iter().any(|k| k == "username") && !k.iter().any(|k| k == "User"));
        let (user, password) = if lower {
            ("username", "password")
        } else {
            ("User", "Password")
        };
        require_key(&r, password, a::GIT)?;
        // git-sync v3's names and v4's.
        for (env, key) in [
            ("GIT_SYNC_USERNAME", user),
            ("GIT_SYNC_PASSWORD", password),
            ("GITSYNC_USERNAME", user),
            ("GITSYNC_PASSWORD", password),
        ] {
            plan.env
                .push((env.into(), r.secret.to_string(), key.into()));
        }
        git_env = plan.env[plan.env.len() - 2..].to_vec();
    }
    for source in &requests.sources.sources {
        let env = match source.source {
            crate::model::datasource::Source::Git { .. } => git_env.clone(),
            crate::model::datasource::Source::S3 { .. } => s3_env.clone(),
        };
        plan.fetches.push(Fetch {
            source: source.clone(),
            env,
        });
    }
    plan.git_sync = requests.sources.git_sync;
    plan.s3_endpoint = requests.sources.s3_endpoint.clone();
    match &requests.image_pull {
        ImagePull::None => {}
        ImagePull::Named(names) => {
            for name in names {
                let r = get(name).map_err(|why| format!("annotation {}: {why}", a::IMAGE_PULL))?;
                require(&r, CredentialType::DockerRegistry, a::IMAGE_PULL)?;
                plan.pull_secrets.push(r.secret.into_owned());
            }
        }
        ImagePull::Auto => {
            let hosts: BTreeSet<String> = images
                .into_iter()
                .filter_map(crate::model::registry::image_host)
                .collect();
            for r in resolver.auto_pull(&hosts) {
                missing.borrow_mut().extend(r.missing_copy);
                uses.borrow_mut().push(r.uid);
                plan.pull_secrets.push(r.secret.into_owned());
            }
        }
    }
    plan.pull_secrets.dedup();
    let mut missing = missing.into_inner();
    missing.sort_unstable();
    missing.dedup();
    plan.missing_copies = missing.into_iter().map(str::to_owned).collect();
    let mut uses = uses.into_inner();
    uses.sort_unstable();
    uses.dedup();
    plan.uses = uses.into_iter().map(str::to_owned).collect();
    Ok(plan)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::workload::{Requests, parse};
    use crate::state::index::NamespaceInfo;
    use std::collections::BTreeMap;

    pub(crate) fn info(
        name: &str,
        kind: CredentialType,
        scope: Scope,
        keys: &[&str],
        registries: &[&str],
    ) -> SecretInfo {
        SecretInfo {
            uid: "u".into(),
            kind: Some(kind),
            scope: Some(scope),
            credential_name: name.into(),
            existing_secret: None,
            registries: registries.iter().map(|s| s.to_string()).collect(),
            keys: Some(keys.iter().map(|s| s.to_string()).collect()),
            deleting: false,
        }
    }

    /// team-a (department rnd) with project credentials; rnd and cluster credentials in runai.
    pub(crate) fn index() -> Index {
        let mut index = Index::default();
        index.set_namespace(
            "team-a",
            NamespaceInfo {
                project: Some("team-a".into()),
                department: Some("rnd".into()),
                ..Default::default()
            },
        );
        index.set_namespace(
            "team-b",
            NamespaceInfo {
                project: Some("team-b".into()),
                department: Some("rnd".into()),
                ..Default::default()
            },
        );
        index.set_namespace("runai", NamespaceInfo::default());
        use CredentialType::*;
        index.set_secret(
            "team-a",
            "s3-secret",
            info(
                "s3",
                AccessKey,
                Scope::Project,
                &["AccessKeyId", "SecretKey"],
                &[],
            ),
        );
        index.set_secret(
            "team-a",
            "git-secret",
            info(
                "git",
                Password,
                Scope::Project,
                &["password", "username"],
                &[],
            ),
        );
        index.set_secret(
            "team-a",
            "db-secret",
            info("db", Generic, Scope::Project, &["token", "url"], &[]),
        );
        index.set_secret(
            "team-a",
            "ghcr",
            info(
                "ghcr",
                DockerRegistry,
                Scope::Project,
                &[".dockerconfigjson"],
                &["ghcr.io"],
            ),
        );
        index.set_secret(
            "team-a",
            "hub",
            info(
                "hub",
                DockerRegistry,
                Scope::Project,
                &[".dockerconfigjson"],
                &["docker.io"],
            ),
        );
        let mut backed = info("backed", DockerRegistry, Scope::Project, &[], &[]);
        backed.existing_secret = Some("quay-pull".into());
        index.set_secret("team-a", "backed", backed);
        index.set_secret(
            "team-a",
            "quay-pull",
            info(
                "quay-pull",
                DockerRegistry,
                Scope::Project,
                &[".dockerconfigjson"],
                &["quay.io"],
            ),
        );
        index.set_secret(
            "team-b",
            "other",
            info("other", Generic, Scope::Project, &["k"], &[]),
        );
        index.set_secret(
            "runai",
            "rnd-token",
            info(
                "rnd-token",
                Generic,
                Scope::Department("rnd".into()),
                &["k"],
                &[],
            ),
        );
        index
    }

    fn requests(pairs: &[(&str, &str)]) -> Requests {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(Some(&map)).unwrap()
    }

    /// A credential whose existing Secret is being deleted (a finalizer holds
    /// it) is refused to new pods, as the credential itself would be.
    #[test]
    fn a_backing_secret_being_deleted_is_refused() {
        let mut index = index();
        let mut backing = info(
            "prepared",
            CredentialType::Generic,
            Scope::Project,
            &["token"],
            &[],
        );
        backing.deleting = true;
        index.set_secret("team-a", "prepared", backing);
        let mut backed = info("backed", CredentialType::Generic, Scope::Project, &[], &[]);
        backed.existing_secret = Some("prepared".into());
        index.set_secret("team-a", "backed", backed);
        let err = credential(&Settings::default(), &index, "team-a", "backed").unwrap_err();
        assert!(err.contains("which is being deleted"), "{err}");
    }

    #[test]
    fn resolves_and_plans() {
        let r = requests(&[
            ("run.ai/credentials-env", "DB=db:url"),
            ("run.ai/credentials-env-from", "db"),
            ("run.ai/credentials-volume", "db:/etc/db"),
            ("run.ai/s3-credential", "s3"),
            ("run.ai/git-credential", "git"),
        ]);
        let plan = plan(
            &Settings::default(),
            &index(),
            "team-a",
            &r,
            ["ghcr.io/org/app:1", "nginx", "registry.local/x"],
        )
        .unwrap();
        assert_eq!(plan.env[0], ("DB".into(), "db-secret".into(), "url".into()));
        assert_eq!(
            plan.env[1],
            (
                "AWS_ACCESS_KEY_ID".into(),
                "s3-secret".into(),
                "AccessKeyId".into()
            )
        );
        assert_eq!(
            plan.env[3],
            (
                "GIT_SYNC_USERNAME".into(),
                "git-secret".into(),
                "username".into()
            )
        );
        assert_eq!(plan.env_from, ["db-secret"]);
        assert_eq!(
            plan.volumes,
            [("db".into(), "db-secret".into(), "/etc/db".into())]
        );
        assert_eq!(
            plan.pull_secrets,
            ["ghcr", "hub"],
            "auto: only registries the images use"
        );

        let quay = plan_of(&[], &["quay.io/org/x"]).unwrap();
        assert_eq!(
            quay.pull_secrets,
            ["quay-pull"],
            "an existing-secret credential resolves to its backing Secret"
        );
        assert!(
            plan_of(&[], &["unrelated.example/x"])
                .unwrap()
                .pull_secrets
                .is_empty()
        );
        assert!(
            plan_of(&[("run.ai/image-pull-credentials", "none")], &["nginx"])
                .unwrap()
                .pull_secrets
                .is_empty()
        );
        assert_eq!(
            plan_of(&[("run.ai/image-pull-credentials", "backed")], &["nginx"])
                .unwrap()
                .pull_secrets,
            ["quay-pull"]
        );
    }

    fn plan_of(pairs: &[(&str, &str)], images: &[&str]) -> Result<Plan, String> {
        plan(
            &Settings::default(),
            &index(),
            "team-a",
            &requests(pairs),
            images.iter().copied(),
        )
    }

    #[test]
    fn wider_scopes_resolve_to_copies() {
        let mut index = index();
        let plan = plan(
            &Settings::default(),
            &index,
            "team-a",
            &requests(&[("run.ai/credentials-env-from", "rnd-token")]),
            [],
        )
        .unwrap();
        assert_eq!(plan.env_from, ["credgate.rnd-token"]);
        assert_eq!(
            plan.missing_copies,
            ["rnd-token"],
            "no copy yet: the admission path creates it first"
        );
        index.set_copy("team-a", "credgate.rnd-token", Some("sha256:x"));
        let plan = super::plan(
            &Settings::default(),
            &index,
            "team-a",
            &requests(&[("run.ai/credentials-env-from", "rnd-token")]),
            [],
        )
        .unwrap();
        assert!(plan.missing_copies.is_empty());
        // A project credential of the same name shadows it.
        index.set_secret(
            "team-a",
            "mine",
            info(
                "rnd-token",
                CredentialType::Generic,
                Scope::Project,
                &["k"],
                &[],
            ),
        );
        let plan = super::plan(
            &Settings::default(),
            &index,
            "team-a",
            &requests(&[("run.ai/credentials-env-from", "rnd-token")]),
            [],
        )
        .unwrap();
        assert_eq!(plan.env_from, ["mine"]);
    }

    #[test]
    fn refusals_say_why() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("run.ai/credentials-env-from", "other")],
                "no credential named \"other\" is visible to project \"team-a\"",
            ),
            (
                &[("run.ai/s3-credential", "ghcr")],
                "credential \"ghcr\" is of type docker-registry; it must be of type access-key",
            ),
            (
                &[("run.ai/git-credential", "s3")],
                "it must be of type password",
            ),
            (
                &[("run.ai/image-pull-credentials", "db")],
                "it must be of type docker-registry",
            ),
            (
                &[("run.ai/credentials-env", "X=db:missing")],
                "credential \"db\" has no key \"missing\" (its keys: token, url)",
            ),
        ];
        for (pairs, fragment) in cases {
            let err = plan_of(pairs, &["nginx"]).unwrap_err();
            assert!(err.contains(fragment), "{err:?} lacks {fragment:?}");
        }
        let err = plan(
            &Settings::default(),
            &index(),
            "runai",
            &requests(&[("run.ai/s3-credential", "s3")]),
            [],
        )
        .unwrap_err();
        assert!(err.contains("is not a project namespace"), "{err}");
    }
}
