//! The credentials table CLI: `credgate list | describe | rename`, also run as
//! the kubectl plugin `kubectl credentials ...` (the same binary installed as
//! `kubectl-credentials`).
//!
//! It reads the cluster through the user's kubeconfig, so their RBAC applies:
//! Secrets are listed as metadata only (never data), namespaces and workloads
//! as far as the user may list them. Errors are one line that says what to do.

pub mod check;
pub mod create;
pub mod delete;
pub mod existing;
pub mod inventory;
mod mine;
pub mod table;
pub mod uninstall;

use clap::{Args, ValueEnum};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, PartialObjectMeta, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Client, Config, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::io::{IsTerminal, Write as _};
use std::time::Duration;

use crate::model::copy::MANAGED_LABEL;
use crate::model::credential::{Scope, annotation, label};
use crate::model::workload::{
    KindVisitor, Workload as WorkloadType, WorkloadKind, references, visit,
};
use crate::policy::Settings;
use crate::propagation::copies::Source;
use crate::state::index::NamespaceInfo;
use inventory::{Credential, Listing, Workload};
use table::{Column, Filter, Query, Sort, TableError};

/// Why a CLI command failed; printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Table(#[from] TableError),
    #[error(
        "no cluster to read: {0} (set KUBECONFIG, or pass --context with a context of your kubeconfig)"
    )]
    NoConfig(String),
    #[error(
        "cannot reach the cluster {cluster:?} to {action}: {reason} (is the API server up, and KUBECONFIG / --context right?)"
    )]
    Unreachable {
        cluster: String,
        action: String,
        reason: String,
    },
    #[error("forbidden: your RBAC does not allow you to {action} ({message})")]
    Forbidden { action: String, message: String },
    #[error("could not {action}: {message}")]
    Api { action: String, message: String },
    #[error("no credential named {name:?}{place}: `credgate list` shows the names")]
    NotFound { name: String, place: String },
    #[error("{count} credentials are named {name:?} ({secrets}): add -n NAMESPACE to pick one")]
    Ambiguous {
        name: String,
        count: usize,
        secrets: String,
    },
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    #[error(
        "no namespace is labelled runai/queue={0}: `kubectl get ns -L runai/queue` shows the projects"
    )]
    NoProject(String),
    #[error("not confirmed: {0}")]
    Confirm(String),
    #[error("{0}")]
    Usage(String),
    #[error("cannot read {path}: {reason}")]
    Input { path: String, reason: String },
    /// `credgate check` found what the webhook would refuse (exit code 1).
    #[error("{0}")]
    Refused(String),
    #[error("credgate could not be stopped first: {0}")]
    NotStopped(String),
}

/// How to reach the cluster, shared by every CLI command.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Kubeconfig context (default: the current one).
    #[arg(long)]
    pub context: Option<String>,
    /// Namespace of cluster- and department-scoped credentials.
    #[arg(long, env = "CREDGATE_CREDENTIALS_NAMESPACE", default_value = "runai")]
    pub credentials_namespace: String,
    /// A project's namespace: the credentials its workloads may use (its own,
    /// its department's and the cluster's, the last two read from their
    /// managed copies there). The credentials namespace: those stored there.
    /// Default: every namespace.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Like -n, with the project's name (the namespace labelled runai/queue=PROJECT).
    #[arg(long, conflicts_with = "namespace")]
    pub project: Option<String>,
    /// Every namespace (the default; kept for kubectl habits).
    #[arg(short = 'A', long, conflicts_with_all = ["namespace", "project"])]
    pub all_namespaces: bool,
}

/// The scope of a new credential (with `-n`/`--project` of [`ClusterArgs`]
/// for a project).
#[derive(Debug, Args)]
pub struct ScopeArgs {
    /// A department credential (stored in the credentials namespace).
    #[arg(long, conflicts_with_all = ["namespace", "project", "cluster_wide"])]
    pub department: Option<String>,
    /// A cluster credential (stored in the credentials namespace).
    #[arg(long = "cluster", conflicts_with_all = ["namespace", "project"])]
    pub cluster_wide: bool,
}

impl ScopeArgs {
    /// The namespace and scope asked for; one of `-n`, `--project`,
    /// `--department` or `--cluster` is required.
    fn resolve(&self, conn: &Connection) -> Result<(String, Scope), CliError> {
        let credentials = conn.settings.credentials_namespace.clone();
        match (&self.department, self.cluster_wide, &conn.namespace) {
            (Some(d), _, _) => Ok((credentials, Scope::Department(d.clone()))),
            (None, true, _) => Ok((credentials, Scope::Cluster)),
            (None, false, Some(ns)) if *ns != credentials => Ok((ns.clone(), Scope::Project)),
            _ => Err(CliError::Usage(
                "name the scope: -n PROJECT_NAMESPACE, --project PROJECT, --department DEPARTMENT or --cluster".into(),
            )),
        }
    }
}

