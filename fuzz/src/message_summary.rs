//! `application/simple-message-summary` (RFC 3842) parsing in mwi-publisher. Properties:
//! nothing panics, and a parsed summary re-serialises to a body that parses to the same
//! summary.

use mwi_publisher::MessageSummary;

/// Run every property on one summary body.
pub fn check(data: &[u8]) {
    let Ok(summary) = MessageSummary::parse(data) else {
        return;
    };
    let again = MessageSummary::parse(&summary.to_body());
    assert_eq!(again.as_ref(), Ok(&summary), "summary round trip changed it");
}
