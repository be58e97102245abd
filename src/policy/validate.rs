//! Validation of credential Secrets: labels, scope, annotations and shape per type.
//!
//! Pure functions of a [`Change`], the [`Settings`] and the [`Index`]
//! snapshot. The rules that need cluster state (project namespaces,
//! existing-secret use, in-use deletion, unique names) read the snapshot; the
//! in-use rule can also be given live workloads ([`in_use_live`]).

use k8s_openapi::api::core::v1::Secret;

use crate::model::credential::secret_meta;
use crate::model::credential::{
    CredentialType, MAX_DESCRIPTION_CHARS, Meta, Scope, annotation, is_dns_subdomain, label,
};
use crate::model::dockerconfig;
use crate::policy::{Allow, Change, Deny, Operation, SecretData, Settings, Verdict};
use crate::state::index::Index;

/// Secret types.
pub const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
pub const BASIC_AUTH_TYPE: &str = "kubernetes.io/basic-auth";
pub const OPAQUE_TYPE: &str = "Opaque";

/// The keys of an access-key credential.
pub const ACCESS_KEY_KEYS: [&str; 2] = ["AccessKeyId", "SecretKey"];
/// The key pairs a password credential may use.
pub const PASSWORD_KEYS: [[&str; 2]; 2] = [["User", "Password"], ["username", "password"]];

/// How many users a DELETE denial lists.
pub const USERS_LISTED: usize = 5;

/// Decides a CREATE, UPDATE or DELETE of a Secret that may be a credential.
pub fn secret(settings: &Settings, index: &Index, change: &Change<'_, Secret>) -> Verdict {
    managed_copy(settings, index, change)?;
    match change.operation {
        Operation::Connect => Ok(Allow::default()),
        Operation::Delete => {
            let Some(old) = change.old_object else {
                return Ok(Allow::default());
            };
            let meta = secret_meta(old, change.namespace);
            if !meta.is_credential() {
                return Ok(Allow::default());
            }
            synced(settings, index, change.namespace)?;
            in_use(settings, index, index, &meta)
        }
        Operation::Create | Operation::Update => {
            let Some(object) = change.object else {
                return Err(Deny("the request carries no object to check".into()));
            };
            let old = change
                .old_object
                .filter(|old| secret_meta(old, change.namespace).is_credential());
            let meta = secret_meta(object, change.namespace);
            if !meta.is_credential() {
                return match old {
                    Some(old) => Err(Deny(format!(
                        "{}: removing its type label turns the credential into a plain Secret; delete the credential instead",
                        describe(&secret_meta(old, change.namespace), None)
                    ))),
                    None => Ok(Allow::default()),
                };
            }
            if let Some(old) = old
                && secret_meta(old, change.namespace)
                    .label(crate::model::credential::label::RESOURCE)
                    .is_some()
                && meta
                    .label(crate::model::credential::label::RESOURCE)
                    .is_none()
            {
                return Err(Deny(format!(
                    "{}: the run.ai/resource label cannot be removed from a credential; delete the credential instead",
                    describe(&secret_meta(old, change.namespace), None)
                )));
            }
            let kind = credential_type(object, &meta)?;
            let scope = meta
                .scope(&settings.credentials_namespace)
                .map_err(|e| Deny(format!("{}: {e}", describe(&meta, Some(kind)))))?;
            let context =
                |problem: String| Deny(format!("{}: {problem}", describe(&meta, Some(kind))));
            annotations(&meta).map_err(context)?;
            match meta.annotation(annotation::EXISTING_SECRET) {
                Some(existing) => existing_secret(object, &meta, existing).map_err(context)?,
                None => shape(kind, object).map_err(context)?,
            }
            match old {
                Some(old) => unchanged(settings, &meta, kind, &scope, old, change.namespace)
                    .map_err(context)?,
                None => created_by_is_requester(&meta, change.user).map_err(context)?,
            }
            synced(settings, index, change.namespace)?;
            if let Some(old) = old {
                renamed(index, &secret_meta(old, change.namespace), &meta, &scope)?;
            }
            let mut allow = Allow::default();
            placement(settings, index, &meta, &scope, &mut allow).map_err(context)?;
            unique_name(settings, index, &meta, &scope, &mut allow).map_err(context)?;
            Ok(allow)
        }
    }
}

/// A workload template's credential annotations must resolve, so a bad
/// reference fails at `kubectl apply` and not later at pod creation.
pub fn workload(
    settings: &Settings,
    index: &Index,
    kind: crate::model::workload::WorkloadKind,
    change: &Change<'_, serde_json::Value>,
) -> Verdict {
    let (Operation::Create | Operation::Update, Some(object)) = (change.operation, change.object)
    else {
        return Ok(Allow::default());
    };
    let Some(template) = object.pointer(kind.template_pointer()) else {
        return Ok(Allow::default());
    };
    let old_template = change
        .old_object
        .and_then(|o| o.pointer(kind.template_pointer()));
    if change.operation == Operation::Update
        && credential_annotations(old_template) == credential_annotations(Some(template))
    {
        // Ratcheting: an UPDATE that leaves the template's `run.ai/`
        // annotations as they were (metadata, status, scale, finalizers,
        // ownerReferences: the controller-manager's and the garbage
        // collector's writes) is always allowed, even if a reference went
        // stale after CREATE.
        return Ok(Allow::default());
    }
    let requests = crate::model::workload::pod_json_requests(template)
        .map_err(|e| Deny(format!("pod template: {e}")))?;
    // An UPDATE is checked only for the references it adds or changes.
    let requests = match old_template.map(crate::model::workload::pod_json_requests) {
        Some(Ok(old)) if change.operation == Operation::Update => requests.added_since(&old),
        _ => requests,
    };
    if requests == crate::model::workload::Requests::default() {
        return Ok(Allow::default());
    }
    let spec = template.get("spec").map(crate::model::json::from_value);
    // Data sources are checked when they are added or changed (ratcheting, as above).
    crate::policy::fetch::conflicts(spec.as_ref(), &requests)
        .map_err(|e| Deny(format!("pod template: {e}")))?;
    synced(settings, index, change.namespace)?;
    let images = crate::model::workload::images(spec.as_ref());
    crate::policy::resolve::plan(settings, index, change.namespace, &requests, images)
        .map(|_| Allow::default())
        .map_err(|why| Deny(format!("pod template: {why}")))
}

/// The `run.ai/` annotations of a pod template, as they are written.
fn credential_annotations(template: Option<&serde_json::Value>) -> Vec<(&str, &serde_json::Value)> {
    template
        .and_then(|t| t.pointer("/metadata/annotations"))
        .and_then(serde_json::Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.starts_with("run.ai/"))
                .map(|(k, v)| (k.as_str(), v))
                .collect()
        })
        .unwrap_or_default()
}

