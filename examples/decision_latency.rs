//! Median and tail of the pod decision + patch (3 containers, 5 credential
//! references) over 100,000 runs, timed one by one.
//!
//! `cargo run --release --example decision_latency [NAMESPACES]`: with
//! NAMESPACES, the index also holds that many other project namespaces with
//! the same credentials (the scale step's 10,000 namespaces, without its
//! pods), to tell the decision's own cost at scale from the machine's.

use credgate::policy::Settings;
use credgate::policy::mutate;
use credgate::state::index::{Index, NamespaceInfo};
use std::time::Instant;

#[path = "../benches/support/mod.rs"]
mod support;

fn main() {
    let mut index = Index::default();
    index.set_namespace(
        "team-a",
        NamespaceInfo {
            project: Some("team-a".into()),
            department: None,
            ..Default::default()
        },
    );
    support::add_pod_credentials(&mut index, "team-a");
    let others: usize = std::env::args()
        .nth(1)
        .map_or(0, |n| n.parse().expect("NAMESPACES is a number"));
    for i in 0..others {
        let ns = format!("scale-{i}");
        let project = NamespaceInfo {
            project: Some(ns.clone()),
            ..Default::default()
        };
        index.set_namespace(&ns, project);
        support::add_pod_credentials(&mut index, &ns);
    }
    let pod = support::training_pod("team-a");
    let settings = Settings::default();
    let mut samples = Vec::with_capacity(100_000);
    // The admission path reads annotations from the typed metadata it decoded.
    let annotations = support::annotations(&pod);
    let spec = pod.get("spec").map(credgate::model::json::from_value);
    let spec = spec.as_ref();
    for _ in 0..100_000 {
        let started = Instant::now();
        let plan = mutate::pod(&settings, &index, "team-a", annotations.as_ref(), spec).unwrap();
        let patch = mutate::pod_inject(&settings.fetchers, spec, &plan)
            .additions
            .patch_json(spec)
            .unwrap();
        samples.push(started.elapsed());
        assert!(!patch.is_empty());
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "pod decision + patch, 100000 runs, {others} other namespaces: p50 {:?}, p99 {:?}, p99.9 {:?}",
        at(0.50),
        at(0.99),
        at(0.999)
    );
}
