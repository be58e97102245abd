//! Decisions the watches have not caught up with yet.
//!
//! Between credgate's answer and the watch event of the stored object lie a
//! few milliseconds in which the snapshot does not show the outcome. Two
//! races fall into that gap:
//! - a pod is admitted with credential X, and X's DELETE arrives before the
//!   pod is indexed: the snapshot says "unused";
//! - X's DELETE is allowed, and a pod naming X arrives before the deletion is
//!   indexed: the snapshot says "X exists".
//!
//! Each of the two decisions checks the other's record and adds its own in one
//! step under one lock, so whichever comes second sees the first: a pod and
//! the deletion of a credential it uses are never both allowed by the same
//! credgate process. A pod's record ends when the watch shows the pod, or after a
//! grace period when it was never stored (another webhook refused it). A
//! deletion's record ends after its grace period: the uid it holds is gone for
//! good, so a credential created again under the same name is not held up.

use std::time::{Duration, Instant};

/// How long an admitted pod protects its credentials before the watch shows it.
pub const ADMITTED_GRACE: Duration = Duration::from_secs(30);
/// How long an allowed DELETE keeps pods from naming the credential before the
/// watch shows the deletion.
pub const DELETING_GRACE: Duration = Duration::from_secs(10);

/// The uid of a credential's own Secret (a Secret created again under the
/// same name is another credential).
pub type Key = String;

/// The name of an admitted pod: given, or a `generateName` prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodName {
    Exact(String),
    Generated(String),
}

impl PodName {
    fn matches(&self, name: &str) -> bool {
        match self {
            PodName::Exact(n) => n == name,
            PodName::Generated(prefix) => name.starts_with(prefix.as_str()),
        }
    }

    fn shown(&self) -> String {
        match self {
            PodName::Exact(n) => n.clone(),
            PodName::Generated(prefix) => format!("{prefix}*"),
        }
    }
}

#[derive(Debug)]
struct Admitted {
    namespace: String,
    name: PodName,
    uses: Vec<Key>,
    until: Instant,
}

#[derive(Debug)]
struct Deleting {
    key: Key,
    credential: String,
    until: Instant,
}

/// The records, kept under the index's own mutex (see [`crate::index::Index::recent`]).
#[derive(Debug, Default)]
pub struct Recent {
    admitted: Vec<Admitted>,
    deleting: Vec<Deleting>,
}

/// A credential of a pod's plan that is being deleted.
#[derive(Debug, PartialEq, Eq)]
pub struct BeingDeleted(pub String);

/// Pods admitted moments ago that use a credential about to be deleted: `Pod/ns/name`.
#[derive(Debug, PartialEq, Eq)]
pub struct AdmittedUsers(pub Vec<String>);

impl Recent {
    fn expire(&mut self, now: Instant) {
        self.admitted.retain(|a| a.until > now);
        self.deleting.retain(|d| d.until > now);
    }

    /// A pod using `uses` is about to be admitted: refused when one of them is
    /// being deleted; else recorded (unless `record` is false: dry runs).
    pub fn admit_pod(
        &mut self,
        namespace: &str,
        name: PodName,
        uses: &[Key],
        record: bool,
        now: Instant,
    ) -> Result<(), BeingDeleted> {
        self.expire(now);
        if let Some(d) = self.deleting.iter().find(|d| uses.contains(&d.key)) {
            return Err(BeingDeleted(d.credential.clone()));
        }
        if record && !uses.is_empty() {
            self.admitted.push(Admitted {
                namespace: namespace.to_owned(),
                name,
                uses: uses.to_vec(),
                until: now + ADMITTED_GRACE,
            });
        }
        Ok(())
    }

    /// The credentials `keys` (named `credential`) are about to be deleted:
    /// refused while a pod admitted moments ago uses one; else recorded
    /// (unless `record` is false: dry runs).
    pub fn delete(
        &mut self,
        keys: &[(Key, String)],
        record: bool,
        now: Instant,
    ) -> Result<(), AdmittedUsers> {
        self.expire(now);
        let mut users: Vec<String> = self
            .admitted
            .iter()
            .filter(|a| a.uses.iter().any(|u| keys.iter().any(|(k, _)| k == u)))
            .map(|a| format!("Pod/{}/{}", a.namespace, a.name.shown()))
            .collect();
        if !users.is_empty() {
            users.sort();
            users.dedup();
            return Err(AdmittedUsers(users));
        }
        if record {
            self.deleting
                .extend(keys.iter().map(|(key, credential)| Deleting {
                    key: key.clone(),
                    credential: credential.clone(),
                    until: now + DELETING_GRACE,
                }));
        }
        Ok(())
    }

