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
//! Each of the two decisions checks the other's records and adds its own in
//! one step under one lock, so whichever comes second sees the first. A record
//! is a reason to **wait for the watch**, never a reason to refuse by itself:
//! the second decision waits until the watch shows the first one's outcome (a
//! stored pod, which the in-use rule then counts; a deleted credential, which
//! the pod may not use), or until the record lapses. A record lapses
//! [`GRACE`] after its decision: an outcome the watch has not shown by then
//! never happened (another webhook or the API server refused the request, or
//! the review did not come from the API server at all). So a review that is
//! not the API server's, or a pod the API server refuses (a phantom), delays
//! other answers by at most [`GRACE`] and changes none of them.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How long a decision's record lasts without the watch showing its outcome:
/// the API server stores an admitted object within milliseconds of the last
/// webhook's answer. Short, so a pod or DELETE waiting on a record stays well
/// inside the webhooks' 5 s timeout.
pub const GRACE: Duration = Duration::from_secs(2);

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
    /// `(namespace, name)` of the credential's Secret.
    source: (String, String),
    until: Instant,
}

/// A credential a DELETE is about to remove.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Doomed {
    pub uid: Key,
    /// `(namespace, name)` of its Secret.
    pub source: (String, String),
    /// Its credential name, for messages.
    pub credential: String,
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

/// A credential of a pod's plan whose DELETE was allowed moments ago: the pod
/// waits until the watch shows the deletion, or until the record lapses.
#[derive(Debug, PartialEq, Eq)]
pub struct BeingDeleted {
    pub credential: String,
    pub uid: Key,
    pub source: (String, String),
    pub until: Instant,
}

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
        if let Some((uid, d)) = uses.iter().find_map(|u| Some((u, self.deleting.get(u)?))) {
            return Err(BeingDeleted {
                credential: d.credential.clone(),
                uid: uid.clone(),
                source: d.source.clone(),
                until: d.until,
            });
        }
        if record && !uses.is_empty() {
            let key = (namespace.to_owned(), name);
            let until = now + GRACE;
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

    /// The credentials `doomed` are about to be deleted: recorded for pods
    /// about to name them (unless `record` is false: dry runs). Returns when
    /// the records of pods admitted moments ago that use one of them lapse, if
    /// there are any: the DELETE waits for the watch to show those pods.
    pub fn delete(&mut self, doomed: &[Doomed], record: bool, now: Instant) -> Option<Instant> {
        self.expire(now);
        if record {
            for d in doomed {
                self.deleting.insert(
                    d.uid.clone(),
                    Deleting {
                        credential: d.credential.clone(),
                        source: d.source.clone(),
                        until: now + GRACE,
                    },
                );
            }
        }
        self.pods_using(doomed, now)
    }

    /// When the last record of a pod admitted moments ago that uses one of
    /// `doomed` lapses; `None` when there is none.
    pub fn pods_using(&self, doomed: &[Doomed], now: Instant) -> Option<Instant> {
        self.admitted
            .values()
            .filter(|a| a.until > now)
            .filter(|a| a.uses.iter().any(|u| doomed.iter().any(|d| &d.uid == u)))
            .map(|a| a.until)
            .max()
    }

    /// A recorded DELETE was allowed after its last check: its record lasts
    /// [`GRACE`] from now, for the API server to store the deletion.
    pub fn settle_delete(&mut self, key: &str, now: Instant) {
        if let Some(d) = self.deleting.get_mut(key) {
            d.until = now + GRACE;
        }
    }

    /// A recorded DELETE was refused after all (by the snapshot or the live check).
    pub fn forget_delete(&mut self, key: &str) {
        self.deleting.remove(key);
    }

    /// True while a DELETE of `key` is recorded and has not lapsed.
    pub fn is_deleting(&self, key: &str, now: Instant) -> bool {
        self.deleting.get(key).is_some_and(|d| d.until > now)
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

    fn doomed(credential: &str) -> Doomed {
        Doomed {
            uid: key(credential),
            source: ("team-a".into(), credential.into()),
            credential: credential.into(),
        }
    }

    /// A DELETE of credential `credential`: when the pods it waits for lapse.
    fn delete(r: &mut Recent, credential: &str, record: bool, at: Instant) -> Option<Instant> {
        r.delete(&[doomed(credential)], record, at)
    }

    #[test]
    fn whichever_comes_second_sees_the_first() {
        let now = Instant::now();
        // Pod first: the delete waits for the pod's record, at most GRACE.
        let mut r = Recent::default();
        admit(&mut r, exact("p"), "db", true, now).unwrap();
        assert_eq!(delete(&mut r, "db", true, now), Some(now + GRACE));
        // Other credentials are not held up.
        assert_eq!(delete(&mut r, "other", true, now), None);
        // Delete first: the pod waits for the deletion's record, and learns which.
        let mut r = Recent::default();
        assert_eq!(delete(&mut r, "db", true, now), None);
        assert_eq!(
            admit(&mut r, PodName::Generated("p-".into()), "db", true, now),
            Err(BeingDeleted {
                credential: "db".into(),
                uid: key("db"),
                source: ("team-a".into(), "db".into()),
                until: now + GRACE
            })
        );
        // Allowed after its last check: the record lasts GRACE from then.
        let later = now + Duration::from_millis(1500);
        r.settle_delete(&key("db"), later);
        assert!(r.is_deleting(&key("db"), now + GRACE));
        assert!(!r.is_deleting(&key("db"), later + GRACE));
        // Refused after all: pods go on at once.
        r.forget_delete(&key("db"));
        assert_eq!(admit(&mut r, exact("q"), "db", true, now), Ok(()));
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
        assert_eq!(delete(&mut r, "db", true, now), None);
        assert_eq!(r.len(), (0, 1));
        // The same name created again is another uid.
        admit(&mut r, exact("p"), "db-again", true, now).unwrap();
        r.pod_stored("team-a", "p");
        // Never stored: the grace period ends the record.
        let mut r = Recent::default();
        admit(&mut r, exact("p"), "db", true, now).unwrap();
        assert_eq!(delete(&mut r, "db", true, now + GRACE), None);
        assert_eq!(
            admit(&mut r, exact("q"), "db", true, now + 2 * GRACE),
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
        let later = now + GRACE + Duration::from_millis(500);
        assert_eq!(delete(&mut r, "other", false, later), None);
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
        assert_eq!(delete(&mut r, "db", false, now), None);
        assert_eq!(r.len(), (0, 0));
    }
}
