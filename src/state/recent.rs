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

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How long an admitted pod protects its credentials before the watch shows it:
/// the webhook timeout (5 s in the manifests) and a margin for the rest of
/// admission and the write. A pod the API server refuses after credgate
/// admitted it (a phantom) holds its credentials no longer than this, so a
/// loop of phantoms delays a DELETE by this much after the loop stops.
pub const ADMITTED_GRACE: Duration = Duration::from_secs(10);
/// How long an allowed DELETE keeps pods from naming the credential's uid
/// (the watch normally shows the deletion within milliseconds; a DELETE that
/// another webhook refuses holds pods up this long at most).
pub const DELETING_GRACE: Duration = Duration::from_secs(10);

/// The uid of a credential's own Secret (a Secret created again under the
/// same name is another credential).
pub type Key = String;

/// At most this many pods are remembered at once; past it the oldest record
/// goes first (pods are normally shown by the watch within milliseconds).
pub const MAX_ADMITTED: usize = 100_000;

/// How Kubernetes makes a name from `generateName`: the prefix, cut to this
/// length, and this many random characters.
const GENERATED_PREFIX_MAX: usize = 58;
const GENERATED_SUFFIX: usize = 5;

/// The name of an admitted pod: given, or a `generateName` prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PodName {
    Exact(String),
    Generated(String),
}

impl PodName {
    /// The name, or the prefix as Kubernetes will use it.
    pub fn new(name: Option<&str>, generate_name: Option<&str>) -> Self {
        match name.filter(|n| !n.is_empty()) {
            Some(name) => PodName::Exact(name.to_owned()),
            None => {
                let prefix = generate_name.unwrap_or_default();
                let cut = (0..=prefix.len().min(GENERATED_PREFIX_MAX))
                    .rev()
                    .find(|&i| prefix.is_char_boundary(i))
                    .unwrap_or(0);
                PodName::Generated(prefix[..cut].to_owned())
            }
        }
    }

    fn shown(&self) -> String {
        match self {
            PodName::Exact(n) => n.clone(),
            PodName::Generated(prefix) => format!("{prefix}*"),
        }
    }
}

type PodKey = (String, PodName);

#[derive(Debug)]
struct Admitted {
    uses: Vec<Key>,
    until: Instant,
}

#[derive(Debug)]
struct Deleting {
    credential: String,
    until: Instant,
}

/// The records, kept under the index's own mutex (see [`crate::state::index::Index::recent`]).
/// A pod decision costs O(its credentials); a DELETE decision O(pods remembered).
#[derive(Debug, Default)]
pub struct Recent {
    admitted: HashMap<PodKey, Admitted>,
    /// Admissions in time order, to expire them from the front.
    expiry: VecDeque<(Instant, PodKey)>,
    deleting: HashMap<Key, Deleting>,
}

/// A credential of a pod's plan that is being deleted.
#[derive(Debug, PartialEq, Eq)]
pub struct BeingDeleted(pub String);

/// Pods admitted moments ago that use a credential about to be deleted: `Pod/ns/name`.
#[derive(Debug, PartialEq, Eq)]
pub struct AdmittedUsers(pub Vec<String>);

