//! The chat media layer: RFC 4975 MSRP codec (sans-IO), chunking and reassembly, sessions and
//! connections over TCP or TLS (`msrps`, RFC 4975 §14.2), SDP `m=message` offer/answer
//! (RFC 4975 §8, RFC 6135), CPIM (RFC 3862) and the is-composing (RFC 3994) and IMDN
//! (RFC 5438) bodies.

pub mod chunking;
pub mod codec;
mod connection;
pub mod cpim;
mod endpoint;
pub mod frame;
pub mod ids;
pub mod imdn;
pub mod iscomposing;
pub mod sdp;
mod session;
mod session_core;
pub mod uri;
mod xml;

pub use codec::{Decoded, DecoderLimits, FatalError, MsrpDecoder, Rejection};
pub use endpoint::{EndpointConfig, MsrpEndpoint, MsrpTls};
pub use frame::{ByteRange, EndFlag, FailureReport, Frame, Header, HeaderError, Method, StartLine};
pub use sdp::{
    build_answer, build_offer, LocalMedia, MsrpOffer, MsrpTransport, Negotiated, SdpError, Setup,
    SetupRole,
};
pub use session::{
    CloseReason, IncomingMessage, MessageResponder, MsrpSender, MsrpSession, SendError,
    SessionEvent, StartError,
};
pub use uri::{MsrpUri, UriError};
pub use xml::XmlError;