/// Asks on the terminal before a change, after showing `plan`; without a
/// terminal only `yes` lets it go on.
fn confirm(plan: &str, yes: bool, flag_hint: &str) -> Result<(), CliError> {
    use std::io::BufRead as _;
    eprint!("{plan}");
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CliError::Confirm(format!(
            "no terminal to ask on; pass --yes to {flag_hint}"
        )));
    }
    eprint!("Continue? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(CliError::Confirm("nothing was changed".into()))
    }
}

/// A client and the name of the cluster it talks to.
struct Connection {
    client: Client,
    cluster: String,
    settings: Settings,
    namespace: Option<String>,
}

impl ClusterArgs {
    async fn connect(&self) -> Result<Connection, CliError> {
        let (config, cluster) = match Kubeconfig::read() {
            Ok(kubeconfig) => {
                let context = self
                    .context
                    .clone()
                    .or_else(|| kubeconfig.current_context.clone())
                    .unwrap_or_default();
                let cluster = kubeconfig
                    .contexts
                    .iter()
                    .find(|c| c.name == context)
                    .and_then(|c| c.context.as_ref())
                    .map(|c| c.cluster.clone())
                    .unwrap_or_else(|| context.clone());
                let options = KubeConfigOptions {
                    context: self.context.clone(),
                    ..KubeConfigOptions::default()
                };
                let config = Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(|e| CliError::NoConfig(e.to_string()))?;
                (config, cluster)
            }
            Err(kubeconfig_error) => match Config::incluster() {
                Ok(config) => (config, "in-cluster".to_owned()),
                Err(_) => return Err(CliError::NoConfig(kubeconfig_error.to_string())),
            },
        };
        let client = Client::try_from(config).map_err(|e| CliError::NoConfig(e.to_string()))?;
        let namespace = match &self.project {
            None => self.namespace.clone(),
            Some(project) => Some(project_namespace(&client, &cluster, project).await?),
        };
        Ok(Connection {
            client,
            cluster,
            settings: Settings {
                credentials_namespace: self.credentials_namespace.clone(),
                controller_identity: String::new(),
                propagation: false,
                own_namespace: String::new(),
                in_use_finalizer: false,
                fetchers: Default::default(),
            },
            namespace,
        })
    }
}

/// The namespace of `project` (labelled `runai/queue: <project>`).
async fn project_namespace(
    client: &Client,
    cluster: &str,
    project: &str,
) -> Result<String, CliError> {
    let api = Api::<PartialObjectMeta<Namespace>>::all(client.clone());
    let selector = format!("{}={project}", label::PROJECT);
    let action = format!("find the namespace of project {project:?} (or pass -n NAMESPACE)");
    let found = list_all(api, ListParams::default().labels(&selector))
        .await
        .map_err(|e| api_error(cluster, action, e))?;
    let mut names: Vec<String> = found.iter().map(ResourceExt::name_any).collect();
    match names.len() {
        1 => Ok(names.remove(0)),
        0 => Err(CliError::NoProject(project.to_owned())),
        _ => Err(CliError::Api {
            action: format!("find the namespace of project {project:?}"),
            message: format!(
                "namespaces {} are all labelled {selector}; pass -n NAMESPACE",
                names.join(", ")
            ),
        }),
    }
}

/// One line that says what failed and what to do.
fn api_error(cluster: &str, action: impl Into<String>, error: kube::Error) -> CliError {
    let action = action.into();
    let one_line = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    match error {
        kube::Error::Api(s) if s.code == 403 => CliError::Forbidden {
            action,
            message: one_line(&s.message),
        },
        kube::Error::Api(s) => CliError::Api {
            action,
            message: one_line(&s.message),
        },
        other => CliError::Unreachable {
            cluster: cluster.to_owned(),
            action,
            reason: one_line(&other.to_string()),
        },
    }
}

impl Connection {
    fn error(&self, action: impl Into<String>, error: kube::Error) -> CliError {
        api_error(&self.cluster, action, error)
    }

