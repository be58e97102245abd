//! The workload handler (`/validate`): the credential references of a pod
//! template, for every kind of the table of workload kinds.

use super::review::Request;
use super::{Admission, change};
use crate::model::workload::WorkloadKind;
use crate::policy::{Verdict, validate};

impl Admission {
    pub(super) fn workload(&self, kind: WorkloadKind, req: &Request<'_>) -> Verdict {
        // The old object too: an UPDATE is checked only for what it changes.
        let (object, old_object) = super::typed::<serde_json::Value>(req)?;
        let change = change(req, object.as_ref(), old_object.as_ref());
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        validate::workload(&self.settings, &index, kind, &change)
    }
}
