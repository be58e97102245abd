//! Connections for the Secret watches, one per namespace (see
//! [`crate::state::access`]).
//!
//! kube-rs speaks HTTP/1.1, where each open watch holds a connection of its
//! own: with 10,000 project namespaces, 10,000 TLS connections on each side.
//! These clients speak HTTP/2 instead (ALPN `h2`, as kubectl and client-go
//! do), so watches share connections as streams. An HTTP/2 server bounds the
//! streams of one connection (the Go default is 250; kube-apiserver allows
//! 1,000), and a stream past the bound would wait for ever, so each client
//! carries at most [`WATCHES_PER_CONNECTION`] watches and more clients are
//! made as needed.
//!
//! All these clients together have at most [`REQUESTS_AT_ONCE`] requests
//! waiting for their answer's headers: a list, or a watch being set up (an
//! open watch holds no place). 10,000 namespaces starting their watches at
//! once would otherwise overflow the API server's queue for credgate
//! (priority and fairness), and each refused watch (429) backs off. A
//! request takes its place when it is sent, not when the client is readied
//! (as `tower::limit` does), so a request dropped while it waits holds none;
//! and each connection is pinged, so requests on a connection that died
//! quietly fail and give their places back.

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::ConfigExt;
use kube::{Client, Config};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tower::ServiceBuilder;

/// Watches carried by one HTTP/2 connection, well under any server's bound.
pub const WATCHES_PER_CONNECTION: usize = 100;

/// Requests of all the watch clients waiting for an answer at once.
pub const REQUESTS_AT_ONCE: usize = 32;

/// How often an HTTP/2 connection is pinged, and how long its answer may take
/// before the connection counts as dead.
const PING_EVERY: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait for a TCP connection to the API server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where each namespace's watch gets its client: HTTP/2 clients made from
/// one configuration, each with how many watches it carries.
pub struct WatchClients {
    config: Config,
    clients: Vec<(Client, usize)>,
    /// Places for requests waiting for an answer, shared by every client.
    requests: Arc<Semaphore>,
}

/// Which client a watch has, to give it back when the watch stops (`None`:
/// not one of these).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot(Option<usize>);

impl WatchClients {
    pub fn http2(config: Config) -> Self {
        WatchClients {
            config,
            clients: Vec::new(),
            requests: Arc::new(Semaphore::new(REQUESTS_AT_ONCE)),
        }
    }

    /// A client with room for one more watch.
    pub fn take(&mut self) -> Result<(Slot, Client), kube::Error> {
        let free = self
            .clients
            .iter()
            .position(|(_, n)| *n < WATCHES_PER_CONNECTION);
        let at = match free {
            Some(at) => at,
            None => {
                let client = http2_client(&self.config, self.requests.clone())?;
                self.clients.push((client, 0));
                self.clients.len() - 1
            }
        };
        self.clients[at].1 += 1;
        Ok((Slot(Some(at)), self.clients[at].0.clone()))
    }

    /// A watch that had `slot` stopped.
    pub fn give_back(&mut self, slot: Slot) {
        if let Slot(Some(at)) = slot
            && let Some((_, n)) = self.clients.get_mut(at)
        {
            *n = n.saturating_sub(1);
        }
    }
}

