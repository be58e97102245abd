//! AdmissionReview in, AdmissionReview out.
//!
//! Decodes the body, reduces the request to a [`Change`] for the policy
//! functions and encodes their answer. Bad input never panics: a request
//! whose uid can be read gets a well-formed denial, any other gets HTTP 400.
//! Messages about undecodable input name a position, never a value, so
//! secret data cannot reach a log line or a response.

use json_patch::PatchOperation;
use kube::core::GroupVersionKind;
use kube::core::admission;
use serde::de::DeserializeOwned;
use tracing::{debug, info};

use crate::model::workload::WorkloadKind;
use crate::policy::{Allow, Change, Deny, Operation, Settings, Verdict};
use crate::state::SharedIndex;
use crate::state::index::Index;

pub mod claims;
mod pod;
pub mod review;
pub mod rights;
mod secret;
mod workload;

pub use review::describe_json_error;
use review::{Answer, Request, Undecodable, decode, encode};

/// How long a decision waits for the Secret watch of a namespace that just
/// became a project (see [`Admission::await_secrets`]); with the pod wait,
/// inside the webhooks' 5 s timeout.
const SECRETS_WAIT: std::time::Duration = std::time::Duration::from_millis(1500);

/// The webhook endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Validate,
    Mutate,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Validate => "validate",
            Endpoint::Mutate => "mutate",
        }
    }
}

/// How a request ended, for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    Allowed,
    Patched,
    Denied,
    /// No uid could be read: answered with HTTP 400.
    BadRequest,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Patched => "patched",
            Decision::Denied => "denied",
            Decision::BadRequest => "bad_request",
        }
    }
}

/// The answer to one HTTP request body.
#[derive(Debug)]
pub struct Outcome {
    pub decision: Decision,
    /// `Secret`, `Pod`, …; `unknown` when it could not be read.
    pub kind: String,
    /// JSON AdmissionReview (or, for [`Decision::BadRequest`], the reason as text).
    pub body: Vec<u8>,
}

/// Decodes, decides and encodes admission requests.
#[derive(Clone)]
pub struct Admission {
    settings: Settings,
    index: SharedIndex,
    /// For the rules that must ask the API server (existing-secret claims,
    /// rights per scope).
    client: Option<kube::Client>,
    /// The API server's recent positive answers on rights per scope.
    rights: std::sync::Arc<rights::Rights>,
}

impl Admission {
    pub fn new(settings: Settings, index: SharedIndex, client: Option<kube::Client>) -> Self {
        Admission {
            settings,
            index,
            client,
            rights: std::sync::Arc::default(),
        }
    }

    /// With a fixed snapshot and no API access (tests, benchmarks).
    pub fn with_index(settings: Settings, index: Index) -> Self {
        Admission::new(
            settings,
            std::sync::Arc::new(std::sync::RwLock::new(index)),
            None,
        )
    }

    /// Reads the snapshot with `outcome` now and after each change the
    /// watches make, until it returns something, or until `until` (`None`).
    /// How a decision waits for the watch to show another decision's outcome
    /// (see [`crate::state::recent`]).
    async fn await_snapshot<T>(
        &self,
        until: std::time::Instant,
        mut outcome: impl FnMut(&Index) -> Option<T>,
    ) -> Option<T> {
        loop {
            let mut changes = {
                let index = self.index.read().unwrap_or_else(|e| e.into_inner());
                // Subscribed before the check: a ring after it wakes the wait.
                let changes = index.subscribe();
                if let Some(found) = outcome(&index) {
                    return Some(found);
                }
                changes
            };
            let until = tokio::time::Instant::from_std(until);
            match tokio::time::timeout_at(until, changes.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => return None,
            }
        }
    }

    /// A namespace that just became a project has its Secret watch started
    /// moments later: a decision about it waits for that watch to list (at
    /// most [`SECRETS_WAIT`]) rather than deny. At once when it has.
    async fn await_secrets(&self, namespace: &str) {
        let until = std::time::Instant::now() + SECRETS_WAIT;
        let ready = |index: &Index| {
            crate::policy::validate::secrets_not_synced(&self.settings, index, namespace)
                .is_none()
                .then_some(())
        };
        let _ = self.await_snapshot(until, ready).await;
    }

