//! Propagation: cluster and department credentials reach their project
//! namespaces as managed [`copies`], kept by the [`controller`].

pub mod controller;
pub mod copies;
pub mod protection;
