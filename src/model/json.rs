//! A Pod's spec as credgate reads it: a JSON tree that borrows its strings
//! from the request ([`serde_json_borrow`]), members kept in their order,
//! numbers as serde reads them. Reading it allocates its objects and arrays,
//! and only the strings and keys that hold escapes; writing it back (into
//! the patch) copies every string with nothing to escape as it is. A key
//! that appears twice reads and writes as its last member, as serde_json
//! reads it.

/// A JSON value borrowing from the request body.
pub type Json<'a> = serde_json_borrow::Value<'a>;

/// The member `key` of an object: the last one, as serde_json reads an
/// object that has the key twice (only a client other than the API server
/// can send one).
pub fn get<'v, 'a>(value: &'v Json<'a>, key: &str) -> Option<&'v Json<'a>> {
    let members = value.as_object()?.as_vec();
    members
        .iter()
        .rev()
        .find(|(k, _)| &**k == key)
        .map(|(_, v)| v)
}

/// The string member `key` of an object.
pub fn str_at<'v>(value: &'v Json<'_>, key: &str) -> Option<&'v str> {
    get(value, key)?.as_str()
}

/// The array member `key` of an object.
pub fn array_at<'v, 'a>(value: &'v Json<'a>, key: &str) -> Option<&'v [Json<'a>]> {
    get(value, key)?.as_array()
}

/// Writes `s` as a JSON string, as serde writes it: a string with nothing to
/// escape (no control character, quote or backslash: most) is copied in one
/// go; any other goes through serde's escaping.
pub fn write_str(out: &mut Vec<u8>, s: &str) -> Result<(), serde_json::Error> {
    // No early exit, so the compiler can vectorise the check.
    let plain = s.bytes().fold(true, |plain, b| {
        plain & (b >= 0x20) & (b != b'"') & (b != b'\\')
    });
    if !plain {
        return serde_json::to_writer(out, s);
    }
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
    Ok(())
}

/// Writes `value` as JSON: strings, numbers and escapes as serde_json writes
/// them, members in their order, a duplicated key only once (its last member,
/// the one serde_json keeps).
pub fn write(out: &mut Vec<u8>, value: &Json<'_>) -> Result<(), serde_json::Error> {
    match value {
        Json::Str(s) => write_str(out, s),
        Json::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(out, item)?;
            }
            out.push(b']');
            Ok(())
        }
        Json::Object(object) => {
            out.push(b'{');
            for (i, (key, item)) in members(object).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, key)?;
                out.push(b':');
                write(out, item)?;
            }
            out.push(b'}');
            Ok(())
        }
        // Null, booleans and numbers.
        other => serde_json::to_writer(out, other),
    }
}

/// `value` as a borrowed tree, in linear time (serde_json_borrow's own
/// conversion checks every key against the ones before it: quadratic in a
/// large object). For the pod templates of workloads and the CLI, which
/// arrive as `serde_json::Value`.
pub fn from_value(value: &serde_json::Value) -> Json<'_> {
    use serde_json::Value;
    match value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Json::Number(u.into()),
            (_, Some(i), _) => Json::Number(i.into()),
            (_, _, Some(f)) => Json::Number(f.into()),
            _ => Json::Null,
        },
        Value::String(s) => Json::Str(s.as_str().into()),
        Value::Array(items) => Json::Array(items.iter().map(from_value).collect()),
        Value::Object(members) => Json::Object(
            members
                .iter()
                .map(|(k, v)| (k.as_str(), from_value(v)))
                .collect(),
        ),
    }
}

/// The members of an object as serde_json reads them: a key that appears
/// more than once (only a client other than the API server can send one)
/// keeps only its last member, here at that member's place. Linear: keys are
/// compared while the object is small, hashed once it is large.
pub fn members<'v, 'a>(
    object: &'v serde_json_borrow::ObjectAsVec<'a>,
) -> impl Iterator<Item = (&'v str, &'v Json<'a>)> {
    const FEW: usize = 16;
    let all = object.as_vec();
    // Large objects: which members are last, found once from the end.
    let last: Option<Vec<bool>> = (all.len() > FEW).then(|| {
        let mut later = std::collections::HashSet::new();
        let mut last: Vec<bool> = all.iter().rev().map(|(k, _)| later.insert(&**k)).collect();
        last.reverse();
        last
    });
    all.iter()
        .enumerate()
        .filter(move |(i, (key, _))| match &last {
            Some(last) => last[*i],
            None => !all[i + 1..].iter().any(|(k, _)| k == key),
        })
        .map(|(_, (k, v))| (&**k, v))
}

