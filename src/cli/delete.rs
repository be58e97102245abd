//! `credgate delete <credential>`: shows what goes and who uses it, asks on a
//! terminal (`--yes` otherwise), then deletes through the API server, so the
//! webhook's in-use rule applies and its refusal, naming the users, is printed.

use clap::Args;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Preconditions};

use super::inventory::{Credential, User};
use super::{CliError, ClusterArgs, confirm};

/// `credgate delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The credential's name (`run.ai/name`) or its Secret's name; with -n,
    /// one stored in that namespace (a department or cluster credential: -n
    /// with the credentials namespace).
    pub credential: String,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Delete without asking (required when there is no terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

impl DeleteArgs {
    pub async fn run(self) -> Result<(), CliError> {
        let conn = self.cluster.connect().await?;
        let (credential, _) = conn.find_stored(&self.credential).await?;
        confirm(&plan(&credential), self.yes, "delete")?;
        let api = conn.api::<Secret>(Some(&credential.namespace));
        let what = format!("delete credential {:?}", credential.name);
        // Exactly the Secret shown: not one re-created under its name meanwhile.
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(credential.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let deleted = api
            .delete(&credential.kubernetes_name, &params)
            .await
            .map_err(|e| conn.error(what, e))?;
        match deleted.is_left() {
            true => println!(
                "credential {:?} is being deleted (Secret {}): it shows Deleting… until its copies are gone",
                credential.name,
                credential.secret_path()
            ),
            false => println!(
                "credential {:?} deleted (Secret {})",
                credential.name,
                credential.secret_path()
            ),
        }
        Ok(())
    }
}

/// What the deletion removes, and who uses the credential.
fn plan(c: &Credential) -> String {
    let mut out = format!(
        "credential {:?} ({}, {}): Secret {} will be deleted\n",
        super::table::printable(&c.name),
        c.kind,
        c.scope,
        c.secret_path()
    );
    if let Some(existing) = &c.existing_secret {
        out.push_str(&format!(
            "  the existing Secret {}/{} behind it stays\n",
            c.namespace,
            super::table::printable(existing)
        ));
    }
    if !c.copies.is_empty() {
        out.push_str(&format!(
            "  its copies in {} project namespace(s) are deleted with it\n",
            c.copies.len()
        ));
    }
    if c.users.is_empty() {
        out.push_str("  no workload uses it\n");
    } else {
        let users: Vec<String> = c.users.iter().map(User::path).collect();
        out.push_str(&format!(
            "  used by {}: credgate refuses the deletion while they name it\n",
            users.join(", ")
        ));
    }
    out
}
