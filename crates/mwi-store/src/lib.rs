//! The mwi-store application: configuration, wiring of the protocol crates to the store, the
//! admin and client commands.

pub mod client;
pub mod config;
pub mod logging;
