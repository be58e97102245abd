//! `.dockerconfigjson` checking without ever quoting a value.
//!
//! Error messages name keys and registries only: a password, token or `auth`
//! string never appears in an error, a log line or a denial.

use base64::Engine as _;
use serde_json::Value;
use std::collections::BTreeSet;

use crate::model::registry;

/// What is wrong with a `.dockerconfigjson`, phrased for the person who wrote it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DockerConfigError {
    #[error(".dockerconfigjson is not valid JSON (line {line}, column {column})")]
    NotJson { line: usize, column: usize },
    #[error(".dockerconfigjson must be a JSON object with an \"auths\" object")]
    NoAuths,
    #[error(
        ".dockerconfigjson has no registries under \"auths\": add {{\"auths\":{{\"<registry>\":{{\"auth\":\"<base64 of user:password>\"}}}}}}"
    )]
    EmptyAuths,
    #[error(".dockerconfigjson registry key {0:?} is not a registry host")]
    BadRegistry(String),
    #[error(
        ".dockerconfigjson entry for {0:?} needs \"auth\" or both \"username\" and \"password\" (non-empty strings)"
    )]
    MissingAuth(String),
    #[error(".dockerconfigjson entry for {0:?}: \"auth\" must be base64 of \"user:password\"")]
    BadAuth(String),
}

/// Checks a `.dockerconfigjson` and returns its normalised registry hosts.
pub fn registries(bytes: &[u8]) -> Result<BTreeSet<String>, DockerConfigError> {
    let config: Value = serde_json::from_slice(bytes).map_err(|e| DockerConfigError::NotJson {
        line: e.line(),
        column: e.column(),
    })?;
    let auths = config
        .get("auths")
        .and_then(Value::as_object)
        .ok_or(DockerConfigError::NoAuths)?;
    if auths.is_empty() {
        return Err(DockerConfigError::EmptyAuths);
    }
    let mut hosts = BTreeSet::new();
    for (key, entry) in auths {
        let host = registry::normalize_host(key)
            .ok_or_else(|| DockerConfigError::BadRegistry(key.clone()))?;
        check_entry(key, entry)?;
        hosts.insert(host);
    }
    Ok(hosts)
}

fn check_entry(key: &str, entry: &Value) -> Result<(), DockerConfigError> {
    let field = |name: &str| {
        entry
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    if let Some(auth) = field("auth") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth)
            .map_err(|_| DockerConfigError::BadAuth(key.to_owned()))?;
        return match decoded.iter().position(|&b| b == b':') {
            Some(i) if i > 0 => Ok(()),
            _ => Err(DockerConfigError::BadAuth(key.to_owned())),
        };
    }
    match (field("username"), field("password")) {
        (Some(_), Some(_)) => Ok(()),
        _ => Err(DockerConfigError::MissingAuth(key.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t-value";

    fn auth(user_pass: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    }

    #[test]
    fn valid_configs() {
        let cfg = format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},"ghcr.io":{{"username":"u","password":"{SECRET}"}}}}}}"#,
            auth(&format!("u:{SECRET}"))
        );
        let hosts: Vec<_> = registries(cfg.as_bytes()).unwrap().into_iter().collect();
        assert_eq!(hosts, ["docker.io", "ghcr.io"]);
    }

    #[test]
    fn invalid_configs_never_quote_values() {
        let cases = [
            (format!("{{\"auths\": {SECRET}"), "not valid JSON"),
            (r#"{"credsStore":"x"}"#.to_owned(), "\"auths\" object"),
            (r#"{"auths":{}}"#.to_owned(), "no registries"),
            (
                format!(r#"{{"auths":{{"ghcr.io":{{"username":"{SECRET}"}}}}}}"#),
                "needs \"auth\"",
            ),
            (
                format!(r#"{{"auths":{{"ghcr.io":{{"password":"{SECRET}"}}}}}}"#),
                "needs \"auth\"",
            ),
            (
                format!(r#"{{"auths":{{"ghcr.io":{{"auth":"{SECRET}!"}}}}}}"#),
                "base64",
            ),
            (
                format!(r#"{{"auths":{{"ghcr.io":{{"auth":"{}"}}}}}}"#, auth(SECRET)),
                "base64",
            ),
            (
                r#"{"auths":{"ghcr.io":{"auth":12345}}}"#.to_owned(),
                "needs \"auth\"",
            ),
            (
                r#"{"auths":{"":{"auth":"dTpw"}}}"#.to_owned(),
                "not a registry host",
            ),
        ];
        for (cfg, fragment) in cases {
            let err = registries(cfg.as_bytes()).expect_err(&cfg).to_string();
            assert!(err.contains(fragment), "{err:?} lacks {fragment:?}");
            assert!(!err.contains(SECRET), "{err:?} leaks the secret");
            assert!(!err.contains("12345"), "{err:?} leaks a value");
        }
    }
}
