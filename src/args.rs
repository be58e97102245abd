//! Command line: `credgate serve | certs | list | describe | rename | create |
//! delete | existing-secrets | check | uninstall`, one
//! flattened group per concern. The process wiring of `serve` is [`crate::app`].

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;
use tracing::info;

use crate::certs;
use crate::cli;
use crate::server;

#[derive(Debug, Parser)]
#[command(
    name = "credgate",
    version,
    about = "Run:ai-style credentials for plain Kubernetes: an admission webhook"
)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the admission webhook (HTTPS) and the admin port (HTTP).
    Serve(Box<ServeArgs>),
    /// Issue a CA and a serving certificate (rcgen, ECDSA P-256) and print the caBundle.
    Certs(CertsArgs),
    /// The credentials table: filter, search, sort, choose columns, CSV/JSON, --watch.
    List(cli::ListArgs),
    /// One credential: every field, its copies per namespace, and the workloads that use it.
    Describe(cli::DescribeArgs),
    /// Give a credential a new name (and description); the webhook checks it is unique.
    Rename(cli::RenameArgs),
    /// Create a credential of one type in one scope, through the API server (every rule applies).
    Create(Box<cli::create::CreateArgs>),
    /// Delete a credential after showing what goes and who uses it (asks, or --yes).
    Delete(cli::delete::DeleteArgs),
    /// The Secrets that can back a new credential in a scope (created in advance, unused).
    ExistingSecrets(cli::existing::ExistingSecretsArgs),
    /// Check manifests offline against credgate's rules, like `kyverno apply`; exit 1 if refused.
    Check(cli::check::CheckArgs),
    /// Remove credgate from the cluster: webhooks, managed copies, its finalizer, status and claims.
    Uninstall(cli::uninstall::UninstallArgs),
}

impl Command {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Serve(args) => crate::app::serve(*args).await,
            Command::Certs(args) => args.run(),
            Command::List(args) => Ok(args.run().await?),
            Command::Describe(args) => Ok(args.run().await?),
            Command::Rename(args) => Ok(args.run().await?),
            Command::Uninstall(args) => Ok(args.run().await?),
            Command::Create(args) => Ok(args.run().await?),
            Command::Delete(args) => Ok(args.run().await?),
            Command::ExistingSecrets(args) => Ok(args.run().await?),
            Command::Check(args) => Ok(args.run().await?),
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log filter, e.g. `info` or `credgate=debug,kube=warn` (default: `info` for
    /// `serve` and `certs`; `off` for the table commands, whose errors are one line).
    #[arg(long, env = "CREDGATE_LOG", global = true)]
    pub log_level: Option<String>,
    #[arg(
        long,
        value_enum,
        env = "CREDGATE_LOG_FORMAT",
        default_value = "plain",
        global = true
    )]
    pub log_format: LogFormat,
}

