//! The contract, as data: which Secrets are credentials ([`credential`]),
//! which workloads name them and how ([`workload`], with the one table of
//! workload kinds), managed copies ([`copy`]), `.dockerconfigjson` and
//! registry host names. Pure code over metadata; nothing here holds or prints
//! secret data.

pub mod copy;
pub mod credential;
pub mod datasource;
pub mod dockerconfig;
pub mod json;
pub mod registry;
pub mod workload;
