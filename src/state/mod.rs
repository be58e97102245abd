//! What credgate knows of the cluster: the [`index::Index`] snapshot the
//! policy reads, kept current by [`watch`]; [`recent`] decisions the watches
//! have not shown yet; [`live`] reads for the one rule that asks the API
//! server again; [`health`], the readiness the watches and the server share;
//! [`access`], the read access to Secrets credgate binds per namespace, and
//! [`connections`], the HTTP/2 connections its per-namespace watches share.
//!
//! [`SharedIndex`] is the one shared-state type: the watches write it, every
//! reader (admission, propagation) only reads it.

pub mod access;
pub mod connections;
pub mod health;
pub mod index;
pub mod live;
pub mod recent;
pub mod watch;

/// The shared snapshot: written by [`watch`], read by everyone else.
pub type SharedIndex = std::sync::Arc<std::sync::RwLock<index::Index>>;
