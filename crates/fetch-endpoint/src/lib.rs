//! The fetch URI: choose the mailbox by the caller's asserted identity, deliver stored messages
//! over MSRP with a send window, remove each only after its 200, then hang up.

pub mod decision;
pub mod delivery;
pub mod render;

pub use decision::{decide, FetchDecision, FetchUri, FetchUriError};
pub use delivery::{Delivery, DEFAULT_WINDOW};
pub use render::{accepts_cpim, render, RenderConfig, Rendered, StoredView, CPIM};
