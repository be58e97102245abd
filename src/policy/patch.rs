//! RFC 6902 patch building. Every builder compares with the object it patches
//! and emits only what differs, so a patch applied twice changes nothing more
//! and a reinvoked webhook answers with an empty patch.

use crate::model::json::{self, Json};
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation};
use serde_json::Value;
use serde_json_borrow::ObjectAsVec;
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

/// Specs up to about this size (as JSON) are sent whole, patched, in one
/// `replace` (see [`SpecAdditions::patch_json`]); larger ones get small
/// operations, so neither credgate's memory nor its answer grows with a large
/// pod.
pub const REPLACE_MAX_SPEC_BYTES: usize = 64 * 1024;

/// Entries appended to one list of a Pod's spec or of one of its containers.
#[derive(Debug)]
pub struct ListAddition<E> {
    /// The list's field: `volumes`, `env`, …
    pub list: &'static str,
    /// Whether the list is there (an array) to append to; otherwise it is
    /// added whole, holding only `entries`.
    pub existing: bool,
    pub entries: Vec<E>,
}

/// The additions to one container, at `index` in `list` (`initContainers`
/// or `containers`).
#[derive(Debug)]
pub struct ContainerAdditions<E> {
    pub list: &'static str,
    pub index: usize,
    pub lists: Vec<ListAddition<E>>,
}

/// What an injection adds to a Pod's spec: entries appended to lists, each
/// writing its own JSON ([`WriteJson`]).
///
/// `containers` must name containers that are in their list, as objects, in
/// the order of their list and index, each once (as the injection makes
/// them); [`SpecAdditions::patch_json`] fails otherwise rather than drop an
/// addition.
#[derive(Debug)]
pub struct SpecAdditions<E> {
    /// Lists of the spec itself (`volumes`, `initContainers`, `imagePullSecrets`).
    pub spec: Vec<ListAddition<E>>,
    /// Containers' lists, in the order of the spec's lists and their indexes.
    pub containers: Vec<ContainerAdditions<E>>,
}

impl<E> Default for SpecAdditions<E> {
    fn default() -> Self {
        SpecAdditions {
            spec: Vec::new(),
            containers: Vec::new(),
        }
    }
}

/// An entry that writes itself as JSON, straight into the patch: its member
/// names as they are, its strings escaped by serde.
pub trait WriteJson {
    fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error>;

    /// The entry as a JSON value (for the small operations, and to compare
    /// with an item the Pod has).
    fn to_value(&self) -> Result<Value, serde_json::Error> {
        let mut json = Vec::new();
        self.write_json(&mut json)?;
        serde_json::from_slice(&json)
    }
}

#[cfg(test)]
impl WriteJson for Value {
    fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        serde_json::to_writer(out, self)
    }
}

impl<E: WriteJson> SpecAdditions<E> {
    /// True when nothing is added.
    pub fn is_empty(&self) -> bool {
        self.spec.is_empty() && self.containers.is_empty()
    }

    /// The same additions as RFC 6902 `add` operations: one per entry
    /// appended to a list that is there, one per list added whole.
    pub fn ops(&self) -> Result<Vec<PatchOperation>, serde_json::Error> {
        let mut ops = Vec::new();
        let mut push = |tokens: &[&str], addition: &ListAddition<E>| {
            let mut tokens = tokens.to_vec();
            tokens.push(addition.list);
            if addition.existing {
                tokens.push("-");
                for entry in &addition.entries {
                    ops.push(add(&tokens, entry.to_value()?));
                }
            } else {
                let entries = addition.entries.iter().map(E::to_value);
                ops.push(add(
                    &tokens,
                    Value::Array(entries.collect::<Result<_, _>>()?),
                ));
            }
            Ok::<_, serde_json::Error>(())
        };
        for addition in &self.spec {
            push(&["spec"], addition)?;
        }
        for container in &self.containers {
            let index = container.index.to_string();
            for addition in &container.lists {
                push(&["spec", container.list, &index], addition)?;
            }
        }
        Ok(ops)
    }

