//! Data sources: the Git repositories and S3 prefixes a workload asks for, by
//! annotation, so that credgate adds the fetchers (git-sync, the AWS CLI) and
//! mounts what they fetch. The credential of `run.ai/git-credential` or
//! `run.ai/s3-credential` is how they fetch.
//!
//! Pure parsing; errors quote the bad part and say what is accepted.

use std::collections::BTreeMap;

use crate::model::workload::{AnnotationError, quoted};

/// Annotations of data sources, on a Pod or a pod template.
pub mod annotation {
    /// `<https repo URL>[#<ref>]:<mount path>, ...`
    pub const GIT_SOURCE: &str = "run.ai/git-source";
    /// `once` (default: an init container clones before the workload starts)
    /// or `periodic` (a native sidecar keeps the checkout fresh).
    pub const GIT_SYNC: &str = "run.ai/git-sync";
    /// `s3://<bucket>[/<prefix>]:<mount path>, ...`
    pub const S3_SOURCE: &str = "run.ai/s3-source";
    /// `<http(s) URL>` of an S3-compatible endpoint (MinIO, Ceph).
    pub const S3_ENDPOINT: &str = "run.ai/s3-endpoint";
}

/// Sources one pod may ask for, all annotations together: each adds a
/// container and a volume.
pub const MAX_SOURCES: usize = 10;
/// Longest URL, ref, prefix or mount path accepted.
const MAX_TEXT: usize = 2048;

/// How git-sync runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GitSync {
    /// One-time clone in an init container.
    #[default]
    Once,
    /// A native sidecar (init container with `restartPolicy: Always`).
    Periodic,
}

/// A data source and where its files appear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Git {
        repo: String,
        /// Branch, tag or commit; `HEAD` when not given.
        git_ref: String,
    },
    S3 {
        bucket: String,
        /// Without leading or trailing `/`; empty for the whole bucket.
        prefix: String,
    },
}

/// One source and its mount path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataSource {
    pub source: Source,
    pub mount_path: String,
}

impl DataSource {
    /// `git:<url>[#ref]` or `s3://bucket/prefix`, as the table shows it.
    pub fn display(&self) -> String {
        match &self.source {
            Source::Git { repo, git_ref } if git_ref == "HEAD" => format!("git:{repo}"),
            Source::Git { repo, git_ref } => format!("git:{repo}#{git_ref}"),
            Source::S3 { bucket, prefix } if prefix.is_empty() => format!("s3://{bucket}"),
            Source::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
        }
    }

    /// The name of the checkout's directory under the mount path (the
    /// repository's last path segment, as `git clone` names it).
    pub fn checkout_name(&self) -> Option<String> {
        let Source::Git { repo, .. } = &self.source else {
            return None;
        };
        // `repo` when the segment is empty or starts with a dot (git-sync
        // keeps `.worktrees` and the like in its root for itself).
        let last = repo.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        let name = last.strip_suffix(".git").unwrap_or(last);
        let name = if name.is_empty() || name.starts_with('.') {
            "repo"
        } else {
            name
        };
        Some(name.to_owned())
    }
}

/// Every data source a pod asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataSources {
    pub sources: Vec<DataSource>,
    pub git_sync: GitSync,
    pub s3_endpoint: Option<String>,
}

impl DataSources {
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    pub fn has_git(&self) -> bool {
        self.sources
            .iter()
            .any(|s| matches!(s.source, Source::Git { .. }))
    }

    pub fn has_s3(&self) -> bool {
        self.sources
            .iter()
            .any(|s| matches!(s.source, Source::S3 { .. }))
    }
}

