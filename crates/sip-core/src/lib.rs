//! SIP endpoint for mwi-store on top of rsipstack (=0.7.14): UDP/TCP/TLS transports behind our own
//! validation front, server INVITE dialogs, server subscriptions, client PUBLISH, identity from
//! trusted proxies (RFC 3325), AoR normalisation and the typed header fields MWI needs.
//!
//! # How messages reach rsipstack, and why
//! We own every socket and frame and check every message ourselves ([`framing`], [`validate`])
//! before rsipstack parses it; only messages that pass are handed on, normalised (compact names
//! expanded, folded lines joined, LWS around `;` `=` `,` `/` removed in address and Via fields,
//! list-valued Via/Route/Record-Route/Contact one value per line, exactly one Content-Length).
//! - UDP: rsipstack's `UdpConnection` is built on [`transport::FrontUdpSocket`], our
//!   implementation of its `platform::net::UdpSocket` trait: `recv_from` yields only validated
//!   datagrams, `send_to` writes to the real socket. rsipstack keeps its listener semantics
//!   (Via `received`/`rport`, retransmissions, lookups) with no patched copy of the crate.
//! - TCP: rsipstack's `TcpConnection` is tied to its own codec (which closes the connection on
//!   anything it cannot parse), so accepted connections are framed by our [`framing::StreamFramer`]
//!   and each is registered with rsipstack as a `ChannelConnection` (reliable, keyed by the peer
//!   address): valid messages are injected, what rsipstack sends is written to the socket.
//! - TLS: exactly like TCP, after a rustls handshake on the accepted socket ([`tls`] loads the
//!   certificate and key from PEM); rsipstack's own TLS transport (feature `rustls`) stays off.
//!
//! A `[patch]`ed copy of rsipstack was the alternative; both ways in above use only its public
//! API, so upgrades stay a version bump.
//!
//! # What the front answers statelessly (never reaching rsipstack)
//! 400 with a reason phrase naming the problem (malformed Request-Line, extra spaces, `<>` or
//! `?headers` in the Request-URI, missing or duplicate Via/From/To/Call-ID/CSeq/Max-Forwards/
//! Content-Type/Expires, CSeq method ≠ request method, CSeq > 2^32-1, Max-Forwards > 255, bad or
//! conflicting Content-Length, body shorter than Content-Length on UDP, empty Via/header
//! parameters, whitespace inside a header parameter name, unbalanced quotes or brackets,
//! whitespace inside `<addr-spec>`, unquoted comma in a From/To display name, URI with headers
//! outside `<>`, Date not in GMT, no empty line after the
//! headers, too many headers, oversized head); 505 for a version other than SIP/2.0; 501 for an
//! unknown method (methods are case-sensitive); 483 for Max-Forwards 0; 416 for a Request-URI
//! scheme other than sip/sips/tel; 420 with Unsupported for any Require option-tag; 513 for a
//! UDP message that would not fit rsipstack's 8 KiB receive buffer. Bad responses are dropped.
//! An ACK is never answered. On TCP a refused message keeps the connection open as long as the
//! framing is intact; only a lost framing (negative/unparseable/conflicting Content-Length,
//! oversized head) sends the 400 and closes it.
//!
//! # Where rsipstack 0.7.14 is wrong, and the fix in this crate
//! Found by running the RFC 4475 messages through `SipMessage::try_from` directly:
//! - Unknown methods fail to parse (`intmeth`, `esc02`, `mismatch02`): dropped on UDP, and over
//!   TCP its codec closes the connection. Fix: the front answers 501.
//! - Method names are matched case-insensitively (RFC 3261 §7.1 says case-sensitive). Fix: the
//!   front only accepts the exact upper-case names.
//! - LWS around `=` in header parameters hides them (`wsinv`: From `tag = 98asjd8` reads as no
//!   tag). Fix: normalisation removes that LWS.
//! - 14 of the 19 RFC 4475 invalid messages parse without error (e.g. `badvers` `SIP/7.0`,
//!   `ncl` Content-Length -999 read as 0, `scalar02`, `quotbal`, `ltgtruri`, `escruri`,
//!   `mismatch01`) and it never answers 400/505 itself. Fix: the checks above.
//! - Its parser silently takes a shorter body than Content-Length announces. Fix: framing.
//! - `Uri`'s Display escapes `%` again (`sip:a%40b@…` → `a%2540b`). Fix: AoRs and outgoing
//!   URIs are built as text ([`aor::Aor::from_uri`], [`client`]).
//! - `Transaction::reply*` adds a random To-tag if none is present, which inside a dialog is a
//!   second tag. Fix: INVITE responses are built with the dialog's tag ([`server_invite`]).
//! - A Route header cannot be added to its requests and it would resolve domains by DNS. Fix: a
//!   `DomainResolver` maps every domain target to the outbound proxy and never uses DNS.
//! - It logs every packet in full at `info`. Use [`DEFAULT_LOG_FILTER`] (rsipstack at `warn`).
//!
//! # Known limits
//! - Stateless responses from the front go to the packet's source address (like `rport`), not
//!   to the Via sent-by port.
//! - Requests we send over a TCP connection carry a Via whose sent-by is the first listener
//!   (rsipstack's choice); responses come back on the same connection, so matching still works.
//! - A Timer F timeout is recognised as rsipstack's locally made 408 (no To-tag, or 64*T1
//!   elapsed for in-dialog NOTIFY).

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
pub mod tls;
pub mod transport;
pub(crate) mod uas_dialog;
pub mod validate;

pub use aor::{uri_text, Aor, AorError};
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
pub use tls::TlsError;
pub use validate::{MessageSummary, ValidationFront, Verdict};

/// `tracing` filter directive the binary should start from: rsipstack logs every packet in full
/// at `info`, so it is held at `warn` unless asked for.
pub const DEFAULT_LOG_FILTER: &str = "info,rsipstack=warn";

/// Methods we answer (Allow, RFC 3261 §20.5).
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE, SUBSCRIBE, NOTIFY, PUBLISH";
