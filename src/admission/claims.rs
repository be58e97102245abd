//! Existing-secret claims, made atomic through the API server.
//!
//! An existing Secret backs at most one credential. Two credgate replicas can
//! receive two such credentials at the same moment, so an in-memory check
//! alone would race. Instead a claim is a coordination.k8s.io Lease named after
//! the existing Secret's namespace and name, in credgate's own namespace (so
//! credgate needs no Lease rights anywhere else): creates are atomic, so
//! exactly one credential wins. A claim whose credential is gone (deleted, or refused by a
//! later admission step) is taken over once it is older than
//! [`FRESH_CLAIM`]. Dry-run requests check but never write.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::{Client, ResourceExt};
use std::time::Duration;

use crate::model::credential::{CredentialType, Scope, annotation};
use crate::policy::Deny;
use crate::policy::validate;

/// A claim younger than this whose credential is not stored yet may belong to
/// a request still in flight: it is not taken over.
pub const FRESH_CLAIM: Duration = Duration::from_secs(30);
/// Longest wait for one API call on the admission path.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Label on claim Leases.
pub const CLAIM_LABEL: &str = "credgate.run.ai/claim";

/// Annotation on a claim Lease: the namespace of the claimed Secret (the
/// Secret's name is in `run.ai/existing-secret`).
pub const CLAIM_NAMESPACE: &str = "credgate.run.ai/claim-namespace";

/// What is being claimed, and by whom.
#[derive(Clone, Debug)]
pub struct Claim<'a> {
    /// credgate's own namespace, where the claim Leases live.
    pub claims_namespace: &'a str,
    pub namespace: &'a str,
    pub existing_secret: &'a str,
    /// The credential Secret's name.
    pub holder: &'a str,
    pub kind: CredentialType,
    pub scope: &'a Scope,
    pub dry_run: bool,
}

/// The Lease name of a claim on `existing_secret` of `namespace` (namespace
/// names hold no dot, so the first dot separates the two).
pub fn lease_name(namespace: &str, existing_secret: &str) -> String {
    crate::model::copy::derived_name("credgate-claim.", &format!("{namespace}.{existing_secret}"))
}

fn retry(message: impl std::fmt::Display) -> Deny {
    Deny(format!(
        "{message}; this is temporary, retry in a few seconds"
    ))
}

/// One API call on the admission path, bounded by [`CALL_TIMEOUT`]; a failure
/// becomes a retryable denial that says what could not be done.
async fn call<T>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, Deny> {
    call_allowing(what, fut, &[])
        .await?
        .ok_or_else(|| retry(format!("credgate could not {what}")))
}

/// Like [`call`], with API statuses in `expected` answered as `None`.
async fn call_allowing<T>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, kube::Error>>,
    expected: &[u16],
) -> Result<Option<T>, Deny> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(Some(v)),
        Ok(Err(kube::Error::Api(s))) if expected.contains(&s.code) => Ok(None),
        Ok(Err(e)) => Err(retry(format!(
            "credgate could not {what}: {}",
            api_reason(&e)
        ))),
        Err(_) => Err(retry(format!("credgate could not {what} in time"))),
    }
}

fn api_reason(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.reason),
        other => other.to_string(),
    }
}