impl LogArgs {
    pub fn init(&self, command: &Command) -> anyhow::Result<()> {
        let default = match command {
            Command::Serve(_) | Command::Certs(_) => "info",
            Command::List(_)
            | Command::Describe(_)
            | Command::Rename(_)
            | Command::Uninstall(_)
            | Command::Create(_)
            | Command::Delete(_)
            | Command::ExistingSecrets(_)
            | Command::Check(_) => "off",
        };
        let level = self.log_level.as_deref().unwrap_or(default);
        let filter = tracing_subscriber::EnvFilter::try_new(level)
            .with_context(|| format!("--log-level {level:?} is not a valid filter"))?;
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr);
        match self.log_format {
            LogFormat::Plain => builder.init(),
            LogFormat::Json => builder.json().flatten_event(true).init(),
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub controller: ControllerArgs,
    #[command(flatten)]
    pub builtin_certs: BuiltinCertArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CertMode {
    /// Serve --tls-cert/--tls-key as given (cert-manager, or `credgate certs`); reloaded on change.
    Files,
    /// Keep a CA and serving certificate in a Secret, publish the caBundle, renew before expiry.
    Builtin,
}

/// Built-in certificates (`--cert-mode builtin`).
#[derive(Debug, Args)]
pub struct BuiltinCertArgs {
    #[arg(long, value_enum, default_value = "files")]
    pub cert_mode: CertMode,
    /// Secret that holds the CA and serving certificate (the replicas' source of truth).
    #[arg(long, default_value = "credgate-tls")]
    pub cert_secret: String,
    /// Namespace of that Secret (credgate's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "credgate-system")]
    pub cert_namespace: String,
    /// Validating and mutating webhook configurations whose caBundle credgate keeps (repeatable).
    #[arg(long = "webhook-config", default_value = "credgate")]
    pub webhook_configs: Vec<String>,
    /// DNS name of the serving certificate (repeatable; default: the Service's names).
    #[arg(long = "cert-dns")]
    pub dns: Vec<String>,
    /// IP address of the serving certificate (repeatable).
    #[arg(long = "cert-ip")]
    pub ips: Vec<IpAddr>,
    /// Lifetime of a CA; the next one is staged in its last third.
    #[arg(long, default_value_t = 5 * 365 * 86_400)]
    pub ca_validity_secs: u64,
    /// Lifetime of a serving certificate; renewed in its last third.
    #[arg(long, default_value_t = 90 * 86_400)]
    pub cert_validity_secs: u64,
    /// Seconds between reads of the Secret (overlaps last three of them).
    #[arg(long, default_value_t = 60)]
    pub cert_check_secs: u64,
}

impl BuiltinCertArgs {
    pub fn options(&self, server: &ServerArgs) -> crate::certs::builtin::Options {
        let ns = &self.cert_namespace;
        let dns = if self.dns.is_empty() && self.ips.is_empty() {
            vec![
                format!("credgate.{ns}.svc"),
                format!("credgate.{ns}.svc.cluster.local"),
                format!("credgate.{ns}"),
                "credgate".to_owned(),
            ]
        } else {
            self.dns.clone()
        };
        crate::certs::builtin::Options {
            namespace: ns.clone(),
            secret: self.cert_secret.clone(),
            webhook_configs: self.webhook_configs.clone(),
            dns,
            ips: self.ips.clone(),
            ca_validity: Duration::from_secs(self.ca_validity_secs.max(3)),
            cert_validity: Duration::from_secs(self.cert_validity_secs.max(3)),
            interval: Duration::from_secs(self.cert_check_secs.max(1)),
            cert_file: server.tls_cert.clone(),
            key_file: server.tls_key.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address of the HTTPS webhook.
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub addr: SocketAddr,
    /// Address of the plain-HTTP admin port (/livez, /readyz, /metrics).
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub admin_addr: SocketAddr,
    /// Serving certificate (PEM); re-read when the file changes.
    #[arg(long, default_value = "certs/tls.crt")]
    pub tls_cert: PathBuf,
    /// Key of the serving certificate (PEM); re-read when the file changes.
    #[arg(long, default_value = "certs/tls.key")]
    pub tls_key: PathBuf,
    /// CA bundle (PEM) of the client certificate the API server presents to
    /// webhooks (its --admission-control-config-file). With it, every other
    /// client is refused during the TLS handshake.
    #[arg(long, env = "CREDGATE_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// With --client-ca: a name the API server's client certificate carries,
    /// as its common name or a DNS name (repeat for several). Needed when the
    /// CA also signs other clients, such as a cluster's own CA.
    #[arg(long = "client-name", requires = "client_ca", value_name = "NAME")]
    pub client_names: Vec<String>,
    /// Largest request body in bytes (an UPDATE review carries two objects).
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Seconds to receive request headers or finish a TLS handshake.
    #[arg(long, default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// Seconds to receive a whole request body.
    #[arg(long, default_value_t = 10)]
    pub body_timeout_secs: u64,
    /// Seconds in-flight requests get after SIGTERM.
    #[arg(long, default_value_t = 25)]
    pub shutdown_grace_secs: u64,
    /// Connections served at once.
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Namespace of cluster- and department-scoped credentials.
    #[arg(long, env = "CREDGATE_CREDENTIALS_NAMESPACE", default_value = "runai")]
    pub credentials_namespace: String,
    /// The user credgate acts as (its ServiceAccount): the only one that may write managed copies.
    #[arg(
        long,
        env = "CREDGATE_CONTROLLER_IDENTITY",
        default_value = "system:serviceaccount:credgate-system:credgate"
    )]
    pub controller_identity: String,
    /// Image of git-sync v4, which clones Git data sources (`run.ai/git-source`).
    #[arg(long, env = "CREDGATE_GIT_SYNC_IMAGE", default_value = crate::policy::GIT_SYNC_IMAGE)]
    pub git_sync_image: String,
    /// Image that syncs S3 data sources (`run.ai/s3-source`).
    #[arg(long, env = "CREDGATE_S3_SYNC_IMAGE", default_value = crate::policy::S3_IMAGE)]
    pub s3_sync_image: String,
    /// The S3 sync command, split at spaces; {source} is s3://bucket/prefix
    /// and {target} the mount path.
    #[arg(long, env = "CREDGATE_S3_SYNC_COMMAND", default_value = crate::policy::S3_COMMAND)]
    pub s3_sync_command: String,
}

#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// Run the propagation controller (one replica at a time leads; the webhook runs on all).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub controller: bool,
    /// Give credentials the in-use finalizer, which the controller removes
    /// only once no stored workload names the credential (after a grace
    /// longer than the webhook timeout): in-use protection across replicas.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub in_use_finalizer: bool,
    /// credgate's own namespace, where its Leases live: the controller's
    /// leader Lease and the existing-secret claims (credgate needs Lease
    /// rights nowhere else).
    #[arg(
        long,
        env = "CREDGATE_LEADER_ELECTION_NAMESPACE",
        default_value = "credgate-system"
    )]
    pub leader_election_namespace: String,
}

