//! CPIM (RFC 3862) parsing in msrp-session. Properties: nothing panics, the accessors never
//! panic on what parsed, and a parsed message re-serialises to bytes that parse to the same
//! message.

use msrp_session::cpim::CpimMessage;

/// Run every property on one CPIM body.
pub fn check(data: &[u8]) {
    let Ok(message) = CpimMessage::parse(data) else {
        return;
    };
    let _ = (
        message.from(),
        message.to(),
        message.datetime(),
        message.subjects(),
        message.namespaces(),
        message.require(),
        message.imdn_message_id(),
        message.disposition_notification(),
        message.content_type(),
    );
    let again = CpimMessage::parse(&message.to_bytes());
    assert_eq!(
        again.as_ref(),
        Ok(&message),
        "CPIM round trip changed the message"
    );
}
