//! The whole decision path of `/validate` and `/mutate`: AdmissionReview
//! decoding, policy over a snapshot with credentials, patch and encoding.
//! The first byte picks the endpoint. Every input must get an answer.
#![no_main]

use credgate::admission::{Admission, Endpoint};
use credgate::model::credential::{CredentialType, Scope};
use credgate::state::index::{Index, NamespaceInfo, SecretInfo};
use credgate::policy::Settings;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static ADMISSION: LazyLock<Admission> = LazyLock::new(|| {
    let mut index = Index::default();
    index.set_namespace(
        "team-a",
        NamespaceInfo {
            project: Some("team-a".into()),
            department: Some("rnd".into()),
            terminating: false,
        },
    );
    for (name, kind, keys) in [
        ("db", CredentialType::Generic, vec!["url", "token"]),
        ("s3", CredentialType::AccessKey, vec!["AccessKeyId", "SecretKey"]),
        ("git", CredentialType::Password, vec!["User", "Password"]),
        ("ghcr", CredentialType::DockerRegistry, vec![".dockerconfigjson"]),
    ] {
        index.set_secret(
            "team-a",
            name,
            SecretInfo {
                uid: format!("uid-{name}"),
                kind: Some(kind),
                scope: Some(Scope::Project),
                credential_name: name.into(),
                existing_secret: None,
                registries: vec!["ghcr.io".into()],
                keys: Some(keys.into_iter().map(Into::into).collect()),
            },
        );
    }
    for s in credgate::state::watch::sources() {
        index.mark_synced(s);
    }
    Admission::with_index(Settings::default(), index)
});

fuzz_target!(|data: &[u8]| {
    let Some((first, body)) = data.split_first() else {
        return;
    };
    let endpoint = if first % 2 == 0 { Endpoint::Validate } else { Endpoint::Mutate };
    let outcome = futures::executor::block_on(ADMISSION.review(endpoint, body));
    assert!(!outcome.body.is_empty(), "every input gets an answer");
});
