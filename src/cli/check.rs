//! `credgate check -f FILE|DIR`: the webhook's decisions on manifests, offline,
//! the way `kyverno apply` checks a policy, for CI pipelines.
//!
//! It covers Pods, the workload kinds (their pod templates) and credential
//! Secrets, with the same policy functions and messages as the webhook. The
//! credentials come from the cluster (read as `credgate list -A` reads them)
//! or from `--credentials FILE`, the JSON of `credgate list -A -o json`.
//! Credential Secrets among the manifests count as created, so a Pod may name
//! a credential defined next to it. What needs the API server at admission
//! (existing-secret claims, the live in-use check) is not checked here.

use clap::Args;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::inventory::{self, Listing};
use super::{CliError, ClusterArgs, table};
use crate::model::credential::{label, object_meta};
use crate::model::workload::WorkloadKind;
use crate::policy::{Change, Operation, Settings, Verdict, mutate, validate};
use crate::state::index::{Index, NamespaceInfo, SecretInfo};

/// Most objects one run reads (a guard against a runaway directory).
const MAX_OBJECTS: usize = 10_000;
/// Largest manifest file read.
const MAX_FILE_BYTES: u64 = 16 << 20;

/// `credgate check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A manifest (YAML, several documents allowed, or JSON) or a directory
    /// of them (read recursively: *.yaml, *.yml, *.json). Repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Check against these credentials instead of the cluster's: the JSON of
    /// `credgate list -A -o json` (it needs the columns credential, type,
    /// scope and kubernetes-name).
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    /// With --credentials: the department of the project the manifests go to.
    #[arg(long, requires = "credentials")]
    pub department: Option<String>,
}

/// One object read from a manifest.
#[derive(Debug)]
struct Object {
    file: String,
    value: serde_json::Value,
}

/// The decision on one object.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Allowed(Vec<String>),
    Refused(String),
    Skipped,
}

impl CheckArgs {
    pub async fn run(self) -> Result<(), CliError> {
        let objects = read_all(&self.files)?;
        let settings = Settings {
            credentials_namespace: self.cluster.credentials_namespace.clone(),
            ..Settings::default()
        };
        let (index, default_namespace) = match &self.credentials {
            Some(path) => {
                let target = self.cluster.namespace.clone();
                let project = self.cluster.project.clone();
                let namespaces = target_namespaces(&objects, target.as_deref());
                let index = offline_index(
                    &settings,
                    path,
                    &namespaces,
                    project.as_deref(),
                    self.department.as_deref(),
                )?;
                (index, target.unwrap_or_else(|| "default".to_owned()))
            }
            None => {
                let conn = self.cluster.connect().await?;
                let listing = conn.whole_listing().await?;
                let ns = conn
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".to_owned());
                (inventory::index(&settings, &listing), ns)
            }
        };
        let report = check(&settings, index, &objects, &default_namespace);
        print!("{}", report.text);
        if report.refused > 0 {
            return Err(CliError::Refused(format!(
                "{} of {} objects would be refused",
                report.refused, report.checked
            )));
        }
        Ok(())
    }
}

/// The lines to print and the counts.
struct Report {
    text: String,
    checked: usize,
    refused: usize,
}

