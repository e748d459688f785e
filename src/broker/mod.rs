//! The broker: pure Service Bus state, no I/O, no clock.

pub mod entity;
pub mod error;
pub mod filter;
pub mod message;
pub mod op;
pub mod value;
