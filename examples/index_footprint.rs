//! Measures the index's memory per workload: RSS before and after indexing
//! 100,000 pods (each with two references), read from /proc/self/statm.
//!
//! `cargo run --release --example index_footprint`

use credgate::model::workload::{Reference, Usage, WorkloadKind};
use credgate::state::index::{Index, NamespaceInfo};

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn main() {
    const PODS: usize = 100_000;
    let mut index = Index::default();
    for n in 0..1000 {
        let ns = format!("project-{n}");
        index.set_namespace(
            &ns,
            NamespaceInfo {
                project: Some(ns.clone()),
                department: None,
                ..Default::default()
            },
        );
    }
    // Names built before measuring, so only the index's own memory counts.
    let pods: Vec<(String, String)> = (0..PODS)
        .map(|i| {
            (
                format!("project-{}", i % 1000),
                format!("train-{i:06}-7d9f8b6c5d-x2x9q"),
            )
        })
        .collect();
    let before = rss_bytes();
    for (i, (ns, name)) in pods.iter().enumerate() {
        let refs = [
            Reference::Secret(format!("app-secret-{}", i % 5), Usage::Environment),
            Reference::Credential(format!("cred-{}", i % 20), Usage::DataSource),
        ];
        index.set_workload(WorkloadKind::Pod, ns, name, refs);
    }
    let after = rss_bytes();
    assert_eq!(index.workload_count(), PODS);
    let per = (after - before) as f64 / PODS as f64;
    println!(
        "indexed {PODS} pods (2 references each, names ~31 bytes): RSS +{:.1} MiB, {per:.0} bytes per workload",
        (after - before) as f64 / (1 << 20) as f64
    );
}
