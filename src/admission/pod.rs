//! The Pod handler (`/mutate`, CREATE): injection from the snapshot, the
//! copies a pod needs made first, and the record that keeps its credentials
//! from being deleted under it.

use kube::core::admission;
use std::collections::BTreeMap;
use std::time::Instant;

use super::review::Request;
use super::{Admission, Patch, unencodable};
use crate::model::copy::copy_name;
use crate::policy::{Allow, Deny, Verdict, mutate, validate};
use crate::propagation::copies::Source;
use crate::state::recent::PodName;

/// What a pod decision reads of the Pod: the rest (its status, its
/// managedFields) is skipped unread.
#[derive(serde::Deserialize)]
struct Pod<'a> {
    #[serde(default)]
    metadata: PodMeta,
    /// Its strings borrowed from the request.
    #[serde(borrow, default, deserialize_with = "borrowed")]
    spec: Option<crate::model::json::Json<'a>>,
}

/// A tree borrowing from the body: serde_json_borrow's tree reads only from
/// input that lives as long as it (`Deserialize<'de>` for `Value<'de>`), which
/// the derive cannot express with `borrow` alone.
fn borrowed<'de, D: serde::Deserializer<'de>>(
    json: D,
) -> Result<Option<crate::model::json::Json<'de>>, D::Error> {
    serde::Deserialize::deserialize(json)
}

#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    generate_name: Option<String>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

/// The longest a pod waits for the outcome of a DELETE allowed moments ago
/// (its record lasts [`crate::state::recent::GRACE`] after the DELETE's last
/// check); inside the pod webhook's 5 s timeout.
const POD_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

impl Admission {
    /// Reads only what the decision needs of the Pod, and writes the patch
    /// from its spec (see [`crate::policy::patch::SpecAdditions::patch_json`]).
    pub(super) async fn pod(&self, req: &Request<'_>) -> (Verdict, Patch) {
        if req.operation != admission::Operation::Create {
            return (Ok(Allow::default()), Patch::new());
        }
        let object = match req.read::<Pod>(false) {
            Ok(Some(object)) => object,
            Ok(None) => return (Err(Deny("the request carries no Pod".into())), Patch::new()),
            Err(why) => return (Err(Deny(why)), Patch::new()),
        };
        let namespace = req.namespace.as_deref().unwrap_or_default();
        let (annotations, spec) = (object.metadata.annotations.as_ref(), object.spec.as_ref());
        // Parsing and injection read no state: only resolving holds the snapshot's lock.
        let requests = match mutate::pod_requests(annotations, spec) {
            Ok(requests) => requests,
            Err(deny) => return (Err(deny), Patch::new()),
        };
        let plan = {
            let index = self.index.read().unwrap_or_else(|e| e.into_inner());
            validate::synced(&self.settings, &index, namespace)
                .and_then(|()| mutate::pod_plan(&self.settings, &index, namespace, &requests, spec))
        };
        let plan = match plan {
            Ok(plan) => plan,
            Err(deny) => return (Err(deny), Patch::new()),
        };
        // The patch is written before anything is done for the pod: a pod
        // whose patch cannot be written leaves no copy and no record.
        let (patch, warnings) = {
            let injection = mutate::pod_inject(&self.settings.fetchers, spec, &plan);
            match injection.additions.patch_json(spec) {
                Ok(patch) => (patch, injection.warnings),
                Err(error) => return (Err(unencodable(&error)), Patch::new()),
            }
        };
        if !req.dry_run
            && let Err(deny) = self.ensure_copies(namespace, &plan.missing_copies).await
        {
            return (Err(deny), Patch::new());
        }
        let name = PodName::new(
            object.metadata.name.as_deref(),
            object.metadata.generate_name.as_deref(),
        );
        if let Err(deny) = self
            .note_pod(namespace, name, &plan.uses, req.dry_run)
            .await
        {
            return (Err(deny), Patch::new());
        }
        (Ok(Allow { warnings }), patch)
    }

    /// A pod about to be admitted is recorded until the watch shows it (see
    /// [`crate::state::recent`]). While a credential it uses has a DELETE
    /// allowed moments ago, it waits: refused once the watch shows the
    /// credential deleted, recorded once that DELETE's record is dropped or
    /// lapses (the DELETE never happened), and at most [`POD_WAIT`].
    async fn note_pod(
        &self,
        namespace: &str,
        name: PodName,
        uses: &[String],
        dry_run: bool,
    ) -> Result<(), Deny> {
        let deadline = Instant::now() + POD_WAIT;
        loop {
            let noted = {
                let index = self.index.read().unwrap_or_else(|e| e.into_inner());
                let mut recent = index.recent();
                recent.admit_pod(namespace, name.clone(), uses, !dry_run, Instant::now())
            };
            let Err(waiting) = noted else {
                return Ok(());
            };
            let being_deleted = || {
                Deny(format!(
                    "credential {:?} is being deleted, so this pod cannot use it; if the deletion was refused, retry in a few seconds",
                    waiting.credential
                ))
            };
            if Instant::now() >= deadline {
                return Err(being_deleted());
            }
            let (ns, secret) = &waiting.source;
            let deleted = self
                .await_snapshot(waiting.until.min(deadline), |index| {
                    // Gone, another Secret, being deleted, or its existing Secret gone.
                    let shown = index.secret(ns, secret).is_none_or(|s| {
                        s.uid != waiting.uid
                            || s.deleting
                            || s.existing_secret
                                .as_ref()
                                .is_some_and(|e| index.secret(ns, e).is_none())
                    });
                    let dropped = !index.recent().is_deleting(&waiting.uid, Instant::now());
                    (shown || dropped).then_some(shown)
                })
                .await;
            if deleted == Some(true) {
                return Err(being_deleted());
            }
        }
    }

    /// No pod before its copy: creates the missing copies of cluster and
    /// department credentials in the pod's namespace before answering.
    async fn ensure_copies(&self, namespace: &str, sources: &[String]) -> Result<(), Deny> {
        if sources.is_empty() {
            return Ok(());
        }
        let Some(client) = &self.client else {
            return Err(Deny(
                "credgate runs without API access and cannot create credential copies".into(),
            ));
        };
        let retry = |why: String| Deny(format!("{why}; this is temporary, retry in a few seconds"));
        for source in sources {
            let work = async {
                let Some(src) = Source::read(client, &self.settings.credentials_namespace, source)
                    .await
                    .map_err(|e| e.to_string())?
                else {
                    return Err(format!("credential Secret {source:?} is gone"));
                };
                src.create_first(client, namespace)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(src.hash())
            };
            match tokio::time::timeout(std::time::Duration::from_secs(3), work).await {
                Ok(Ok(hash)) => {
                    let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
                    index.set_copy(namespace, &copy_name(source), Some(&hash));
                }
                Ok(Err(why)) => {
                    return Err(retry(format!(
                        "credgate could not copy credential {source:?} into namespace {namespace:?} for this pod: {why}"
                    )));
                }
                Err(_) => {
                    return Err(retry(format!(
                        "credgate could not copy credential {source:?} into namespace {namespace:?} in time"
                    )));
                }
            }
        }
        Ok(())
    }
}