/// `value` as a `serde_json::Value` (for a rare comparison; allocates).
pub fn to_value(value: &Json<'_>) -> serde_json::Value {
    serde_json::Value::from(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strings are written exactly as serde writes them, whether they need
    /// escaping or not: every character below 128, and beyond.
    #[test]
    fn strings_are_written_as_serde_writes_them() {
        let mut samples: Vec<String> = (0u8..128).map(|b| format!("a{}z", b as char)).collect();
        // Each character at each place of a string of two words and a half.
        for c in (0u8..128).map(char::from).chain(['é', '\u{2028}']) {
            for at in 0..20 {
                let mut s: String = "abcdefghijklmnopqrst".into();
                s.replace_range(at..=at, c.encode_utf8(&mut [0; 4]));
                samples.push(s);
            }
        }
        samples.extend(
            [
                "",
                "plain",
                "é ü 漢字 🚀",
                "\u{7f}",
                "a\"b\\c\n",
                "\u{2028}",
            ]
            .map(String::from),
        );
        for s in samples {
            let mut ours = Vec::new();
            write_str(&mut ours, &s).unwrap();
            assert_eq!(ours, serde_json::to_vec(&s).unwrap(), "{s:?}");
        }
    }

    /// A tree is written back as the same JSON (members in their order,
    /// escapes and numbers as serde writes them); a duplicated key reads as
    /// its last member, as serde_json reads it.
    #[test]
    fn trees_are_written_back_as_read() {
        let text = r#"{"b":[1,-2,3.5,1e3,null,true,{}],"a":"x\"y\u00e9","c":{"d":[],"e":"\u0001"},"k":1,"k":2}"#;
        let tree: Json = serde_json::from_str(text).unwrap();
        let mut out = Vec::new();
        write(&mut out, &tree).unwrap();
        let again: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            again,
            serde_json::from_str::<serde_json::Value>(text).unwrap()
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"b":[1,-2,3.5,1000.0,null,true,{}],"a":"x\"yé","c":{"d":[],"e":"\u0001"},"k":2}"#
        );
        assert_eq!(get(&tree, "k").and_then(|v| v.as_u64()), Some(2));
        assert_eq!(str_at(&tree, "a"), Some("x\"yé"));
        assert_eq!(array_at(&tree, "b").map(<[_]>::len), Some(7));
        assert_eq!(get(&tree, "z"), None);
        assert_eq!(to_value(&tree)["c"]["e"], "\u{1}");
    }

    /// A `serde_json::Value` converts whole, and in linear time: an object
    /// of 200,000 keys (quadratic, that would be minutes).
    #[test]
    fn values_convert_whole_in_linear_time() {
        let text = r#"{"b":[1,-2,3.5,18446744073709551615,null,true,{}],"a":"x\"y","c":{"d":[]}}"#;
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(to_value(&from_value(&value)), value);
        let large: serde_json::Map<String, serde_json::Value> = (0..200_000)
            .map(|i| (format!("k{i:06}"), serde_json::Value::Null))
            .collect();
        let large = serde_json::Value::Object(large);
        let tree = from_value(&large);
        assert_eq!(tree.as_object().map(|o| members(o).count()), Some(200_000));
        // A key twice keeps its last member, in a small object and in a large one.
        for size in [3, 40] {
            let mut text: Vec<String> = (0..size).map(|i| format!("\"k{i}\":{i}")).collect();
            text.push("\"k1\":-1".into());
            let text = format!("{{{}}}", text.join(","));
            let tree: Json = serde_json::from_str(&text).unwrap();
            let kept: Vec<(&str, i64)> = members(tree.as_object().unwrap())
                .map(|(k, v)| (k, v.as_i64().unwrap()))
                .collect();
            assert_eq!(kept.len(), size, "{text}");
            assert_eq!(kept.last(), Some(&("k1", -1)));
            assert!(!kept.contains(&("k1", 1)));
        }
    }
}
