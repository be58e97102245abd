//! Managed copies of cluster and department credentials in project namespaces.
//!
//! A Pod may reference only Secrets of its own namespace, so a wider-scoped
//! credential reaches a project as a copy. Copies are labelled as managed,
//! name their source (namespace, name, uid) and carry a hash of the source
//! data. Their names never overwrite a user's Secret: a name taken by an
//! unmanaged Secret is reported, not replaced.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use std::collections::BTreeMap;

use crate::model::copy::{
    HASH_ANNOTATION, MANAGED_LABEL, SOURCE_ANNOTATION, SOURCE_UID_LABEL, copy_hash, copy_name,
    data_hash, is_copy_of,
};
use crate::model::credential::{annotation, label};

/// What a copy is made from: the credential and the Secret holding its data.
#[derive(Clone, Debug)]
pub struct Source {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `run.ai/resource` of the credential.
    pub kind: String,
    /// `run.ai/name` of the credential.
    pub credential_name: String,
    pub secret_type: Option<String>,
    pub data: BTreeMap<String, ByteString>,
    /// Annotations to carry over (registries, keys, description).
    pub annotations: BTreeMap<String, String>,
}

/// Why a copy could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(
        "namespace {namespace}: a Secret named {name:?} exists and is not credgate's copy of this credential; rename or remove it"
    )]
    Taken { namespace: String, name: String },
    #[error("namespace {namespace}: {source}")]
    Api {
        namespace: String,
        source: kube::Error,
    },
}

impl Source {
    /// Reads the credential (and its existing Secret, if it has one) through the API.
    pub async fn read(
        client: &Client,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Source>, kube::Error> {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let Some(credential) = secrets.get_opt(name).await? else {
            return Ok(None);
        };
        let holder = match credential.annotations().get(annotation::EXISTING_SECRET) {
            Some(existing) => match secrets.get_opt(existing).await? {
                Some(backing) => backing,
                None => return Ok(None),
            },
            None => credential.clone(),
        };
        let mut annotations = BTreeMap::new();
        for key in [
            annotation::REGISTRIES,
            annotation::KEYS,
            annotation::DESCRIPTION,
        ] {
            if let Some(v) = holder
                .annotations()
                .get(key)
                .or_else(|| credential.annotations().get(key))
            {
                annotations.insert(key.to_owned(), v.clone());
            }
        }
        // The source's scope, so a project's view can show it from the copy alone.
        let meta = crate::model::credential::secret_meta(&credential, namespace);
        if let Ok(scope) = meta.scope(namespace) {
            annotations.insert(annotation::COPY_SCOPE.to_owned(), scope.key());
        }
        Ok(Some(Source {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            uid: credential.uid().unwrap_or_default(),
            kind: credential
                .labels()
                .get(label::RESOURCE)
                .cloned()
                .unwrap_or_default(),
            credential_name: credential
                .annotations()
                .get(annotation::NAME)
                .cloned()
                .unwrap_or_else(|| name.to_owned()),
            secret_type: holder.type_.clone(),
            data: holder.data.clone().unwrap_or_default(),
            annotations,
        }))
    }

    /// What a copy must carry to be up to date: its data and its metadata.
    pub fn hash(&self) -> String {
        let mut carried = self.annotations.clone();
        carried.insert(annotation::NAME.into(), self.credential_name.clone());
        carried.insert(label::RESOURCE.into(), self.kind.clone());
        copy_hash(
            &data_hash(&self.data, self.secret_type.as_deref()),
            &carried,
        )
    }

    /// The copy for `namespace`.
    pub fn copy(&self, namespace: &str) -> Secret {
        let mut annotations = self.annotations.clone();
        annotations.insert(
            SOURCE_ANNOTATION.into(),
            format!("{}/{}", self.namespace, self.name),
        );
        annotations.insert(HASH_ANNOTATION.into(), self.hash());
        annotations.insert(annotation::NAME.into(), self.credential_name.clone());
        Secret {
            metadata: ObjectMeta {
                name: Some(copy_name(&self.name)),
                namespace: Some(namespace.to_owned()),
                labels: Some(BTreeMap::from([
                    (MANAGED_LABEL.to_owned(), "true".to_owned()),
                    (SOURCE_UID_LABEL.to_owned(), self.uid.clone()),
                    ("credgate.run.ai/type".to_owned(), self.kind.clone()),
                ])),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            },
            type_: self.secret_type.clone(),
            data: Some(self.data.clone()),
            ..Secret::default()
        }
    }

    /// Creates the copy, for a namespace believed to have none; if one exists
    /// after all, checks and updates it like [`Source::ensure`].
    pub async fn create_first(&self, client: &Client, namespace: &str) -> Result<bool, CopyError> {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        match api
            .create(&PostParams::default(), &self.copy(namespace))
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => self.ensure(client, namespace).await,
            Err(source) => Err(CopyError::Api {
                namespace: namespace.to_owned(),
                source,
            }),
        }
    }

    /// Creates or updates the copy in `namespace`; never touches a Secret that is not its copy.
    /// Returns true when something was written.
    pub async fn ensure(&self, client: &Client, namespace: &str) -> Result<bool, CopyError> {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let err = |source| CopyError::Api {
            namespace: namespace.to_owned(),
            source,
        };
        let wanted = self.copy(namespace);
        let name = copy_name(&self.name);
        match api.get_opt(&name).await.map_err(err)? {
            None => match api.create(&PostParams::default(), &wanted).await {
                Ok(_) => Ok(true),
                // Created meanwhile (the controller and a pod admission at once): check it.
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    Box::pin(self.ensure(client, namespace)).await
                }
                Err(e) => Err(err(e)),
            },
            Some(current) => {
                if current.labels().get(SOURCE_UID_LABEL) != Some(&self.uid) {
                    return Err(CopyError::Taken {
                        namespace: namespace.to_owned(),
                        name,
                    });
                }
                let same = current.annotations().get(HASH_ANNOTATION) == Some(&self.hash())
                    && current.data.as_ref() == wanted.data.as_ref()
                    && current.annotations() == wanted.annotations();
                if same {
                    return Ok(false);
                }
                let mut updated = wanted;
                updated.metadata.resource_version = current.resource_version();
                api.replace(&name, &PostParams::default(), &updated)
                    .await
                    .map_err(err)?;
                Ok(true)
            }
        }
    }
}

/// Deletes one copy of the credential Secret `source` (only if it still is
/// one: see [`is_copy_of`]).
pub async fn delete_copy(
    client: &Client,
    namespace: &str,
    name: &str,
    uid: &str,
    source: &str,
) -> Result<(), kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let Some(current) = api.get_metadata_opt(name).await? else {
        return Ok(());
    };
    if !is_copy_of(&current.metadata, uid, source) {
        return Ok(());
    }
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_hashes() {
        assert_eq!(copy_name("registry"), "credgate.registry");
        let long = "a".repeat(250);
        assert!(copy_name(&long).len() <= 253);
        let a = BTreeMap::from([("k".to_owned(), ByteString(b"v".to_vec()))]);
        let b = BTreeMap::from([("k".to_owned(), ByteString(b"w".to_vec()))]);
        assert_ne!(data_hash(&a, None), data_hash(&b, None));
        assert_eq!(data_hash(&a, None), data_hash(&a.clone(), Some("Opaque")));
        assert!(data_hash(&a, None).starts_with("sha256:"));
    }
}