impl Recent {
    fn expire(&mut self, now: Instant) {
        while let Some((until, _)) = self.expiry.front() {
            if *until > now && self.expiry.len() <= MAX_ADMITTED {
                break;
            }
            let Some((until, key)) = self.expiry.pop_front() else {
                break;
            };
            match self.admitted.get(&key) {
                // Admitted again under the same name since: it waits its new turn.
                Some(a) if a.until > until && self.expiry.len() < MAX_ADMITTED => {
                    self.expiry.push_back((a.until, key));
                }
                Some(_) => {
                    self.admitted.remove(&key);
                }
                None => {}
            }
        }
        if !self.deleting.is_empty() {
            self.deleting.retain(|_, d| d.until > now);
        }
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
        if let Some(d) = uses.iter().find_map(|u| self.deleting.get(u)) {
            return Err(BeingDeleted(d.credential.clone()));
        }
        if record && !uses.is_empty() {
            let key = (namespace.to_owned(), name);
            let until = now + ADMITTED_GRACE;
            match self.admitted.get_mut(&key) {
                Some(entry) => {
                    entry.until = until;
                    for u in uses {
                        if !entry.uses.contains(u) {
                            entry.uses.push(u.clone());
                        }
                    }
                }
                None => {
                    self.admitted.insert(
                        key.clone(),
                        Admitted {
                            uses: uses.to_vec(),
                            until,
                        },
                    );
                    self.expiry.push_back((until, key));
                }
            }
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
            .filter(|(_, a)| a.uses.iter().any(|u| keys.iter().any(|(k, _)| k == u)))
            .map(|((ns, name), _)| format!("Pod/{ns}/{}", name.shown()))
            .collect();
        if !users.is_empty() {
            users.sort();
            return Err(AdmittedUsers(users));
        }
        if record {
            for (key, credential) in keys {
                self.deleting.insert(
                    key.clone(),
                    Deleting {
                        credential: credential.clone(),
                        until: now + DELETING_GRACE,
                    },
                );
            }
        }
        Ok(())
    }

    /// A recorded DELETE was refused after all (by the live check).
    pub fn forget_delete(&mut self, key: &str) {
        self.deleting.remove(key);
    }

    /// The watch shows pod `namespace/name`: the index now protects what it uses.
    pub fn pod_stored(&mut self, namespace: &str, name: &str) {
        if self.admitted.is_empty() {
            return;
        }
        let exact = (namespace.to_owned(), PodName::Exact(name.to_owned()));
        if self.admitted.remove(&exact).is_some() {
            return;
        }
        if let Some(prefix) = name
            .len()
            .checked_sub(GENERATED_SUFFIX)
            .and_then(|end| name.get(..end))
        {
            self.admitted
                .remove(&(namespace.to_owned(), PodName::Generated(prefix.to_owned())));
        }
    }

    /// Records held now: (pods, deletions).
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

    fn exact(name: &str) -> PodName {
        PodName::Exact(name.into())
    }

    /// A pod in team-a using credential `uses`.
    fn admit(
        r: &mut Recent,
        name: PodName,
        uses: &str,
        record: bool,
        at: Instant,
    ) -> Result<(), BeingDeleted> {
        r.admit_pod("team-a", name, &[key(uses)], record, at)
    }

    /// A DELETE of credential `credential`.
    fn delete(
        r: &mut Recent,
        credential: &str,
        record: bool,
        at: Instant,
    ) -> Result<(), AdmittedUsers> {
        r.delete(&[(key(credential), credential.into())], record, at)
    }

    #[test]
    fn whichever_comes_second_sees_the_first() {
        let now = Instant::now();
        // Pod first: the delete is refused and names the pod.
        let mut r = Recent::default();
        admit(&mut r, exact("p"), "db", true, now).unwrap();
        assert_eq!(
            delete(&mut r, "db", true, now),
            Err(AdmittedUsers(vec!["Pod/team-a/p".into()]))
        );
        // Other credentials are not held up.
        delete(&mut r, "other", true, now).unwrap();
        // Delete first: the pod is refused and names the credential.
        let mut r = Recent::default();
        delete(&mut r, "db", true, now).unwrap();
        assert_eq!(
            admit(&mut r, PodName::Generated("p-".into()), "db", true, now),
            Err(BeingDeleted("db".into()))
        );
    }

    #[test]
    fn records_end_when_the_watch_shows_the_outcome_or_the_grace_ends() {
        let now = Instant::now();
        let mut r = Recent::default();
        admit(&mut r, PodName::Generated("job-".into()), "db", true, now).unwrap();
        r.pod_stored("team-b", "job-x7k2q");
        assert_eq!(r.len(), (1, 0), "another namespace's pod does not count");
        r.pod_stored("team-a", "job-x7k2q");
        assert_eq!(r.len(), (0, 0));
        delete(&mut r, "db", true, now).unwrap();
        assert_eq!(r.len(), (0, 1));
        // The same name created again is another uid.
        admit(&mut r, exact("p"), "db-again", true, now).unwrap();
        r.pod_stored("team-a", "p");
        // Never stored: the grace period ends the record.
        let mut r = Recent::default();
        admit(&mut r, exact("p"), "db", true, now).unwrap();
        delete(&mut r, "db", true, now + ADMITTED_GRACE).unwrap();
        assert_eq!(
            admit(
                &mut r,
                exact("q"),
                "db",
                true,
                now + ADMITTED_GRACE + DELETING_GRACE
            ),
            Ok(())
        );
    }

    #[test]
    fn memory_stays_bounded() {
        let now = Instant::now();
        let mut r = Recent::default();
        // The same pod name again (a retry, or a benchmark) refreshes one record.
        for i in 0..1000 {
            admit(
                &mut r,
                exact("train"),
                "db",
                true,
                now + Duration::from_millis(i),
            )
            .unwrap();
        }
        assert_eq!(r.len(), (1, 0));
        // Its first expiry entries do not end the refreshed record.
        let later = now + ADMITTED_GRACE + Duration::from_millis(500);
        delete(&mut r, "other", false, later).unwrap();
        assert_eq!(r.len(), (1, 0));
        // Distinct pods never stored: at most MAX_ADMITTED records.
        for i in 0..MAX_ADMITTED + 10 {
            admit(&mut r, exact(&format!("p{i}")), "db", true, now).unwrap();
        }
        assert!(r.len().0 <= MAX_ADMITTED + 1, "{:?}", r.len());
    }

    #[test]
    fn generated_names_match_as_kubernetes_makes_them() {
        let long = "a".repeat(70);
        let mut r = Recent::default();
        let now = Instant::now();
        for prefix in ["web-7d9f-", long.as_str()] {
            admit(&mut r, PodName::new(None, Some(prefix)), "db", true, now).unwrap();
        }
        assert_eq!(r.len(), (2, 0));
        r.pod_stored("team-a", "web-7d9f-x2v9q");
        r.pod_stored("team-a", &format!("{}k3j9z", &long[..58]));
        assert_eq!(r.len(), (0, 0));
    }

    #[test]
    fn dry_runs_check_but_leave_no_record() {
        let now = Instant::now();
        let mut r = Recent::default();
        admit(&mut r, exact("p"), "db", false, now).unwrap();
        delete(&mut r, "db", false, now).unwrap();
        assert_eq!(r.len(), (0, 0));
    }
}
