//! The process wiring of `credgate serve`: the snapshot and its watches, the
//! admission service, the server, the propagation controller, certificate
//! upkeep and claim releases; and their supervision.
//!
//! Every task the answers depend on is watched. If one ends (it should not:
//! each loops with backoff) or panics, credgate stops being ready, drains the
//! server and exits non-zero, so Kubernetes restarts it instead of it serving
//! a frozen snapshot. On SIGTERM it drains the same way and the controller
//! gives up the leader Lease, so another replica leads at once.

use anyhow::Context as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::admission::{Admission, claims};
use crate::args::{CertMode, ServeArgs};
use crate::policy::Settings;
use crate::server::Server;
use crate::server::metrics::Metrics;
use crate::state::access::SecretAccess;
use crate::state::connections::WatchClients;
use crate::state::health::Health;
use crate::state::watch::{self, Writer};

/// Readiness gate closed when a supervised task has ended.
pub const TASKS_GATE: &str = "background tasks";

/// Queued claim releases; past this the watch drops one (a stale claim is taken over later).
const CLAIM_RELEASE_QUEUE: usize = 1024;

/// Queued copy changes for the controller; past this it looks at every source instead.
const COPY_CHANGE_QUEUE: usize = 1024;

/// Time the controller gets to hand back the leader Lease at shutdown.
const LEASE_RELEASE_TIME: Duration = Duration::from_secs(5);

/// Runs `credgate serve` until SIGTERM (Ok) or until a supervised task ends (Err).
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if !args.policy.s3_sync_command.contains("{target}") {
        anyhow::bail!(
            "--s3-sync-command {:?} has no {{target}}: the command must write into the mount path",
            args.policy.s3_sync_command
        );
    }
    let settings = Settings {
        credentials_namespace: args.policy.credentials_namespace.clone(),
        controller_identity: args.policy.controller_identity.clone(),
        propagation: args.controller.controller,
        own_namespace: args.controller.leader_election_namespace.clone(),
        in_use_finalizer: args.controller.in_use_finalizer,
        fetchers: crate::policy::Fetchers {
            git_sync_image: args.policy.git_sync_image.clone(),
            s3_image: args.policy.s3_sync_image.clone(),
            s3_command: args
                .policy
                .s3_sync_command
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
        },
    };
    let metrics = Arc::new(Metrics::default());
    let config = kube::Config::infer().await.context(
        "no Kubernetes API to watch: run in a cluster, or set KUBECONFIG (scripts/dev-cluster env prints one)",
    )?;
    let client = kube::Client::try_from(config.clone())
        .context("the Kubernetes API configuration cannot be used")?;
    let certificates = (args.builtin_certs.cert_mode == CertMode::Builtin).then(|| {
        let options = args.builtin_certs.options(&args.server);
        if let Some(dir) = options.cert_file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        options
    });
    if let Some(options) = &certificates {
        crate::certs::builtin::first(&client, options).await;
    }
    let health = Arc::new(Health::default());
    let index = watch::new_index(&health);
    let admission = Admission::new(settings.clone(), index.clone(), Some(client.clone()));
    let server = Server::bind(args.server.options(), admission, metrics, health.clone()).await?;

    // Supervised tasks: each resolves to its name when it ends.
    let mut tasks: JoinSet<&'static str> = JoinSet::new();
    let stop = CancellationToken::new();
    let (namespaces_changed, on_namespaces) = tokio::sync::watch::channel(0u64);
    let (claim_releases, released) = tokio::sync::mpsc::channel(CLAIM_RELEASE_QUEUE);
    let (copy_changes, changed_copies) = tokio::sync::mpsc::channel(COPY_CHANGE_QUEUE);
    tasks.spawn(watch::run(
        client.clone(),
        WatchClients::http2(config),
        Writer {
            index: index.clone(),
            health: health.clone(),
        },
        SecretAccess::of(&settings.controller_identity),
        args.policy.credentials_namespace.clone(),
        watch::Outlets {
            namespaces_changed,
            claim_releases,
            copy_changes,
        },
    ));
    {
        let client = client.clone();
        let claims_namespace = args.controller.leader_election_namespace.clone();
        tasks.spawn(async move {
            claims::release_deleted(client, claims_namespace, released).await;
            "claim releases"
        });
    }
    let leads = args.controller.controller;
    if leads {
        let (client, stop) = (client.clone(), stop.clone());
        let lease_namespace = args.controller.leader_election_namespace;
        let settings = settings.clone();
        tasks.spawn(async move {
            crate::propagation::controller::run(
                client,
                index,
                settings,
                lease_namespace,
                on_namespaces,
                Arc::new(tokio::sync::Mutex::new(changed_copies)),
                stop,
            )
            .await;
            "propagation controller"
        });
    }
    if let Some(options) = certificates {
        let client = client.clone();
        tasks.spawn(async move {
            crate::certs::builtin::run(client, options).await;
            "certificate upkeep"
        });
    }

    let mut failed: Option<String> = None;
    {
        let shutdown = async {
            failed = first_to_end(&mut tasks, shutdown_signal()).await;
            if let Some(why) = &failed {
                error!(%why, "credgate cannot keep its answers current; stopping so that it is restarted");
                health.gate(TASKS_GATE);
            }
        };
        server.run(shutdown).await;
    }
    // The controller hands back the leader Lease; the rest stops at once.
    stop.cancel();
    if leads && failed.is_none() {
        let _ = tokio::time::timeout(LEASE_RELEASE_TIME, async {
            while let Some(ended) = tasks.join_next().await {
                if let Ok("propagation controller") = ended {
                    break;
                }
            }
        })
        .await;
    }
    tasks.shutdown().await;
    match failed {
        None => {
            info!("stopped");
            Ok(())
        }
        Some(why) => Err(anyhow::anyhow!(
            "{why}; exiting so that Kubernetes restarts credgate"
        )),
    }
}

/// Waits for `signal` (`None`) or for the first supervised task to end or
/// panic (`Some`, saying which and how).
pub async fn first_to_end(
    tasks: &mut JoinSet<&'static str>,
    signal: impl std::future::Future<Output = ()>,
) -> Option<String> {
    tokio::select! {
        () = signal => None,
        Some(ended) = tasks.join_next() => Some(match ended {
            Ok(task) => format!("the {task} task ended"),
            Err(e) => format!("a background task failed: {e}"),
        }),
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = term => info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn forever() -> &'static str {
        std::future::pending::<()>().await;
        "never"
    }

    #[tokio::test]
    async fn the_first_task_to_end_stops_the_process() {
        let mut tasks = JoinSet::new();
        tasks.spawn(forever());
        tasks.spawn(async { "watches" });
        let why = first_to_end(&mut tasks, std::future::pending()).await;
        assert_eq!(why.as_deref(), Some("the watches task ended"));
    }

    #[tokio::test]
    async fn a_panicking_task_stops_the_process() {
        let mut tasks: JoinSet<&'static str> = JoinSet::new();
        tasks.spawn(forever());
        tasks.spawn(async { panic!("boom") });
        let why = first_to_end(&mut tasks, std::future::pending()).await;
        assert!(why.is_some_and(|w| w.contains("failed") && w.contains("panic")));
    }

    #[tokio::test]
    async fn a_signal_is_a_clean_stop() {
        let mut tasks = JoinSet::new();
        tasks.spawn(forever());
        assert_eq!(first_to_end(&mut tasks, async {}).await, None);
        assert_eq!(
            tasks.len(),
            1,
            "the tasks are still there to be stopped in order"
        );
    }
}
