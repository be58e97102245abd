//! RFC 6902 patch building. Every builder compares with the object it patches
//! and emits only what differs, so a patch applied twice changes nothing more
//! and a reinvoked webhook answers with an empty patch.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, ReplaceOperation};
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

/// Specs up to about this size (as JSON) are folded by [`collapse_spec`];
/// larger ones keep their small operations, so neither credgate's memory nor
/// its answer grows with a large pod.
pub const COLLAPSE_MAX_SPEC_BYTES: usize = 64 * 1024;

/// The operations under `/spec` folded into one `replace /spec` holding the
/// patched spec; operations elsewhere (metadata) are kept as they are.
///
/// The API server applies a JSON patch with a library that parses every level
/// an operation's path walks through and encodes each of them again, so the
/// 15 small operations of a typical injection cost it about three times one
/// `replace`, whose value it only scans (`make bench`: the API server's
/// profile, and `benches/apiserver_patch` with its own library). The result is
/// the same object: the patch applies to exactly the object credgate was sent.
///
/// `spec` is the request's own spec, taken (left `null`) when folded: the
/// operations' values move into it, so nothing is copied. An empty `ops`
/// stays empty, so a reinvoked webhook still answers with no patch. A spec
/// larger than [`COLLAPSE_MAX_SPEC_BYTES`] is left alone and its operations
/// are sent as they are.
pub fn collapse_spec(spec: Option<&mut Value>, ops: Vec<PatchOperation>) -> Vec<PatchOperation> {
    let Some(spec) = spec.filter(|s| s.is_object()) else {
        return ops;
    };
    if ops.len() < 2 || !json_size_within(spec, COLLAPSE_MAX_SPEC_BYTES) {
        return ops;
    }
    let (under, mut rest): (Vec<_>, Vec<_>) = ops
        .into_iter()
        .partition(|op| op.path().as_str().starts_with("/spec/"));
    if under.is_empty() {
        return rest;
    }
    let mut folded = spec.take();
    let mut unfolded = Vec::new();
    for op in under {
        // Once one cannot be applied here, it and the ones after it go as they
        // are, after the replace: the same sequence for the API server.
        if !unfolded.is_empty() {
            unfolded.push(op);
            continue;
        }
        if let Err(op) = add_under_spec(&mut folded, op) {
            unfolded.push(op);
        }
    }
    rest.push(PatchOperation::Replace(ReplaceOperation {
        path: PointerBuf::from_tokens(["spec"]),
        value: folded,
    }));
    rest.extend(unfolded);
    rest
}

/// Applies an `add` under `/spec` to `spec`, moving its value in; gives the
/// operation back untouched when it is not one this can apply.
fn add_under_spec(spec: &mut Value, op: PatchOperation) -> Result<(), PatchOperation> {
    let PatchOperation::Add(add) = op else {
        return Err(op);
    };
    let Some((parent, last)) = add
        .path
        .strip_prefix(json_patch::jsonptr::Pointer::from_static("/spec"))
        .and_then(|rel| rel.split_back())
    else {
        return Err(PatchOperation::Add(add));
    };
    let target = match spec.pointer_mut(parent.as_str()) {
        Some(Value::Object(map)) => Target::Map(map),
        Some(Value::Array(items)) => match last
            .to_index()
            .ok()
            .and_then(|i| i.for_len_incl(items.len()).ok())
        {
            Some(at) => Target::List(items, at),
            None => return Err(PatchOperation::Add(add)),
        },
        _ => return Err(PatchOperation::Add(add)),
    };
    match target {
        Target::Map(map) => {
            map.insert(last.decoded().into_owned(), add.value);
        }
        Target::List(items, at) => items.insert(at, add.value),
    }
    Ok(())
}

enum Target<'a> {
    Map(&'a mut serde_json::Map<String, Value>),
    List(&'a mut Vec<Value>, usize),
}

/// Whether `value` encodes as JSON in at most about `budget` bytes; stops
/// counting as soon as it is over, so it costs O(min(size, budget)).
fn json_size_within(value: &Value, budget: usize) -> bool {
    fn walk(value: &Value, left: &mut usize) -> bool {
        let own = match value {
            Value::String(s) => s.len() + 2,
            Value::Array(items) => items.len() + 2,
            Value::Object(map) => map.keys().map(|k| k.len() + 4).sum::<usize>() + 2,
            _ => 8,
        };
        if own > *left {
            return false;
        }
        *left -= own;
        match value {
            Value::Array(items) => items.iter().all(|v| walk(v, left)),
            Value::Object(map) => map.values().all(|v| walk(v, left)),
            _ => true,
        }
    }
    let mut left = budget;
    walk(value, &mut left)
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
        let mut request = doc.clone();
        let collapsed = collapse_spec(request.get_mut("spec"), ops.clone());
        assert_eq!(
            collapsed.len(),
            2,
            "the metadata operation and one replace of /spec"
        );
        assert_eq!(collapsed[1].path().as_str(), "/spec");
        assert_eq!(apply(&doc, collapsed), apply(&doc, ops.clone()));
        // Nothing to change: still no operation at all.
        assert!(collapse_spec(doc.clone().get_mut("spec"), Vec::new()).is_empty());
        // An operation that cannot be applied here goes after the replace,
        // with the ones after it: the API server reports it as before.
        let mut failing = ops.clone();
        failing.insert(1, add(&["spec", "missing", "x"], json!(1)));
        let folded = collapse_spec(doc.clone().get_mut("spec"), failing);
        let paths: Vec<&str> = folded.iter().map(|op| op.path().as_str()).collect();
        assert_eq!(
            paths,
            [
                "/metadata/annotations",
                "/spec",
                "/spec/missing/x",
                "/spec/containers/0/env/-",
                "/spec/containers/1/env"
            ]
        );
        // Without a spec to fold into, the operations are kept.
        let metadata_only = vec![add(&["metadata", "annotations"], json!({}))];
        assert_eq!(collapse_spec(None, metadata_only.clone()), metadata_only);
        // A large spec is not copied: its operations go as they are.
        let env: Vec<Value> = (0..5000)
            .map(|i| json!({"name": format!("VARIABLE_{i}"), "value": "x"}))
            .collect();
        let large = json!({"spec": {"containers": [{"name": "a", "env": env}, {"name": "b"}]}});
        let kept = collapse_spec(large.clone().get_mut("spec"), ops[..3].to_vec());
        assert_eq!(kept, ops[..3].to_vec());
    }

    #[test]
    fn json_size_is_bounded_and_close() {
        let doc = json!({"containers": [{"name": "main", "image": "ghcr.io/org/train:1"}], "n": 3});
        let exact = serde_json::to_vec(&doc).unwrap().len();
        assert!(json_size_within(&doc, exact + 16));
        assert!(!json_size_within(&doc, exact / 2));
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
