//! `credgate uninstall`: removes what credgate keeps in a cluster, in an order
//! that never leaves anything stuck, and leaves the users' credentials in place.
//!
//! 1. the webhook configurations (so nothing is refused or waits for credgate);
//! 2. every managed copy;
//! 3. credgate's finalizer, its status annotations and its existing-secret claims;
//! 4. the RoleBindings through which credgate read Secrets, one per namespace
//!    (see [`crate::state::access`]);
//!
//! After it, deleting a credential or the credentials namespace completes at once.

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};

use super::{CliError, ClusterArgs, Connection};
use crate::admission::claims::CLAIM_LABEL;
use crate::model::copy::{MANAGED_LABEL, is_copy_of};
use crate::model::credential::{COPIES_FINALIZER, IN_USE_FINALIZER, annotation};
use crate::state::access::{BINDING, BINDING_LABEL};

#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The webhook configurations to remove (validating and mutating).
    #[arg(long, default_value = "credgate")]
    pub webhook_config: Vec<String>,
    /// credgate's own namespace, where its existing-secret claims live.
    #[arg(long, default_value = "credgate-system")]
    pub credgate_namespace: String,
    /// First scale this Deployment of credgate's namespace to 0 and wait for
    /// its pods to go (a running controller would copy the credentials and
    /// add its finalizer again). The Helm pre-delete hook passes `credgate`.
    #[arg(long, value_name = "DEPLOYMENT")]
    pub scale_down: Option<String>,
    /// Do it without asking (required when there is no terminal).
    #[arg(long)]
    pub yes: bool,
}

impl UninstallArgs {
    pub async fn run(self) -> Result<(), CliError> {
        let conn = self.cluster.connect().await?;
        let plan = format!(
            "credgate uninstall will, on cluster {}:\n  1. delete the webhook configurations {}\n  2. delete every managed copy (Secrets labelled {MANAGED_LABEL}=true)\n  3. remove the finalizers {COPIES_FINALIZER} and {IN_USE_FINALIZER}, run.ai/status and run.ai/status-message from credentials, and delete existing-secret claims\n  4. delete the RoleBindings that gave credgate access to Secrets (labelled {BINDING_LABEL}=true)\nThe credentials themselves stay.\n",
            conn.cluster,
            self.webhook_config.join(", ")
        );
        super::confirm(&plan, self.yes, "uninstall")?;
        if let Some(deployment) = &self.scale_down {
            scale_down(&conn, &self.credgate_namespace, deployment).await?;
        }
        let report = uninstall(&conn, &self.webhook_config, &self.credgate_namespace).await?;
        println!("{report}");
        Ok(())
    }
}

/// Scales `deployment` to 0 and waits (at most 2 minutes) until it runs no pod.
async fn scale_down(conn: &Connection, namespace: &str, deployment: &str) -> Result<(), CliError> {
    use k8s_openapi::api::apps::v1::Deployment;
    let deployments: Api<Deployment> = Api::namespaced(conn.client.clone(), namespace);
    let zero = serde_json::json!({"spec": {"replicas": 0}});
    deployments
        .patch_scale(deployment, &PatchParams::default(), &Patch::Merge(&zero))
        .await
        .map_err(|e| conn.error(format!("scale Deployment {namespace}/{deployment} to 0"), e))?;
    let stopped = kube::runtime::wait::await_condition(
        deployments.clone(),
        deployment,
        |d: Option<&Deployment>| {
            d.is_none_or(|d| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0) == 0)
        },
    );
    match tokio::time::timeout(std::time::Duration::from_secs(120), stopped).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(CliError::NotStopped(format!(
            "could not watch Deployment {namespace}/{deployment} scale down: {e}; nothing else was changed"
        ))),
        Err(_) => Err(CliError::NotStopped(format!(
            "Deployment {namespace}/{deployment} still runs pods after 2 minutes; nothing else was changed"
        ))),
    }
}

