//! The chat media layer: RFC 4975 MSRP codec (sans-IO), chunking and reassembly, sessions and
//! connections, SDP `m=message` offer/answer (RFC 4975 §8, RFC 6135), CPIM (RFC 3862) and the
//! is-composing (RFC 3994) and IMDN (RFC 5438) bodies.