/// Only credgate's controller writes managed copies; a person is pointed at the source.
/// Deleting copies in a namespace that is being deleted is always allowed.
fn managed_copy(
    settings: &Settings,
    index: &Index,
    change: &Change<'_, Secret>,
) -> Result<(), Deny> {
    let copy = [change.object, change.old_object]
        .into_iter()
        .flatten()
        .find(|s| {
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(crate::model::copy::MANAGED_LABEL))
                .map(String::as_str)
                == Some("true")
        });
    let Some(copy) = copy else {
        return Ok(());
    };
    if change.user == settings.controller_identity {
        return Ok(());
    }
    if change.operation == Operation::Delete
        && index
            .namespace(change.namespace)
            .is_none_or(|n| n.terminating)
    {
        return Ok(());
    }
    let source = copy
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::model::copy::SOURCE_ANNOTATION))
        .map_or_else(
            || "its source credential".to_owned(),
            |s| format!("the source credential Secret {s}"),
        );
    Err(Deny(format!(
        "Secret {:?} is a copy managed by credgate; change or delete {source} instead",
        copy.metadata.name.as_deref().unwrap_or_default()
    )))
}

/// State-dependent rules answer only from a synced cache; otherwise they deny, retryably.
/// About `namespace`, the cache must hold the Secrets of `namespace` and of
/// the credentials namespace: no rule about one namespace reads the Secrets
/// of a third (uniqueness is per scope, and the in-use rule reads workloads).
pub fn synced(settings: &Settings, index: &Index, namespace: &str) -> Result<(), Deny> {
    let Some(what) = index
        .not_synced()
        .or_else(|| secrets_not_synced(settings, index, namespace))
    else {
        return Ok(());
    };
    Err(Deny(format!(
        "credgate's view of the cluster is not complete yet (waiting for: {what}), so it cannot check this safely; retry in a few seconds"
    )))
}

/// Which namespace's Secrets a decision about `namespace` still waits for, and why.
pub fn secrets_not_synced(settings: &Settings, index: &Index, namespace: &str) -> Option<String> {
    let (ns, why) = [namespace, settings.credentials_namespace.as_str()]
        .into_iter()
        .find_map(|ns| Some((ns, index.secrets_not_synced_in(ns)?)))?;
    Some(format!("the Secrets of namespace {ns} ({why})"))
}

/// Credentials live in project namespaces or in the credentials namespace.
fn placement(
    settings: &Settings,
    index: &Index,
    meta: &Meta<'_>,
    scope: &Scope,
    allow: &mut Allow,
) -> Result<(), String> {
    match scope {
        Scope::Project if index.project_of(meta.namespace).is_none() => Err(format!(
            "namespace {:?} is neither a project namespace (label runai/queue) nor the credentials namespace {:?}; create the credential in a project's namespace",
            meta.namespace, settings.credentials_namespace
        )),
        Scope::Department(d) if !index.department_has_projects(d) => {
            allow.warnings.push(format!(
                "no project namespace belongs to department {d:?} yet (namespace label run.ai/department), so this credential reaches no project for now"
            ));
            Ok(())
        }
        _ => Ok(()),
    }
}

/// `run.ai/name` is unique among credentials of one scope; a project credential
/// that shadows a department or cluster one gets a warning.
fn unique_name(
    settings: &Settings,
    index: &Index,
    meta: &Meta<'_>,
    scope: &Scope,
    allow: &mut Allow,
) -> Result<(), String> {
    let wanted = meta.credential_name();
    let same_name = |namespace: &str, scope: &Scope| -> Option<String> {
        index
            .secrets_named(namespace, wanted)
            .filter(|(name, _)| !(namespace == meta.namespace && *name == meta.name))
            .find(|(name, info)| {
                info.scope.as_ref() == Some(scope) && !index.backs_a_credential(namespace, name)
            })
            .map(|(name, _)| name.to_owned())
    };
    if let Some(other) = same_name(meta.namespace, scope) {
        return Err(format!(
            "the name {wanted:?} is already used by the {scope} credential in Secret {:?}/{other:?}; choose another run.ai/name",
            meta.namespace
        ));
    }
    if *scope == Scope::Project {
        let department = index
            .namespace(meta.namespace)
            .and_then(|n| n.department.clone());
        let wider = department
            .map(Scope::Department)
            .into_iter()
            .chain([Scope::Cluster]);
        for wider in wider {
            if let Some(other) = same_name(&settings.credentials_namespace, &wider) {
                allow.warnings.push(format!(
                    "credential {wanted:?} shadows the {wider} credential of the same name (Secret {:?}/{other:?}) in this project",
                    settings.credentials_namespace
                ));
            }
        }
    }
    Ok(())
}

/// The credentials a DELETE of `meta` removes: the Secret itself, or the
/// credentials an existing Secret backs. `(Secret name, credential name, scope)`;
/// the Secrets are in `meta.namespace`.
fn deleted(
    settings: &Settings,
    index: &Index,
    meta: &Meta<'_>,
) -> (bool, Vec<(String, String, Option<Scope>)>) {
    let backed: Vec<_> = index
        .backers(meta.namespace, meta.name)
        .map(|(secret, info)| {
            (
                secret.to_owned(),
                info.credential_name.clone(),
                info.scope.clone(),
            )
        })
        .collect();
    if !backed.is_empty() {
        return (true, backed);
    }
    let own = (
        meta.name.to_owned(),
        meta.credential_name().to_owned(),
        meta.scope(&settings.credentials_namespace).ok(),
    );
    (false, vec![own])
}

/// What a DELETE of a credential Secret removes.
#[derive(Debug, PartialEq, Eq)]
pub struct Deletion {
    /// The credentials removed: `((namespace, Secret), credential name)`.
    pub credentials: Vec<((String, String), String)>,
    /// The namespaces whose workloads may use them, sorted.
    pub reach: Vec<String>,
}

/// What the request deletes; `None` when it is not the DELETE of a credential.
pub fn deletion(
    settings: &Settings,
    index: &Index,
    change: &Change<'_, Secret>,
) -> Option<Deletion> {
    let old = change
        .old_object
        .filter(|_| change.operation == Operation::Delete)?;
    let meta = secret_meta(old, change.namespace);
    if !meta.is_credential() {
        return None;
    }
    let credentials = deleted(settings, index, &meta).1;
    let mut reach: Vec<String> = credentials
        .iter()
        .flat_map(|(_, _, scope)| {
            index.visible_in(scope.as_ref().unwrap_or(&Scope::Project), meta.namespace)
        })
        .map(str::to_owned)
        .collect();
    reach.sort_unstable();
    reach.dedup();
    Some(Deletion {
        credentials: credentials
            .into_iter()
            .map(|(secret, name, _)| ((meta.namespace.to_owned(), secret), name))
            .collect(),
        reach,
    })
}