/// Parses the data-source annotations.
pub fn parse(annotations: &BTreeMap<String, String>) -> Result<DataSources, AnnotationError> {
    let mut out = DataSources::default();
    let get = |k: &str| annotations.get(k).map(|v| v.trim());
    if let Some(value) = get(annotation::GIT_SOURCE) {
        for item in items(annotation::GIT_SOURCE, value)? {
            out.sources.push(git(item)?);
        }
    }
    if let Some(value) = get(annotation::S3_SOURCE) {
        for item in items(annotation::S3_SOURCE, value)? {
            out.sources.push(s3(item)?);
        }
    }
    if out.sources.len() > MAX_SOURCES {
        return Err(AnnotationError {
            annotation: "run.ai/*-source",
            problem: format!(
                "{} data sources; credgate accepts at most {MAX_SOURCES} per pod",
                out.sources.len()
            ),
        });
    }
    // Every pair (at most MAX_SOURCES² / 2 comparisons).
    for (i, a) in out.sources.iter().enumerate() {
        if let Some(b) = out.sources[i + 1..]
            .iter()
            .find(|b| overlaps(&a.mount_path, &b.mount_path))
        {
            return Err(AnnotationError {
                annotation: "run.ai/*-source",
                problem: format!(
                    "mount paths {} and {} overlap; give each data source its own directory",
                    quoted(&a.mount_path),
                    quoted(&b.mount_path)
                ),
            });
        }
    }
    out.git_sync = match get(annotation::GIT_SYNC) {
        None | Some("" | "once") => GitSync::Once,
        Some("periodic") => GitSync::Periodic,
        Some(other) => {
            return Err(AnnotationError {
                annotation: annotation::GIT_SYNC,
                problem: format!("{} is not once or periodic", quoted(other)),
            });
        }
    };
    if let Some(endpoint) = get(annotation::S3_ENDPOINT) {
        let ok = (endpoint.starts_with("https://") || endpoint.starts_with("http://"))
            && !unsafe_text(endpoint)
            && endpoint.len() <= MAX_TEXT
            && !endpoint
                .chars()
                .any(|c| c.is_whitespace() || c.is_control());
        if !ok {
            return Err(AnnotationError {
                annotation: annotation::S3_ENDPOINT,
                problem: format!(
                    "{} is not an http(s) URL, e.g. https://minio.storage:9000",
                    quoted(endpoint)
                ),
            });
        }
        out.s3_endpoint = Some(endpoint.to_owned());
    }
    Ok(out)
}

/// One path is the other or a directory above it.
pub fn overlaps(a: &str, b: &str) -> bool {
    nested(a, b) || nested(b, a)
}

/// `a` is `b` or a directory above it (`a` sorts first).
fn nested(a: &str, b: &str) -> bool {
    let a = a.trim_end_matches('/');
    let b = b.trim_end_matches('/');
    a == b || a.is_empty() || b.strip_prefix(a).is_some_and(|rest| rest.starts_with('/'))
}

fn items<'v>(
    annotation: &'static str,
    value: &'v str,
) -> Result<impl Iterator<Item = &'v str>, AnnotationError> {
    crate::model::workload::items_up_to(annotation, value, MAX_SOURCES)
}

/// `<location>:<mount path>`, split at the last `:` (URLs have their own).
fn located<'a>(
    annotation: &'static str,
    item: &'a str,
    shape: &str,
) -> Result<(&'a str, String), AnnotationError> {
    let bad = |problem: String| AnnotationError {
        annotation,
        problem,
    };
    let (location, path) = item
        .rsplit_once(':')
        .filter(|(_, p)| p.starts_with('/') && !p.starts_with("//"))
        .ok_or_else(|| bad(format!("{} must look like {shape}", quoted(item))))?;
    if unsafe_text(location) {
        return Err(bad(format!(
            "{} may not contain $, {{ or }} (Kubernetes would expand $(VAR) with the fetcher's variables)",
            quoted(location)
        )));
    }
    // One spelling per directory: no empty, `.` or `..` segments, no trailing `/`.
    let path = path.strip_suffix('/').unwrap_or(path);
    let clean = path.len() <= MAX_TEXT
        && !path.is_empty()
        && !path[1..]
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        && !unsafe_text(path)
        && !path.chars().any(|c| c.is_whitespace() || c.is_control());
    if !clean {
        return Err(bad(format!(
            "{} is not a mount path: an absolute path without spaces, $, braces, //, . or ..",
            quoted(path)
        )));
    }
    if let Some(system) = SYSTEM_PATHS.iter().find(|s| overlaps(s, path)) {
        return Err(bad(format!(
            "{} would hide or lie inside {system}; mount data sources in a directory of their own",
            quoted(path)
        )));
    }
    Ok((location, path.to_owned()))
}

/// Directories a data source may neither cover nor enter.
const SYSTEM_PATHS: [&str; 5] = ["/proc", "/sys", "/dev", "/etc", "/var/run/secrets"];

/// `$` would let Kubernetes expand `$(VAR)` in the fetcher's command (its
/// variables include the credential); braces are the command's placeholders.
fn unsafe_text(s: &str) -> bool {
    s.contains(['$', '{', '}'])
}

