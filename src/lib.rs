//! credgate: Run:ai-style credentials for plain Kubernetes.
//!
//! Data flow: [`server`] (TLS, HTTP) → [`admission`] (AdmissionReview in/out)
//! → pure policy ([`validate`], [`mutate`] over the [`credential`] model) →
//! [`patch`]; [`watch`] → [`index`] (the snapshot the policy reads, with
//! [`recent`] decisions the watches have not shown yet; [`live`] re-checks a
//! credential DELETE the snapshot allows);
//! [`controller`] (propagation into projects); [`cli`] (the credentials table).
//! [`certs`] issues development and built-in certificates.
#![forbid(unsafe_code)]

pub mod admission;
pub mod args;
pub mod builtin_certs;
pub mod certs;
pub mod claims;
pub mod cli;
pub mod controller;
pub mod copies;
pub mod credential;
pub mod dockerconfig;
pub mod index;
pub mod live;
pub mod metrics;
pub mod mutate;
pub mod patch;
pub mod policy;
pub mod recent;
pub mod registry;
pub mod resolve;
pub mod server;
pub mod validate;
pub mod watch;
pub mod workload;