/// Deletes `lease` only as it was read: not a claim made again meanwhile.
fn only_this(lease: &Lease) -> DeleteParams {
    DeleteParams {
        preconditions: Some(Preconditions {
            uid: lease.uid(),
            resource_version: lease.resource_version(),
        }),
        ..DeleteParams::default()
    }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Checks that the existing Secret may back this credential, then claims it.
pub async fn claim(client: &Client, c: &Claim<'_>) -> Result<(), Deny> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), c.namespace);
    let read = format!("read Secret {:?}", c.existing_secret);
    let Some(existing) = call(&read, secrets.get_opt(c.existing_secret)).await? else {
        return Err(Deny(format!(
            "the existing Secret {:?} does not exist in namespace {:?}; create it first or fix run.ai/existing-secret",
            c.existing_secret, c.namespace
        )));
    };
    eligible(&existing, c)?;
    // The existing Secret's data is read for the shape check only and dropped here.
    drop(existing);

    let leases: Api<Lease> = Api::namespaced(client.clone(), c.claims_namespace);
    let name = lease_name(c.namespace, c.existing_secret);
    for _ in 0..2 {
        if let Some(current) = call("read the claim", leases.get_opt(&name)).await? {
            let holder = current
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref())
                .unwrap_or_default();
            if holder == c.holder {
                return Ok(());
            }
            if holder_still_claims(&secrets, holder, c.existing_secret).await? {
                return Err(Deny(format!(
                    "the existing Secret {:?} already backs credential Secret {holder:?}; an existing Secret can back only one credential",
                    c.existing_secret
                )));
            }
            let age = current.creation_timestamp().map(|t| {
                let now = k8s_openapi::jiff::Timestamp::now();
                now.duration_since(t.0).unsigned_abs()
            });
            if age.is_none_or(|a| a < FRESH_CLAIM) {
                return Err(retry(format!(
                    "another credential ({holder:?}) is being created for the existing Secret {:?} right now",
                    c.existing_secret
                )));
            }
            if c.dry_run {
                return Ok(());
            }
            // Stale: its credential is gone. Take it over, but only this exact claim.
            let dp = only_this(&current);
            // Gone or changed meanwhile (404, 409): look again.
            call_allowing(
                "release a stale claim",
                leases.delete(&name, &dp),
                &[404, 409],
            )
            .await?;
            continue;
        }
        if c.dry_run {
            return Ok(());
        }
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(c.claims_namespace.to_owned()),
                labels: Some([(CLAIM_LABEL.to_owned(), "true".to_owned())].into()),
                annotations: Some(
                    [
                        (
                            annotation::EXISTING_SECRET.to_owned(),
                            c.existing_secret.to_owned(),
                        ),
                        (CLAIM_NAMESPACE.to_owned(), c.namespace.to_owned()),
                    ]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(c.holder.to_owned()),
                ..LeaseSpec::default()
            }),
        };
        let params = PostParams::default();
        let created = leases.create(&params, &lease);
        match call_allowing("record the claim", created, &[409]).await? {
            Some(_) => return Ok(()),
            // Someone else was faster (409): look at their claim.
            None => continue,
        }
    }
    Err(retry(format!(
        "the claim on the existing Secret {:?} is contended",
        c.existing_secret
    )))
}

/// Releases the claims of deleted credentials the watch reports, one at a
/// time, until the channel closes (best effort: a stale claim is also taken
/// over later).
pub async fn release_deleted(
    client: Client,
    claims_namespace: String,
    mut deleted: tokio::sync::mpsc::Receiver<crate::state::watch::ClaimRelease>,
) {
    while let Some(d) = deleted.recv().await {
        let work = release(
            &client,
            &claims_namespace,
            &d.namespace,
            &d.existing_secret,
            &d.holder,
        );
        match tokio::time::timeout(Duration::from_secs(10), work).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, namespace = %d.namespace, holder = %d.holder, "could not release an existing-secret claim")
            }
            Err(_) => {
                tracing::warn!(namespace = %d.namespace, holder = %d.holder, "releasing an existing-secret claim timed out")
            }
        }
    }
}

/// Removes the claim held by `holder` on `existing_secret` of `namespace`
/// (after the credential is gone).
pub async fn release(
    client: &Client,
    claims_namespace: &str,
    namespace: &str,
    existing_secret: &str,
    holder: &str,
) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), claims_namespace);
    let name = lease_name(namespace, existing_secret);
    let Some(current) = leases.get_opt(&name).await? else {
        return Ok(());
    };
    if current
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        != Some(holder)
    {
        return Ok(());
    }
    let dp = only_this(&current);
    match leases.delete(&name, &dp).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn holder_still_claims(
    secrets: &Api<Secret>,
    holder: &str,
    existing_secret: &str,
) -> Result<bool, Deny> {
    if holder.is_empty() {
        return Ok(false);
    }
    let meta = call(
        "read the claiming credential",
        secrets.get_metadata_opt(holder),
    )
    .await?;
    Ok(meta.is_some_and(|m| {
        m.annotations()
            .get(annotation::EXISTING_SECRET)
            .map(String::as_str)
            == Some(existing_secret)
    }))
}

/// The seeds' eligibility rules, shared with `credgate existing-secrets`.
fn eligible(existing: &Secret, c: &Claim<'_>) -> Result<(), Deny> {
    validate::can_back(existing, c.namespace, c.kind, c.scope).map_err(Deny)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_names_are_valid_and_stable() {
        assert_eq!(lease_name("team-a", "pull"), "credgate-claim.team-a.pull");
        assert_ne!(
            lease_name("team-a", "pull"),
            lease_name("team-b", "pull"),
            "one claim per namespace and Secret"
        );
        let long = vec!["a".repeat(63); 4].join(".")[..253]
            .trim_end_matches('.')
            .to_owned();
        assert!(crate::model::credential::is_dns_subdomain(&long));
        let ns = "n".repeat(63);
        let name = lease_name(&ns, &long);
        assert!(
            name.len() <= 253 && crate::model::credential::is_dns_subdomain(&name),
            "{name}"
        );
        assert_eq!(name, lease_name(&ns, &long));
        assert_ne!(
            name,
            lease_name(&ns, &format!("{}b", &long[..long.len() - 1]))
        );
    }
}
