//! Managed copies, as the contract names them: the labels and annotations a
//! copy carries, the name of a credential's copy and the hash of its data.
//! The API side (making, repairing and deleting copies) is
//! [`crate::propagation::copies`].

use k8s_openapi::ByteString;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Label on every managed copy.
pub const MANAGED_LABEL: &str = "credgate.run.ai/managed-copy";
/// Label with the source credential's uid, to find all its copies.
pub const SOURCE_UID_LABEL: &str = "credgate.run.ai/source-uid";
/// Annotation `namespace/name` of the source credential.
pub const SOURCE_ANNOTATION: &str = "credgate.run.ai/source";
/// Annotation with the hash of the source data.
pub const HASH_ANNOTATION: &str = "credgate.run.ai/source-hash";

/// The name of the copy of credential Secret `source` (in the credentials namespace).
pub fn copy_name(source: &str) -> String {
    derived_name("credgate.", source)
}

/// `<prefix><name>`, or, past the 253 characters an object name may have,
/// `<prefix>` and the first 8 bytes of the name's SHA-256 in hex.
pub fn derived_name(prefix: &str, name: &str) -> String {
    let derived = format!("{prefix}{name}");
    if derived.len() <= 253 {
        return derived;
    }
    let digest = Sha256::digest(name.as_bytes());
    format!("{prefix}{}", hex(&digest[..8]))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sha256:<hex>` of the data (keys sorted; each key and value length-prefixed).
pub fn data_hash(data: &BTreeMap<String, ByteString>, secret_type: Option<&str>) -> String {
    let mut h = Sha256::new();
    h.update(secret_type.unwrap_or("Opaque").as_bytes());
    for (k, v) in data {
        h.update((k.len() as u64).to_be_bytes());
        h.update(k.as_bytes());
        h.update((v.0.len() as u64).to_be_bytes());
        h.update(&v.0);
    }
    format!("sha256:{}", hex(&h.finalize()))
}

/// The hash a copy carries: over its data ([`data_hash`]) and the metadata it
/// carries from its source (name, description, keys, registries, scope), so
/// that a change of either, or an upgrade that carries more, rewrites it.
pub fn copy_hash(data_hash: &str, carried: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    h.update(data_hash.as_bytes());
    for (k, v) in carried {
        h.update((k.len() as u64).to_be_bytes());
        h.update(k.as_bytes());
        h.update((v.len() as u64).to_be_bytes());
        h.update(v.as_bytes());
    }
    format!("sha256:{}", hex(&h.finalize()))
}

/// True when `meta` is credgate's copy of the credential Secret `source` with
/// uid `uid`: the managed-copy label, the source uid and the copy's name all
/// agree. A user's Secret that carries one of them (a forged label) is never
/// taken for a copy.
pub fn is_copy_of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    uid: &str,
    source: &str,
) -> bool {
    let label = |key: &str| meta.labels.as_ref()?.get(key).map(String::as_str);
    label(MANAGED_LABEL) == Some("true")
        && label(SOURCE_UID_LABEL) == Some(uid)
        && meta.name.as_deref() == Some(copy_name(source).as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn meta(name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn only_a_copy_with_all_three_marks_is_a_copy() {
        let all = [(MANAGED_LABEL, "true"), (SOURCE_UID_LABEL, "uid-1")];
        assert!(is_copy_of(
            &meta("credgate.registry", &all),
            "uid-1",
            "registry"
        ));
        // A user's Secret with the source uid only (the forged label of issue 16).
        assert!(!is_copy_of(
            &meta("mine", &[(SOURCE_UID_LABEL, "uid-1")]),
            "uid-1",
            "registry"
        ));
        assert!(
            !is_copy_of(&meta("mine", &all), "uid-1", "registry"),
            "another name"
        );
        assert!(!is_copy_of(
            &meta("credgate.registry", &[(SOURCE_UID_LABEL, "uid-1")]),
            "uid-1",
            "registry"
        ));
        assert!(!is_copy_of(
            &meta("credgate.registry", &all),
            "uid-2",
            "registry"
        ));
    }
}