/// Decides every object: credential Secrets first (they join the snapshot
/// when allowed), then Pods and workloads.
fn check(settings: &Settings, mut index: Index, objects: &[Object], default_ns: &str) -> Report {
    let mut report = Report {
        text: String::new(),
        checked: 0,
        refused: 0,
    };
    let is_secret = |o: &&Object| kind_of(&o.value).1 == "Secret";
    let ordered = objects
        .iter()
        .filter(is_secret)
        .chain(objects.iter().filter(|o| !is_secret(o)));
    let mut skipped = 0;
    for object in ordered {
        let (group, kind) = kind_of(&object.value);
        let namespace = object
            .value
            .pointer("/metadata/namespace")
            .and_then(|n| n.as_str())
            .unwrap_or(default_ns)
            .to_owned();
        let name = object
            .value
            .pointer("/metadata/name")
            .and_then(|n| n.as_str())
            .unwrap_or("(no name)")
            .to_owned();
        let outcome = decide(
            settings,
            &mut index,
            &group,
            &kind,
            &namespace,
            &object.value,
        );
        let what =
            table::printable(&format!("{kind} {namespace}/{name} ({})", object.file)).into_owned();
        match outcome {
            Outcome::Skipped => skipped += 1,
            Outcome::Allowed(warnings) => {
                report.checked += 1;
                report.text.push_str(&format!("ok       {what}\n"));
                for w in warnings {
                    report
                        .text
                        .push_str(&format!("  warning: {}\n", table::printable(&w)));
                }
            }
            Outcome::Refused(why) => {
                report.checked += 1;
                report.refused += 1;
                report
                    .text
                    .push_str(&format!("refused  {what}: {}\n", table::printable(&why)));
            }
        }
    }
    report.text.push_str(&format!(
        "{} checked, {} refused, {skipped} not credgate's concern\n",
        report.checked, report.refused
    ));
    report
}

fn kind_of(value: &serde_json::Value) -> (String, String) {
    let api_version = value
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let group = api_version
        .rsplit_once('/')
        .map_or("", |(g, _)| g)
        .to_owned();
    let kind = value
        .get("kind")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    (group, kind)
}

/// The webhook's decision on creating `value`.
fn decide(
    settings: &Settings,
    index: &mut Index,
    group: &str,
    kind: &str,
    namespace: &str,
    value: &serde_json::Value,
) -> Outcome {
    let verdict = |v: Verdict| match v {
        Ok(allow) => Outcome::Allowed(allow.warnings),
        Err(deny) => Outcome::Refused(deny.0),
    };
    match (group, kind) {
        ("", "Pod") => {
            let annotations: Option<BTreeMap<String, String>> = value
                .pointer("/metadata/annotations")
                .and_then(|a| serde_json::from_value(a.clone()).ok());
            let spec = value.get("spec").map(crate::model::json::from_value);
            match mutate::pod(
                settings,
                index,
                namespace,
                annotations.as_ref(),
                spec.as_ref(),
            ) {
                Ok(plan) => Outcome::Allowed(
                    mutate::pod_inject(&settings.fetchers, spec.as_ref(), &plan).warnings,
                ),
                Err(deny) => Outcome::Refused(deny.0),
            }
        }
        ("", "Secret") => {
            let secret: Secret = match serde_json::from_value(value.clone()) {
                Ok(s) => s,
                // The parser's message may quote a value: name no more than the problem.
                Err(_) => {
                    return Outcome::Refused(
                        "not a valid Secret: data and stringData must map keys to strings".into(),
                    );
                }
            };
            let meta = object_meta(&secret.metadata, namespace);
            if !meta.is_credential() {
                return Outcome::Skipped;
            }
            let user = meta
                .annotation(crate::model::credential::annotation::CREATED_BY)
                .unwrap_or_default();
            let change = Change {
                operation: Operation::Create,
                user,
                namespace,
                object: Some(&secret),
                old_object: None,
            };
            let outcome = verdict(validate::secret(settings, index, &change));
            if matches!(outcome, Outcome::Allowed(_)) {
                // Stored as the webhook would store it: stamped by /mutate (keys,
                // registries, a legacy credential's type).
                let stamped = stamped(settings, &change).unwrap_or_else(|| secret.clone());
                let meta = object_meta(&stamped.metadata, namespace);
                let info = SecretInfo::from_meta(&meta, "", &settings.credentials_namespace);
                let name = stamped.metadata.name.as_deref().unwrap_or_default();
                index.set_secret(namespace, name, info);
            }
            outcome
        }
        (group, kind) => match WorkloadKind::from_group_kind(group, kind) {
            Some(workload) if workload != WorkloadKind::Pod => {
                let change = Change {
                    operation: Operation::Create,
                    user: "",
                    namespace,
                    object: Some(value),
                    old_object: None,
                };
                verdict(validate::workload(settings, index, workload, &change))
            }
            _ => Outcome::Skipped,
        },
    }
}