    /// Answers one AdmissionReview body.
    pub async fn review(&self, endpoint: Endpoint, body: &[u8]) -> Outcome {
        let req = match decode(body) {
            Ok(req) => req,
            Err(Undecodable::NoUid(reason)) => {
                info!(endpoint = endpoint.as_str(), %reason, "bad request");
                return Outcome {
                    decision: Decision::BadRequest,
                    kind: "unknown".into(),
                    body: reason.into_bytes(),
                };
            }
            Err(Undecodable::WithUid { uid, reason }) => {
                info!(endpoint = endpoint.as_str(), %uid, %reason, "denied");
                return Outcome {
                    decision: Decision::Denied,
                    kind: "unknown".into(),
                    body: encode(&Answer::invalid(uid, reason)),
                };
            }
        };
        let (verdict, patch) = self.decide(endpoint, &req).await;
        let mut answer = Answer::allow(req.uid.clone());
        let decision = match verdict {
            Err(Deny(message)) => {
                answer = answer.deny(message);
                Decision::Denied
            }
            Ok(Allow { warnings }) => {
                answer.warnings = warnings;
                if patch.is_empty() {
                    Decision::Allowed
                } else {
                    answer.set_patch(patch);
                    Decision::Patched
                }
            }
        };
        // Denials are for people to read (info); the many allowed answers are debug.
        macro_rules! decided {
            ($level:ident) => {
                $level!(
                    endpoint = endpoint.as_str(),
                    uid = %req.uid,
                    kind = %req.kind.kind,
                    namespace = req.namespace.as_deref().unwrap_or(""),
                    name = %req.name,
                    operation = ?req.operation,
                    decision = decision.as_str(),
                    message = %answer.status.message,
                )
            };
        }
        if decision == Decision::Denied {
            decided!(info);
        } else {
            decided!(debug);
        }
        Outcome {
            decision,
            kind: req.kind.kind.clone(),
            body: encode(&answer),
        }
    }

    async fn decide(&self, endpoint: Endpoint, req: &Request<'_>) -> (Verdict, Patch) {
        let route = Route::of(req);
        if route.is_some() {
            self.await_secrets(req.namespace.as_deref().unwrap_or_default())
                .await;
        }
        match (endpoint, route) {
            (_, Some(Route::Secret)) => self.secret(endpoint, req).await,
            (Endpoint::Mutate, Some(Route::Pod)) => self.pod(req).await,
            (Endpoint::Validate, Some(Route::Workload(kind))) => {
                (self.workload(kind, req), Patch::new())
            }
            _ => (
                Err(Deny(format!(
                    "credgate does not handle {}{} on /{}; check the webhook configuration's rules",
                    kind_name(&req.kind),
                    req.sub_resource
                        .as_deref()
                        .map(|s| format!(" (subresource {s})"))
                        .unwrap_or_default(),
                    endpoint.as_str()
                ))),
                Patch::new(),
            ),
        }
    }
}

/// A patch as the answer carries it: RFC 6902 JSON, empty for none.
type Patch = Vec<u8>;

/// The JSON of `ops`; empty when there are none.
fn patch_json(ops: &[PatchOperation]) -> Result<Patch, Deny> {
    if ops.is_empty() {
        return Ok(Patch::new());
    }
    serde_json::to_vec(ops).map_err(|error| unencodable(&error))
}

/// The denial when credgate cannot write its patch (the types it writes
/// always encode; this keeps a pod from going in without its injection).
fn unencodable(error: &serde_json::Error) -> Deny {
    Deny(format!(
        "credgate could not encode its patch ({error}); this is a credgate bug, report it"
    ))
}

