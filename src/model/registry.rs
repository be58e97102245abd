//! Registry host names: normalising `.dockerconfigjson` keys and image references
//! so that both sides of a match use one spelling.

/// The canonical host of Docker Hub.
pub const DOCKER_HUB: &str = "docker.io";

/// Normalises a registry as written in a `.dockerconfigjson` `auths` key:
/// drops a scheme and a path, lowercases, and maps Docker Hub's aliases to
/// `docker.io`. Ports are kept (`registry:5000` differs from `registry`).
pub fn normalize_host(raw: &str) -> Option<String> {
    let s = raw.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or_default().to_ascii_lowercase();
    if host.is_empty() || host.contains(char::is_whitespace) {
        return None;
    }
    Some(match host.as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_owned()
        }
        _ => host,
    })
}

/// The registry host an image reference pulls from, normalised like [`normalize_host`].
///
/// Follows the reference grammar: the first path component is a registry
/// only when it contains a `.` or a `:`, or is `localhost`; otherwise the image
/// is on Docker Hub (`nginx`, `library/nginx`, `bitnami/redis:7`).
pub fn image_host(image: &str) -> Option<String> {
    let image = image.trim();
    if image.is_empty() {
        return None;
    }
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            normalize_host(first)
        }
        _ => Some(DOCKER_HUB.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys() {
        let cases = [
            ("https://index.docker.io/v1/", Some("docker.io")),
            ("registry-1.docker.io", Some("docker.io")),
            ("docker.io", Some("docker.io")),
            ("GHCR.io", Some("ghcr.io")),
            ("http://registry.local:5000/v2", Some("registry.local:5000")),
            ("quay.io/org", Some("quay.io")),
            ("", None),
            ("https://", None),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_host(raw).as_deref(), want, "{raw:?}");
        }
    }

    #[test]
    fn images() {
        let cases = [
            ("nginx", Some("docker.io")),
            ("nginx:1.27", Some("docker.io")),
            ("library/nginx@sha256:abc", Some("docker.io")),
            ("bitnami/redis:7", Some("docker.io")),
            ("docker.io/library/nginx", Some("docker.io")),
            ("index.docker.io/library/nginx", Some("docker.io")),
            ("ghcr.io/org/app:v1", Some("ghcr.io")),
            ("localhost/app", Some("localhost")),
            ("localhost:5000/app", Some("localhost:5000")),
            ("registry.local:5000/team/app", Some("registry.local:5000")),
            ("", None),
        ];
        for (image, want) in cases {
            assert_eq!(image_host(image).as_deref(), want, "{image:?}");
        }
    }
}
