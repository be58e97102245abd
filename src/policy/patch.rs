//! RFC 6902 patch building. Every builder compares with the object it patches
//! and emits only what differs, so a patch applied twice changes nothing more
//! and a reinvoked webhook answers with an empty patch.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
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

/// The operations under `/spec` folded into one `replace /spec` holding the
/// patched spec; operations elsewhere (metadata) are kept as they are.
///
/// The API server applies a JSON patch with a library that parses every level
/// an operation's path walks through and encodes each of them again, so the
/// 15 small operations of a typical injection cost it about three times one
/// `replace` whose value it never parses (`make bench`, the API server's
/// profile). The result is the same object: the patch applies to exactly the
/// object credgate was sent. An empty `ops` stays empty, so a reinvoked
/// webhook still answers with no patch.
pub fn collapse_spec(spec: Option<&Value>, ops: Vec<PatchOperation>) -> Vec<PatchOperation> {
    let Some(spec) = spec.filter(|s| s.is_object()) else {
        return ops;
    };
    let (under, mut rest): (Vec<_>, Vec<_>) = ops
        .into_iter()
        .partition(|op| op.path().as_str().starts_with("/spec/"));
    if under.is_empty() {
        return rest;
    }
    let mut doc = serde_json::json!({ "spec": spec.clone() });
    if json_patch::patch(&mut doc, &under).is_err() {
        // Cannot happen for operations built from this spec; if it did, the
        // API server reports the failing operation itself.
        rest.extend(under);
        return rest;
    }
    rest.push(PatchOperation::Replace(ReplaceOperation {
        path: PointerBuf::from_tokens(["spec"]),
        value: doc["spec"].take(),
    }));
    rest
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
    fn collapsed_spec_gives_the_same_object() {
        let doc = json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}]}, {"name": "b"}]}
        });
        let ops = vec![
            add(
                &["spec", "volumes"],
                json!([{"name": "v", "secret": {"secretName": "s"}}]),
            ),
            add(
                &["spec", "containers", "0", "env", "-"],
                json!({"name": "Y", "value": "2"}),
            ),
            add(
                &["spec", "containers", "1", "env"],
                json!([{"name": "Z", "value": "3"}]),
            ),
            add(&["metadata", "annotations"], json!({"k": "v"})),
        ];
        let collapsed = collapse_spec(doc.get("spec"), ops.clone());
        assert_eq!(
            collapsed.len(),
            2,
            "the metadata operation and one replace of /spec"
        );
        assert_eq!(collapsed[1].path().as_str(), "/spec");
        assert_eq!(apply(&doc, collapsed), apply(&doc, ops));
        // Nothing to change: still no operation at all.
        assert!(collapse_spec(doc.get("spec"), Vec::new()).is_empty());
        // Without a spec to fold into, the operations are kept.
        let metadata_only = vec![add(&["metadata", "annotations"], json!({}))];
        assert_eq!(collapse_spec(None, metadata_only.clone()), metadata_only);
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
