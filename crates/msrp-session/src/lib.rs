//! The chat media layer: RFC 4975 MSRP codec (sans-IO), chunking and reassembly, sessions and
//! connections, SDP `m=message` offer/answer (RFC 4975 §8, RFC 6135), CPIM (RFC 3862) and the
//! is-composing (RFC 3994) and IMDN (RFC 5438) bodies.

pub mod chunking;
pub mod codec;
pub mod cpim;
pub mod frame;
pub mod sdp;
pub mod uri;

pub use codec::{Decoded, DecoderLimits, FatalError, MsrpDecoder, Rejection};
pub use frame::{ByteRange, EndFlag, FailureReport, Frame, Header, HeaderError, Method, StartLine};
pub use uri::{MsrpUri, UriError};
