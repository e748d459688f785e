//! Shared by the benches: sizes from the environment, and the smoke mode `cargo test` runs.

/// `cargo bench` runs a bench binary with `--bench`; `cargo test --all-targets` runs it without.
/// Then the bench is a smoke test: tiny sizes (the code paths run, the figures mean nothing)
/// and no targets enforced, so the test run does not spend minutes on a 1,000,000-message store.
pub fn smoke() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

/// `name` from the environment, else `full` under `cargo bench` and `small` in smoke mode.
pub fn env_usize(name: &str, full: usize, small: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke() { small } else { full })
}
