//! Pure policy: what credgate decides, as plain functions over a read-only
//! [`Index`](crate::state::index::Index) snapshot. No async, no API client, no
//! HTTP types (a test in this module fails if one appears).
//!
//! - [`validate`]: credential Secrets and workload templates;
//! - [`mutate`]: what a credential Secret or a pod gains;
//! - [`resolve`]: which Secret a credential name means in a namespace;
//! - [`patch`]: RFC 6902 patches that emit only what differs.
//!
//! An admission request is reduced to a [`Change`]: the operation, the user and
//! the typed objects. Answers are [`Allow`] (with warnings) or [`Deny`] (a
//! message for the person reading kubectl's output).

pub mod fetch;
pub mod mutate;
pub mod patch;
pub mod resolve;
pub mod rights;
pub mod validate;

use k8s_openapi::api::core::v1::Secret;
use std::collections::BTreeSet;

/// Settings the policy reads; fixed for the life of the process.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespace of cluster- and department-scoped credentials.
    pub credentials_namespace: String,
    /// The user credgate's controller acts as; only it may write managed copies.
    pub controller_identity: String,
    /// A propagation controller runs (`--controller`): only then do wider
    /// credentials get the copies' finalizer, which only it removes.
    pub propagation: bool,
    /// credgate's own namespace: its leader Lease and the existing-secret claims.
    pub own_namespace: String,
    /// Credentials get the in-use finalizer at birth (with `propagation`:
    /// the controller removes it).
    pub in_use_finalizer: bool,
    /// What fetches data sources.
    pub fetchers: Fetchers,
}

/// The images (and the S3 command) that fetch data sources into pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetchers {
    /// git-sync v4.
    pub git_sync_image: String,
    /// Has the AWS CLI (or what `s3_command` runs).
    pub s3_image: String,
    /// The S3 sync command; `{source}` and `{target}` are replaced by
    /// `s3://bucket/prefix` and the mount path.
    pub s3_command: Vec<String>,
}

/// git-sync's official v4 image.
pub const GIT_SYNC_IMAGE: &str = "registry.k8s.io/git-sync/git-sync:v4.5.0";
/// The AWS CLI's official image (v2, which reads `AWS_ENDPOINT_URL`).
pub const S3_IMAGE: &str = "amazon/aws-cli:2.27.0";
/// `aws s3 sync`, quiet but for errors.
pub const S3_COMMAND: &str = "aws s3 sync --only-show-errors {source} {target}";

impl Default for Fetchers {
    fn default() -> Self {
        Fetchers {
            git_sync_image: GIT_SYNC_IMAGE.to_owned(),
            s3_image: S3_IMAGE.to_owned(),
            s3_command: S3_COMMAND.split_whitespace().map(str::to_owned).collect(),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            credentials_namespace: "runai".to_owned(),
            controller_identity: "system:serviceaccount:credgate-system:credgate".to_owned(),
            propagation: true,
            own_namespace: "credgate-system".to_owned(),
            in_use_finalizer: false,
            fetchers: Fetchers::default(),
        }
    }
}

/// The admission operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

/// One admission request, reduced to what the policy reads.
#[derive(Clone, Copy, Debug)]
pub struct Change<'a, K> {
    pub operation: Operation,
    /// `request.userInfo.username`.
    pub user: &'a str,
    pub namespace: &'a str,
    pub object: Option<&'a K>,
    pub old_object: Option<&'a K>,
}

/// The request is allowed, possibly with warnings that kubectl prints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allow {
    pub warnings: Vec<String>,
}

/// The request is denied; the message is what kubectl prints.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Deny(pub String);

/// A policy decision.
pub type Verdict = Result<Allow, Deny>;

/// A Secret's data as the API server will store it: `stringData` over `data`.
#[derive(Clone, Copy, Debug)]
pub struct SecretData<'a>(pub &'a Secret);

impl<'a> SecretData<'a> {
    /// The value of `key`, as bytes.
    pub fn get(&self, key: &str) -> Option<&'a [u8]> {
        let secret = self.0;
        if let Some(v) = secret.string_data.as_ref().and_then(|m| m.get(key)) {
            return Some(v.as_bytes());
        }
        secret
            .data
            .as_ref()
            .and_then(|m| m.get(key))
            .map(|b| b.0.as_slice())
    }

    /// True when `key` is present with a non-empty value.
    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| !v.is_empty())
    }

    /// All keys, sorted.
    pub fn keys(&self) -> BTreeSet<&'a str> {
        let secret = self.0;
        let data = secret.data.iter().flat_map(|m| m.keys());
        let string_data = secret.string_data.iter().flat_map(|m| m.keys());
        data.chain(string_data).map(String::as_str).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.keys().is_empty()
    }
}
