//! Rights per scope, asked of the API server: a SubjectAccessReview for the
//! requester of a cluster or department credential write (see
//! [`crate::policy::rights`] for which rights). One API call per right, on the
//! credential write path only (never on the pod path); positive answers are
//! cached for [`ALLOWED_FOR`] per user, groups and right.

use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::policy::Deny;
use crate::policy::rights::{GROUP, Right};

/// How long a positive answer is reused: a revoked right takes effect after
/// at most this long.
pub const ALLOWED_FOR: Duration = Duration::from_secs(5);
/// At most this many answers are cached; past it the cache starts again.
const MAX_CACHED: usize = 10_000;
/// Longest wait for one SubjectAccessReview.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Who asks, as the cache keys it: user name, uid, groups and `extra` (a
/// token's scopes can narrow what the same user may do).
type Requester = (String, String, Vec<String>, String);

/// Positive answers, by requester and right.
#[derive(Debug, Default)]
pub struct Rights {
    allowed: Mutex<HashMap<(Requester, Right), Instant>>,
}

impl Rights {
    fn cached(&self, key: &(Requester, Right), now: Instant) -> bool {
        let allowed = self.allowed.lock().unwrap_or_else(|e| e.into_inner());
        allowed.get(key).is_some_and(|until| *until > now)
    }

    fn remember(&self, key: (Requester, Right), now: Instant) {
        let mut allowed = self.allowed.lock().unwrap_or_else(|e| e.into_inner());
        if allowed.len() >= MAX_CACHED {
            allowed.retain(|_, until| *until > now);
            if allowed.len() >= MAX_CACHED {
                allowed.clear();
            }
        }
        allowed.insert(key, now + ALLOWED_FOR);
    }

    /// Refuses unless the API server allows `user` every one of `rights`.
    pub async fn check(
        &self,
        client: &Client,
        user: &UserInfo,
        rights: &[Right],
    ) -> Result<(), Deny> {
        let name = user.username.clone().unwrap_or_default();
        let requester: Requester = (
            name.clone(),
            user.uid.clone().unwrap_or_default(),
            user.groups.clone().unwrap_or_default(),
            format!("{:?}", user.extra),
        );
        for right in rights {
            let key = (requester.clone(), right.clone());
            if self.cached(&key, Instant::now()) {
                continue;
            }
            let review = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: user.username.clone(),
                    uid: user.uid.clone(),
                    groups: user.groups.clone(),
                    extra: user.extra.clone(),
                    resource_attributes: Some(ResourceAttributes {
                        group: Some(GROUP.to_owned()),
                        resource: Some(right.resource.to_owned()),
                        verb: Some(right.verb.to_owned()),
                        name: right.name.clone(),
                        namespace: Some(right.namespace.clone()),
                        ..ResourceAttributes::default()
                    }),
                    ..SubjectAccessReviewSpec::default()
                },
                ..SubjectAccessReview::default()
            };
            let api: Api<SubjectAccessReview> = Api::all(client.clone());
            let asked =
                tokio::time::timeout(CALL_TIMEOUT, api.create(&PostParams::default(), &review))
                    .await;
            let answer = match asked {
                Ok(Ok(answer)) => answer,
                Ok(Err(error)) => {
                    return Err(Deny(format!(
                        "credgate could not ask the API server whether {name:?} may {} {}: {error}; this is temporary, retry in a few seconds",
                        right.verb,
                        right.scope()
                    )));
                }
                Err(_) => {
                    return Err(Deny(format!(
                        "credgate could not ask the API server in time whether {name:?} may {} {}; this is temporary, retry in a few seconds",
                        right.verb,
                        right.scope()
                    )));
                }
            };
            if !answer.status.is_some_and(|s| s.allowed) {
                return Err(Deny(format!(
                    "{name:?} may not {} {}: that needs the RBAC permission {}. An admin can grant it: {}",
                    right.verb,
                    right.scope(),
                    right.rbac(),
                    right.how_to_grant(&name)
                )));
            }
            self.remember(key, Instant::now());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positive_answers_last_a_few_seconds_and_stay_bounded() {
        let rights = Rights::default();
        let now = Instant::now();
        let right = Right {
            verb: "create",
            resource: crate::policy::rights::CLUSTER,
            name: None,
            namespace: "runai".into(),
        };
        let key = |user: &str| {
            (
                (user.to_owned(), String::new(), Vec::new(), String::new()),
                right.clone(),
            )
        };
        rights.remember(key("bob"), now);
        assert!(rights.cached(&key("bob"), now));
        assert!(!rights.cached(&key("eve"), now), "per user");
        assert!(!rights.cached(&key("bob"), now + ALLOWED_FOR));
        for i in 0..MAX_CACHED + 5 {
            rights.remember(key(&format!("u{i}")), now);
        }
        assert!(rights.allowed.lock().unwrap().len() <= MAX_CACHED);
    }
}
