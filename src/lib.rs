//! LocalZure Service Bus: an emulator of Azure Service Bus.
//!
//! Module map (data flows one way, wire → broker → storage):
//! - [`amqp`]: the AMQP 1.0 endpoint the Azure SDKs use (SASL, CBS, links, `$management`).
//! - [`console`]: the web console (embedded page at `/`, JSON API under `/$console/api`).
//! - [`http`]: the REST API (messaging, ATOM management, admin, health) on warp.
//! - [`cli`]: `localzure storage …`, `health`, `stop`: admin-API client or offline storage access.
//! - [`server`]: binds, serves and shuts down in order; [`runtime`]: the tokio runtime it runs on.
//! - [`service`]: [`service::ServiceBusBackend`], which owns the broker, the journal and the
//!   snapshot backend, runs timers, and gives every request durable acknowledgement.
//! - [`broker`]: pure state. `Broker::apply(OpRecord)` is the only way state changes.
//! - [`storage`]: the operation log (journal) and snapshot backends (in-memory, SQLite, JSON,
//!   Redis).
//! - [`config`]: the one typed configuration struct: YAML layout, one `ENV` table.
//! - [`entities_config`]: the official emulator's `Config.json` entity file, loaded at start.
//! - [`metrics`]: the Prometheus registry behind `GET /metrics`; [`logging`]: log format set-up.
//! - [`names`]: entity-name rules, validated in one place.
//! - [`time`]: the injected clock, dates and xsd:duration.
//! - [`constants`]: limits and defaults.

pub mod amqp;
pub mod broker;
pub mod cli;
pub mod config;
pub mod console;
pub mod constants;
pub mod entities_config;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod names;
pub mod net;
pub mod runtime;
pub mod sas;
pub mod server;
pub mod service;
pub mod storage;
pub mod sync;
pub mod time;
pub mod tls;
pub mod wire_errors;

pub use config::{StorageConfig, StorageType};
pub use service::ServiceBusBackend;

/// The README's Rust examples compile as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
