//! SIP endpoint for mwi-store on top of rsipstack: UDP/TCP transports, a validation front that
//! answers malformed requests with 400/501/505 (RFC 3261, RFC 4475), identity from trusted
//! proxies (RFC 3325 P-Asserted-Identity), AoR normalisation and typed MWI headers.

pub mod framing;
pub mod message_head;
pub mod params;
pub mod stateless;
pub mod tag;
pub mod validate;

pub use framing::Limits;
pub use validate::{MessageSummary, ValidationFront, Verdict};
