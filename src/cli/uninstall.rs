//! `credgate uninstall`: removes what credgate keeps in a cluster, in an order
//! that never leaves anything stuck, and leaves the users' credentials in place.
//!
//! 1. the webhook configurations (so nothing is refused or waits for credgate);
//! 2. every managed copy;
//! 3. credgate's finalizer, its status annotations and its existing-secret claims;
//!
//! After it, deleting a credential or the credentials namespace completes at once.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};

use super::{CliError, ClusterArgs, Connection};
use crate::admission::claims::CLAIM_LABEL;
use crate::model::copy::{MANAGED_LABEL, is_copy_of};
use crate::model::credential::{COPIES_FINALIZER, annotation};

#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The webhook configurations to remove (validating and mutating).
    #[arg(long, default_value = "credgate")]
    pub webhook_config: Vec<String>,
    /// Do it without asking (required when there is no terminal).
    #[arg(long)]
    pub yes: bool,
}

impl UninstallArgs {
    pub async fn run(self) -> Result<(), CliError> {
        let conn = self.cluster.connect().await?;
        let plan = format!(
            "credgate uninstall will, on cluster {}:\n  1. delete the webhook configurations {}\n  2. delete every managed copy (Secrets labelled {MANAGED_LABEL}=true)\n  3. remove the finalizer {COPIES_FINALIZER}, run.ai/status and run.ai/status-message from credentials, and delete existing-secret claims\nThe credentials themselves stay.\n",
            conn.cluster,
            self.webhook_config.join(", ")
        );
        if !self.yes {
            let stdin = std::io::stdin();
            if !stdin.is_terminal() {
                return Err(CliError::Confirm(
                    "no terminal to ask on; pass --yes to uninstall".into(),
                ));
            }
            eprint!("{plan}Continue? [y/N] ");
            std::io::stderr().flush()?;
            let mut answer = String::new();
            stdin.lock().read_line(&mut answer)?;
            if !matches!(answer.trim(), "y" | "Y" | "yes") {
                return Err(CliError::Confirm("nothing was changed".into()));
            }
        }
        let report = uninstall(&conn, &self.webhook_config).await?;
        println!("{report}");
        Ok(())
    }
}

async fn uninstall(conn: &Connection, configs: &[String]) -> Result<String, CliError> {
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
        let has_finalizer = secret.finalizers().iter().any(|f| f == COPIES_FINALIZER);
        let has_status = secret.annotations().contains_key(annotation::STATUS)
            || secret
                .annotations()
                .contains_key(annotation::STATUS_MESSAGE);
        if !has_finalizer && !has_status {
            continue;
        }
        let finalizers: Vec<&String> = secret
            .finalizers()
            .iter()
            .filter(|f| *f != COPIES_FINALIZER)
            .collect();
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
    let leases: Api<Lease> = Api::all(conn.client.clone());
    let claims = leases
        .list_metadata(&ListParams::default().labels(&format!("{CLAIM_LABEL}=true")))
        .await
        .map_err(|e| conn.error("list existing-secret claims", e))?;
    for claim in &claims.items {
        let (ns, name) = (claim.namespace().unwrap_or_default(), claim.name_any());
        gone(
            Api::<Lease>::namespaced(conn.client.clone(), &ns)
                .delete(&name, &DeleteParams::default())
                .await
                .map(drop),
        )
        .map_err(|e| conn.error(format!("delete claim {ns}/{name}"), e))?;
    }
    Ok(format!(
        "uninstalled: webhook configurations {} removed; {deleted} managed copies deleted; {released} credentials released; {} claims deleted; the credentials stay",
        configs.join(", "),
        claims.items.len()
    ))
}