    fn op_count(&self) -> usize {
        let count = |a: &ListAddition<E>| if a.existing { a.entries.len() } else { 1 };
        let in_spec: usize = self.spec.iter().map(count).sum();
        let in_containers: usize = self
            .containers
            .iter()
            .flat_map(|c| &c.lists)
            .map(count)
            .sum();
        in_spec + in_containers
    }

    /// The JSON patch for `spec` (the request's own spec), empty when nothing
    /// is added.
    ///
    /// The API server applies a JSON patch with a library that parses every
    /// level an operation's path walks through and encodes each of them again,
    /// so the 15 small operations of a typical injection cost it about three
    /// times one `replace`, whose value it only scans (`make bench`: the API
    /// server's profile, and `benches/apiserver_patch` with its own library).
    /// So a spec up to [`REPLACE_MAX_SPEC_BYTES`] is sent as one `replace
    /// /spec`, written straight from the request's spec with the entries in
    /// place: the same object the small operations make. A single operation,
    /// a larger spec, or no spec to write keep the small operations.
    pub fn patch_json(&self, spec: Option<&Json<'_>>) -> Result<Vec<u8>, serde_json::Error> {
        if self.is_empty() {
            return Ok(Vec::new());
        }
        let folded = spec
            .filter(|_| self.op_count() >= 2)
            .filter(|spec| json_size_within(spec, REPLACE_MAX_SPEC_BYTES))
            .and_then(Json::as_object);
        let Some(spec) = folded else {
            return serde_json::to_vec(&self.ops()?);
        };
        let mut out = Vec::with_capacity(4096);
        out.extend_from_slice(br#"[{"op":"replace","path":"/spec","value":"#);
        self.write_spec(&mut out, spec)?;
        out.extend_from_slice(b"}]");
        Ok(out)
    }

    /// `spec` with its additions in place.
    fn write_spec(
        &self,
        out: &mut Vec<u8>,
        spec: &ObjectAsVec<'_>,
    ) -> Result<(), serde_json::Error> {
        write_object(out, spec, &self.spec, |list| self.containers_of(list))
    }

    /// The containers' additions of one list, contiguous and by index.
    fn containers_of(&self, list: &str) -> &[ContainerAdditions<E>] {
        let all = &self.containers;
        let start = all.iter().position(|c| c.list == list).unwrap_or(all.len());
        let len = all[start..].iter().take_while(|c| c.list == list).count();
        &all[start..start + len]
    }
}

/// Commas between the members of an object or the items of a list.
#[derive(Default)]
struct Commas {
    started: bool,
}

impl Commas {
    /// A comma before every member or item but the first.
    fn next(&mut self, out: &mut Vec<u8>) {
        if std::mem::replace(&mut self.started, true) {
            out.push(b',');
        }
    }
}

/// An object (the spec or a container) with `lists` appended to (or added)
/// and, in each of its lists, the `containers` additions in place.
fn write_object<'a, E: WriteJson + 'a>(
    out: &mut Vec<u8>,
    object: &ObjectAsVec<'_>,
    lists: &'a [ListAddition<E>],
    containers: impl Fn(&str) -> &'a [ContainerAdditions<E>],
) -> Result<(), serde_json::Error> {
    let mut commas = Commas::default();
    let mut member = |out: &mut Vec<u8>, key: &str| {
        commas.next(out);
        json::write_str(out, key)?;
        out.push(b':');
        Ok::<_, serde_json::Error>(())
    };
    out.push(b'{');
    for (key, value) in json::members(object) {
        let added = lists.iter().find(|a| a.list == key);
        let inner = containers(key);
        member(out, key)?;
        if added.is_none() && inner.is_empty() {
            json::write(out, value)?;
        } else {
            write_list(
                out,
                value.as_array(),
                inner,
                added.map_or(&[], |a| &a.entries),
            )?;
        }
    }
    for addition in lists {
        if !object.contains_key(addition.list) {
            member(out, addition.list)?;
            write_list::<E>(out, None, &[], &addition.entries)?;
        }
    }
    out.push(b'}');
    Ok(())
}

/// A list: its items (when it is an array) with their containers' additions
/// in place, then `added`. An addition for a container that is not in the
/// list, or not an object, is an error: it is never dropped.
fn write_list<E: WriteJson>(
    out: &mut Vec<u8>,
    existing: Option<&[Json<'_>]>,
    containers: &[ContainerAdditions<E>],
    added: &[E],
) -> Result<(), serde_json::Error> {
    use serde::ser::Error as _;
    out.push(b'[');
    let mut containers = containers.iter().peekable();
    let mut commas = Commas::default();
    for (i, item) in existing.into_iter().flatten().enumerate() {
        commas.next(out);
        match (containers.next_if(|c| c.index == i), item.as_object()) {
            (Some(additions), Some(container)) => {
                write_object(out, container, &additions.lists, |_| &[])?;
            }
            (Some(additions), None) => {
                return Err(serde_json::Error::custom(format!(
                    "{} {} is not an object",
                    additions.list, additions.index
                )));
            }
            (None, _) => json::write(out, item)?,
        }
    }
    if let Some(additions) = containers.next() {
        return Err(serde_json::Error::custom(format!(
            "no {} {} to add to",
            additions.list, additions.index
        )));
    }
    for entry in added {
        commas.next(out);
        entry.write_json(out)?;
    }
    out.push(b']');
    Ok(())
}

/// Whether `value` encodes as JSON in at most about `budget` bytes; stops
/// counting as soon as it is over, so it costs O(min(size, budget)).
fn json_size_within(value: &Json<'_>, budget: usize) -> bool {
    fn walk(value: &Json<'_>, left: &mut usize) -> bool {
        fn take(left: &mut usize, n: usize) -> bool {
            let within = n <= *left;
            *left = left.saturating_sub(n);
            within
        }
        match value {
            Json::Str(s) => take(left, s.len() + 2),
            Json::Array(items) => {
                take(left, items.len() + 2) && items.iter().all(|v| walk(v, left))
            }
            Json::Object(map) => {
                take(left, 2)
                    && map
                        .iter()
                        .all(|(k, v)| take(left, k.len() + 4) && walk(v, left))
            }
            _ => take(left, 8),
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

    /// One `replace /spec` gives the object the small operations give: lists
    /// appended to and added whole, in the spec and in containers, a member
    /// that is not a list, a container with nothing added. With nothing to
    /// add there is no patch; one operation, no spec, or a large spec keep
    /// the small operations.
    #[test]
    fn the_replaced_spec_gives_the_same_object() {
        let doc = json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [{"name": "a", "env": [{"name": "X", "value": "1"}]}, {"name": "b"}, {"name": "c"}],
                "initContainers": [{"name": "i"}],
                "volumes": {"not": "a list"},
                "nodeName": "n"
            }
        });
        let list = |list, existing, entries: Vec<Value>| ListAddition {
            list,
            existing,
            entries,
        };
        let y = json!({"name": "Y", "value": "2"});
        let additions = SpecAdditions {
            spec: vec![
                list("volumes", false, vec![json!({"name": "v", "emptyDir": {}})]),
                list("initContainers", true, vec![json!({"name": "fetch"})]),
                list("imagePullSecrets", false, vec![json!({"name": "r"})]),
            ],
            containers: vec![
                ContainerAdditions {
                    list: "initContainers",
                    index: 0,
                    lists: vec![list("env", false, vec![y.clone()])],
                },
                ContainerAdditions {
                    list: "containers",
                    index: 0,
                    lists: vec![
                        list("env", true, vec![y.clone()]),
                        list(
                            "volumeMounts",
                            false,
                            vec![json!({"name": "v", "mountPath": "/v"})],
                        ),
                    ],
                },
                ContainerAdditions {
                    list: "containers",
                    index: 2,
                    lists: vec![list("env", false, vec![y.clone()])],
                },
            ],
        };
        let ops = additions.ops().unwrap();
        assert_eq!(ops.len(), 7);
        let doc_spec = doc.get("spec").map(json::from_value);
        let sent: Vec<PatchOperation> =
            serde_json::from_slice(&additions.patch_json(doc_spec.as_ref()).unwrap()).unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].path().as_str(), "/spec");
        let patched = apply(&doc, ops.clone());
        assert_eq!(apply(&doc, sent), patched);
        let spec = &patched["spec"];
        assert_eq!(
            spec["containers"],
            json!([
                {"name": "a", "env": [{"name": "X", "value": "1"}, y], "volumeMounts": [{"name": "v", "mountPath": "/v"}]},
                {"name": "b"},
                {"name": "c", "env": [y]}
            ])
        );
        assert_eq!(
            spec["initContainers"],
            json!([{"name": "i", "env": [y]}, {"name": "fetch"}])
        );
        assert_eq!(spec["volumes"], json!([{"name": "v", "emptyDir": {}}]));
        assert_eq!(spec["imagePullSecrets"], json!([{"name": "r"}]));
        assert_eq!(spec["nodeName"], "n");
        // Nothing to add: no patch at all.
        let none = SpecAdditions::<Value>::default();
        assert!(none.patch_json(doc_spec.as_ref()).unwrap().is_empty());
        // One operation, or no spec to write: the small operations.
        let one = SpecAdditions {
            spec: vec![list("imagePullSecrets", false, vec![json!({"name": "r"})])],
            containers: Vec::new(),
        };
        let small = |additions: &SpecAdditions<Value>, spec: Option<&Value>| {
            let spec = spec.map(json::from_value);
            serde_json::from_slice::<Vec<PatchOperation>>(
                &additions.patch_json(spec.as_ref()).unwrap(),
            )
            .unwrap()
        };
        assert_eq!(small(&one, doc.get("spec")), one.ops().unwrap());
        assert_eq!(small(&additions, None), ops);
        // A large spec is not written whole: its operations go as they are.
        let env: Vec<Value> = (0..5000)
            .map(|i| json!({"name": format!("VARIABLE_{i}"), "value": "x"}))
            .collect();
        let large =
            json!({"containers": [{"name": "a", "env": env}, {"name": "b"}, {"name": "c"}]});
        assert_eq!(small(&additions, Some(&large)), ops);
    }

    /// An addition for a container that is not there, or not an object, is
    /// an error (the webhook then refuses the pod): never dropped.
    #[test]
    fn additions_are_never_dropped() {
        let spec = json!({"containers": [{"name": "a"}, "b"]});
        let spec = json::from_value(&spec);
        let at = |index| SpecAdditions {
            spec: vec![ListAddition {
                list: "imagePullSecrets",
                existing: false,
                entries: vec![json!({"name": "r"})],
            }],
            containers: vec![ContainerAdditions {
                list: "containers",
                index,
                lists: vec![ListAddition {
                    list: "env",
                    existing: false,
                    entries: vec![json!({"name": "Y", "value": "2"})],
                }],
            }],
        };
        assert!(at(0).patch_json(Some(&spec)).is_ok());
        for index in [1, 2] {
            let error = at(index).patch_json(Some(&spec)).unwrap_err();
            assert!(error.to_string().contains("containers"), "{error}");
        }
    }

    #[test]
    fn json_size_is_bounded_and_close() {
        let doc = json!({"containers": [{"name": "main", "image": "ghcr.io/org/train:1"}], "n": 3});
        let exact = serde_json::to_vec(&doc).unwrap().len();
        let doc = json::from_value(&doc);
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