/// A kube-rs client over HTTP/2 only, with the configuration's TLS and
/// credentials, whose requests each hold a place of `requests` until their
/// answer's headers come.
fn http2_client(config: &Config, requests: Arc<Semaphore>) -> Result<Client, kube::Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let mut builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config.rustls_client_config()?)
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        let name = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|e| {
            kube::Error::Service(format!("invalid TLS server name {name:?}: {e}").into())
        })?;
        builder =
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    let https = builder.enable_http2().wrap_connector(http);
    let http2 = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .timer(TokioTimer::new())
        .http2_keep_alive_interval(PING_EVERY)
        .http2_keep_alive_timeout(PING_TIMEOUT)
        .http2_keep_alive_while_idle(true)
        .build(https);
    let limited = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let (http2, requests) = (http2.clone(), requests.clone());
        async move {
            // Held until the answer's headers come; given back if the
            // request is dropped first. The semaphore is never closed.
            let _place = requests.acquire_owned().await.ok();
            http2.request(request).await
        }
    });
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(limited);
    Ok(Client::new(service, config.default_namespace.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_carries_a_bounded_number_of_watches() {
        let config = Config::new("https://127.0.0.1:6443".parse().unwrap());
        let mut clients = WatchClients::http2(config);
        let mut slots = Vec::new();
        for _ in 0..WATCHES_PER_CONNECTION + 1 {
            slots.push(clients.take().unwrap().0);
        }
        let made = &clients.clients;
        assert_eq!(made.len(), 2);
        assert_eq!(made[0].1, WATCHES_PER_CONNECTION);
        assert_eq!(made[1].1, 1);
        // A slot given back is used again before a new connection is made.
        clients.give_back(slots[0]);
        assert_eq!(clients.take().unwrap().0, slots[0]);
    }

    /// Requests over every client together wait for at most
    /// [`REQUESTS_AT_ONCE`] answers; the rest wait in credgate, not in the
    /// API server's queue.
    #[tokio::test]
    async fn the_clients_together_bound_the_requests_waiting_for_an_answer() {
        use hyper_util::rt::TokioIo;
        use std::sync::atomic::{AtomicUsize, Ordering};
        // An HTTP/2 server that holds every answer until released.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let waiting = Arc::new(AtomicUsize::new(0));
        let (arrived, mut arrivals) = tokio::sync::watch::channel(0usize);
        let (release, released) = tokio::sync::watch::channel(false);
        let server = tokio::spawn({
            let waiting = waiting.clone();
            async move {
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    let (waiting, arrived, released) =
                        (waiting.clone(), arrived.clone(), released.clone());
                    let service = hyper::service::service_fn(move |_req| {
                        let (waiting, arrived, mut released) =
                            (waiting.clone(), arrived.clone(), released.clone());
                        async move {
                            waiting.fetch_add(1, Ordering::SeqCst);
                            arrived.send_modify(|n| *n += 1);
                            let _ = released.wait_for(|r| *r).await;
                            waiting.fetch_sub(1, Ordering::SeqCst);
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(hyper::body::Bytes::from("{}")),
                            ))
                        }
                    });
                    tokio::spawn(
                        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service),
                    );
                }
            }
        });
        let config = Config::new(format!("http://{address}").parse().unwrap());
        let mut clients = WatchClients::http2(config);
        // Two connections: the bound is shared, not per connection.
        let watches: Vec<Client> = (0..WATCHES_PER_CONNECTION + 10)
            .map(|_| clients.take().unwrap().1)
            .collect();
        assert_eq!(clients.clients.len(), 2);
        let send = |set: &mut tokio::task::JoinSet<_>, clients: &[Client]| {
            for client in clients {
                let client = client.clone();
                set.spawn(async move {
                    let request = http::Request::get("/api/v1/namespaces/a/secrets")
                        .body(Vec::new())
                        .unwrap();
                    client.request_text(request).await
                });
            }
        };
        // From the end: the second connection's 10 clients, then the first's.
        let last = |n: usize| &watches[watches.len() - n..];
        let mut sent = tokio::task::JoinSet::new();
        send(&mut sent, last(REQUESTS_AT_ONCE));
        arrivals.wait_for(|n| *n >= REQUESTS_AT_ONCE).await.unwrap();
        // More requests wait in credgate: nothing more arrives (a negative,
        // given time to).
        let mut queued = tokio::task::JoinSet::new();
        send(&mut queued, last(8));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(waiting.load(Ordering::SeqCst), REQUESTS_AT_ONCE);
        // Those dropped while they wait keep no place.
        queued.abort_all();
        while queued.join_next().await.is_some() {}
        release.send_replace(true);
        while let Some(done) = sent.join_next().await {
            assert_eq!(done.unwrap().unwrap(), "{}");
        }
        // Now from the first connection only: the dropped requests were the
        // second's, which must not have kept a place for itself.
        release.send_replace(false);
        send(&mut sent, &watches[..REQUESTS_AT_ONCE]);
        let all_places = arrivals.wait_for(|n| *n >= 2 * REQUESTS_AT_ONCE);
        tokio::time::timeout(Duration::from_secs(10), all_places)
            .await
            .expect("every place is free again")
            .unwrap();
        release.send_replace(true);
        while let Some(done) = sent.join_next().await {
            assert_eq!(done.unwrap().unwrap(), "{}");
        }
        server.abort();
    }
}