/// The DELETE rule again, with the workloads the API server holds now
/// (`live`, from [`crate::state::live`]) instead of the watched ones.
pub fn in_use_live(
    settings: &Settings,
    index: &Index,
    live: &Index,
    change: &Change<'_, Secret>,
) -> Verdict {
    match change.old_object {
        Some(old) => in_use(settings, index, live, &secret_meta(old, change.namespace)),
        None => Ok(Allow::default()),
    }
}

/// DELETE of a credential, or of the existing Secret behind one, while
/// workloads use it. Credentials and scopes come from `index`, the workloads
/// from `workloads` (the same snapshot, or a live list).
fn in_use(settings: &Settings, index: &Index, workloads: &Index, meta: &Meta<'_>) -> Verdict {
    let (is_backing, credentials) = deleted(settings, index, meta);
    let mut total = 0;
    let mut listed = Vec::new();
    for (_, name, scope) in &credentials {
        let scope = scope.clone().unwrap_or(Scope::Project);
        let namespaces = index.visible_in(&scope, meta.namespace);
        // Native references name the Secret itself in its own namespace, or its
        // managed copy in the project namespaces a wider credential reaches.
        let copy = crate::model::copy::copy_name(meta.name);
        let native = if scope == Scope::Project {
            meta.name
        } else {
            copy.as_str()
        };
        let users = workloads.users(&namespaces, Some(native), Some(name), USERS_LISTED);
        total += users.total;
        listed.extend(users.first);
    }
    if total == 0 {
        return Ok(Allow::default());
    }
    listed.sort();
    listed.dedup();
    listed.truncate(USERS_LISTED);
    let what = if is_backing {
        format!(
            "the Secret {:?} backs credential {:?}, which",
            meta.name, credentials[0].1
        )
    } else {
        format!("credential {:?}", meta.credential_name())
    };
    let more = total.saturating_sub(listed.len());
    Err(Deny(format!(
        "{what} is in use by {total} workload{}: {}{}; remove these references (or delete the workloads) first",
        if total == 1 { "" } else { "s" },
        listed.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )))
}

/// A change of `run.ai/name` while workloads name the credential by its old
/// name breaks them, and would let the credential be deleted under them: it is
/// refused like a DELETE, listing them. References by Secret name
/// (imagePullSecrets, volumes) do not change and do not count.
fn renamed(index: &Index, old: &Meta<'_>, new: &Meta<'_>, scope: &Scope) -> Result<(), Deny> {
    let (from, to) = (old.credential_name(), new.credential_name());
    if from == to {
        return Ok(());
    }
    let namespaces = index.visible_in(scope, old.namespace);
    let users = index.users(&namespaces, None, Some(from), USERS_LISTED);
    if users.total == 0 {
        return Ok(());
    }
    let more = users.total.saturating_sub(users.first.len());
    Err(Deny(format!(
        "credential {from:?} cannot be renamed to {to:?}: it is in use by {} workload{} that name it: {}{}; change those references first, or keep the name",
        users.total,
        if users.total == 1 { "" } else { "s" },
        users.first.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )))
}

/// `credential "name" (type)` for messages.
fn describe(meta: &Meta<'_>, kind: Option<CredentialType>) -> String {
    match kind {
        Some(kind) => format!("credential {:?} ({kind})", meta.credential_name()),
        None => format!("credential {:?}", meta.credential_name()),
    }
}

/// The type from the label, or for a legacy `run.ai/credentials: "true"` Secret, from its shape.
pub fn credential_type(secret: &Secret, meta: &Meta<'_>) -> Result<CredentialType, Deny> {
    match meta.declared_type() {
        Ok(Some(kind)) => Ok(kind),
        Ok(None) => Ok(infer_type(secret)),
        Err(e) => Err(Deny(format!("{}: {e}", describe(meta, None)))),
    }
}

/// The type a legacy credential's shape suggests.
pub fn infer_type(secret: &Secret) -> CredentialType {
    let data = SecretData(secret);
    match secret.type_.as_deref() {
        Some(DOCKER_CONFIG_JSON_TYPE) => CredentialType::DockerRegistry,
        Some(BASIC_AUTH_TYPE) => CredentialType::Password,
        _ if ACCESS_KEY_KEYS.iter().all(|k| data.has(k)) => CredentialType::AccessKey,
        _ if PASSWORD_KEYS
            .iter()
            .any(|pair| pair.iter().all(|k| data.has(k))) =>
        {
            CredentialType::Password
        }
        _ => CredentialType::Generic,
    }
}

fn annotations(meta: &Meta<'_>) -> Result<(), String> {
    if let Some(name) = meta.annotation(annotation::NAME)
        && !is_dns_subdomain(name)
    {
        return Err(format!(
            "run.ai/name {name:?} is not a valid name: use lowercase letters, digits, '-' and '.', at most 253 characters"
        ));
    }
    if let Some(description) = meta.annotation(annotation::DESCRIPTION) {
        let chars = description.chars().count();
        if chars > MAX_DESCRIPTION_CHARS {
            return Err(format!(
                "run.ai/description has {chars} characters; shorten it to at most {MAX_DESCRIPTION_CHARS}"
            ));
        }
    }
    Ok(())
}

