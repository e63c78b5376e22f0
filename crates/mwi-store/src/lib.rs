//! The mwi-store application: configuration, wiring of the protocol crates to the store, the
//! admin and client commands.

pub mod admin;
pub mod bench;
pub mod chat;
pub mod client;
pub mod config;
pub mod deposit;
pub mod fetch;
pub mod limits;
pub mod log_json;
pub mod log_queue;
pub mod logging;
pub mod metrics;
pub mod mwi;
pub mod notifier;
pub mod page;
pub mod republish;
pub mod server;
pub mod sip_publish;
pub mod timers;
