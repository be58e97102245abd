//! Liveness and readiness. Ready means: serving and not shutting down, and
//! every registered gate (e.g. a watch that must sync first) is open.

use std::sync::Mutex;

/// Readiness state shared by the server, the admin port and whatever must sync first.
#[derive(Debug, Default)]
pub struct Health {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    serving: bool,
    shutting_down: bool,
    /// Gates that are still closed, by name.
    waiting_for: Vec<String>,
}

impl Health {
    /// Registers a gate that keeps readiness false until [`Health::open`] is called with its name.
    pub fn gate(&self, name: impl Into<String>) {
        let name = name.into();
        let mut state = self.lock();
        if !state.waiting_for.contains(&name) {
            state.waiting_for.push(name);
        }
    }

    /// Opens a gate.
    pub fn open(&self, name: &str) {
        self.lock().waiting_for.retain(|n| n != name);
    }

    pub(crate) fn set_serving(&self, serving: bool) {
        self.lock().serving = serving;
    }

    pub(crate) fn set_shutting_down(&self) {
        self.lock().shutting_down = true;
    }

    /// `None` when ready; otherwise why not.
    pub fn not_ready_reason(&self) -> Option<String> {
        let state = self.lock();
        if state.shutting_down {
            Some("shutting down".into())
        } else if !state.serving {
            Some("not serving yet".into())
        } else if !state.waiting_for.is_empty() {
            Some(format!("waiting for {}", state.waiting_for.join(", ")))
        } else {
            None
        }
    }

    pub fn is_ready(&self) -> bool {
        self.not_ready_reason().is_none()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_and_shutdown() {
        let h = Health::default();
        assert_eq!(h.not_ready_reason().as_deref(), Some("not serving yet"));
        h.set_serving(true);
        assert!(h.is_ready());
        h.gate("secrets watch");
        assert_eq!(
            h.not_ready_reason().as_deref(),
            Some("waiting for secrets watch")
        );
        h.open("secrets watch");
        assert!(h.is_ready());
        h.set_shutting_down();
        assert_eq!(h.not_ready_reason().as_deref(), Some("shutting down"));
    }
}
