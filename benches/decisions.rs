//! Micro-benchmarks of the pure decision paths (criterion).

use credgate::admission::{Decision, Endpoint};
use credgate::model::credential::Scope;
use credgate::model::workload::{Reference, Usage, WorkloadKind};
use credgate::policy::mutate;
use credgate::policy::validate;
use credgate::policy::{Change, Operation, Settings};
use credgate::state::index::{Index, NamespaceInfo};
use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::Secret;
use std::hint::black_box;

mod support;

/// 1,000 project namespaces with 100 workloads each (100k), every workload
/// referencing a Secret of its own namespace and one credential by name.
fn big_index() -> Index {
    let mut index = Index::default();
    for n in 0..1000 {
        let ns = format!("project-{n}");
        index.set_namespace(
            &ns,
            NamespaceInfo {
                project: Some(ns.clone()),
                department: Some(format!("dept-{}", n % 10)),
                ..Default::default()
            },
        );
        for w in 0..100 {
            let refs = [
                Reference::Secret(format!("app-secret-{}", w % 5), Usage::Environment),
                Reference::Credential(format!("cred-{}", w % 20), Usage::DataSource),
            ];
            index.set_workload(
                WorkloadKind::Pod,
                &ns,
                &format!("pod-{w}-7d9f8b6c5d-x2x9q"),
                refs,
            );
        }
    }
    index.set_namespace("runai", NamespaceInfo::default());
    index
}

fn docker_secret() -> Secret {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "reg", "namespace": "project-1", "labels": {"run.ai/resource": "docker-registry"}},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": "eyJhdXRocyI6eyJnaGNyLmlvIjp7ImF1dGgiOiJkVHB3In19fQ=="},
    }))
    .unwrap()
}

fn benches(c: &mut Criterion) {
    let index = big_index();
    assert_eq!(index.workload_count(), 100_000);
    let settings = Settings::default();

    let secret = docker_secret();
    c.bench_function("validate docker-registry Secret (CREATE)", |b| {
        b.iter(|| {
            let change = Change {
                operation: Operation::Create,
                user: "alice",
                namespace: "project-1",
                object: Some(&secret),
                old_object: None,
            };
            black_box(validate::secret(&settings, &index, &change)).unwrap();
        })
    });

    // A 3-container pod with 5 credential references, in a project with a few credentials.
    let mut index = index;
    support::add_pod_credentials(&mut index, "project-1");
    let pod = support::training_pod("project-1");
    let annotations = support::annotations(&pod);
    let spec = pod.get("spec").map(credgate::model::json::from_value);
    let spec = spec.as_ref();
    c.bench_function(
        "resolve + patch a 3-container pod with 5 credential references",
        |b| {
            b.iter(|| {
                let plan = mutate::pod(&settings, &index, "project-1", annotations.as_ref(), spec)
                    .unwrap();
                let injection = mutate::pod_inject(&settings.fetchers, spec, &plan);
                black_box(injection.additions.patch_json(spec).unwrap())
            })
        },
    );

    let plan = mutate::pod(&settings, &index, "project-1", annotations.as_ref(), spec).unwrap();
    let injection = mutate::pod_inject(&settings.fetchers, spec, &plan);
    c.bench_function(
        "write the training pod's patch: one replace of /spec with its 15 entries",
        |b| b.iter(|| black_box(injection.additions.patch_json(spec).unwrap())),
    );

    let project = index.visible_in(&Scope::Project, "project-7");
    c.bench_function("in-use lookup, project scope, 100k workloads", |b| {
        b.iter(|| black_box(index.users(&project, Some("app-secret-3"), Some("cred-3"), 5)))
    });
    c.bench_function(
        "in-use lookup, cluster scope (1,000 namespaces), 100k workloads",
        |b| {
            b.iter(|| {
                let namespaces = index.visible_in(&Scope::Cluster, "runai");
                black_box(index.users(&namespaces, None, Some("cred-3"), 5))
            })
        },
    );
    c.bench_function("in-use lookup, cluster scope, unused credential", |b| {
        b.iter(|| {
            let namespaces = index.visible_in(&Scope::Cluster, "runai");
            black_box(index.users(&namespaces, None, Some("cred-unused"), 5))
        })
    });

    // The whole of one webhook call in credgate's process, as the server runs
    // it: decode the AdmissionReview, decide, build and encode the answer.
    let pod_review = support::review("Pod", "pods", "project-1", &pod);
    let secret_review = support::review(
        "Secret",
        "secrets",
        "project-1",
        &serde_json::to_value(&secret).unwrap(),
    );
    let admission = credgate::admission::Admission::with_index(settings.clone(), index);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    c.bench_function(
        "/mutate review of the training pod: decode, decide, encode",
        |b| {
            b.iter(|| {
                let outcome = runtime.block_on(admission.review(Endpoint::Mutate, &pod_review));
                assert_eq!(outcome.decision, Decision::Patched);
                black_box(outcome)
            })
        },
    );
    c.bench_function(
        "/validate review of a docker-registry Secret: decode, decide, encode",
        |b| {
            b.iter(|| {
                let outcome =
                    runtime.block_on(admission.review(Endpoint::Validate, &secret_review));
                assert_eq!(outcome.decision, Decision::Allowed);
                black_box(outcome)
            })
        },
    );
    c.bench_function(
        "decode the training pod's review (serde_json, typed)",
        |b| {
            b.iter(|| {
                black_box(
                    serde_json::from_slice::<
                        kube::core::admission::AdmissionReview<kube::core::DynamicObject>,
                    >(&pod_review)
                    .unwrap(),
                )
            })
        },
    );
}

criterion_group! {
    name = decisions;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(decisions);
