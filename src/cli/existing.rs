//! `credgate existing-secrets`: the Secrets that can back a new credential in
//! a scope, the seeds' "select a secret from the list". The rule is the
//! webhook's own ([`can_back`]); a Secret that already backs a credential is
//! left out, and so are credentials created with their own data.
//!
//! The Secrets' data is read for the shape check only, and dropped.

use clap::Args;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{ListParams, PartialObjectMeta};
use std::collections::BTreeSet;
use std::io::Write as _;

use super::create::TypeArg;
use super::{CliError, ClusterArgs, Output, ScopeArgs, list_all, table};
use crate::model::credential::{CredentialType, annotation, label};
use crate::policy::validate::can_back;

/// `credgate existing-secrets`.
#[derive(Debug, Args)]
pub struct ExistingSecretsArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Only Secrets that can back a credential of this type.
    #[arg(long = "type", value_enum)]
    pub kind: Option<TypeArg>,
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
}

/// A Secret that can back a new credential.
#[derive(Debug, PartialEq, Eq, serde::Serialize)]
pub struct Candidate {
    pub namespace: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub creation_time: String,
}

impl ExistingSecretsArgs {
    pub async fn run(self) -> Result<(), CliError> {
        let conn = self.cluster.connect().await?;
        let (namespace, scope) = self.scope.resolve(&conn)?;
        let where_ = format!("list Secrets in namespace {namespace}");
        let secrets = list_all(
            conn.api::<Secret>(Some(&namespace)),
            ListParams::default().labels(label::RESOURCE),
        )
        .await
        .map_err(|e| conn.error(&where_, e))?;
        let legacy = list_all(
            conn.api::<PartialObjectMeta<Secret>>(Some(&namespace)),
            ListParams::default().labels(label::CREDENTIALS_LEGACY),
        )
        .await
        .map_err(|e| conn.error(&where_, e))?;
        // Secrets some credential already names as its existing secret.
        let backing: BTreeSet<String> = secrets
            .iter()
            .map(|s| &s.metadata)
            .chain(legacy.iter().map(|s| &s.metadata))
            .filter_map(|md| md.annotations.as_ref()?.get(annotation::EXISTING_SECRET))
            .cloned()
            .collect();
        let wanted = self.kind.map(CredentialType::from);
        let candidates: Vec<Candidate> = secrets
            .iter()
            .filter(|s| !backing.contains(&s.name_any()))
            .filter_map(|s| {
                let kind: CredentialType = s.labels().get(label::RESOURCE)?.parse().ok()?;
                if wanted.is_some_and(|w| w != kind) {
                    return None;
                }
                can_back(s, &namespace, kind, &scope).ok()?;
                Some(Candidate {
                    namespace: namespace.clone(),
                    name: s.name_any(),
                    kind: kind.as_str(),
                    creation_time: s
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| t.0.to_string())
                        .unwrap_or_default(),
                })
            })
            .collect();
        drop(secrets);
        let text = match self.output {
            Output::Json => {
                let mut s = serde_json::to_string_pretty(&candidates).unwrap_or_default();
                s.push('\n');
                s
            }
            Output::Table if candidates.is_empty() => {
                eprintln!(
                    "no Secret in namespace {namespace} can back a new {} credential: label one as the seeds say (run.ai/resource and the scope's label), or create the credential with its own data",
                    scope.key()
                );
                String::new()
            }
            Output::Csv => {
                let mut out = csv::WriterBuilder::new()
                    .terminator(csv::Terminator::CRLF)
                    .from_writer(Vec::new());
                let _ = out.write_record(["Secret", "Type", "Creation time"]);
                for c in &candidates {
                    let _ = out.write_record([c.name.as_str(), c.kind, c.creation_time.as_str()]);
                }
                String::from_utf8(out.into_inner().unwrap_or_default()).unwrap_or_default()
            }
            Output::Table => {
                let rows: Vec<Vec<String>> = candidates
                    .iter()
                    .map(|c| {
                        let kind: Option<CredentialType> = c.kind.parse().ok();
                        vec![
                            c.name.clone(),
                            kind.map_or(c.kind, CredentialType::display_name).to_owned(),
                            c.creation_time.clone(),
                        ]
                    })
                    .collect();
                table::aligned(&["SECRET", "TYPE", "CREATION TIME"], &rows, None)
            }
        };
        std::io::stdout().write_all(text.as_bytes())?;
        Ok(())
    }
}