impl ServerArgs {
    pub fn options(&self) -> server::Options {
        server::Options {
            addr: self.addr,
            admin_addr: self.admin_addr,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            client_ca: self.client_ca.clone(),
            client_names: self.client_names.clone(),
            limits: server::http::Limits {
                max_body_bytes: self.max_body_bytes,
                body_timeout: Duration::from_secs(self.body_timeout_secs),
            },
            header_timeout: Duration::from_secs(self.header_timeout_secs),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            max_connections: self.max_connections.max(1),
        }
    }
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Folder for ca.crt, ca.key, tls.crt and tls.key.
    #[arg(long, default_value = "certs")]
    pub out: PathBuf,
    /// DNS name of the serving certificate (repeatable). Default: localhost and the in-cluster service names.
    #[arg(long = "dns")]
    pub dns: Vec<String>,
    /// IP address of the serving certificate (repeatable). Default: 127.0.0.1.
    #[arg(long = "ip")]
    pub ips: Vec<IpAddr>,
    /// Days the serving certificate is valid.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Replace the CA in --out instead of reusing it (the caBundle changes).
    #[arg(long)]
    pub new_ca: bool,
    /// Issue a client certificate with this common name instead of a serving
    /// one: the API server presents it to credgate (see `serve --client-ca`).
    #[arg(long, value_name = "COMMON_NAME")]
    pub client: Option<String>,
}

impl CertsArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let issued = certs::issue(&certs::Request {
            out: self.out,
            dns: self.dns,
            ips: self.ips,
            days: self.days,
            new_ca: self.new_ca,
            client: self.client,
        })?;
        info!(
            ca = %issued.ca_cert.display(),
            cert = %issued.tls_cert.display(),
            key = %issued.tls_key.display(),
            ca_reused = issued.ca_reused,
            "certificates written; caBundle on stdout"
        );
        println!("{}", issued.ca_bundle);
        Ok(())
    }
}
