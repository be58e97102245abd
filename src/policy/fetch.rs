//! Data sources in a pod: the fetcher containers (git-sync v4, the AWS CLI),
//! their `emptyDir` volumes, and the check that a source's mount path takes
//! nobody's place. Pure functions over the pod's JSON; [`crate::policy::mutate`]
//! appends what they build.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::model::datasource::{DataSource, GitSync, Source, overlaps};
use crate::model::json::{self, Json};
use crate::model::workload::Requests;
use crate::policy::Fetchers;
use crate::policy::resolve::{Fetch, Plan};

fn short_hash(s: &str) -> String {
    Sha256::digest(s.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The user the fetchers run as: git-sync's image's own, and not root for the AWS CLI.
pub const FETCHER_UID: i64 = 65533;

/// The `emptyDir` volume of the source mounted at `mount_path`.
pub fn volume_name(mount_path: &str) -> String {
    format!("credgate-data-{}", short_hash(mount_path))
}

/// The fetcher container of `source`.
pub fn container_name(source: &DataSource) -> String {
    let kind = match source.source {
        Source::Git { .. } => "git",
        Source::S3 { .. } => "s3",
    };
    format!("credgate-{kind}-{}", short_hash(&source.mount_path))
}

/// Refuses a source whose mount path is, contains or lies within a mount of
/// the pod (or of a credential volume it asks for): the source would hide it,
/// or be hidden. A mount of the source's own volume (a second pass) is fine.
/// Also refuses a container or a volume that has a fetcher's name without
/// being what credgate adds.
pub fn conflicts(spec: Option<&Json<'_>>, requests: &Requests) -> Result<(), String> {
    let fetchers: Vec<String> = requests
        .sources
        .sources
        .iter()
        .map(container_name)
        .collect();
    for source in &requests.sources.sources {
        let path = source.mount_path.as_str();
        let ours = volume_name(path);
        let taken = |what: String| {
            Err(format!(
                "data source {}: {what}; rename it (credgate names its fetchers and their volumes credgate-…)",
                source.display()
            ))
        };
        let volumes = spec
            .and_then(|s| json::array_at(s, "volumes"))
            .into_iter()
            .flatten();
        let empty_dir =
            |v| matches!(json::get(v, "emptyDir"), Some(Json::Object(o)) if o.is_empty());
        if volumes
            .filter(|v| json::str_at(v, "name") == Some(ours.as_str()))
            .any(|v| !empty_dir(v))
        {
            return taken(format!(
                "the pod has a volume {ours:?} that is not credgate's emptyDir"
            ));
        }
        let regular = spec
            .and_then(|s| json::array_at(s, "containers"))
            .into_iter()
            .flatten();
        let name = container_name(source);
        if regular
            .into_iter()
            .any(|c| json::str_at(c, "name") == Some(name.as_str()))
        {
            return taken(format!("the pod has a container named {name:?}"));
        }
        let clash = |what: String| {
            Err(format!(
                "data source {} cannot be mounted at {path}: {what}; choose another mount path",
                source.display()
            ))
        };
        for volume in &requests.volumes {
            if overlaps(&volume.mount_path, path) {
                return clash(format!(
                    "credential {:?} is mounted at {}",
                    volume.credential, volume.mount_path
                ));
            }
        }
        let containers = ["initContainers", "containers"]
            .iter()
            .filter_map(|list| json::array_at(spec?, list))
            .flatten();
        for container in containers {
            let name = json::str_at(container, "name").unwrap_or_default();
            if fetchers.iter().any(|f| f == name) {
                continue;
            }
            let mounts = json::array_at(container, "volumeMounts")
                .into_iter()
                .flatten();
            for mount in mounts {
                let (Some(at), volume) = (
                    json::str_at(mount, "mountPath"),
                    json::str_at(mount, "name"),
                ) else {
                    continue;
                };
                if volume != Some(ours.as_str()) && overlaps(at, path) {
                    let name: String = name.chars().take(63).collect();
                    return clash(format!(
                        "container {name:?} already mounts volume {:?} at {at}",
                        volume.unwrap_or_default()
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The fetcher container of one source, its credential as `secretKeyRef`s.
pub fn container(fetchers: &Fetchers, plan: &Plan, fetch: &Fetch) -> Value {
    let source = &fetch.source;
    let path = source.mount_path.as_str();
    let mut env: Vec<Value> = Vec::new();
    let mut plain = |name: &str, value: &str| env.push(json!({"name": name, "value": value}));
    let mut container = match &source.source {
        Source::Git { repo, git_ref } => {
            plain("GITSYNC_REPO", repo);
            plain("GITSYNC_REF", git_ref);
            plain("GITSYNC_ROOT", path);
            plain(
                "GITSYNC_LINK",
                &source.checkout_name().unwrap_or_else(|| "repo".into()),
            );
            if plan.git_sync == GitSync::Once {
                plain("GITSYNC_ONE_TIME", "true");
            }
            json!({"name": container_name(source), "image": fetchers.git_sync_image})
        }
        Source::S3 { bucket, prefix } => {
            if let Some(endpoint) = &plan.s3_endpoint {
                plain("AWS_ENDPOINT_URL", endpoint);
            }
            let from = if prefix.is_empty() {
                format!("s3://{bucket}")
            } else {
                format!("s3://{bucket}/{prefix}")
            };
            let mut command: Vec<String> = fetchers
                .s3_command
                .iter()
                .map(|arg| arg.replace("{source}", &from).replace("{target}", path))
                .collect();
            // A public bucket: the AWS CLI must not look for credentials.
            let aws = command
                .first()
                .is_some_and(|c| c.rsplit('/').next() == Some("aws"));
            if fetch.env.is_empty() && aws {
                command.push("--no-sign-request".into());
            }
            // The image's user may have no home; the CLI writes nothing that must last.
            plain("HOME", "/tmp");
            json!({"name": container_name(source), "image": fetchers.s3_image, "command": command})
        }
    };
    for (name, secret, key) in &fetch.env {
        env.push(
            json!({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}),
        );
    }
    container["env"] = Value::Array(env);
    container["volumeMounts"] = json!([{"name": volume_name(path), "mountPath": path}]);
    // Runs under Pod Security's `restricted` profile (git-sync's own user).
    container["securityContext"] = json!({
        "runAsNonRoot": true, "runAsUser": FETCHER_UID, "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}});
    if plan.git_sync == GitSync::Periodic && matches!(source.source, Source::Git { .. }) {
        // A native sidecar: started before the workload's containers, kept running.
        container["restartPolicy"] = json!("Always");
    }
    container
}