/// The Secret with /mutate's patch applied.
fn stamped(settings: &Settings, change: &Change<'_, Secret>) -> Option<Secret> {
    let ops = mutate::secret(settings, change);
    let mut doc = serde_json::to_value(change.object?).ok()?;
    json_patch::patch(&mut doc, &ops).ok()?;
    serde_json::from_value(doc).ok()
}

/// Every object of the files and directories, `List` items included.
fn read_all(paths: &[PathBuf]) -> Result<Vec<Object>, CliError> {
    let mut files = Vec::new();
    for path in paths {
        collect(path, &mut files)?;
    }
    let mut objects = Vec::new();
    for file in files {
        let size = std::fs::metadata(&file).map_or(0, |m| m.len());
        if size > MAX_FILE_BYTES {
            return Err(input_error(
                &file,
                format!(
                    "{size} bytes; credgate check reads files of at most {MAX_FILE_BYTES} bytes"
                ),
            ));
        }
        let text = std::fs::read_to_string(&file).map_err(|e| input_error(&file, e))?;
        let shown = file.display().to_string();
        let is_json = file.extension().is_some_and(|e| e == "json");
        let documents: Vec<serde_json::Value> = if is_json {
            vec![serde_json::from_str(&text).map_err(|e| input_error(&file, e))?]
        } else {
            let mut docs = Vec::new();
            for doc in serde_yaml_ng::Deserializer::from_str(&text) {
                let value: serde_json::Value = serde::Deserialize::deserialize(doc)
                    .map_err(|e: serde_yaml_ng::Error| input_error(&file, e))?;
                if !value.is_null() {
                    docs.push(value);
                }
            }
            docs
        };
        for doc in documents {
            let items = match doc.get("items").and_then(|i| i.as_array()) {
                Some(items) if kind_of(&doc).1.ends_with("List") => items.clone(),
                _ => vec![doc],
            };
            for value in items {
                objects.push(Object {
                    file: shown.clone(),
                    value,
                });
                if objects.len() > MAX_OBJECTS {
                    return Err(CliError::Usage(format!(
                        "more than {MAX_OBJECTS} objects: check fewer files at a time"
                    )));
                }
            }
        }
    }
    Ok(objects)
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), CliError> {
    let meta = std::fs::metadata(path).map_err(|e| input_error(path, e))?;
    if !meta.is_dir() {
        out.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| input_error(path, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        // Symbolic links inside a directory are not followed (no loops, no
        // files from elsewhere); a link named on the command line is.
        let Ok(meta) = std::fs::symlink_metadata(&entry) else {
            continue;
        };
        let manifest = entry
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json");
        if meta.is_dir() || (meta.is_file() && manifest) {
            collect(&entry, out)?;
        }
        if out.len() > MAX_OBJECTS {
            return Err(CliError::Usage(format!(
                "more than {MAX_OBJECTS} files: check fewer at a time"
            )));
        }
    }
    Ok(())
}

fn input_error(path: &Path, e: impl std::fmt::Display) -> CliError {
    CliError::Input {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// The namespaces the manifests go to.
fn target_namespaces(objects: &[Object], default: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = objects
        .iter()
        .filter_map(|o| o.value.pointer("/metadata/namespace")?.as_str())
        .map(str::to_owned)
        .chain(std::iter::once(default.unwrap_or("default").to_owned()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The snapshot from `credgate list -A -o json`: every target namespace is a
/// project (`project`, else its own name) of `department`.
fn offline_index(
    settings: &Settings,
    path: &Path,
    namespaces: &[String],
    project: Option<&str>,
    department: Option<&str>,
) -> Result<Index, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| input_error(path, e))?;
    let rows: Vec<BTreeMap<String, serde_json::Value>> =
        serde_json::from_str(&text).map_err(|e| input_error(path, e))?;
    let mut listing = Listing::default();
    let project_of = |ns: &str| project.unwrap_or(ns).to_owned();
    for ns in namespaces {
        if *ns == settings.credentials_namespace {
            continue;
        }
        let info = NamespaceInfo {
            project: Some(project_of(ns)),
            department: department.map(str::to_owned),
            terminating: false,
        };
        listing.namespaces.push((ns.clone(), info));
    }
    for (i, row) in rows.iter().enumerate() {
        let field = |key: &str| {
            row.get(key)
                .and_then(|v| v.as_str())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    input_error(
                        path,
                        format!(
                            "entry {i} has no {key:?}: write it with `credgate list -A -o json`"
                        ),
                    )
                })
        };
        let (name, kind, scope) = (field("credential")?, field("type")?, field("scope")?);
        let secret = field("kubernetes-name")?;
        let mut labels = BTreeMap::from([(label::RESOURCE.to_owned(), kind.to_owned())]);
        let places: Vec<String> = if scope == "cluster" {
            labels.insert(label::CLUSTER_WIDE.to_owned(), "true".to_owned());
            vec![settings.credentials_namespace.clone()]
        } else if let Some(d) = scope.strip_prefix("department/") {
            labels.insert(label::DEPARTMENT.to_owned(), d.to_owned());
            vec![settings.credentials_namespace.clone()]
        } else if let Some(p) = scope.strip_prefix("project/") {
            namespaces
                .iter()
                .filter(|ns| project_of(ns) == p)
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        for namespace in places {
            listing.secrets.push(ObjectMeta {
                namespace: Some(namespace),
                name: Some(secret.to_owned()),
                labels: Some(labels.clone()),
                annotations: Some(BTreeMap::from([(
                    crate::model::credential::annotation::NAME.to_owned(),
                    name.to_owned(),
                )])),
                ..ObjectMeta::default()
            });
        }
    }
    Ok(inventory::index(settings, &listing))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn objects(values: Vec<serde_json::Value>) -> Vec<Object> {
        values
            .into_iter()
            .map(|value| Object {
                file: "test.yaml".into(),
                value,
            })
            .collect()
    }

    fn credentials_file(rows: serde_json::Value) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), rows.to_string()).unwrap();
        file
    }

    /// The offline check gives the webhook's answers and messages: a pod that
    /// names a credential of the project's department passes, one naming an
    /// unknown credential is refused, and so is a template of a Deployment.
    #[test]
    fn offline_check_uses_the_webhooks_rules() {
        let settings = Settings::default();
        let file = credentials_file(json!([
            {"credential": "s3", "type": "access-key", "scope": "department/rnd", "kubernetes-name": "s3-rnd"},
            {"credential": "db", "type": "password", "scope": "project/team-a", "kubernetes-name": "db"},
            {"credential": "reg", "type": "docker-registry", "scope": "cluster", "kubernetes-name": "reg"},
        ]));
        let pod = |name: &str, annotations: serde_json::Value| {
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "team-a", "annotations": annotations},
                   "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
        };
        let objs = objects(vec![
            pod(
                "good",
                json!({"run.ai/s3-credential": "s3", "run.ai/credentials-env-from": "db"}),
            ),
            pod("bad", json!({"run.ai/credentials-env-from": "gone"})),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "team-a"},
                   "spec": {"template": {"metadata": {"annotations": {"run.ai/s3-credential": "db"}},
                                         "spec": {"containers": [{"name": "c", "image": "x"}]}}}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}}),
        ]);
        let namespaces = target_namespaces(&objs, Some("team-a"));
        let index = offline_index(&settings, file.path(), &namespaces, None, Some("rnd")).unwrap();
        let report = check(&settings, index, &objs, "team-a");
        assert_eq!((report.checked, report.refused), (3, 2), "{}", report.text);
        assert!(
            report.text.contains("ok       Pod team-a/good"),
            "{}",
            report.text
        );
        assert!(
            report
                .text
                .contains("refused  Pod team-a/bad (test.yaml): ")
                && report.text.contains("\"gone\""),
            "{}",
            report.text
        );
        assert!(
            report
                .text
                .contains("refused  Deployment team-a/web (test.yaml): pod template: ")
                && report.text.contains("access-key"),
            "{}",
            report.text
        );
        assert!(
            report.text.contains("1 not credgate's concern"),
            "{}",
            report.text
        );
    }

    /// A credential Secret in the manifests is checked (its shape) and, once
    /// allowed, can be named by a Pod of the same manifests.
    #[test]
    fn credentials_in_the_manifests_count_as_created() {
        let settings = Settings::default();
        let file = credentials_file(json!([]));
        let objs = objects(vec![
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                   "metadata": {"name": "p", "annotations": {"run.ai/credentials-env-from": "token"}},
                   "spec": {"containers": [{"name": "c", "image": "x"}]}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token", "labels": {"run.ai/resource": "generic"}},
                   "stringData": {"TOKEN": "x"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "broken", "labels": {"run.ai/resource": "access-key"}},
                   "stringData": {"AccessKeyId": "x"}}),
        ]);
        let namespaces = target_namespaces(&objs, Some("team-a"));
        let index = offline_index(&settings, file.path(), &namespaces, Some("a"), None).unwrap();
        let report = check(&settings, index, &objs, "team-a");
        assert_eq!((report.checked, report.refused), (3, 1), "{}", report.text);
        assert!(
            report.text.contains("refused  Secret team-a/broken"),
            "{}",
            report.text
        );
        assert!(report.text.contains("\"SecretKey\""), "{}", report.text);
        assert!(
            report.text.contains("ok       Pod team-a/p"),
            "{}",
            report.text
        );
    }

    /// From the review of issue 17: a Secret the parser refuses is reported
    /// without its values, and a legacy credential in the manifests is typed
    /// by its shape as the webhook's /mutate would type it.
    #[test]
    fn secrets_are_reported_without_values_and_stamped_like_the_webhook() {
        let settings = Settings::default();
        let file = credentials_file(json!([]));
        let objs = objects(vec![
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "num", "labels": {"run.ai/resource": "password"}},
                   "stringData": {"User": "u", "Password": 123456789}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "old", "labels": {"run.ai/credentials": "true"}},
                   "stringData": {"User": "u", "Password": "p"}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "git", "annotations": {"run.ai/git-credential": "old"}},
                   "spec": {"containers": [{"name": "c", "image": "x"}]}}),
        ]);
        let namespaces = target_namespaces(&objs, Some("team-a"));
        let index = offline_index(&settings, file.path(), &namespaces, None, None).unwrap();
        let report = check(&settings, index, &objs, "team-a");
        assert!(!report.text.contains("123456789"), "{}", report.text);
        assert!(
            report.text.contains("refused  Secret team-a/num"),
            "{}",
            report.text
        );
        assert!(
            report.text.contains("ok       Pod team-a/git"),
            "{}",
            report.text
        );
    }

    #[test]
    fn symbolic_links_in_directories_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata: {name: one}\n",
        )
        .unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("a.yaml"), dir.path().join("b.yaml")).unwrap();
        let objects = read_all(&[dir.path().to_owned()]).unwrap();
        assert_eq!(objects.len(), 1);
    }

    #[test]
    fn reads_multi_document_yaml_lists_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata: {name: one}\n---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: two}}\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(
            dir.path().join("sub/b.json"),
            r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "three"}}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
        let objects = read_all(&[dir.path().to_owned()]).unwrap();
        let names: Vec<_> = objects
            .iter()
            .map(|o| o.value["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["one", "two", "three"]);
        let err = read_all(&[dir.path().join("missing.yaml")]).unwrap_err();
        assert!(err.to_string().contains("missing.yaml"), "{err}");
    }
}