fn git(item: &str) -> Result<DataSource, AnnotationError> {
    let a = annotation::GIT_SOURCE;
    let bad = |problem: String| AnnotationError {
        annotation: a,
        problem,
    };
    let (location, mount_path) = located(a, item, "<https URL>[#<ref>]:<mount path>")?;
    let (repo, git_ref) = match location.split_once('#') {
        Some((repo, r)) => (repo, r),
        None => (location, "HEAD"),
    };
    if repo.starts_with("ssh://") || repo.starts_with("git@") || repo.starts_with("git://") {
        return Err(bad(format!(
            "{} is not supported: a Git credential is a username and password (or token), which Git sends over HTTPS; use the repository's https:// URL",
            quoted(repo)
        )));
    }
    let host = repo.strip_prefix("https://").ok_or_else(|| {
        bad(format!(
            "{} must be an https:// URL (plain http would send the credential in clear)",
            quoted(repo)
        ))
    })?;
    let valid_url = !host.is_empty()
        && !host.starts_with('/')
        && repo.len() <= MAX_TEXT
        && !repo.contains('@')
        && !repo.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid_url {
        return Err(bad(format!(
            "{} is not a repository URL like https://github.com/org/repo.git (no user or password in it: those come from run.ai/git-credential)",
            quoted(repo)
        )));
    }
    let valid_ref = !git_ref.is_empty()
        && git_ref.len() <= 255
        && !git_ref.starts_with('-')
        && !git_ref.contains("..")
        && git_ref
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    if !valid_ref {
        return Err(bad(format!(
            "{} is not a branch, tag or commit",
            quoted(git_ref)
        )));
    }
    Ok(DataSource {
        source: Source::Git {
            repo: repo.to_owned(),
            git_ref: git_ref.to_owned(),
        },
        mount_path,
    })
}