/// Which handler a request goes to: one per kind of object.
enum Route {
    /// A Secret: credential validation and stamping ([`secret`]).
    Secret,
    /// A Pod CREATE: injection ([`pod`]).
    Pod,
    /// A workload with a pod template: its references are checked ([`workload`]).
    Workload(WorkloadKind),
}

impl Route {
    fn of(req: &Request<'_>) -> Option<Route> {
        if req.sub_resource.is_some() || req.kind.version != "v1" {
            return None;
        }
        match (req.kind.group.as_str(), req.kind.kind.as_str()) {
            ("", "Secret") => Some(Route::Secret),
            ("", "Pod") => Some(Route::Pod),
            (group, kind) => WorkloadKind::from_group_kind(group, kind).map(Route::Workload),
        }
    }
}
fn kind_name(gvk: &GroupVersionKind) -> String {
    if gvk.group.is_empty() {
        format!("{}/{}", gvk.version, gvk.kind)
    } else {
        format!("{}/{}/{}", gvk.group, gvk.version, gvk.kind)
    }
}

fn change<'a, K>(
    req: &'a Request<'_>,
    object: Option<&'a K>,
    old_object: Option<&'a K>,
) -> Change<'a, K> {
    Change {
        operation: match req.operation {
            admission::Operation::Create => Operation::Create,
            admission::Operation::Update => Operation::Update,
            admission::Operation::Delete => Operation::Delete,
            admission::Operation::Connect => Operation::Connect,
        },
        user: req.user_info.username.as_deref().unwrap_or(""),
        namespace: req.namespace.as_deref().unwrap_or(""),
        object,
        old_object,
    }
}

