//! The properties checked by the fuzz targets, as plain functions so that the libFuzzer
//! binaries (`fuzz_targets/`) and the corpus replay test (`tests/corpus_replay.rs`) run the
//! same code. Each function panics exactly when a property is violated; a panic is a finding.

pub mod cpim;
pub mod message_summary;
pub mod msrp_stream;
pub mod sdp_answer;
pub mod sip_front;
pub mod split;
pub mod xml_bodies;

/// The properties of one target: panics on a violation.
pub type Check = fn(&[u8]);

/// Every target by name (the directory name under `corpus/` and `regressions/`).
pub const TARGETS: &[(&str, Check)] = &[
    ("sip_front", sip_front::check),
    ("msrp_stream", msrp_stream::check),
    ("cpim", cpim::check),
    ("message_summary", message_summary::check),
    ("sdp_answer", sdp_answer::check),
    ("xml_bodies", xml_bodies::check),
];