    /// A recorded DELETE was refused after all (by the live check).
    pub fn forget_delete(&mut self, key: &str) {
        self.deleting.retain(|d| d.key != key);
    }

    /// The watch shows pod `namespace/name`: the index now protects what it uses.
    pub fn pod_stored(&mut self, namespace: &str, name: &str) {
        if self.admitted.is_empty() {
            return;
        }
        if let Some(at) = self
            .admitted
            .iter()
            .position(|a| a.namespace == namespace && a.name.matches(name))
        {
            self.admitted.swap_remove(at);
        }
    }

    /// Records held now (for tests and metrics).
    pub fn len(&self) -> (usize, usize) {
        (self.admitted.len(), self.deleting.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: &str) -> Key {
        format!("uid-{n}")
    }

    #[test]
    fn whichever_comes_second_sees_the_first() {
        let now = Instant::now();
        // Pod first: the delete is refused and names the pod.
        let mut r = Recent::default();
        r.admit_pod(
            "team-a",
            PodName::Exact("p".into()),
            &[key("db")],
            true,
            now,
        )
        .unwrap();
        assert_eq!(
            r.delete(&[(key("db"), "db".into())], true, now),
            Err(AdmittedUsers(vec!["Pod/team-a/p".into()]))
        );
        // Other credentials are not held up.
        r.delete(&[(key("other"), "other".into())], true, now)
            .unwrap();
        // Delete first: the pod is refused and names the credential.
        let mut r = Recent::default();
        r.delete(&[(key("db"), "db".into())], true, now).unwrap();
        assert_eq!(
            r.admit_pod(
                "team-a",
                PodName::Generated("p-".into()),
                &[key("db")],
                true,
                now
            ),
            Err(BeingDeleted("db".into()))
        );
    }

    #[test]
    fn records_end_when_the_watch_shows_the_outcome_or_the_grace_ends() {
        let now = Instant::now();
        let mut r = Recent::default();
        r.admit_pod(
            "team-a",
            PodName::Generated("job-".into()),
            &[key("db")],
            true,
            now,
        )
        .unwrap();
        r.pod_stored("team-b", "job-1");
        assert_eq!(r.len(), (1, 0), "another namespace's pod does not count");
        r.pod_stored("team-a", "job-1");
        assert_eq!(r.len(), (0, 0));
        r.delete(&[(key("db"), "db".into())], true, now).unwrap();
        assert_eq!(r.len(), (0, 1));
        // The same name created again is another uid.
        r.admit_pod(
            "team-a",
            PodName::Exact("p".into()),
            &[key("db-again")],
            true,
            now,
        )
        .unwrap();
        r.pod_stored("team-a", "p");
        // Never stored: the grace period ends the record.
        let mut r = Recent::default();
        r.admit_pod(
            "team-a",
            PodName::Exact("p".into()),
            &[key("db")],
            true,
            now,
        )
        .unwrap();
        r.delete(&[(key("db"), "db".into())], true, now + ADMITTED_GRACE)
            .unwrap();
        assert_eq!(
            r.admit_pod(
                "team-a",
                PodName::Exact("q".into()),
                &[key("db")],
                true,
                now + ADMITTED_GRACE + DELETING_GRACE
            ),
            Ok(())
        );
    }

    #[test]
    fn dry_runs_check_but_leave_no_record() {
        let now = Instant::now();
        let mut r = Recent::default();
        r.admit_pod(
            "team-a",
            PodName::Exact("p".into()),
            &[key("db")],
            false,
            now,
        )
        .unwrap();
        r.delete(&[(key("db"), "db".into())], false, now).unwrap();
        assert_eq!(r.len(), (0, 0));
    }
}