/// The request's object and old object as `K`.
fn typed<K: DeserializeOwned>(req: &Request<'_>) -> Result<(Option<K>, Option<K>), Deny> {
    Ok((
        req.read(false).map_err(Deny)?,
        req.read(true).map_err(Deny)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn review(request: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}))
            .unwrap()
    }

    fn secret_request(op: &str, object: Value) -> Value {
        json!({
            "uid": "u-1",
            "kind": {"group": "", "version": "v1", "kind": "Secret"},
            "resource": {"group": "", "version": "v1", "resource": "secrets"},
            "name": "reg", "namespace": "team-a", "operation": op,
            "userInfo": {"username": "alice"},
            "object": object, "oldObject": null, "dryRun": false,
        })
    }

    /// `user`'s DELETE of credential `db` (Secret `team-a/db-secret`, uid `u`).
    fn delete_db(user: &str) -> Vec<u8> {
        review(json!({
            "uid": "u-del",
            "kind": {"group": "", "version": "v1", "kind": "Secret"},
            "resource": {"group": "", "version": "v1", "resource": "secrets"},
            "name": "db-secret", "namespace": "team-a", "operation": "DELETE",
            "userInfo": {"username": user},
            "object": null, "dryRun": false,
            "oldObject": {"apiVersion": "v1", "kind": "Secret", "metadata": {
                "name": "db-secret", "namespace": "team-a", "uid": "u",
                "labels": {"run.ai/resource": "generic"}, "annotations": {"run.ai/name": "db"}}},
        }))
    }

    /// A pod `name` in team-a that names credential `db`.
    fn pod_naming_db(name: &str) -> Vec<u8> {
        review(json!({
            "uid": "u-pod",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": name, "namespace": "team-a", "operation": "CREATE",
            "userInfo": {"username": "alice"}, "oldObject": null, "dryRun": false,
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {
                "name": name, "namespace": "team-a",
                "annotations": {"run.ai/credentials-env": "T=db:token"}},
                "spec": {"containers": [{"name": "main", "image": "busybox"}]}},
        }))
    }

    /// Reviews `first`, which must be allowed, then starts `then` on its own
    /// task: the index, when `first` started, and `then`'s answer to come.
    async fn allowed_then(
        (index, admission): (SharedIndex, std::sync::Arc<Admission>),
        first: (Endpoint, Vec<u8>),
        then: (Endpoint, Vec<u8>),
    ) -> (
        SharedIndex,
        std::time::Instant,
        tokio::task::JoinHandle<Outcome>,
    ) {
        let started = std::time::Instant::now();
        let answer = response(&admission.review(first.0, &first.1).await);
        assert_eq!(answer["allowed"], true, "{answer}");
        let waiting = tokio::spawn(async move { admission.review(then.0, &then.1).await });
        (index, started, waiting)
    }

    /// Rings the index (the watch applied a change): the waiting decision is
    /// refused with a message that contains `needle`, before its record lapses.
    async fn refused_once_rung(
        index: &SharedIndex,
        started: std::time::Instant,
        waiting: tokio::task::JoinHandle<Outcome>,
        needle: &str,
    ) {
        index.read().unwrap().ring();
        let answer = response(&waiting.await.unwrap());
        assert_eq!(answer["allowed"], false, "{answer}");
        let message = answer["status"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{answer}");
        let took = started.elapsed();
        assert!(took < crate::state::recent::GRACE, "{took:?}");
    }

    /// Issue 16: a credential being deleted may lose its finalizers whatever
    /// the rules say now (here its scope changes, which is otherwise refused),
    /// so a controller's finalizer removal is never blocked; the control is the
    /// same UPDATE before the deletion.
    #[tokio::test]
    async fn an_update_of_a_credential_being_deleted_is_never_blocked() {
        let admission =
            Admission::with_index(Settings::default(), crate::policy::resolve::tests::index());
        let old = |deleting: bool| {
            let mut old = json!({"metadata": {"name": "reg", "namespace": "team-a",
                "labels": {"run.ai/resource": "generic"}, "finalizers": ["credgate.run.ai/in-use"]},
                "stringData": {"token": "t"}});
            if deleting {
                old["metadata"]["deletionTimestamp"] = json!("2026-12-01T00:00:00Z");
            }
            old
        };
        let moved = json!({"metadata": {"name": "reg", "namespace": "team-a",
            "labels": {"run.ai/resource": "generic", "run.ai/department": "d1"}},
            "stringData": {"token": "t"}});
        for (deleting, allowed) in [(true, true), (false, false)] {
            let mut request = secret_request("UPDATE", moved.clone());
            request["oldObject"] = old(deleting);
            let answer = response(&admission.review(Endpoint::Validate, &review(request)).await);
            assert_eq!(answer["allowed"], allowed, "deleting {deleting}: {answer}");
        }
    }

    /// Issue 21: a department credential needs the requester's right on its
    /// scope; when the API server cannot answer, the write is refused with a
    /// message to retry (fail closed), and a project credential is not asked.
    #[tokio::test]
    async fn rights_per_scope_fail_closed() {
        let admission = Admission::new(
            Settings::default(),
            std::sync::Arc::new(std::sync::RwLock::new(
                crate::policy::resolve::tests::index(),
            )),
            Some(fake_api(None)),
        );
        let mut request = secret_request(
            "CREATE",
            json!({"metadata": {"name": "d1-token", "namespace": "runai",
                "labels": {"run.ai/resource": "generic", "run.ai/department": "d1"}},
                "stringData": {"token": "t"}}),
        );
        request["namespace"] = json!("runai");
        request["name"] = json!("d1-token");
        let answer = response(&admission.review(Endpoint::Validate, &review(request)).await);
        assert_eq!(answer["allowed"], false, "{answer}");
        let message = answer["status"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("could not ask the API server whether \"alice\" may create credentials of department \"d1\"")
                && message.contains("retry"),
            "{message}"
        );
        let project = secret_request(
            "CREATE",
            json!({"metadata": {"name": "reg", "namespace": "team-a",
                "labels": {"run.ai/resource": "generic"}}, "stringData": {"token": "t"}}),
        );
        let answer = response(&admission.review(Endpoint::Validate, &review(project)).await);
        assert_eq!(
            answer["allowed"], true,
            "no API call for a project credential: {answer}"
        );
    }

    /// Issue 15: a record makes the other decision wait for the watch; only
    /// what the watch shows refuses. A pod recorded moments ago: the DELETE
    /// is refused once the watch shows the pod, and allowed once the record
    /// lapses without it (a phantom, or a forged review). A DELETE recorded
    /// moments ago: a pod is refused once the watch shows the deletion.
    #[tokio::test]
    async fn records_wait_for_the_watch() {
        use crate::model::workload::{Reference, Usage};
        use crate::state::recent::GRACE;
        let setup = || {
            let index = std::sync::Arc::new(std::sync::RwLock::new(
                crate::policy::resolve::tests::index(),
            ));
            let admission =
                std::sync::Arc::new(Admission::new(Settings::default(), index.clone(), None));
            (index, admission)
        };
        let allowed = |o: &Outcome| response(o)["allowed"] == true;

        // The pod is stored while the DELETE waits: refused, naming it.
        let (index, started, waiting) = allowed_then(
            setup(),
            (Endpoint::Mutate, pod_naming_db("p")),
            (Endpoint::Validate, delete_db("alice")),
        )
        .await;
        // The watch delivers the pod once the DELETE is waiting on its record.
        while index.read().unwrap().recent().len().1 == 0 {
            tokio::task::yield_now().await;
        }
        index.write().unwrap().set_workload(
            WorkloadKind::Pod,
            "team-a",
            "p",
            [Reference::Credential("db".into(), Usage::Environment)],
        );
        refused_once_rung(&index, started, waiting, "Pod/team-a/p").await;
        assert_eq!(
            index.read().unwrap().recent().len(),
            (0, 0),
            "the refused DELETE's record is dropped"
        );

        // The pod is never stored: the DELETE is allowed once its record lapses.
        let (_, admission) = setup();
        assert!(allowed(
            &admission
                .review(Endpoint::Mutate, &pod_naming_db("ghost"))
                .await
        ));
        let started = std::time::Instant::now();
        assert!(allowed(
            &admission
                .review(Endpoint::Validate, &delete_db("alice"))
                .await
        ));
        let waited = started.elapsed();
        assert!(
            waited < GRACE + std::time::Duration::from_millis(500),
            "{waited:?}"
        );

        // The DELETE first: the pod waits until the watch shows the deletion.
        let (index, started, waiting) = allowed_then(
            setup(),
            (Endpoint::Validate, delete_db("alice")),
            (Endpoint::Mutate, pod_naming_db("late")),
        )
        .await;
        tokio::task::yield_now().await;
        index.write().unwrap().remove_secret("team-a", "db-secret");
        refused_once_rung(&index, started, waiting, "is being deleted").await;
    }

    fn response(outcome: &Outcome) -> Value {
        serde_json::from_slice::<Value>(&outcome.body).unwrap()["response"].clone()
    }

    /// A fake API server for the live check: the pod lists answer `pods`
    /// (`None`: every list fails), every other list is empty.
    fn fake_api(pods: Option<Vec<Value>>) -> kube::Client {
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let pods = pods.clone();
            async move {
                let is_pods = req.uri().path().ends_with("/pods");
                let (status, body) = match pods {
                    None => (
                        500,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "etcd is down", "code": 500}),
                    ),
                    Some(items) if is_pods => (
                        200,
                        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}),
                    ),
                    Some(_) => (
                        200,
                        json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": []}),
                    ),
                };
                let body = http_body_util::Full::new(hyper::body::Bytes::from(body.to_string()));
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder().status(status).body(body).unwrap(),
                )
            }
        });
        kube::Client::new(service, "default")
    }

    /// A DELETE the snapshot allows is decided again on what the API server
    /// holds: a pod the watch has not delivered yet keeps the credential.
    /// Issue 16: in a namespace being deleted, a credential DELETE is allowed
    /// at once, although a workload still names it, with no API call (the
    /// failing fake API would add a warning) and no record.
    #[tokio::test]
    async fn a_delete_in_a_namespace_being_deleted_is_allowed_at_once() {
        use crate::model::workload::{Reference, Usage};
        let delete = delete_db("system:serviceaccount:kube-system:namespace-controller");
        let decide = |terminating: bool| {
            let mut index = crate::policy::resolve::tests::index();
            let mut info = index.namespace("team-a").cloned().unwrap();
            info.terminating = terminating;
            index.set_namespace("team-a", info);
            index.set_workload(
                WorkloadKind::Pod,
                "team-a",
                "user",
                [Reference::Credential("db".into(), Usage::Environment)],
            );
            let index = std::sync::Arc::new(std::sync::RwLock::new(index));
            let admission =
                Admission::new(Settings::default(), index.clone(), Some(fake_api(None)));
            let delete = delete.clone();
            async move {
                let answer = response(&admission.review(Endpoint::Validate, &delete).await);
                let records = index.read().unwrap().recent().len();
                (answer, records)
            }
        };
        let (answer, records) = decide(true).await;
        assert_eq!(answer["allowed"], true, "{answer}");
        assert!(answer.get("warnings").is_none(), "no API call: {answer}");
        assert_eq!(records, (0, 0));
        let (answer, _) = decide(false).await;
        assert_eq!(
            answer["allowed"], false,
            "the control: in use elsewhere: {answer}"
        );
    }

    #[tokio::test]
    async fn live_check_of_an_allowed_delete() {
        let delete = delete_db("alice");
        let fresh = json!({"metadata": {"name": "fresh", "namespace": "team-a",
            "annotations": {"run.ai/credentials-env": "T=db:token"}},
            "spec": {"containers": [{"name": "main", "image": "busybox"}]}});
        let other = json!({"metadata": {"name": "other", "namespace": "team-a"},
            "spec": {"containers": [{"name": "main", "image": "busybox"}]}});
        // The answer, and the DELETE records left: (pods, deletions).
        let decide_on = |delete: Vec<u8>, pods: Option<Vec<Value>>| {
            let index = std::sync::Arc::new(std::sync::RwLock::new(
                crate::policy::resolve::tests::index(),
            ));
            let admission =
                Admission::new(Settings::default(), index.clone(), Some(fake_api(pods)));
            async move {
                let answer = response(&admission.review(Endpoint::Validate, &delete).await);
                let records = index.read().unwrap().recent().len();
                (answer, records)
            }
        };
        let decide = |pods| decide_on(delete.clone(), pods);
        let (used, records) = decide(Some(vec![fresh, other.clone()])).await;
        assert_eq!(used["allowed"], false, "{used}");
        assert_eq!(
            used["status"]["message"],
            "credential \"db\" is in use by 1 workload: Pod/team-a/fresh; remove these references (or delete the workloads) first"
        );
        assert_eq!(records, (0, 0), "a refused DELETE holds up no pod");
        let (unused, records) = decide(Some(vec![other.clone()])).await;
        assert_eq!(unused["allowed"], true, "{unused}");
        assert!(unused.get("warnings").is_none(), "{unused}");
        assert_eq!(records, (0, 1), "an allowed DELETE is remembered");
        // A uid the snapshot does not hold under that name (a forged review):
        // answered, but nothing is remembered that could refuse other pods.
        let forged = String::from_utf8(delete.clone())
            .unwrap()
            .replace(r#""uid":"u""#, r#""uid":"another-credentials-uid""#);
        assert_ne!(forged.as_bytes(), &delete[..]);
        let (answer, records) = decide_on(forged.into_bytes(), Some(vec![other.clone()])).await;
        assert_eq!(answer["allowed"], true, "{answer}");
        assert_eq!(
            records,
            (0, 0),
            "no record for a uid the snapshot does not hold"
        );
        // The API server failing: the cached view decides, and says so.
        let (failing, _) = decide(None).await;
        assert_eq!(failing["allowed"], true, "{failing}");
        assert!(
            failing["warnings"][0]
                .as_str()
                .unwrap()
                .contains("could not confirm with the API server"),
            "{failing}"
        );
    }

    #[tokio::test]
    async fn bad_input_classes() {
        let admission = Admission::with_index(Settings::default(), Index::default());
        let no_uid: Vec<(&str, Vec<u8>)> = vec![
            ("malformed", b"{not json".to_vec()),
            (
                "truncated",
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"Admis"#.to_vec(),
            ),
            ("empty", Vec::new()),
            (
                "no request",
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
            ),
            (
                "no uid",
                review(json!({"kind": {"group": "", "version": "v1", "kind": "Secret"}})),
            ),
            ("array", b"[1,2,3]".to_vec()),
            ("deep nesting", "[".repeat(100_000).into_bytes()),
        ];
        for (name, body) in no_uid {
            let outcome = admission.review(Endpoint::Validate, &body).await;
            assert_eq!(outcome.decision, Decision::BadRequest, "{name}");
        }

        let mut wrong_version =
            serde_json::from_slice::<Value>(&review(secret_request("CREATE", json!({})))).unwrap();
        wrong_version["apiVersion"] = json!("admission.k8s.io/v1beta1");
        let mut bad_field = secret_request("CREATE", json!({}));
        bad_field["operation"] = json!(42);
        let mut bad_data = secret_request(
            "CREATE",
            json!({"metadata": {"name": "x"}, "data": {"k": "not base64!!"}}),
        );
        bad_data["uid"] = json!("u-1");
        let pod = {
            let mut r = secret_request("CREATE", json!({"metadata": {"name": "p"}}));
            r["kind"] = json!({"group": "", "version": "v1", "kind": "Pod"});
            r
        };
        let subresource = {
            let mut r = secret_request("UPDATE", json!({"metadata": {"name": "p"}}));
            r["subResource"] = json!("status");
            r
        };
        // serde's derived structs would take an array for an object.
        let not_an_object = {
            let mut r = secret_request("CREATE", json!(["x"]));
            r["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
            r
        };
        let with_uid: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "object not a JSON object",
                review(not_an_object),
                "could not be read as Deployment: it is not a JSON object",
            ),
            (
                "wrong apiVersion",
                serde_json::to_vec(&wrong_version).unwrap(),
                "admission.k8s.io/v1 AdmissionReview only",
            ),
            (
                "field of wrong type",
                review(bad_field),
                "could not be decoded: a field is missing or has the wrong type",
            ),
            (
                "secret data not base64",
                review(bad_data),
                "could not be read as Secret",
            ),
            (
                "unknown kind",
                review(pod),
                "does not handle v1/Pod on /validate",
            ),
            ("subresource", review(subresource), "(subresource status)"),
        ];
        for (name, body, fragment) in with_uid {
            let outcome = admission.review(Endpoint::Validate, &body).await;
            assert_eq!(outcome.decision, Decision::Denied, "{name}");
            let r = response(&outcome);
            assert_eq!(r["uid"], "u-1", "{name}");
            assert_eq!(r["allowed"], false, "{name}");
            let message = r["status"]["message"].as_str().unwrap();
            assert!(
                message.contains(fragment),
                "{name}: {message:?} lacks {fragment:?}"
            );
            assert!(!message.contains("not base64!!"), "{name}: value quoted");
        }
    }

    #[tokio::test]
    async fn mutate_answers_with_a_json_patch() {
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "g", "namespace": "team-a", "labels": {"run.ai/resource": "generic"}},
            "type": "Opaque", "data": {"k": "dg=="},
        });
        let admission = Admission::with_index(Settings::default(), Index::default());
        let outcome = admission
            .review(Endpoint::Mutate, &review(secret_request("CREATE", secret)))
            .await;
        assert_eq!(outcome.decision, Decision::Patched);
        let r = response(&outcome);
        assert_eq!(r["allowed"], true);
        assert_eq!(r["patchType"], "JSONPatch");
        // base64, as the API defines []byte.
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(r["patch"].as_str().unwrap())
            .unwrap();
        let patch: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            patch,
            json!([{"op": "add", "path": "/metadata/annotations", "value": {"run.ai/created-by": "alice", "run.ai/keys": "k", "run.ai/status": "No issues found"}}])
        );
    }
}
