//! `credgate list --mine`: the credentials the current user may change, from
//! SelfSubjectAccessReviews (the table's per-role view of rights per scope).
//! One review per distinct namespace and scope, not per credential.

use std::collections::HashMap;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use super::inventory::Credential;
use super::{CliError, Connection};
use crate::model::credential::Scope;
use crate::policy::rights;

/// What one review asks: `(group, resource, namespace, name)`, verb `update`.
type Ask = (&'static str, &'static str, String, Option<String>);

/// The reviews a change of `credential` needs: Secret `update` in its
/// namespace and, for a cluster or department credential, `update` on its scope.
fn asks(credential: &Credential) -> Option<Vec<Ask>> {
    let namespace = credential.namespace.clone();
    let secrets: Ask = ("", "secrets", namespace.clone(), None);
    let scope = match credential.scope_value()? {
        Scope::Project => return Some(vec![secrets]),
        Scope::Cluster => (rights::GROUP, rights::CLUSTER, namespace, None),
        Scope::Department(d) => (
            rights::GROUP,
            rights::DEPARTMENT,
            namespace,
            Some(d.clone()),
        ),
    };
    Some(vec![secrets, scope])
}

/// Keeps the credentials the current user may change.
pub async fn filter(
    conn: &Connection,
    credentials: Vec<Credential>,
) -> Result<Vec<Credential>, CliError> {
    let api: Api<SelfSubjectAccessReview> = Api::all(conn.client.clone());
    let mut answers: HashMap<Ask, bool> = HashMap::new();
    let mut mine = Vec::new();
    for credential in credentials {
        let Some(asks) = asks(&credential) else {
            continue;
        };
        let mut allowed = true;
        for ask in asks {
            if !allowed {
                break;
            }
            if let Some(answer) = answers.get(&ask) {
                allowed = *answer;
                continue;
            }
            let (group, resource, namespace, name) = ask.clone();
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        group: Some(group.to_owned()),
                        resource: Some(resource.to_owned()),
                        verb: Some("update".to_owned()),
                        namespace: Some(namespace),
                        name,
                        ..ResourceAttributes::default()
                    }),
                    ..SelfSubjectAccessReviewSpec::default()
                },
                ..SelfSubjectAccessReview::default()
            };
            let answer = api
                .create(&PostParams::default(), &review)
                .await
                .map_err(|e| conn.error("ask the API server what you may change", e))?;
            allowed = answer.status.is_some_and(|s| s.allowed);
            answers.insert(ask, allowed);
        }
        if allowed {
            mine.push(credential);
        }
    }
    Ok(mine)
}
