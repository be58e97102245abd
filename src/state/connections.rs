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

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::ConfigExt;
use kube::{Client, Config};
use tower::ServiceBuilder;

/// Watches carried by one HTTP/2 connection, well under any server's bound.
pub const WATCHES_PER_CONNECTION: usize = 100;

/// Where each namespace's watch gets its client: HTTP/2 clients made from
/// one configuration, each with how many watches it carries.
pub struct WatchClients {
    config: Config,
    clients: Vec<(Client, usize)>,
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
                self.clients.push((http2_client(&self.config)?, 0));
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

/// A kube-rs client over HTTP/2 only, with the configuration's TLS and credentials.
fn http2_client(config: &Config) -> Result<Client, kube::Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
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
        .build(https);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(http2);
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
}