/// Whether the Secret `existing` (in `namespace`) may back a new credential
/// of `kind` and `scope`: the seeds' rules (its scope labels and type label
/// match, its shape is right) and credgate's (it is not a credential backed by
/// another Secret, not a managed copy, not a new secret made together with
/// its credential). One rule for `/validate`'s claim and for `credgate
/// existing-secrets`; that it backs no other credential yet is checked apart
/// (by the claim, and by the CLI from its listing).
pub fn can_back(
    existing: &Secret,
    namespace: &str,
    kind: CredentialType,
    scope: &Scope,
) -> Result<(), String> {
    let meta = secret_meta(existing, namespace);
    let name = meta.name;
    let deny = |why: String| {
        Err(format!(
            "the existing Secret {name:?} cannot back this credential: {why}"
        ))
    };
    if meta.annotation(annotation::EXISTING_SECRET).is_some() {
        return deny("it is itself a credential backed by another Secret".into());
    }
    if meta.label(crate::model::copy::MANAGED_LABEL).is_some() {
        return deny("it is one of credgate's managed copies".into());
    }
    if meta.annotation(annotation::NEW_SECRET).is_some() {
        return deny(
            "it was created together with its own credential; only Secrets created in advance can back a credential".into(),
        );
    }
    match meta.label(label::RESOURCE) {
        Some(t) if t == kind.as_str() => {}
        Some(t) => {
            return deny(format!("it is labelled run.ai/resource: {t}, not {kind}"));
        }
        None => return deny(format!("label it run.ai/resource: {kind}")),
    }
    let cluster = meta.label(label::CLUSTER_WIDE) == Some("true")
        || meta.label(label::CLUSTER_WIDE_LEGACY) == Some("true");
    let department = meta.label(label::DEPARTMENT);
    match scope {
        Scope::Cluster if !cluster => {
            return deny("label it run.ai/cluster-wide: \"true\" to share it cluster-wide".into());
        }
        Scope::Department(d) if department != Some(d.as_str()) => {
            return deny(format!(
                "label it run.ai/department: {d} to share it with department {d}"
            ));
        }
        Scope::Project if cluster || department.is_some() => {
            return deny(
                "it carries a cluster or department label; project credentials need neither".into(),
            );
        }
        _ => {}
    }
    shape(kind, existing).map_err(|problem| format!("the existing Secret {name:?}: {problem}"))
}

fn existing_secret(secret: &Secret, meta: &Meta<'_>, existing: &str) -> Result<(), String> {
    if !is_dns_subdomain(existing) {
        return Err(format!(
            "run.ai/existing-secret {existing:?} is not a Secret name"
        ));
    }
    if existing == meta.name {
        return Err(format!(
            "run.ai/existing-secret names this Secret itself; name the existing Secret {existing:?} should be backed by, or remove the annotation"
        ));
    }
    if !SecretData(secret).is_empty() {
        return Err(format!(
            "a credential backed by the existing Secret {existing:?} carries no data of its own: remove data and stringData"
        ));
    }
    Ok(())
}

/// The shape each type asks for. Messages name keys, never values.
pub fn shape(kind: CredentialType, secret: &Secret) -> Result<(), String> {
    let data = SecretData(secret);
    let secret_type = secret.type_.as_deref().unwrap_or(OPAQUE_TYPE);
    let missing = |keys: &[&str]| -> Vec<String> {
        keys.iter()
            .filter(|k| !data.has(k))
            .map(|k| format!("{k:?}"))
            .collect()
    };
    match kind {
        CredentialType::DockerRegistry => {
            if secret_type != DOCKER_CONFIG_JSON_TYPE {
                return Err(format!(
                    "docker-registry credentials must be Secrets of type {DOCKER_CONFIG_JSON_TYPE}, not {secret_type} (kubectl create secret docker-registry makes one)"
                ));
            }
            let config = data
                .get(DOCKER_CONFIG_JSON_KEY)
                .ok_or_else(|| format!("the Secret has no {DOCKER_CONFIG_JSON_KEY} key"))?;
            dockerconfig::registries(config)
                .map(drop)
                .map_err(|e| e.to_string())
        }
        CredentialType::AccessKey => {
            if secret_type != OPAQUE_TYPE {
                return Err(format!(
                    "access-key credentials must be Secrets of type {OPAQUE_TYPE}, not {secret_type}"
                ));
            }
            let missing = missing(&ACCESS_KEY_KEYS);
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "access-key credentials need non-empty keys \"AccessKeyId\" and \"SecretKey\"; missing or empty: {}",
                    missing.join(", ")
                ))
            }
        }
        CredentialType::Password => {
            if secret_type != OPAQUE_TYPE && secret_type != BASIC_AUTH_TYPE {
                return Err(format!(
                    "password credentials must be Secrets of type {OPAQUE_TYPE} or {BASIC_AUTH_TYPE}, not {secret_type}"
                ));
            }
            if PASSWORD_KEYS.iter().any(|pair| missing(pair).is_empty()) {
                Ok(())
            } else {
                Err("password credentials need non-empty keys \"User\" and \"Password\" (or \"username\" and \"password\")".to_owned())
            }
        }
        CredentialType::Generic => {
            if data.is_empty() {
                Err("generic credentials need at least one key in data or stringData".to_owned())
            } else {
                Ok(())
            }
        }
    }
}

/// UPDATE may not change what identifies a credential.
fn unchanged(
    settings: &Settings,
    meta: &Meta<'_>,
    kind: CredentialType,
    scope: &Scope,
    old: &Secret,
    namespace: &str,
) -> Result<(), String> {
    let old_meta = secret_meta(old, namespace);
    let old_kind = credential_type(old, &old_meta).map_err(|d| d.0)?;
    if old_kind != kind {
        return Err(format!(
            "the type cannot change from {old_kind} to {kind}; create a new credential instead"
        ));
    }
    if let Ok(old_scope) = old_meta.scope(&settings.credentials_namespace)
        && &old_scope != scope
    {
        return Err(format!(
            "the scope cannot change from {old_scope} to {scope}; create a new credential instead"
        ));
    }
    let old_created_by = old_meta.annotation(annotation::CREATED_BY);
    let created_by = meta.annotation(annotation::CREATED_BY);
    if old_created_by != created_by {
        return Err(format!(
            "run.ai/created-by is stamped by credgate and cannot change (it is {}); remove it from your change",
            old_created_by.map_or_else(|| "unset".to_owned(), |v| format!("{v:?}"))
        ));
    }
    let old_existing = old_meta.annotation(annotation::EXISTING_SECRET);
    let existing = meta.annotation(annotation::EXISTING_SECRET);
    if old_existing != existing {
        return Err(format!(
            "the backing existing Secret cannot change (it is {}); create a new credential instead",
            old_existing.map_or_else(|| "none".to_owned(), |v| format!("{v:?}"))
        ));
    }
    Ok(())
}

