//! SIP endpoint for mwi-store on top of rsipstack: UDP/TCP transports, a validation front that
//! answers malformed requests with 400/501/505 (RFC 3261, RFC 4475), identity from trusted
//! proxies (RFC 3325 P-Asserted-Identity), AoR normalisation and typed MWI headers.

pub mod aor;
pub mod client;
pub mod endpoint;
pub mod error;
pub mod framing;
pub mod headers;
pub mod identity;
pub mod message_head;
pub mod params;
pub mod server_invite;
pub mod server_request;
pub mod stateless;
pub mod tag;
pub mod transport;
pub mod validate;

pub use aor::{Aor, AorError};
pub use client::{PublishRequest, PublishResponse};
pub use endpoint::{
    Credentials, IncomingRequest, ListenAddr, SipEndpoint, SipEndpointConfig, Source, Timers,
    Transport,
};
pub use error::{ClientError, SipError, StartError};
pub use framing::Limits;
pub use headers::{
    AllowEvents, Event, Expires, MinExpires, NameAddr, PAssertedIdentity, RouteSet, SipEtag,
    SipIfMatch, SubState, SubscriptionState,
};
pub use identity::{asserted_identity, AssertedIdentity, TrustedProxies};
pub use rsipstack::sip::{Method, Request, Response};
pub use server_invite::{DialogEvent, InviteSession, ServerInvite};
pub use server_request::{Body, ServerRequest, ServerSubscription};
pub use validate::{MessageSummary, ValidationFront, Verdict};

/// Methods we answer (Allow, RFC 3261 §20.5).
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE, SUBSCRIBE, NOTIFY, PUBLISH";
