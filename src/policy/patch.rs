//! RFC 6902 patch building. Every builder compares with the object it patches
//! and emits only what differs, so a patch applied twice changes nothing more
//! and a reinvoked webhook answers with an empty patch.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use serde_json::Value;
use std::collections::BTreeMap;

/// Operations that make `metadata.annotations` carry each `(key, value)` of `wanted`.
pub fn set_annotations(
    current: Option<&BTreeMap<String, String>>,
    wanted: &[(&str, String)],
) -> Vec<PatchOperation> {
    let missing: Vec<&(&str, String)> = wanted
        .iter()
        .filter(|(k, v)| current.and_then(|m| m.get(*k)) != Some(v))
        .collect();
    if missing.is_empty() {
        return Vec::new();
    }
    if current.is_none() {
        // No annotations map yet: add it whole (a later add into it would fail).
        let map: serde_json::Map<String, Value> = missing
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
            .collect();
        return vec![add(&["metadata", "annotations"], Value::Object(map))];
    }
    missing
        .into_iter()
        .map(|(k, v)| add(&["metadata", "annotations", k], Value::String(v.clone())))
        .collect()
}

/// An `add` operation at the path made of `tokens` (escaped as RFC 6901 asks).
pub fn add(tokens: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(tokens.iter().copied()),
        value,
    })
}

/// Wraps operations into a patch.
pub fn patch(ops: Vec<PatchOperation>) -> Patch {
    Patch(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(doc: &Value, ops: Vec<PatchOperation>) -> Value {
        let mut doc = doc.clone();
        json_patch::patch(&mut doc, &ops).unwrap();
        doc
    }

    fn annotations(doc: &Value) -> Option<BTreeMap<String, String>> {
        serde_json::from_value(doc["metadata"]["annotations"].clone()).ok()
    }

    #[test]
    fn adds_map_when_absent_and_is_idempotent() {
        let wanted = [
            ("run.ai/created-by", "alice".to_owned()),
            ("a~b", "1".to_owned()),
        ];
        let docs = [
            json!({"metadata": {}}),
            json!({"metadata": {"annotations": {"keep": "me"}}}),
            json!({"metadata": {"annotations": {"run.ai/created-by": "mallory"}}}),
        ];
        for doc in docs {
            let once = apply(&doc, set_annotations(annotations(&doc).as_ref(), &wanted));
            let got = annotations(&once).unwrap();
            assert_eq!(got["run.ai/created-by"], "alice");
            assert_eq!(got["a~b"], "1");
            if doc["metadata"]["annotations"]["keep"] == "me" {
                assert_eq!(got["keep"], "me");
            }
            // The patch computed for the patched object is empty …
            assert!(set_annotations(Some(&got), &wanted).is_empty());
            // … and the first patch applied twice changes nothing more.
            let ops = set_annotations(annotations(&doc).as_ref(), &wanted);
            assert_eq!(apply(&apply(&doc, ops.clone()), ops), once);
        }
    }
}
