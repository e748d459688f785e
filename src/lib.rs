//! LocalZure Service Bus: an emulator of Azure Service Bus.
//!
//! Module map (data flows one way, wire → service → broker → storage):
//! - [`server`]: binds every port and serves it, shuts down in order; [`net`]: what each
//!   accepted connection speaks (TLS, AMQP, HTTP, AMQP over WebSockets), told by its first
//!   bytes; [`tls`]: the certificate (user-provided, or a generated local CA);
//!   [`runtime`]: the tokio runtime it runs on.
//! - [`amqp`]: the AMQP 1.0 endpoint the Azure SDKs use (`connection/`: SASL, attach,
//!   transfers, delivery, settlement, authorization, the transaction coordinator;
//!   `management/`: one file per `$management` operation family).
//! - [`http`]: the REST API on warp (messaging, ATOM management in `atom/`, admin, health,
//!   metrics); [`console`]: the web console (embedded page at `/`, JSON API under
//!   `/$console/api`).
//! - [`wire_errors`]: one table of every error's HTTP status and AMQP condition.
//! - [`cli`]: `localzure storage …`, `health`, `peek`, `tls ca`, `stop`: an admin-API client, or
//!   offline storage access.
//! - [`service`]: [`service::ServiceBusBackend`], which owns the broker, the journal and the
//!   snapshot backend, runs timers, gives every request durable acknowledgement, and offers
//!   typed methods (send, settle, renew, sessions, rules, transactions) to the wire layers;
//!   `wait`: the one "arm notification, try, wait on deadline/cancel" loop of every receive.
//! - [`broker`]: pure state. `Broker::apply(OpRecord)` is the only way state changes
//!   (`messaging/`: send, receive, sessions, timers; `filter/`: correlation and SQL; `txn`);
//!   what an operation did besides its outcome (dead-letterings, expiries) comes back as
//!   `Applied::events`, which the service counts for live operations.
//! - [`storage`]: the operation log (journal) and snapshot backends (in-memory, SQLite, JSON,
//!   Redis), the stored format's versions (`schema`), and the record types they store.
//! - [`config`]: the one typed configuration struct: YAML layout, one `ENV` table.
//! - [`entities_config`]: the official emulator's `Config.json` entity file, loaded at start.
//! - [`metrics`]: the Prometheus registry behind `GET /metrics`; [`logging`]: log format set-up.
//! - [`names`]: entity-name rules, validated in one place; [`sas`]: SAS token validation.
//! - [`sync`]: poisoned-mutex recovery; [`time`]: the injected clock, dates and xsd:duration.
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