async fn uninstall(
    conn: &Connection,
    configs: &[String],
    credgate_namespace: &str,
) -> Result<String, CliError> {
    let gone = |r: kube::Result<()>| match r {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => other,
    };
    // 1. The webhooks first: nothing after this waits for credgate.
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(conn.client.clone());
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(conn.client.clone());
    for name in configs {
        gone(
            validating
                .delete(name, &DeleteParams::default())
                .await
                .map(drop),
        )
        .map_err(|e| conn.error(format!("delete ValidatingWebhookConfiguration {name}"), e))?;
        gone(
            mutating
                .delete(name, &DeleteParams::default())
                .await
                .map(drop),
        )
        .map_err(|e| conn.error(format!("delete MutatingWebhookConfiguration {name}"), e))?;
    }
    // 2. Every managed copy, and only copies.
    let secrets: Api<Secret> = Api::all(conn.client.clone());
    let copies = secrets
        .list_metadata(&ListParams::default().labels(&format!("{MANAGED_LABEL}=true")))
        .await
        .map_err(|e| conn.error("list managed copies", e))?;
    let mut deleted = 0;
    for copy in &copies.items {
        let source = copy
            .annotations()
            .get(crate::model::copy::SOURCE_ANNOTATION)
            .and_then(|s| s.split_once('/'))
            .map(|(_, name)| name.to_owned())
            .unwrap_or_default();
        let uid = copy
            .labels()
            .get(crate::model::copy::SOURCE_UID_LABEL)
            .cloned()
            .unwrap_or_default();
        if !is_copy_of(&copy.metadata, &uid, &source) {
            continue;
        }
        let (ns, name) = (copy.namespace().unwrap_or_default(), copy.name_any());
        gone(
            Api::<Secret>::namespaced(conn.client.clone(), &ns)
                .delete(&name, &DeleteParams::default())
                .await
                .map(drop),
        )
        .map_err(|e| conn.error(format!("delete copy {ns}/{name}"), e))?;
        deleted += 1;
    }
    // 3. What only credgate maintains on credentials, and the claims.
    let credentials = secrets
        .list_metadata(&ListParams::default().labels(crate::model::credential::label::RESOURCE))
        .await
        .map_err(|e| conn.error("list credentials", e))?;
    let mut released = 0;
    for secret in &credentials.items {
        let ours = |f: &String| f == COPIES_FINALIZER || f == IN_USE_FINALIZER;
        let has_finalizer = secret.finalizers().iter().any(ours);
        let has_status = secret.annotations().contains_key(annotation::STATUS)
            || secret
                .annotations()
                .contains_key(annotation::STATUS_MESSAGE);
        if !has_finalizer && !has_status {
            continue;
        }
        let finalizers: Vec<&String> = secret.finalizers().iter().filter(|f| !ours(f)).collect();
        let patch = serde_json::json!({"metadata": {
            "finalizers": finalizers,
            "annotations": {annotation::STATUS: null, annotation::STATUS_MESSAGE: null},
            "resourceVersion": secret.resource_version(),
        }});
        let (ns, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
        gone(
            Api::<Secret>::namespaced(conn.client.clone(), &ns)
                .patch_metadata(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(drop),
        )
        .map_err(|e| conn.error(format!("release credential {ns}/{name}"), e))?;
        released += 1;
    }
    let leases: Api<Lease> = Api::namespaced(conn.client.clone(), credgate_namespace);
    let claims = leases
        .list_metadata(&ListParams::default().labels(&format!("{CLAIM_LABEL}=true")))
        .await
        .map_err(|e| conn.error("list existing-secret claims", e))?;
    for claim in &claims.items {
        let name = claim.name_any();
        gone(
            leases
                .delete(&name, &DeleteParams::default())
                .await
                .map(drop),
        )
        .map_err(|e| conn.error(format!("delete claim {credgate_namespace}/{name}"), e))?;
    }
    // 4. credgate's access to Secrets, namespace by namespace.
    let bindings: Api<RoleBinding> = Api::all(conn.client.clone());
    let bindings = bindings
        .list_metadata(&ListParams::default().labels(&format!("{BINDING_LABEL}=true")))
        .await
        .map_err(|e| conn.error("list credgate's RoleBindings", e))?;
    let bindings: Vec<_> = bindings
        .items
        .iter()
        .filter(|b| b.name_any() == BINDING)
        .collect();
    for binding in &bindings {
        let (ns, name) = (binding.namespace().unwrap_or_default(), binding.name_any());
        let api = Api::<RoleBinding>::namespaced(conn.client.clone(), &ns);
        let release = serde_json::json!({"metadata": {"finalizers": null}});
        gone(
            api.patch_metadata(&name, &PatchParams::default(), &Patch::Merge(&release))
                .await
                .map(drop),
        )
        .map_err(|e| conn.error(format!("release RoleBinding {ns}/{name}"), e))?;
        gone(api.delete(&name, &DeleteParams::default()).await.map(drop))
            .map_err(|e| conn.error(format!("delete RoleBinding {ns}/{name}"), e))?;
    }
    Ok(format!(
        "uninstalled: webhook configurations {} removed; {deleted} managed copies deleted; {released} credentials released; {} claims deleted; {} RoleBindings deleted; the credentials stay",
        configs.join(", "),
        claims.items.len(),
        bindings.len()
    ))
}
