//! The per-kind property table.
