//! The REST API.

pub mod atom;
