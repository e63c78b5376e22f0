//! Stateless responses built straight from a received head (RFC 3261 §8.2.6.2 / §16.3): the
//! Via, From, To (with a To-tag added), Call-ID and CSeq fields are copied as received, so a
//! message rsipstack never sees can still be answered.

use crate::message_head::MessageHead;

/// Serialise a response with `status` and `reason` (the reason phrase says what is wrong) to the
/// request whose head is `head`. `extra` header fields are appended as given.
pub fn response(
    head: &MessageHead,
    status: u16,
    reason: &str,
    extra: &[(&str, String)],
    server: &str,
) -> Vec<u8> {
    let reason: String = reason.chars().filter(|c| !c.is_control()).collect();
    let mut out = format!("SIP/2.0 {status} {reason}\r\n");
    for h in &head.headers {
        match h.name.as_str() {
            "Via" | "From" | "Call-ID" | "CSeq" => {
                out.push_str(&format!("{}: {}\r\n", h.name, h.value));
            }
            "To" => {
                if crate::params::header_param(&h.value, "tag").is_some() {
                    out.push_str(&format!("To: {}\r\n", h.value));
                } else {
                    out.push_str(&format!(
                        "To: {};tag={}\r\n",
                        h.value,
                        crate::tag::new_tag()
                    ));
                }
            }
            _ => {}
        }
    }
    for (name, value) in extra {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !server.is_empty() {
        out.push_str(&format!("Server: {server}\r\n"));
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out.into_bytes()
}