fn s3(item: &str) -> Result<DataSource, AnnotationError> {
    let a = annotation::S3_SOURCE;
    let bad = |problem: String| AnnotationError {
        annotation: a,
        problem,
    };
    let (location, mount_path) = located(a, item, "s3://<bucket>[/<prefix>]:<mount path>")?;
    let rest = location.strip_prefix("s3://").ok_or_else(|| {
        bad(format!(
            "{} must be an s3:// URL, e.g. s3://my-bucket/datasets",
            quoted(location)
        ))
    })?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && !bucket.starts_with(['.', '-'])
        && !bucket.ends_with(['.', '-']);
    if !valid_bucket {
        return Err(bad(format!(
            "{} is not an S3 bucket name (3 to 63 lowercase letters, digits, '.' and '-')",
            quoted(bucket)
        )));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.len() > MAX_TEXT || prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(format!("{} is not an S3 prefix", quoted(prefix))));
    }
    Ok(DataSource {
        source: Source::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        },
        mount_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(pairs: &[(&str, &str)]) -> Result<DataSources, AnnotationError> {
        parse(
            &pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn git_and_s3_sources_parse() {
        let got = parsed(&[
            (
                annotation::GIT_SOURCE,
                "https://github.com/acme/models.git#v2:/data/models, https://git.example.com/x/y:/src",
            ),
            (annotation::S3_SOURCE, "s3://datasets/imagenet/train/:/data/train"),
            (annotation::GIT_SYNC, "periodic"),
            (annotation::S3_ENDPOINT, "http://minio.storage:9000"),
        ])
        .unwrap();
        assert_eq!(got.git_sync, GitSync::Periodic);
        assert_eq!(
            got.s3_endpoint.as_deref(),
            Some("http://minio.storage:9000")
        );
        let shown: Vec<_> = got
            .sources
            .iter()
            .map(|s| (s.display(), s.mount_path.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                (
                    "git:https://github.com/acme/models.git#v2".to_owned(),
                    "/data/models"
                ),
                ("git:https://git.example.com/x/y".to_owned(), "/src"),
                ("s3://datasets/imagenet/train".to_owned(), "/data/train"),
            ]
        );
        assert_eq!(got.sources[0].checkout_name().as_deref(), Some("models"));
        assert_eq!(got.sources[1].checkout_name().as_deref(), Some("y"));
    }

    /// From the review of issue 18: `$(VAR)` would expand the fetcher's
    /// variables (the credential) in its command; paths have one spelling;
    /// system directories are off limits; overlaps are found in every pair.
    #[test]
    fn hostile_sources_are_refused() {
        let cases = [
            (
                annotation::S3_SOURCE,
                "s3://bucket/$(AWS_SECRET_ACCESS_KEY):/data",
                "may not contain $",
            ),
            (
                annotation::S3_SOURCE,
                "s3://bucket/{target}:/data",
                "may not contain $",
            ),
            (
                annotation::S3_SOURCE,
                "s3://bucket:/d/$(HOME)",
                "not a mount path",
            ),
            (
                annotation::GIT_SOURCE,
                "https://h/x.git:/var/run/secrets//kubernetes.io/serviceaccount",
                "not a mount path",
            ),
            (
                annotation::GIT_SOURCE,
                "https://h/x.git:/var/run/secrets/kubernetes.io",
                "/var/run/secrets",
            ),
            (
                annotation::GIT_SOURCE,
                "https://h/x.git:/",
                "not a mount path",
            ),
            (
                annotation::GIT_SOURCE,
                "https://h/x.git:/data/./x",
                "not a mount path",
            ),
            (
                annotation::S3_ENDPOINT,
                "http://$(AWS_SECRET_ACCESS_KEY).evil",
                "not an http(s) URL",
            ),
        ];
        for (key, value, expected) in cases {
            let err = parsed(&[(key, value)]).unwrap_err().to_string();
            assert!(err.contains(expected), "{value}: {err}");
        }
        for list in [
            "https://h/a.git:/a, https://h/b.git:/a-b, https://h/c.git:/a/c",
            "https://h/a.git:/a, https://h/c.git:/a/",
        ] {
            let err = parsed(&[(annotation::GIT_SOURCE, list)]).unwrap_err();
            assert!(err.to_string().contains("overlap"), "{list}: {err}");
        }
        let dotted = parsed(&[(annotation::GIT_SOURCE, "https://h/x/.git:/src")]).unwrap();
        assert_eq!(dotted.sources[0].checkout_name().as_deref(), Some("repo"));
        let trailing = parsed(&[(annotation::S3_SOURCE, "s3://bucket:/data/")]).unwrap();
        assert_eq!(trailing.sources[0].mount_path, "/data");
    }

    #[test]
    fn bad_sources_say_why() {
        let cases = [
            (
                annotation::GIT_SOURCE,
                "ssh://git@github.com/acme/x.git:/src",
                "use the repository's https:// URL",
            ),
            (
                annotation::GIT_SOURCE,
                "git@github.com:acme/x.git:/src",
                "use the repository's https:// URL",
            ),
            (
                annotation::GIT_SOURCE,
                "http://github.com/acme/x.git:/src",
                "in clear",
            ),
            (
                annotation::GIT_SOURCE,
                "https://user:pw@github.com/x.git:/src",
                "no user or password",
            ),
            (
                annotation::GIT_SOURCE,
                "https://github.com/x.git#--upload-pack=x:/src",
                "not a branch",
            ),
            (
                annotation::GIT_SOURCE,
                "https://github.com/x.git",
                "must look like",
            ),
            (
                annotation::GIT_SOURCE,
                "https://github.com/x.git:/a/../etc",
                "not a mount path",
            ),
            (
                annotation::S3_SOURCE,
                "gs://bucket:/data",
                "must be an s3:// URL",
            ),
            (
                annotation::S3_SOURCE,
                "s3://Bad_Bucket:/data",
                "not an S3 bucket name",
            ),
            (annotation::S3_ENDPOINT, "minio:9000", "not an http(s) URL"),
            (annotation::GIT_SYNC, "hourly", "not once or periodic"),
        ];
        for (key, value, expected) in cases {
            let err = parsed(&[(key, value)]).unwrap_err().to_string();
            assert!(err.contains(expected), "{value}: {err}");
        }
        let overlap = parsed(&[
            (annotation::GIT_SOURCE, "https://h/a.git:/data"),
            (annotation::S3_SOURCE, "s3://bucket:/data/sub"),
        ])
        .unwrap_err();
        assert!(overlap.to_string().contains("overlap"), "{overlap}");
        let many = ["https://h/a.git:/d"; MAX_SOURCES + 1].join(",");
        assert!(parsed(&[(annotation::GIT_SOURCE, &many)]).is_err());
    }
}
