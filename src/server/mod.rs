//! HTTPS webhook server and plain-HTTP admin port.
//!
//! [`Server::bind`] loads the certificate before binding (a bad file fails the
//! start) and binds both ports; [`Server::run`] serves until the shutdown
//! future completes, then turns readiness false, stops accepting and lets
//! in-flight requests finish (bounded by the grace period).

pub mod admin;
pub mod http;
pub mod metrics;
pub mod tls;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::admission::Admission;
use crate::server::metrics::Metrics;
use crate::state::health::Health;
use tls::{CertStore, TlsError};

/// Server settings.
#[derive(Clone, Debug)]
pub struct Options {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// Verify clients against this CA bundle: only the API server may call.
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: names the client certificate must carry (any one).
    pub client_names: Vec<String>,
    pub limits: http::Limits,
    /// Longest wait for request headers (HTTP/1.1) and for a TLS handshake.
    pub header_timeout: Duration,
    /// Longest wait for in-flight requests after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {source}; choose another --{flag}")]
    Bind {
        addr: SocketAddr,
        flag: &'static str,
        source: std::io::Error,
    },
}

/// Both listeners, bound and ready to serve.
pub struct Server {
    options: Options,
    webhook: TcpListener,
    admin: TcpListener,
    tls: TlsAcceptor,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    admission: Admission,
}

impl Server {
    pub async fn bind(
        options: Options,
        admission: Admission,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Result<Self, ServerError> {
        let store = CertStore::load(&options.tls_cert, &options.tls_key, metrics.clone())?;
        let tls = TlsAcceptor::from(
            store.server_config(options.client_ca.as_deref(), &options.client_names)?,
        );
        let bind = |addr: SocketAddr, flag: &'static str| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, flag, source })
        };
        let webhook = bind(options.addr, "addr").await?;
        let admin = bind(options.admin_addr, "admin-addr").await?;
        Ok(Server {
            options,
            webhook,
            admin,
            tls,
            health,
            metrics,
            admission,
        })
    }

    pub fn webhook_addr(&self) -> SocketAddr {
        self.webhook.local_addr().unwrap_or(self.options.addr)
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().unwrap_or(self.options.admin_addr)
    }

    /// Readiness, for gates that must open before credgate is ready.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// Serves until `shutdown` completes, then drains.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server {
            options,
            webhook,
            admin,
            tls,
            health,
            metrics,
            admission,
        } = self;

        let admin_addr = admin
            .local_addr()
            .map_or_else(|_| options.admin_addr.to_string(), |a| a.to_string());
        let admin_state = Arc::new(admin::Admin {
            health: health.clone(),
            metrics: metrics.clone(),
        });
        let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin_task = tokio::spawn(serve_admin(admin, admin_state, admin_stopped));

        let webhook_state = Arc::new(http::Webhook {
            admission,
            metrics,
            limits: options.limits,
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(options.header_timeout)
            .max_buf_size(64 * 1024);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(256)
            .max_header_list_size(64 * 1024)
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20));

        let graceful = GracefulShutdown::new();
        let connections = Arc::new(Semaphore::new(options.max_connections));
        health.set_serving(true);
        info!(webhook = %webhook.local_addr().map_or_else(|_| options.addr.to_string(), |a| a.to_string()),
              admin = %admin_addr, "serving");
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                () = &mut shutdown => break,
                permit = connections.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = webhook.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let watcher = graceful.watcher();
            let tls = tls.clone();
            let builder = builder.clone();
            let state = webhook_state.clone();
            let handshake_timeout = options.header_timeout;
            tokio::spawn(async move {
                let _permit = permit;
                let stream = match tokio::time::timeout(handshake_timeout, tls.accept(stream)).await
                {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => return debug!(%peer, %error, "TLS handshake failed"),
                    Err(_) => return debug!(%peer, "TLS handshake timed out"),
                };
                let service = service_fn(move |req| http::handle(state.clone(), req));
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                if let Err(error) = watcher.watch(conn).await {
                    debug!(%peer, %error, "connection ended with an error");
                }
            });
        }

        health.set_shutting_down();
        drop(webhook);
        info!(grace = ?options.shutdown_grace, "shutting down: no new connections, finishing in-flight requests");
        if tokio::time::timeout(options.shutdown_grace, graceful.shutdown())
            .await
            .is_err()
        {
            warn!("in-flight requests did not finish within the grace period");
        }
        let _ = admin_stop.send(());
        let _ = admin_task.await;
        info!("stopped");
    }
}

async fn serve_admin(
    listener: TcpListener,
    state: Arc<admin::Admin>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(%error, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        let service = service_fn(move |req| admin::handle(state.clone(), req));
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(5))
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), graceful.shutdown()).await;
}