fn created_by_is_requester(meta: &Meta<'_>, user: &str) -> Result<(), String> {
    match meta.annotation(annotation::CREATED_BY) {
        Some(by) if by != user => Err(format!(
            "run.ai/created-by is stamped by credgate with the requesting user ({user:?}), not {by:?}; remove it from the Secret"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::index::{NamespaceInfo, SecretInfo};
    use base64::Engine as _;
    use serde_json::{Value, json};

    /// Issue 16, ratcheting: a Deployment whose reference went stale can still
    /// be updated by the controllers (same `run.ai/` annotations), and an
    /// UPDATE is checked only for the references it adds.
    #[test]
    fn workload_updates_are_checked_only_for_what_they_add() {
        use crate::model::workload::WorkloadKind;
        let index = crate::policy::resolve::tests::index();
        let settings = Settings::default();
        let deployment = |annotations: Value, replicas: u32| {
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "web", "namespace": "team-a", "finalizers": ["foregroundDeletion"]},
                   "spec": {"replicas": replicas, "template": {
                       "metadata": {"annotations": annotations},
                       "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
        };
        let decide = |operation, new: &Value, old: Option<&Value>| {
            workload(
                &settings,
                &index,
                WorkloadKind::Deployment,
                &Change {
                    operation,
                    user: "system:serviceaccount:kube-system:deployment-controller",
                    namespace: "team-a",
                    object: Some(new),
                    old_object: old,
                },
            )
        };
        let stale = deployment(json!({"run.ai/credentials-env-from": "gone"}), 1);
        let err = decide(Operation::Create, &stale, None).unwrap_err();
        assert!(err.0.contains("gone"), "{err}");
        // Scaled, finalized, re-labelled: the run.ai/ annotations are as they were.
        let scaled = deployment(
            json!({"run.ai/credentials-env-from": "gone", "other": "x"}),
            0,
        );
        assert!(decide(Operation::Update, &scaled, Some(&stale)).is_ok());
        // A new reference that resolves: allowed although the stale one stays.
        let added = deployment(json!({"run.ai/credentials-env-from": "gone, db"}), 1);
        assert!(decide(Operation::Update, &added, Some(&stale)).is_ok());
        // A new reference that does not resolve: refused, naming it.
        let bad = deployment(json!({"run.ai/credentials-env-from": "gone, missing"}), 1);
        let err = decide(Operation::Update, &bad, Some(&stale)).unwrap_err();
        assert!(
            err.0.contains("missing") && !err.0.contains("\"gone\""),
            "{err}"
        );
    }

    const USER: &str = "alice";
    const SECRET_VALUE: &str = "hunter2-do-not-print";

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn docker_config() -> String {
        format!(
            r#"{{"auths":{{"ghcr.io":{{"auth":"{}"}}}}}}"#,
            b64(&format!("bot:{SECRET_VALUE}"))
        )
    }

    /// A Secret from `overrides` merged into a valid project docker-registry credential.
    fn secret(overrides: Value) -> Secret {
        secret_layers(&[overrides])
    }

    /// Like [`secret`], with several overrides applied in order.
    fn secret_layers(layers: &[Value]) -> Secret {
        let mut base = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "reg", "namespace": "team-a", "labels": {"run.ai/resource": "docker-registry"}},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": b64(&docker_config())},
        });
        for layer in layers {
            merge(&mut base, layer.clone());
        }
        serde_json::from_value(base).unwrap()
    }

    /// JSON merge patch (RFC 7386): null removes.
    fn merge(base: &mut Value, patch: Value) {
        match (base, patch) {
            (Value::Object(b), Value::Object(p)) => {
                for (k, v) in p {
                    if v.is_null() {
                        b.remove(&k);
                    } else {
                        merge(b.entry(k).or_insert(Value::Null), v);
                    }
                }
            }
            (b, p) => *b = p,
        }
    }

    fn decide(op: Operation, object: &Secret, old: Option<&Secret>) -> Verdict {
        let change = Change {
            operation: op,
            user: USER,
            namespace: object.metadata.namespace.as_deref().unwrap(),
            object: Some(object),
            old_object: old,
        };
        super::secret(&Settings::default(), &index(), &change)
    }

    /// A synced index: `team-a` is a project of department `rnd`, `runai` the credentials namespace.
    fn index() -> Index {
        let mut index = Index::default();
        index.set_namespace(
            "team-a",
            NamespaceInfo {
                project: Some("team-a".into()),
                department: Some("rnd".into()),
                ..Default::default()
            },
        );
        index.set_namespace("runai", NamespaceInfo::default());
        index.set_namespace("plain", NamespaceInfo::default());
        index
    }

    fn index_with(secrets: &[(&str, &str, Value)]) -> Index {
        let mut index = index();
        for (ns, name, overrides) in secrets {
            let mut o = json!({"metadata": {"namespace": ns, "name": name}});
            merge(&mut o, overrides.clone());
            let secret = super::tests::secret(o);
            let meta = secret_meta(&secret, ns);
            index.set_secret(ns, name, SecretInfo::from_meta(&meta, "uid", "runai"));
        }
        index
    }

    fn assert_verdict(name: &str, got: Verdict, want: Result<(), &str>) {
        match (got, want) {
            (Ok(_), Ok(())) => {}
            (Err(Deny(msg)), Err(fragment)) => {
                assert!(msg.contains(fragment), "{name}: {msg:?} lacks {fragment:?}");
                assert!(
                    !msg.contains(SECRET_VALUE),
                    "{name}: {msg:?} leaks a secret value"
                );
            }
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn create_rules() {
        let opaque = |labels: Value, mut data: Value| {
            data[".dockerconfigjson"] = Value::Null;
            json!({"type": "Opaque", "metadata": {"labels": labels}, "data": data})
        };
        let cases: Vec<(&str, Value, Result<(), &str>)> = vec![
            ("docker-registry valid", json!({}), Ok(())),
            (
                "unlabelled secret untouched",
                json!({"metadata": {"labels": null}, "type": "Opaque", "data": {"x": ""}}),
                Ok(()),
            ),
            (
                "unknown type",
                json!({"metadata": {"labels": {"run.ai/resource": "docker"}}}),
                Err("unknown credential type \"docker\""),
            ),
            (
                "docker wrong secret type",
                json!({"type": "Opaque"}),
                Err("must be Secrets of type kubernetes.io/dockerconfigjson"),
            ),
            (
                "docker missing key",
                json!({"data": {".dockerconfigjson": null, "x": b64("1")}}),
                Err("no .dockerconfigjson key"),
            ),
            (
                "docker not json",
                json!({"data": {".dockerconfigjson": b64(SECRET_VALUE)}}),
                Err("not valid JSON"),
            ),
            (
                "docker empty auths",
                json!({"data": {".dockerconfigjson": b64(r#"{"auths":{}}"#)}}),
                Err("no registries"),
            ),
            (
                "docker entry without auth",
                json!({"data": {".dockerconfigjson": b64(&format!(r#"{{"auths":{{"r.io":{{"password":"{SECRET_VALUE}"}}}}}}"#))}}),
                Err("needs \"auth\""),
            ),
            (
                "docker username+password",
                json!({"data": {".dockerconfigjson": b64(&format!(r#"{{"auths":{{"r.io":{{"username":"u","password":"{SECRET_VALUE}"}}}}}}"#))}}),
                Ok(()),
            ),
            (
                "docker via stringData",
                json!({"data": null, "stringData": {".dockerconfigjson": docker_config()}}),
                Ok(()),
            ),
            (
                "access-key valid",
                opaque(
                    json!({"run.ai/resource": "access-key"}),
                    json!({"AccessKeyId": b64("AK"), "SecretKey": b64(SECRET_VALUE)}),
                ),
                Ok(()),
            ),
            (
                "access-key missing SecretKey",
                opaque(
                    json!({"run.ai/resource": "access-key"}),
                    json!({"AccessKeyId": b64("AK")}),
                ),
                Err("missing or empty: \"SecretKey\""),
            ),
            (
                "access-key empty AccessKeyId",
                opaque(
                    json!({"run.ai/resource": "access-key"}),
                    json!({"AccessKeyId": "", "SecretKey": b64(SECRET_VALUE)}),
                ),
                Err("missing or empty: \"AccessKeyId\""),
            ),
            (
                "access-key wrong type",
                json!({"metadata": {"labels": {"run.ai/resource": "access-key"}}, "type": "kubernetes.io/basic-auth", "data": {"AccessKeyId": b64("a"), "SecretKey": b64("b")}}),
                Err("must be Secrets of type Opaque"),
            ),
            (
                "password User/Password",
                opaque(
                    json!({"run.ai/resource": "password"}),
                    json!({"User": b64("u"), "Password": b64(SECRET_VALUE)}),
                ),
                Ok(()),
            ),
            (
                "password username/password",
                opaque(
                    json!({"run.ai/resource": "password"}),
                    json!({"username": b64("u"), "password": b64(SECRET_VALUE)}),
                ),
                Ok(()),
            ),
            (
                "password basic-auth",
                json!({"metadata": {"labels": {"run.ai/resource": "password"}}, "type": "kubernetes.io/basic-auth", "data": {"username": b64("u"), "password": b64("p")}}),
                Ok(()),
            ),
            (
                "password mixed keys",
                opaque(
                    json!({"run.ai/resource": "password"}),
                    json!({"User": b64("u"), "password": b64(SECRET_VALUE)}),
                ),
                Err("need non-empty keys \"User\" and \"Password\""),
            ),
            (
                "generic one key",
                opaque(
                    json!({"run.ai/resource": "generic"}),
                    json!({"token": b64(SECRET_VALUE)}),
                ),
                Ok(()),
            ),
            (
                "generic no key",
                opaque(json!({"run.ai/resource": "generic"}), json!({})),
                Err("at least one key"),
            ),
            (
                "legacy marker typed by shape",
                json!({"metadata": {"labels": {"run.ai/resource": null, "run.ai/credentials": "true"}}}),
                Ok(()),
            ),
            (
                "legacy marker, broken shape",
                json!({"metadata": {"labels": {"run.ai/resource": null, "run.ai/credentials": "true"}}, "type": "Opaque", "data": {".dockerconfigjson": null}}),
                Err("generic credentials need at least one key"),
            ),
            (
                "cluster label outside credentials ns",
                json!({"metadata": {"labels": {"run.ai/cluster-wide": "true"}}}),
                Err("live in the credentials namespace \"runai\", not in \"team-a\""),
            ),
            (
                "department label outside credentials ns",
                json!({"metadata": {"labels": {"run.ai/department": "rnd"}}}),
                Err("live in the credentials namespace"),
            ),
            (
                "cluster and department",
                json!({"metadata": {"namespace": "runai", "labels": {"run.ai/cluster-wide": "true", "run.ai/department": "rnd"}}}),
                Err("both cluster-wide and of department \"rnd\""),
            ),
            (
                "cluster in credentials ns",
                json!({"metadata": {"namespace": "runai", "labels": {"run.ai/cluster-wide": "true"}}}),
                Ok(()),
            ),
            (
                "department in credentials ns",
                json!({"metadata": {"namespace": "runai", "labels": {"run.ai/department": "rnd"}}}),
                Ok(()),
            ),
            (
                "no scope in credentials ns",
                json!({"metadata": {"namespace": "runai"}}),
                Err("needs a scope"),
            ),
            (
                "description 250",
                json!({"metadata": {"annotations": {"run.ai/description": "é".repeat(250)}}}),
                Ok(()),
            ),
            (
                "description 251",
                json!({"metadata": {"annotations": {"run.ai/description": "d".repeat(251)}}}),
                Err("has 251 characters"),
            ),
            (
                "bad run.ai/name",
                json!({"metadata": {"annotations": {"run.ai/name": "My Registry"}}}),
                Err("run.ai/name \"My Registry\" is not a valid name"),
            ),
            (
                "created-by spoofed",
                json!({"metadata": {"annotations": {"run.ai/created-by": "bob"}}}),
                Err("stamped by credgate with the requesting user (\"alice\"), not \"bob\""),
            ),
            (
                "created-by matches",
                json!({"metadata": {"annotations": {"run.ai/created-by": USER}}}),
                Ok(()),
            ),
            (
                "existing secret, no data",
                json!({"type": "Opaque", "data": null, "metadata": {"annotations": {"run.ai/existing-secret": "pull-secret"}}}),
                Ok(()),
            ),
            (
                "existing secret with data",
                json!({"metadata": {"annotations": {"run.ai/existing-secret": "pull-secret"}}}),
                Err("carries no data of its own"),
            ),
            (
                "existing secret is itself",
                json!({"type": "Opaque", "data": null, "metadata": {"annotations": {"run.ai/existing-secret": "reg"}}}),
                Err("names this Secret itself"),
            ),
        ];
        for (name, overrides, want) in cases {
            let object = secret(overrides);
            assert_verdict(name, decide(Operation::Create, &object, None), want);
        }
    }

    #[test]
    fn update_rules() {
        let old = secret(json!({"metadata": {"annotations": {"run.ai/created-by": USER}}}));
        let cases: Vec<(&str, Value, Result<(), &str>)> = vec![
            (
                "rename and describe",
                json!({"metadata": {"annotations": {"run.ai/created-by": USER, "run.ai/name": "new-name", "run.ai/description": "d"}}}),
                Ok(()),
            ),
            (
                "type changed",
                json!({"metadata": {"labels": {"run.ai/resource": "generic"}, "annotations": {"run.ai/created-by": USER}}, "type": "Opaque"}),
                Err("type cannot change from docker-registry to generic"),
            ),
            (
                "type label removed",
                json!({"metadata": {"labels": null, "annotations": {"run.ai/created-by": USER}}}),
                Err("removing its type label"),
            ),
            (
                "created-by changed",
                json!({"metadata": {"annotations": {"run.ai/created-by": "bob"}}}),
                Err("cannot change (it is \"alice\")"),
            ),
            (
                "created-by removed",
                json!({"metadata": {"annotations": {"run.ai/created-by": null}}}),
                Err("cannot change (it is \"alice\")"),
            ),
            (
                "existing-secret added",
                json!({"data": null, "type": "Opaque", "metadata": {"annotations": {"run.ai/created-by": USER, "run.ai/existing-secret": "x"}}}),
                Err("backing existing Secret cannot change"),
            ),
            (
                "shape broken by update",
                json!({"metadata": {"annotations": {"run.ai/created-by": USER}}, "data": {".dockerconfigjson": b64("{}")}}),
                Err("\"auths\" object"),
            ),
        ];
        for (name, overrides, want) in cases {
            let object = secret_layers(&[
                json!({"metadata": {"annotations": {"run.ai/created-by": USER}}}),
                overrides,
            ]);
            assert_verdict(name, decide(Operation::Update, &object, Some(&old)), want);
        }
        let cluster_old = secret(
            json!({"metadata": {"namespace": "runai", "labels": {"run.ai/cluster-wide": "true"}}}),
        );
        let department = secret(
            json!({"metadata": {"namespace": "runai", "labels": {"run.ai/department": "rnd"}}}),
        );
        assert_verdict(
            "scope changed",
            decide(Operation::Update, &department, Some(&cluster_old)),
            Err("scope cannot change from cluster to department rnd"),
        );
    }

    #[test]
    fn delete_is_allowed_until_the_index_exists() {
        let old = secret(json!({}));
        let change = Change {
            operation: Operation::Delete,
            user: USER,
            namespace: "team-a",
            object: None,
            old_object: Some(&old),
        };
        assert!(super::secret(&Settings::default(), &index(), &change).is_ok());
    }

    fn decide_with(
        index: &Index,
        op: Operation,
        object: Option<&Secret>,
        old: Option<&Secret>,
    ) -> Verdict {
        let ns = object.or(old).unwrap().metadata.namespace.clone().unwrap();
        let change = Change {
            operation: op,
            user: USER,
            namespace: &ns,
            object,
            old_object: old,
        };
        super::secret(&Settings::default(), index, &change)
    }

    #[test]
    fn placement_and_unique_names() {
        let index = index_with(&[
            (
                "team-a",
                "taken",
                json!({"metadata": {"annotations": {"run.ai/name": "db"}}}),
            ),
            (
                "runai",
                "cluster-db",
                json!({"metadata": {"labels": {"run.ai/cluster-wide": "true"}, "annotations": {"run.ai/name": "db2"}}}),
            ),
            (
                "runai",
                "rnd-db",
                json!({"metadata": {"labels": {"run.ai/department": "rnd"}, "annotations": {"run.ai/name": "db2"}}}),
            ),
        ]);
        let outside = secret(json!({"metadata": {"namespace": "plain"}}));
        assert_verdict(
            "outside any project",
            decide_with(&index, Operation::Create, Some(&outside), None),
            Err("namespace \"plain\" is neither a project namespace"),
        );
        let dup =
            secret(json!({"metadata": {"name": "other", "annotations": {"run.ai/name": "db"}}}));
        assert_verdict(
            "duplicate name",
            decide_with(&index, Operation::Create, Some(&dup), None),
            Err(
                "the name \"db\" is already used by the project credential in Secret \"team-a\"/\"taken\"",
            ),
        );
        // The same Secret updated keeps its own name.
        let same = secret(
            json!({"metadata": {"name": "taken", "annotations": {"run.ai/name": "db", "run.ai/created-by": USER}}}),
        );
        assert!(decide_with(&index, Operation::Update, Some(&same), Some(&same)).is_ok());
        // A project credential may shadow wider ones, with warnings.
        let shadow =
            secret(json!({"metadata": {"name": "mine", "annotations": {"run.ai/name": "db2"}}}));
        let warnings = decide_with(&index, Operation::Create, Some(&shadow), None)
            .unwrap()
            .warnings;
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].contains("shadows the department rnd credential"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].contains("shadows the cluster credential"),
            "{warnings:?}"
        );
        // Department scope with no project yet: allowed with a warning.
        let lonely = secret(
            json!({"metadata": {"namespace": "runai", "name": "ops", "labels": {"run.ai/department": "ops"}}}),
        );
        let warnings = decide_with(&index, Operation::Create, Some(&lonely), None)
            .unwrap()
            .warnings;
        assert!(
            warnings[0].contains("no project namespace belongs to department \"ops\""),
            "{warnings:?}"
        );
        // Same name in another scope of the credentials namespace: fine.
        let other_scope = secret(
            json!({"metadata": {"namespace": "runai", "name": "x", "labels": {"run.ai/department": "rnd"}, "annotations": {"run.ai/name": "db"}}}),
        );
        assert!(decide_with(&index, Operation::Create, Some(&other_scope), None).is_ok());
    }

    #[test]
    fn only_credgate_writes_managed_copies() {
        let mut index = index();
        index.set_namespace(
            "leaving",
            NamespaceInfo {
                project: Some("leaving".into()),
                terminating: true,
                ..Default::default()
            },
        );
        let copy = |ns: &str| {
            secret(
                json!({"metadata": {"namespace": ns, "name": "credgate.reg", "labels": {"run.ai/resource": null, "credgate.run.ai/managed-copy": "true"},
                                       "annotations": {"credgate.run.ai/source": "runai/reg"}}}),
            )
        };
        let settings = Settings::default();
        fn change<'a>(
            op: Operation,
            user: &'a str,
            object: Option<&'a Secret>,
            old: Option<&'a Secret>,
            ns: &'a str,
        ) -> Change<'a, Secret> {
            Change {
                operation: op,
                user,
                namespace: ns,
                object,
                old_object: old,
            }
        }
        let c = copy("team-a");
        for (op, object, old) in [
            (Operation::Create, Some(&c), None),
            (Operation::Update, Some(&c), Some(&c)),
            (Operation::Delete, None, Some(&c)),
        ] {
            let denied = super::secret(&settings, &index, &change(op, USER, object, old, "team-a"));
            assert_verdict(
                "a person",
                denied,
                Err(
                    "Secret \"credgate.reg\" is a copy managed by credgate; change or delete the source credential Secret runai/reg instead",
                ),
            );
            assert!(
                super::secret(
                    &settings,
                    &index,
                    &change(op, &settings.controller_identity, object, old, "team-a")
                )
                .is_ok()
            );
        }
        let leaving = copy("leaving");
        assert!(
            super::secret(
                &settings,
                &index,
                &change(
                    Operation::Delete,
                    "system:serviceaccount:kube-system:namespace-controller",
                    None,
                    Some(&leaving),
                    "leaving"
                )
            )
            .is_ok()
        );
    }

    #[test]
    fn not_synced_denies_instead_of_guessing() {
        let mut index = Index::waiting_for(&["secrets"]);
        index.set_namespace(
            "team-a",
            NamespaceInfo {
                project: Some("team-a".into()),
                department: None,
                ..Default::default()
            },
        );
        let credential = secret(json!({}));
        for (op, object, old) in [
            (Operation::Create, Some(&credential), None),
            (Operation::Delete, None, Some(&credential)),
        ] {
            assert_verdict(
                "unsynced",
                decide_with(&index, op, object, old),
                Err("not complete yet (waiting for: secrets (not listed yet))"),
            );
        }
        // Plain Secrets are not affected.
        let mut plain = credential.clone();
        plain.metadata.labels = None;
        assert!(decide_with(&index, Operation::Delete, None, Some(&plain)).is_ok());
    }

    /// Issue 17: a rename of a credential that workloads name by its old name
    /// is refused like a DELETE, listing them; a rename no one depends on, or
    /// any other change, is allowed.
    #[test]
    fn rename_of_a_credential_in_use() {
        use crate::model::workload::{Reference, Usage, WorkloadKind};
        let mut index = index_with(&[(
            "team-a",
            "reg",
            json!({"metadata": {"annotations": {"run.ai/name": "registry"}}}),
        )]);
        let old = secret(json!({"metadata": {"annotations": {"run.ai/name": "registry"}}}));
        let renamed = secret(json!({"metadata": {"annotations": {"run.ai/name": "gone"}}}));
        let described = secret(
            json!({"metadata": {"annotations": {"run.ai/name": "registry", "run.ai/description": "new"}}}),
        );
        let decide = |index: &Index, object: &Secret| {
            let change = Change {
                operation: Operation::Update,
                user: USER,
                namespace: "team-a",
                object: Some(object),
                old_object: Some(&old),
            };
            super::secret(&Settings::default(), index, &change)
        };
        assert_verdict("rename, unused", decide(&index, &renamed), Ok(()));
        index.set_workload(
            WorkloadKind::Deployment,
            "team-a",
            "web",
            [Reference::Credential("registry".into(), Usage::Environment)],
        );
        assert_verdict(
            "rename, in use",
            decide(&index, &renamed),
            Err(
                "credential \"registry\" cannot be renamed to \"gone\": it is in use by 1 workload that name it: Deployment/team-a/web",
            ),
        );
        assert_verdict("other change, in use", decide(&index, &described), Ok(()));
    }

    #[test]
    fn delete_in_use() {
        use crate::model::workload::{Reference, Usage, WorkloadKind};
        let mut index = index_with(&[
            (
                "team-a",
                "reg",
                json!({"metadata": {"annotations": {"run.ai/name": "registry"}}}),
            ),
            (
                "team-a",
                "backed",
                json!({"type": "Opaque", "data": null, "metadata": {"annotations": {"run.ai/existing-secret": "pull"}}}),
            ),
            ("team-a", "pull", json!({})),
            (
                "runai",
                "cluster-s3",
                json!({"metadata": {"labels": {"run.ai/cluster-wide": "true"}, "annotations": {"run.ai/name": "s3"}}}),
            ),
        ]);
        index.set_namespace(
            "team-b",
            NamespaceInfo {
                project: Some("team-b".into()),
                department: None,
                ..Default::default()
            },
        );
        let named = |n: &str| Reference::Credential(n.into(), Usage::Environment);
        for i in 0..7 {
            index.set_workload(
                WorkloadKind::Pod,
                "team-a",
                &format!("p{i}"),
                [named("registry")],
            );
        }
        index.set_workload(
            WorkloadKind::CronJob,
            "team-b",
            "sync",
            [Reference::Credential("s3".into(), Usage::DataSource)],
        );
        index.set_workload(
            WorkloadKind::PodTemplate,
            "team-a",
            "tpl",
            [Reference::Secret("pull".into(), Usage::ImagePull)],
        );

        let old = |ns: &str, name: &str, overrides: Value| {
            let mut o = json!({"metadata": {"namespace": ns, "name": name}});
            merge(&mut o, overrides);
            secret(o)
        };
        let reg = old(
            "team-a",
            "reg",
            json!({"metadata": {"annotations": {"run.ai/name": "registry"}}}),
        );
        assert_verdict(
            "project credential",
            decide_with(&index, Operation::Delete, None, Some(&reg)),
            Err(
                "credential \"registry\" is in use by 7 workloads: Pod/team-a/p0, Pod/team-a/p1, Pod/team-a/p2, Pod/team-a/p3, Pod/team-a/p4 and 2 more",
            ),
        );
        let cluster = old(
            "runai",
            "cluster-s3",
            json!({"metadata": {"labels": {"run.ai/cluster-wide": "true"}, "annotations": {"run.ai/name": "s3"}}}),
        );
        assert_verdict(
            "cluster credential",
            decide_with(&index, Operation::Delete, None, Some(&cluster)),
            Err("in use by 1 workload: CronJob/team-b/sync;"),
        );
        let pull = old("team-a", "pull", json!({}));
        assert_verdict(
            "backing secret",
            decide_with(&index, Operation::Delete, None, Some(&pull)),
            Err(
                "the Secret \"pull\" backs credential \"backed\", which is in use by 1 workload: PodTemplate/team-a/tpl",
            ),
        );
        let unused = old("team-a", "unused", json!({}));
        assert!(decide_with(&index, Operation::Delete, None, Some(&unused)).is_ok());
        for i in 0..7 {
            index.remove_workload(WorkloadKind::Pod, "team-a", &format!("p{i}"));
        }
        assert!(
            decide_with(&index, Operation::Delete, None, Some(&reg)).is_ok(),
            "allowed again once the users are gone"
        );
    }

    #[test]
    fn legacy_types_inferred_from_shape() {
        let cases = [
            (json!({}), CredentialType::DockerRegistry),
            (
                json!({"type": "kubernetes.io/basic-auth", "data": {"username": b64("u"), "password": b64("p")}}),
                CredentialType::Password,
            ),
            (
                json!({"type": "Opaque", "data": {"AccessKeyId": b64("a"), "SecretKey": b64("s")}}),
                CredentialType::AccessKey,
            ),
            (
                json!({"type": "Opaque", "data": {"User": b64("a"), "Password": b64("s")}}),
                CredentialType::Password,
            ),
            (
                json!({"type": "Opaque", "data": {"token": b64("t")}}),
                CredentialType::Generic,
            ),
        ];
        for (overrides, want) in cases {
            let mut o = json!({"data": null});
            merge(&mut o, overrides);
            assert_eq!(infer_type(&secret(o)), want);
        }
    }
}
