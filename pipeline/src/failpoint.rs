//! Crash injection for the crash-safety tests.
//!
//! With `EIGENTRACE_FAILPOINT=<name>` (or `<name>:<n>` for the n-th hit,
//! 1-based), the process aborts at once when it reaches that point: no
//! destructors run, no buffers are flushed, exactly like `kill -9` there.
//! Without the variable a hit costs one relaxed atomic load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

fn target() -> &'static Option<(String, u64)> {
    TARGET.get_or_init(|| {
        let v = std::env::var("EIGENTRACE_FAILPOINT").ok()?;
        let (name, n) = match v.rsplit_once(':') {
            Some((name, n)) => (name.to_string(), n.parse().unwrap_or(1)),
            None => (v, 1),
        };
        Some((name, n))
    })
}

/// Die here if this is the configured failpoint.
pub fn hit(name: &str) {
    if let Some((t, n)) = target() {
        if t == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            eprintln!("failpoint {name}: aborting");
            std::process::abort();
        }
    }
}
