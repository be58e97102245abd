//! The live check of a credential DELETE that the snapshot allows.
//!
//! The snapshot lags the API server by the watch delay: milliseconds, more
//! under load, and another credgate replica may have admitted a pod this one
//! has not seen yet. So before a DELETE of a credential that reaches at most
//! [`MAX_NAMESPACES`] namespaces is allowed (every project credential, small
//! departments), credgate lists the workloads of those namespaces (a
//! consistent read, in pages of [`PAGE`]) and decides again on what the API
//! server holds. A wider credential would need cluster-wide lists, seconds at
//! 100k pods, so its DELETE relies on the snapshot and [`crate::state::recent`].
//! The whole check has [`BUDGET`]; past it the snapshot's answer stands, with
//! a warning.

use std::time::Duration;

use futures::future::BoxFuture;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use crate::model::workload::{KindVisitor, Reference, Workload, WorkloadKind, references, visit};
use crate::state::index::Index;

/// A credential reaching more namespaces is not checked live.
pub const MAX_NAMESPACES: usize = 8;
/// Items per page of a list: each page is reduced to references before the
/// next is read, so tenants' stored objects cannot size credgate's memory.
pub const PAGE: u32 = crate::state::watch::WORKLOAD_PAGE;
/// Time for the whole check (the webhook's own timeout is 5 s).
pub const BUDGET: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("listing {kind} failed: {source}")]
    List {
        kind: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("the API server did not answer within {0:?}")]
    Timeout(Duration),
}

type Listed = (WorkloadKind, Vec<(String, String, Vec<Reference>)>);

/// The workloads of `namespaces` that reference anything, as the API server
/// holds them now, in an index of their own.
pub async fn workloads(client: &Client, namespaces: &[String]) -> Result<Index, LiveError> {
    let work = async {
        let lists = futures::future::try_join_all(
            WorkloadKind::ALL.map(|kind| visit(kind, ListKind { client, namespaces })),
        )
        .await?;
        let mut index = Index::default();
        for (kind, items) in lists {
            for (ns, name, refs) in items {
                index.set_workload(kind, &ns, &name, refs);
            }
        }
        Ok(index)
    };
    tokio::time::timeout(BUDGET, work)
        .await
        .map_err(|_| LiveError::Timeout(BUDGET))?
}

/// Lists one workload kind (reached through the table's [`visit`]).
struct ListKind<'a> {
    client: &'a Client,
    namespaces: &'a [String],
}

impl<'a> KindVisitor for ListKind<'a> {
    type Output = BoxFuture<'a, Result<Listed, LiveError>>;
    fn visit<K: Workload>(self) -> Self::Output {
        let ListKind { client, namespaces } = self;
        Box::pin(async move {
            let apis = namespaces
                .iter()
                .map(|ns| Api::<K>::namespaced(client.clone(), ns));
            let mut items = Vec::new();
            for api in apis {
                let mut params = ListParams::default().limit(PAGE);
                loop {
                    let page = api.list(&params).await.map_err(|source| LiveError::List {
                        kind: K::KIND.as_str(),
                        source,
                    })?;
                    for obj in &page.items {
                        let ns = obj.namespace().unwrap_or_default();
                        let (meta, spec) = obj.pod_parts();
                        let refs = references(meta, spec);
                        if !refs.is_empty() {
                            items.push((ns, obj.name_any(), refs));
                        }
                    }
                    match page.metadata.continue_.filter(|c| !c.is_empty()) {
                        Some(token) => params = params.continue_token(&token),
                        None => break,
                    }
                }
            }
            Ok((K::KIND, items))
        })
    }
}
