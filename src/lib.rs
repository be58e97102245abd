//! credgate: Run:ai-style credentials for plain Kubernetes.
//!
//! The modules are layers; each uses only those below it:
//!
//! ```text
//! app (process wiring, supervision)        cli (the credentials table)
//!   │                                        │
//! server (TLS, HTTP, admin, metrics)         │
//!   │                                        │
//! admission (AdmissionReview in/out, one handler per kind, claims)
//!   │                          propagation (controller, copies)
//!   │                            │
//! policy (validate, mutate, resolve, patch: pure functions)
//!   │                            │
//! state (index snapshot ← watch, recent, live, health)
//!   │
//! model (credential, workload kinds, copies, dockerconfig, registry)
//! ```
//!
//! [`certs`] issues development and built-in certificates.
#![forbid(unsafe_code)]

pub mod admission;
pub mod app;
pub mod args;
pub mod certs;
pub mod cli;
pub mod model;
pub mod policy;
pub mod propagation;
pub mod server;
pub mod state;

/// The layering rule, checked on the source: each layer uses only those
/// below it, and the pure policy has no API client, no async and no HTTP.
#[cfg(test)]
mod layers {
    use std::path::Path;

    /// Code lines (comments left out) of every `.rs` file under `src/<dir>`.
    fn code(dir: &str) -> Vec<(String, String)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
        let mut files = vec![root.clone()];
        let mut lines = Vec::new();
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for (n, line) in text.lines().enumerate() {
                    if !line.trim_start().starts_with("//") {
                        let at = format!("{}:{}", path.display(), n + 1);
                        lines.push((at, line.to_owned()));
                    }
                }
            }
        }
        assert!(!lines.is_empty(), "no code under src/{dir}");
        lines
    }

    fn forbid(dir: &str, words: &[&str]) {
        let found: Vec<String> = code(dir)
            .into_iter()
            .filter(|(_, line)| words.iter().any(|w| line.contains(w)))
            .map(|(at, line)| format!("{at}: {}", line.trim()))
            .collect();
        assert!(
            found.is_empty(),
            "src/{dir} reaches a layer above it or I/O it must not do:\n{}",
            found.join("\n")
        );
    }

    const ABOVE_STATE: &[&str] = &[
        "crate::policy",
        "crate::admission",
        "crate::propagation",
        "crate::server",
        "crate::cli",
        "crate::app",
        "crate::args",
    ];

    #[test]
    fn model_is_the_bottom_layer() {
        let mut words = ABOVE_STATE.to_vec();
        words.extend(["crate::state", "kube::Client", "kube::Api", "tokio"]);
        forbid("model", &words);
    }

    #[test]
    fn policy_is_pure() {
        forbid(
            "policy",
            &[
                "crate::admission",
                "crate::propagation",
                "crate::server",
                "crate::cli",
                "crate::app",
                "crate::args",
                "crate::state::watch",
                "crate::state::live",
                "crate::state::health",
                "kube::Client",
                "kube::Api",
                "kube::api",
                "kube::core::admission",
                "hyper",
                "http::",
                "tokio",
                "async ",
                ".await",
            ],
        );
    }

    #[test]
    fn state_uses_only_the_model() {
        forbid("state", ABOVE_STATE);
    }

    #[test]
    fn admission_and_propagation_stay_below_the_server() {
        let above = ["crate::server", "crate::cli", "crate::app", "crate::args"];
        forbid("admission", &above);
        let mut words = above.to_vec();
        words.push("crate::admission");
        forbid("propagation", &words);
    }

    #[test]
    fn the_server_knows_nothing_of_propagation_or_the_cli() {
        forbid(
            "server",
            &[
                "crate::propagation",
                "crate::cli",
                "crate::app",
                "crate::args",
            ],
        );
    }
}
