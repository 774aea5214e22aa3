//! The process's log: `tracing` events written to stderr, read once at start-up from the
//! environment: `PGHERD_LOG` (else `RUST_LOG`) is the filter (`info` when unset, e.g.
//! `PGHERD_LOG=info,pgherd_local=debug`), `PGHERD_LOG_FORMAT=json` writes one JSON object per
//! line (for Kubernetes log collectors) instead of readable text.

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Install the process's subscriber. A filter that does not parse is reported and `info` used.
pub fn init() {
    let filter_text = std::env::var("PGHERD_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_string());
    let format = match std::env::var("PGHERD_LOG_FORMAT").as_deref() {
        Ok("json") => Format::Json,
        _ => Format::Text,
    };
    let (filter, problem) = match EnvFilter::try_new(&filter_text) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("info"), Some(e)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let installed = match format {
        Format::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        Format::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
    if installed.is_err() {
        return; // one already installed (tests)
    }
    if let Some(e) = problem {
        tracing::warn!("PGHERD_LOG {filter_text:?} is not a valid filter ({e}); logging at info");
    }
}
