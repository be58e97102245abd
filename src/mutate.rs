//! Mutation of credential Secrets: stamp who created them and, for
//! docker-registry credentials, which registries they serve, so later lookups
//! read annotations instead of secret data.

use json_patch::PatchOperation;
use k8s_openapi::api::core::v1::Secret;

use crate::credential::{CredentialType, annotation};
use crate::dockerconfig;
use crate::patch;
use crate::policy::{Change, Operation, SecretData, secret_meta};
use crate::validate::{DOCKER_CONFIG_JSON_KEY, credential_type};

/// The patch for a CREATE or UPDATE of a credential Secret; empty when nothing
/// needs stamping (or when the Secret is not a credential). Broken credentials
/// get no patch: validation denies them with the reason.
pub fn secret(change: &Change<'_, Secret>) -> Vec<PatchOperation> {
    let Some(object) = change.object else {
        return Vec::new();
    };
    let meta = secret_meta(object, change.namespace);
    if !meta.is_credential() {
        return Vec::new();
    }
    let mut wanted = Vec::new();
    match change.operation {
        Operation::Create => wanted.push((annotation::CREATED_BY, change.user.to_owned())),
        Operation::Update => {
            // `kubectl replace` drops annotations the server added: keep the stamp.
            let old_stamp = change.old_object.and_then(|old| {
                secret_meta(old, change.namespace).annotation(annotation::CREATED_BY)
            });
            if let (Some(old), None) = (old_stamp, meta.annotation(annotation::CREATED_BY)) {
                wanted.push((annotation::CREATED_BY, old.to_owned()));
            }
        }
        Operation::Delete | Operation::Connect => return Vec::new(),
    }
    if credential_type(object, &meta) == Ok(CredentialType::DockerRegistry)
        && let Some(config) = SecretData(object).get(DOCKER_CONFIG_JSON_KEY)
        && let Ok(hosts) = dockerconfig::registries(config)
    {
        let hosts: Vec<String> = hosts.into_iter().collect();
        wanted.push((annotation::REGISTRIES, hosts.join(",")));
    }
    patch::set_annotations(meta.annotations, &wanted)
}

#[cfg(test)]
mod tests {
    use super::*;
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
            let patched = apply(&object, secret(&change(Operation::Create, &object, None)));
            let got = patched.metadata.annotations.clone().unwrap();
            assert_eq!(got["run.ai/created-by"], "alice");
            assert_eq!(got["run.ai/registries"], "docker.io,ghcr.io");
            assert!(
                secret(&change(Operation::Create, &patched, None)).is_empty(),
                "second pass must be empty"
            );
        }
    }

    #[test]
    fn update_restores_a_dropped_stamp_and_never_sets_a_new_one() {
        let old = docker_secret(json!({"run.ai/created-by": "alice"}));
        let replaced = docker_secret(Value::Null);
        let mut c = change(Operation::Update, &replaced, Some(&old));
        c.user = "bob";
        let patched = apply(&replaced, secret(&c));
        assert_eq!(
            patched.metadata.annotations.unwrap()["run.ai/created-by"],
            "alice"
        );
    }

    #[test]
    fn plain_and_broken_secrets_get_no_stamp_of_registries() {
        let mut plain = docker_secret(Value::Null);
        plain.metadata.labels = None;
        assert!(secret(&change(Operation::Create, &plain, None)).is_empty());

        let mut broken = docker_secret(Value::Null);
        broken.data = None;
        let patched = apply(&broken, secret(&change(Operation::Create, &broken, None)));
        let got = patched.metadata.annotations.unwrap();
        assert!(!got.contains_key("run.ai/registries"));
        assert_eq!(got["run.ai/created-by"], "alice");
    }
}