    /// The project namespace whose view is asked for (`-n` of a namespace
    /// other than the credentials namespace).
    fn project_view(&self) -> Option<&str> {
        self.namespace
            .as_deref()
            .filter(|ns| *ns != self.settings.credentials_namespace)
    }

    fn api<K>(&self, namespace: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    /// Reads what the table needs. Credentials must be readable; namespaces,
    /// copies and workloads are read as far as RBAC allows, with one note on
    /// stderr for what was left out.
    async fn listing(&self) -> Result<Listing, CliError> {
        let ns = self.namespace.as_deref();
        let where_ = ns.map_or("in any namespace".to_owned(), |n| {
            format!("in namespace {n}")
        });
        let secrets = list_all(
            self.api::<PartialObjectMeta<Secret>>(ns),
            ListParams::default().labels(label::RESOURCE),
        )
        .await
        .map_err(|e| self.error(format!("list Secrets {where_}"), e))?;
        let legacy = list_all(
            self.api::<PartialObjectMeta<Secret>>(ns),
            ListParams::default().labels(&format!(
                "{},!{}",
                label::CREDENTIALS_LEGACY,
                label::RESOURCE
            )),
        )
        .await
        .map_err(|e| self.error(format!("list Secrets {where_}"), e))?;

        let mut left_out = Vec::new();
        // A project's view adds the department and cluster credentials
        // themselves when the user may read them (else their copies stand in).
        let mut wider = Vec::new();
        if self.project_view().is_some() {
            let api =
                self.api::<PartialObjectMeta<Secret>>(Some(&self.settings.credentials_namespace));
            match list_all(api, ListParams::default().labels(label::RESOURCE)).await {
                Ok(list) => wider = list,
                Err(kube::Error::Api(s)) if s.code == 403 => {}
                Err(e) => return Err(self.error("list the credentials namespace", e)),
            }
        }
        let namespaces = match list_all(
            Api::<PartialObjectMeta<Namespace>>::all(self.client.clone()),
            ListParams::default(),
        )
        .await
        {
            Ok(list) => list
                .into_iter()
                .map(|n| {
                    let info = NamespaceInfo {
                        project: n.labels().get(label::PROJECT).cloned(),
                        department: n.labels().get(label::DEPARTMENT).cloned(),
                        terminating: n.metadata.deletion_timestamp.is_some(),
                    };
                    (n.name_any(), info)
                })
                .collect(),
            Err(kube::Error::Api(s)) if s.code == 403 => {
                left_out.push("namespaces");
                Vec::new()
            }
            Err(e) => return Err(self.error("list namespaces", e)),
        };
        // Usage and copies span namespaces: read them cluster-wide when allowed.
        let copies_in = |api: Api<PartialObjectMeta<Secret>>| {
            list_all(
                api,
                ListParams::default().labels(&format!("{MANAGED_LABEL}=true")),
            )
        };
        let copies = match self.project_view() {
            Some(ns) => copies_in(self.api(Some(ns))).await,
            None => self.wide(copies_in).await,
        };
        let copies = match copies {
            Ok(list) => list.into_iter().map(|c| c.metadata).collect(),
            Err(kube::Error::Api(s)) if s.code == 403 => {
                left_out.push("managed copies");
                Vec::new()
            }
            Err(e) => return Err(self.error("list managed copies", e)),
        };
        let mut workloads = Vec::new();
        for kind in WorkloadKind::ALL {
            match visit(kind, ListWorkloads(self)).await {
                Ok(w) => workloads.extend(w),
                Err(kube::Error::Api(s)) if s.code == 403 => left_out.push(kind.as_str()),
                Err(e) => return Err(self.error(format!("list {}s", kind.as_str()), e)),
            }
        }
        if !left_out.is_empty() {
            eprintln!(
                "note: your RBAC does not allow listing {}; usage and copies leave them out",
                left_out.join(", ")
            );
        }
        Ok(Listing {
            namespaces,
            secrets: secrets
                .into_iter()
                .chain(legacy)
                .chain(wider)
                .map(|s| s.metadata)
                .collect(),
            copies,
            workloads,
        })
    }

    /// What `listing` reads, in every namespace whatever `-n` says.
    async fn whole_listing(&self) -> Result<Listing, CliError> {
        let all = Connection {
            client: self.client.clone(),
            cluster: self.cluster.clone(),
            settings: self.settings.clone(),
            namespace: None,
        };
        all.listing().await
    }

    /// Runs `list` cluster-wide, or in the chosen namespace when cluster-wide is forbidden.
    async fn wide<K, T, F, Fut>(&self, list: F) -> kube::Result<Vec<T>>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
        F: Fn(Api<K>) -> Fut,
        Fut: std::future::Future<Output = kube::Result<Vec<T>>>,
    {
        match (list(self.api::<K>(None)).await, self.namespace.as_deref()) {
            (Err(kube::Error::Api(s)), Some(ns)) if s.code == 403 => {
                list(self.api::<K>(Some(ns))).await
            }
            (result, _) => result,
        }
    }

    async fn workloads<K: WorkloadType>(&self) -> kube::Result<Vec<Workload>> {
        let objects = self
            .wide(|api: Api<K>| list_all(api, ListParams::default()))
            .await?;
        Ok(objects
            .iter()
            .map(|o| {
                let (meta, spec) = o.pod_parts();
                Workload {
                    kind: K::KIND,
                    namespace: o.meta().namespace.clone().unwrap_or_default(),
                    name: o.meta().name.clone().unwrap_or_default(),
                    references: references(meta, spec),
                    owned: is_owned(o.meta()),
                    sources: Workload::sources_of(meta.annotations.as_ref()),
                }
            })
            .filter(|w| !w.references.is_empty())
            .collect())
    }

    async fn credentials(&self) -> Result<(Vec<Credential>, Listing), CliError> {
        let listing = self.listing().await?;
        let credentials = match self.project_view() {
            Some(ns) => inventory::project_view(&self.settings, &self.cluster, &listing, ns),
            None => inventory::build(&self.settings, &self.cluster, &listing),
        };
        Ok((credentials, listing))
    }

    /// The one credential called `name` (by `run.ai/name` or Secret name,
    /// either counting) stored in the `-n` namespace, or anywhere: what
    /// `delete` and `rename` change. A project's view plays no part, so a
    /// department or cluster credential is only found with its own namespace.
    async fn find_stored(&self, name: &str) -> Result<(Credential, Listing), CliError> {
        let listing = self.whole_listing().await?;
        let found: Vec<Credential> = inventory::build(&self.settings, &self.cluster, &listing)
            .into_iter()
            .filter(|c| self.namespace.as_ref().is_none_or(|ns| c.namespace == *ns))
            .filter(|c| c.name == name || c.kubernetes_name == name)
            .collect();
        let place = self
            .namespace
            .as_ref()
            .map(|n| format!(" stored in namespace {n}"));
        Ok((the_one(name, found, place)?, listing))
    }

    /// The one credential called `name` (its `run.ai/name` or its Secret's name).
    async fn find(&self, name: &str) -> Result<(Credential, Listing), CliError> {
        let (credentials, listing) = self.credentials().await?;
        let named = |pick: fn(&Credential) -> &str| -> Vec<Credential> {
            credentials
                .iter()
                .filter(|c| pick(c) == name)
                .cloned()
                .collect()
        };
        let mut found = named(|c| &c.name);
        if found.is_empty() {
            found = named(|c| &c.kubernetes_name);
        }
        // In a project's view the nearest scope wins, as it does for pods.
        if let Some(ns) = self.project_view()
            && found.len() > 1
            && found.iter().any(|c| c.namespace == ns)
        {
            found.retain(|c| c.namespace == ns);
        }
        let place = self
            .namespace
            .as_ref()
            .map(|n| format!(" in namespace {n}"));
        Ok((the_one(name, found, place)?, listing))
    }
}

/// The only credential `found` for `name`, or why there is not one.
fn the_one(
    name: &str,
    mut found: Vec<Credential>,
    place: Option<String>,
) -> Result<Credential, CliError> {
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(CliError::NotFound {
            name: name.to_owned(),
            place: place.unwrap_or_default(),
        }),
        count => Err(CliError::Ambiguous {
            name: name.to_owned(),
            count,
            secrets: found
                .iter()
                .map(Credential::secret_path)
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Lists one workload kind for the table (reached through the table of kinds' [`visit`]).
struct ListWorkloads<'a>(&'a Connection);

impl<'a> KindVisitor for ListWorkloads<'a> {
    type Output = futures::future::LocalBoxFuture<'a, kube::Result<Vec<Workload>>>;
    fn visit<K: WorkloadType>(self) -> Self::Output {
        Box::pin(self.0.workloads::<K>())
    }
}

/// Owned by a controller credgate also lists (so the owner stands for it).
fn is_owned(meta: &ObjectMeta) -> bool {
    meta.owner_references.iter().flatten().any(|o| {
        o.controller == Some(true)
            && WorkloadKind::ALL
                .iter()
                .any(|k| k.as_str() == o.kind && *k != WorkloadKind::Pod)
    })
}

/// Every item, 500 per page.
async fn list_all<K>(api: Api<K>, params: ListParams) -> kube::Result<Vec<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let mut params = params.limit(500);
    let mut out = Vec::new();
    loop {
        let page = api.list(&params).await?;
        out.extend(page.items);
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(out),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns that fit the terminal.
    Table,
    /// RFC 4180 CSV with a header row.
    Csv,
    Json,
}

/// `credgate list`: the credentials table.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
    /// Columns to show, in order, e.g. `credential,type,scope` (default: all).
    #[arg(long)]
    pub columns: Option<String>,
    /// COLUMN=VALUE, exact or with * ? [..] globs; repeat to narrow further.
    #[arg(long = "filter")]
    pub filters: Vec<String>,
    /// Rows where any column contains TEXT (case-insensitive).
    #[arg(long)]
    pub search: Option<String>,
    /// COLUMN or COLUMN:desc.
    #[arg(long)]
    pub sort: Option<String>,
    /// Print again whenever a credential or a pod changes (Ctrl-C stops).
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// With `-o csv`: cells as they are. By default a cell that starts with
    /// `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, so a
    /// spreadsheet does not run it as a formula.
    #[arg(long)]
    pub raw_csv: bool,
    /// Only the credentials you may change: Secret rights in their namespace
    /// and, for cluster and department credentials, the right on their scope
    /// (asked of the API server with SelfSubjectAccessReviews).
    #[arg(long)]
    pub mine: bool,
}

impl ListArgs {
    pub async fn run(self) -> Result<(), CliError> {
        let columns = match &self.columns {
            Some(spec) => table::parse_columns(spec)?,
            None => Column::ALL.to_vec(),
        };
        let query = Query {
            filters: self
                .filters
                .iter()
                .map(|f| f.parse::<Filter>())
                .collect::<Result<_, _>>()?,
            search: self.search.clone(),
            sort: self.sort.as_deref().map(str::parse::<Sort>).transpose()?,
        };
        let conn = self.cluster.connect().await?;
        if !self.watch {
            return self.print(&conn, &query, &columns, false).await;
        }
        // Refresh on any change of a labelled Secret or a pod, a moment after the burst.
        let ns = conn.namespace.as_deref();
        let secrets = watcher(
            conn.api::<PartialObjectMeta<Secret>>(ns),
            watcher::Config::default().labels(label::RESOURCE),
        )
        .map(|e| e.is_ok());
        let pods = watcher(
            conn.api::<PartialObjectMeta<Pod>>(ns),
            watcher::Config::default(),
        )
        .map(|e| e.is_ok());
        let mut changes = std::pin::pin!(futures::stream::select(secrets, pods));
        let mut first = true;
        self.print(&conn, &query, &columns, first).await?;
        while let Some(ok) = changes.next().await {
            if !ok {
                continue;
            }
            // Let a burst of events settle before reading the cluster again.
            while let Ok(Some(_)) =
                tokio::time::timeout(Duration::from_millis(300), changes.next()).await
            {}
            first = false;
            self.print(&conn, &query, &columns, first).await?;
        }
        Ok(())
    }

    async fn print(
        &self,
        conn: &Connection,
        query: &Query,
        columns: &[Column],
        first: bool,
    ) -> Result<(), CliError> {
        let (mut credentials, _) = conn.credentials().await?;
        if self.mine {
            credentials = mine::filter(conn, credentials).await?;
        }
        let rows = query.apply(credentials.iter().map(Credential::row).collect());
        let stdout = std::io::stdout();
        let terminal = stdout.is_terminal();
        let text = match self.output {
            Output::Csv => table::csv(&rows, columns, self.raw_csv, terminal),
            Output::Json => table::json(&rows, columns),
            Output::Table => {
                let width = terminal
                    .then(|| terminal_size::terminal_size().map(|(w, _)| usize::from(w.0)))
                    .flatten();
                table::text(&rows, columns, width)
            }
        };
        let mut out = stdout.lock();
        if self.watch && !first {
            if terminal && self.output == Output::Table {
                out.write_all(b"\x1b[H\x1b[2J")?;
            } else {
                out.write_all(b"\n")?;
            }
        }
        out.write_all(text.as_bytes())?;
        out.flush()?;
        Ok(())
    }
}

/// `credgate describe`: every field, the copies per namespace, and every workload that uses it.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// The credential's name (`run.ai/name`) or its Secret's name.
    pub credential: String,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
}

impl DescribeArgs {
    pub async fn run(self) -> Result<(), CliError> {
        let conn = self.cluster.connect().await?;
        let (mut credential, listing) = conn.find(&self.credential).await?;
        if credential.is_propagated() {
            // The data hash tells fresh copies from stale ones; skipped if the user may not read it.
            if let Ok(Some(source)) = Source::read(
                &conn.client,
                &credential.namespace,
                &credential.kubernetes_name,
            )
            .await
            {
                inventory::compare_copies(&mut credential, &source.hash(), &listing.copies);
            }
        }
        let text = match self.output {
            Output::Json => {
                let mut s = serde_json::to_string_pretty(&credential).unwrap_or_default();
                s.push('\n');
                s
            }
            Output::Table | Output::Csv => describe(&credential),
        };
        std::io::stdout().write_all(text.as_bytes())?;
        Ok(())
    }
}

fn describe(c: &Credential) -> String {
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    let fields = [
        ("Credential", c.name.clone()),
        ("Description", or_dash(&c.description)),
        ("Type", c.kind.clone()),
        ("Status", c.status.clone()),
        ("Status message", or_dash(&c.status_message)),
        ("Scope", c.scope.clone()),
        ("Kubernetes name", c.secret_path()),
        ("UID", c.uid.clone()),
        (
            "Existing secret",
            or_dash(c.existing_secret.as_deref().unwrap_or_default()),
        ),
        ("Keys", or_dash(&c.keys.join(", "))),
        ("Registries", or_dash(&c.registries.join(", "))),
        ("Created by", or_dash(&c.created_by)),
        ("Creation time", c.creation_time.clone()),
        ("Cluster", c.cluster.clone()),
    ];
    let mut out = String::new();
    for (k, v) in fields {
        out.push_str(&format!(
            "{:<17}{}\n",
            format!("{k}:"),
            table::printable(&v)
        ));
    }
    if c.is_propagated() {
        out.push_str(&format!("\nCopies ({}):\n", c.copies.len()));
        let rows: Vec<Vec<String>> = c
            .copies
            .iter()
            .map(|k| vec![k.namespace.clone(), k.secret.clone(), k.state.clone()])
            .collect();
        out.push_str(&indent(&table::aligned(
            &["NAMESPACE", "SECRET", "STATE"],
            &rows,
            None,
        )));
    }
    out.push_str(&format!("\nUsed by ({}):\n", c.users.len()));
    let rows: Vec<Vec<String>> = c
        .users
        .iter()
        .map(|u| {
            vec![
                u.namespace.clone(),
                u.kind.to_owned(),
                u.name.clone(),
                u.usage.to_owned(),
                u.sources.join(", "),
            ]
        })
        .collect();
    out.push_str(&indent(&table::aligned(
        &["NAMESPACE", "KIND", "NAME", "USAGE", "DATA SOURCES"],
        &rows,
        None,
    )));
    out
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

/// `credgate rename`: a new `run.ai/name` (and optionally description), checked by the webhook.
#[derive(Debug, Args)]
pub struct RenameArgs {
    /// The credential's current name (`run.ai/name`) or its Secret's name.
    pub credential: String,
    /// The new credential name (credgate refuses it while workloads name the
    /// credential by its current name, and lists them).
    #[arg(long, required_unless_present = "description")]
    pub to: Option<String>,
    /// A new description (with or without --to).
    #[arg(long)]
    pub description: Option<String>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

impl RenameArgs {
    pub async fn run(self) -> Result<(), CliError> {
        let conn = self.cluster.connect().await?;
        let (credential, _) = conn.find_stored(&self.credential).await?;
        let mut annotations = serde_json::Map::new();
        if let Some(to) = &self.to {
            annotations.insert(annotation::NAME.into(), to.clone().into());
        }
        if let Some(d) = &self.description {
            annotations.insert(annotation::DESCRIPTION.into(), d.clone().into());
        }
        let patch = serde_json::json!({ "metadata": { "annotations": annotations } });
        let api = conn.api::<Secret>(Some(&credential.namespace));
        api.patch_metadata(
            &credential.kubernetes_name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|e| conn.error(format!("rename credential {:?}", credential.name), e))?;
        match &self.to {
            Some(to) => println!(
                "credential {:?} is now {:?} (Secret {})",
                credential.name,
                to,
                credential.secret_path()
            ),
            None => println!(
                "credential {:?}: description changed (Secret {})",
                credential.name,
                credential.secret_path()
            ),
        }
        Ok(())
    }
}
