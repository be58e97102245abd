//! A Pod's spec as credgate reads it: a JSON tree that borrows its strings
//! from the request ([`serde_json_borrow`]), members kept in their order,
//! numbers as serde reads them. Reading it allocates only its objects and
//! arrays; writing it back (into the patch) copies every string with
//! nothing to escape as it is.

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
    // No early exit, so the check runs over whole words.
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

/// Writes `value` as JSON, as serde_json would write the same value.
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
        Json::Object(members) => {
            out.push(b'{');
            for (i, (key, item)) in members.iter().enumerate() {
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
            r#"{"b":[1,-2,3.5,1000.0,null,true,{}],"a":"x\"yé","c":{"d":[],"e":"\u0001"},"k":1,"k":2}"#
        );
        assert_eq!(get(&tree, "k").and_then(|v| v.as_u64()), Some(2));
        assert_eq!(str_at(&tree, "a"), Some("x\"yé"));
        assert_eq!(array_at(&tree, "b").map(<[_]>::len), Some(7));
        assert_eq!(get(&tree, "z"), None);
        assert_eq!(to_value(&tree)["c"]["e"], "\u{1}");
    }
}
