//! The validation front: checks a framed message before rsipstack sees it and decides to
//! deliver it (normalised), answer it statelessly (400 with a reason phrase saying what is
//! wrong, 505, 501, 483, 416, 420) or drop it (bad responses, RFC 3261 §18.1.2). Normalising
//! means: compact names expanded, folded lines joined, LWS around `;` `=` `,` `/` removed in
//! address and Via fields, multi-valued Via/Route/Record-Route/Contact split one per line and
//! exactly one correct Content-Length — the form rsipstack's parser handles.

use crate::framing::{frame_datagram, Frame, Limits, Refusal, StreamItem};
use crate::message_head::{is_token_byte, MessageHead, RawHeader};
use crate::params::{header_param, split_top_level, QuotedString};
use crate::stateless;

/// Methods this endpoint implements (RFC 3261 §8.2.1: others are answered 501). Method names
/// are case-sensitive (§7.1).
pub const KNOWN_METHODS: &[&str] = &[
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "MESSAGE",
    "SUBSCRIBE",
    "NOTIFY",
    "PUBLISH",
    "INFO",
    "PRACK",
    "UPDATE",
    "REFER",
];

/// Header fields that may appear only once (RFC 3261 §7.3.1, §20).
const SINGLE: &[&str] = &[
    "To",
    "From",
    "Call-ID",
    "CSeq",
    "Max-Forwards",
    "Content-Type",
    "Expires",
];

/// What identifies a message for transaction and dialog matching, read by our own tokenizer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageSummary {
    pub method: Option<String>,
    pub status: Option<u16>,
    pub call_id: Option<String>,
    pub from_tag: Option<String>,
    pub cseq: Option<(u32, String)>,
    pub top_via_branch: Option<String>,
}

/// The decision about one received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Hand these normalised bytes to rsipstack.
    Deliver {
        bytes: Vec<u8>,
        summary: MessageSummary,
    },
    /// Answer statelessly with these bytes; `status`/`reason` say why.
    Respond {
        status: u16,
        reason: String,
        bytes: Vec<u8>,
    },
    /// Drop silently (a bad response, or a request too broken to answer).
    Drop { reason: String },
}

/// The checks and the stateless answers; shared by the UDP and TCP fronts.
#[derive(Debug, Clone)]
pub struct ValidationFront {
    pub limits: Limits,
    /// Value of the Server header in stateless responses.
    pub server: String,
    /// Largest normalised message handed on (rsipstack's UDP buffer); larger gets 513.
    pub max_message_bytes: usize,
}

impl ValidationFront {
    pub fn new(limits: Limits, server: impl Into<String>) -> Self {
        ValidationFront {
            limits,
            server: server.into(),
            max_message_bytes: usize::MAX,
        }
    }

    /// Refuse (513) messages whose normalised form exceeds `max` bytes.
    pub fn with_max_message(mut self, max: usize) -> Self {
        self.max_message_bytes = max;
        self
    }

    /// Frame and check one UDP datagram.
    pub fn check_datagram(&self, data: &[u8]) -> Verdict {
        match frame_datagram(data, &self.limits) {
            Ok(frame) => self.check_frame(&frame),
            Err(refusal) => self.refuse(refusal),
        }
    }

    /// Turn a stream item into a verdict (a ping is answered by the caller).
    pub fn check_stream_item(&self, item: &StreamItem) -> Option<Verdict> {
        match item {
            StreamItem::Message(frame) => Some(self.check_frame(frame)),
            StreamItem::Refused(r) | StreamItem::Fatal(r) => Some(self.refuse(r.clone())),
            StreamItem::Ping => None,
        }
    }

    /// Answer (or drop) a message that framing refused.
    pub fn refuse(&self, refusal: Refusal) -> Verdict {
        match refusal.head {
            Some(head) if !head.is_response() && head.count("Via") > 0 => {
                self.respond(&head, refusal.status, refusal.reason, &[])
            }
            _ => Verdict::Drop {
                reason: refusal.reason.to_string(),
            },
        }
    }

    fn respond(
        &self,
        head: &MessageHead,
        status: u16,
        reason: &str,
        extra: &[(&str, String)],
    ) -> Verdict {
        if head.start_line.starts_with("ACK ") {
            // §17.1.1.3: an ACK is never answered.
            return Verdict::Drop {
                reason: reason.to_string(),
            };
        }
        Verdict::Respond {
            status,
            reason: reason.to_string(),
            bytes: stateless::response(head, status, reason, extra, &self.server),
        }
    }

    /// Check a framed message.
    pub fn check_frame(&self, frame: &Frame) -> Verdict {
        let head = &frame.head;
        if head.is_response() {
            return match check_response(head) {
                Ok(()) => self.deliver(frame),
                Err(reason) => Verdict::Drop {
                    reason: reason.to_string(),
                },
            };
        }
        match check_request(head) {
            Ok(()) => self.deliver(frame),
            Err(Reject {
                status,
                reason,
                extra,
            }) => {
                let extra: Vec<(&str, String)> =
                    extra.iter().map(|(n, v)| (*n, v.clone())).collect();
                self.respond(head, status, reason, &extra)
            }
        }
    }

    fn deliver(&self, frame: &Frame) -> Verdict {
        let bytes = normalise(frame);
        if bytes.len() > self.max_message_bytes {
            return if frame.head.is_response() {
                Verdict::Drop {
                    reason: "Response too large".to_string(),
                }
            } else {
                self.respond(&frame.head, 513, "Message Too Large", &[])
            };
        }
        // Belt and braces: what rsipstack cannot parse must not reach it (over TCP it would
        // close the connection).
        match rsipstack::sip::SipMessage::try_from(bytes.as_slice()) {
            Ok(_) => Verdict::Deliver {
                bytes,
                summary: summarise(&frame.head),
            },
            Err(_) if frame.head.is_response() => Verdict::Drop {
                reason: "Unparseable response".to_string(),
            },
            Err(_) => self.respond(&frame.head, 400, "Unparseable message", &[]),
        }
    }
}

/// A stateless rejection: status, reason phrase, extra header fields.
#[derive(Debug)]
struct Reject {
    status: u16,
    reason: &'static str,
    extra: Vec<(&'static str, String)>,
}

fn reject(status: u16, reason: &'static str) -> Reject {
    Reject {
        status,
        reason,
        extra: Vec::new(),
    }
}

/// True when `text` holds a control character RFC 3261 §25.1 does not allow: only HTAB
/// (inside LWS) may appear, plus any byte but CR/LF escaped as a quoted-pair inside a quoted
/// string (RFC 4475 §3.1.1.2 puts NUL, BEL and DEL there). A bare CR, a vertical tab or a raw
/// NUL elsewhere would otherwise reach rsipstack, which parses them leniently.
fn has_bare_control(text: &str) -> bool {
    let mut in_quotes = false;
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'"' => in_quotes = !in_quotes,
            b'\\' if in_quotes => {
                if matches!(bytes.next(), Some(b'\r' | b'\n') | None) {
                    return true;
                }
            }
            b'\t' => {}
            0x00..=0x1f | 0x7f => return true,
            _ => {}
        }
    }
    false
}

fn check_request(head: &MessageHead) -> Result<(), Reject> {
    if has_bare_control(&head.start_line) || head.headers.iter().any(|h| has_bare_control(&h.value))
    {
        return Err(reject(400, "Control character in message head"));
    }
    // Request-Line = Method SP Request-URI SP SIP-Version (§25.1): exactly single spaces.
    let parts: Vec<&str> = head.start_line.split(' ').collect();
    let [method, uri, version] = parts.as_slice() else {
        return Err(reject(400, "Malformed Request-Line"));
    };
    if method.is_empty() || uri.is_empty() || version.is_empty() {
        return Err(reject(400, "Malformed Request-Line"));
    }
    if !method.bytes().all(is_token_byte) {
        return Err(reject(400, "Malformed method"));
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        let sip_prefix = version
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"));
        return Err(if sip_prefix && version.len() > 4 {
            reject(505, "Version Not Supported")
        } else {
            reject(400, "Malformed SIP-Version")
        });
    }
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        if head.count(name) == 0 {
            return Err(reject(400, missing_reason(name)));
        }
    }
    for name in SINGLE {
        if head.count(name) > 1 {
            return Err(reject(400, duplicate_reason(name)));
        }
    }
    if !KNOWN_METHODS.contains(method) {
        return Err(reject(501, "Not Implemented"));
    }
    check_request_uri(uri)?;
    let cseq = head.first("CSeq").unwrap_or("");
    let (_, cseq_method) = parse_cseq(cseq).ok_or_else(|| reject(400, "Malformed CSeq"))?;
    if cseq_method != *method {
        return Err(reject(400, "CSeq method does not match Request-Line"));
    }
    if let Some(mf) = head.first("Max-Forwards") {
        match parse_bounded(mf, 255) {
            None => return Err(reject(400, "Invalid Max-Forwards")),
            Some(0) if *method != "ACK" => return Err(reject(483, "Too Many Hops")),
            Some(_) => {}
        }
    }
    if let Some(e) = head.first("Expires") {
        if parse_bounded(e, u64::from(u32::MAX)).is_none() {
            return Err(reject(400, "Invalid Expires"));
        }
    }
    if head.first("Call-ID").is_some_and(str::is_empty) {
        return Err(reject(400, "Empty Call-ID"));
    }
    for v in head.values("Via") {
        check_via(v)?;
    }
    check_name_addr(head.first("From").unwrap_or(""), true)?;
    check_name_addr(head.first("To").unwrap_or(""), true)?;
    for name in ["Contact", "Route", "Record-Route", "P-Asserted-Identity"] {
        for v in head.values(name) {
            if name == "Contact" && v == "*" {
                continue;
            }
            check_name_addr(v, false)?;
        }
    }
    if let Some(date) = head.first("Date") {
        // §25.1 SIP-date: rfc1123-date, always "GMT".
        if !date.ends_with(" GMT") {
            return Err(reject(400, "Invalid Date"));
        }
    }
    let scheme = uri.split(':').next().unwrap_or("");
    if !["sip", "sips", "tel"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(scheme))
    {
        return Err(reject(416, "Unsupported URI Scheme"));
    }
    if *method != "ACK" && *method != "CANCEL" {
        // §8.2.2.3: we support no extensions, so any Require option-tag gets 420.
        let tags: Vec<String> = head
            .values("Require")
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        if !tags.is_empty() {
            return Err(Reject {
                status: 420,
                reason: "Bad Extension",
                extra: vec![("Unsupported", tags.join(", "))],
            });
        }
    }
    Ok(())
}

fn missing_reason(name: &str) -> &'static str {
    match name {
        "Via" => "Missing Via header",
        "From" => "Missing From header",
        "To" => "Missing To header",
        "Call-ID" => "Missing Call-ID header",
        _ => "Missing CSeq header",
    }
}

fn duplicate_reason(name: &str) -> &'static str {
    match name {
        "To" => "Duplicate To header",
        "From" => "Duplicate From header",
        "Call-ID" => "Duplicate Call-ID header",
        "CSeq" => "Duplicate CSeq header",
        "Max-Forwards" => "Duplicate Max-Forwards header",
        "Content-Type" => "Duplicate Content-Type header",
        _ => "Duplicate Expires header",
    }
}

fn check_request_uri(uri: &str) -> Result<(), Reject> {
    // §25.1: Request-URI = SIP-URI / SIPS-URI / absoluteURI; never enclosed in <>.
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Err(reject(400, "Malformed Request-URI"));
    };
    let scheme_ok = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok || rest.is_empty() {
        return Err(reject(400, "Malformed Request-URI"));
    }
    if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
        if rest.contains('?') {
            // §19.1.5: headers are not allowed in a Request-URI.
            return Err(reject(400, "Headers not allowed in Request-URI"));
        }
        if rest.bytes().any(|b| matches!(b, b'<' | b'>' | b'"')) {
            return Err(reject(400, "Malformed Request-URI"));
        }
    }
    Ok(())
}

/// `num SP method` with num ≤ 2^32-1 (§8.1.1.5).
fn parse_cseq(value: &str) -> Option<(u32, &str)> {
    let mut it = value.split_whitespace();
    let num = it.next()?;
    let method = it.next()?;
    if it.next().is_some() || !method.bytes().all(is_token_byte) {
        return None;
    }
    let n = parse_bounded(num, u64::from(u32::MAX))?;
    Some((u32::try_from(n).ok()?, method))
}

/// A decimal number of at most `max`, leading zeros allowed.
fn parse_bounded(value: &str, max: u64) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let trimmed = value.trim_start_matches('0');
    if trimmed.len() > 19 {
        return None;
    }
    let n: u64 = if trimmed.is_empty() {
        0
    } else {
        trimmed.parse().ok()?
    };
    (n <= max).then_some(n)
}

fn check_via(value: &str) -> Result<(), Reject> {
    for part in split_top_level(value, ',') {
        let part = squeeze(part, true);
        if part.is_empty() {
            return Err(reject(400, "Empty Via value"));
        }
        let Some(rest) = part
            .get(..8)
            .filter(|p| p.eq_ignore_ascii_case("SIP/2.0/"))
            .and_then(|_| part.get(8..))
        else {
            return Err(reject(400, "Malformed Via"));
        };
        let mut pieces = rest.splitn(2, ' ');
        let transport = pieces.next().unwrap_or("");
        let sent_by = pieces.next().unwrap_or("");
        if transport.is_empty() || !transport.bytes().all(is_token_byte) || sent_by.is_empty() {
            return Err(reject(400, "Malformed Via"));
        }
        let params = split_top_level(sent_by, ';');
        if params.first().map_or(true, |h| h.is_empty()) {
            return Err(reject(400, "Malformed Via"));
        }
        if params
            .iter()
            .skip(1)
            .any(|p| p.is_empty() || p.starts_with('='))
        {
            return Err(reject(400, "Empty Via parameter"));
        }
    }
    Ok(())
}

fn check_name_addr(value: &str, single: bool) -> Result<(), Reject> {
    // The whole value first, so bracket, quote and comma errors are reported in the order
    // they appear.
    scan_name_addr(value, single)?;
    for item in split_top_level(value, ',') {
        let item = squeeze(item, false);
        if item.is_empty() {
            return Err(reject(400, "Empty header value"));
        }
        // Each list element is a name-addr or a bare addr-spec on its own (§20.10), and
        // `normalise` delivers list elements one per line: judged against the whole list, a
        // bare addr-spec after a name-addr escaped the checks below on the first pass and was
        // refused on the second (fuzz finding 4).
        let name_addr = scan_name_addr(&item, single)?;
        if !name_addr && crate::params::addr_spec(&item).contains('?') {
            // §20.10: a URI with headers must be a name-addr.
            return Err(reject(400, "URI with headers must be enclosed in <>"));
        }
        let after = if name_addr {
            item.rsplit_once('>').map_or("", |(_, a)| a)
        } else {
            item.as_str()
        };
        for param in split_top_level(after, ';').into_iter().skip(1) {
            if param.is_empty() || param.starts_with('=') {
                return Err(reject(400, "Empty header parameter"));
            }
            // generic-param = token [ EQUAL gen-value ] (§25.1): after `squeeze` the LWS
            // that SEMI and EQUAL allow is gone, so a space left in the name splits it into
            // two tokens (`;tag x`, `;t ag=1`).
            let name = param.split_once('=').map_or(param, |(n, _)| n);
            if name.contains(' ') {
                return Err(reject(400, "Whitespace in header parameter name"));
            }
        }
    }
    Ok(())
}

/// Bracket and quote structure of a name-addr / addr-spec value (or list of them): refuses
/// unbalanced `<>`, whitespace inside `<addr-spec>`, an unterminated quoted string and, when
/// `single`, a comma outside quotes and brackets. True when the value holds a `<`.
fn scan_name_addr(value: &str, single: bool) -> Result<bool, Reject> {
    let mut quote = QuotedString::default();
    let mut angle = false;
    let mut saw_angle = false;
    for c in value.chars() {
        if quote.consume(c) {
            continue;
        }
        match c {
            '"' if !angle => quote.open(),
            '<' if angle => return Err(reject(400, "Unbalanced angle brackets")),
            '<' => {
                angle = true;
                saw_angle = true;
            }
            '>' if !angle => return Err(reject(400, "Unbalanced angle brackets")),
            '>' => angle = false,
            c if angle && c.is_whitespace() => {
                return Err(reject(400, "Whitespace inside <addr-spec>"))
            }
            ',' if single && !angle => return Err(reject(400, "Unquoted comma in display name")),
            _ => {}
        }
    }
    if quote.is_open() {
        return Err(reject(400, "Unterminated quoted string"));
    }
    if angle {
        return Err(reject(400, "Unbalanced angle brackets"));
    }
    Ok(saw_angle)
}

fn check_response(head: &MessageHead) -> Result<(), &'static str> {
    // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (an empty phrase allowed).
    let mut parts = head.start_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err("Unsupported version in response");
    }
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err("Malformed status code");
    }
    let n: u16 = code.parse().map_err(|_| "Malformed status code")?;
    if !(100..=699).contains(&n) {
        return Err("Status code out of range");
    }
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        if head.count(name) != 1 && !(name == "Via" && head.count(name) > 1) {
            return Err("Missing or duplicate mandatory header");
        }
    }
    parse_cseq(head.first("CSeq").unwrap_or("")).ok_or("Malformed CSeq")?;
    Ok(())
}

/// Collapse LWS outside quotes and `<>`: runs become one SP; LWS next to `;` `=` `,` (and `/`
/// when `slash`) disappears.
fn squeeze(value: &str, slash: bool) -> String {
    let sep = |c: char| matches!(c, ';' | '=' | ',') || (slash && c == '/');
    let mut out = String::with_capacity(value.len());
    let mut quote = QuotedString::default();
    let mut angle = false;
    let mut pending_space = false;
    for c in value.chars() {
        if quote.consume(c) {
            out.push(c);
            continue;
        }
        if !angle && (c == ' ' || c == '\t') {
            pending_space = true;
            continue;
        }
        if pending_space {
            let prev_sep = out.chars().last().map_or(true, sep);
            if !prev_sep && !sep(c) {
                out.push(' ');
            }
            pending_space = false;
        }
        match c {
            '"' if !angle => quote.open(),
            '<' => angle = true,
            '>' => angle = false,
            _ => {}
        }
        out.push(c);
    }
    out
}

/// Rebuild the message in the form rsipstack parses reliably.
fn normalise(frame: &Frame) -> Vec<u8> {
    let head = &frame.head;
    let mut out = String::with_capacity(head.head_len + 64);
    out.push_str(&head.start_line);
    out.push_str("\r\n");
    for RawHeader { name, value } in &head.headers {
        match name.as_str() {
            "Content-Length" => continue,
            "Via" | "Route" | "Record-Route" | "Contact" => {
                let slash = name == "Via";
                for part in split_top_level(value, ',') {
                    let part = squeeze(part, slash);
                    if !part.is_empty() {
                        out.push_str(&format!("{name}: {part}\r\n"));
                    }
                }
            }
            "From" | "To" | "CSeq" | "P-Asserted-Identity" | "Event" | "Subscription-State" => {
                out.push_str(&format!("{name}: {}\r\n", squeeze(value, false)));
            }
            _ => out.push_str(&format!("{name}: {value}\r\n")),
        }
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", frame.body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&frame.body);
    bytes
}

/// Read Call-ID, From tag, CSeq and top Via branch with our own tokenizer.
pub fn summarise(head: &MessageHead) -> MessageSummary {
    let mut s = MessageSummary::default();
    if head.is_response() {
        s.status = head
            .start_line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok());
    } else {
        s.method = head.start_line.split(' ').next().map(str::to_string);
    }
    s.call_id = head.first("Call-ID").map(str::to_string);
    s.from_tag = head
        .first("From")
        .and_then(|f| header_param(&squeeze(f, false), "tag"));
    s.cseq = head
        .first("CSeq")
        .and_then(parse_cseq)
        .map(|(n, m)| (n, m.to_string()));
    s.top_via_branch = head
        .first("Via")
        .and_then(|v| split_top_level(v, ',').first().map(|p| squeeze(p, true)))
        .and_then(|v| header_param(&v, "branch"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn front() -> ValidationFront {
        ValidationFront::new(Limits::default(), "test")
    }

    fn req(start: &str, extra: &str) -> Vec<u8> {
        format!(
            "{start}\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n\
             To: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n{extra}\
             Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn status_of(v: &Verdict) -> Option<(u16, &str)> {
        match v {
            Verdict::Respond { status, reason, .. } => Some((*status, reason.as_str())),
            _ => None,
        }
    }

    #[test]
    fn good_request_is_delivered_normalised() {
        let v = front().check_datagram(&req(
            "OPTIONS sip:b@h SIP/2.0",
            "v: SIP/2.0/TCP x;branch=z9hG4bK2 , SIP/2.0/UDP y\r\n",
        ));
        let Verdict::Deliver { bytes, summary } = v else {
            panic!("expected delivery, got {v:?}");
        };
        let text = String::from_utf8(bytes).expect("utf8");
        assert!(text.contains("Via: SIP/2.0/TCP x;branch=z9hG4bK2\r\nVia: SIP/2.0/UDP y\r\n"));
        assert_eq!(summary.top_via_branch.as_deref(), Some("z9hG4bK1"));
        assert_eq!(summary.from_tag.as_deref(), Some("1"));
    }

    #[test]
    fn bad_requests_get_the_right_status_and_reason() {
        let f = front();
        let cases: Vec<(Vec<u8>, u16, &str)> = vec![
            (
                req("OPTIONS sip:b@h SIP/3.0", ""),
                505,
                "Version Not Supported",
            ),
            (req("FOO sip:b@h SIP/2.0", ""), 501, "Not Implemented"),
            (
                req("INVITE sip:b@h SIP/2.0", ""),
                400,
                "CSeq method does not match Request-Line",
            ),
            (
                req("OPTIONS  sip:b@h SIP/2.0", ""),
                400,
                "Malformed Request-Line",
            ),
            (
                req("OPTIONS <sip:b@h> SIP/2.0", ""),
                400,
                "Malformed Request-URI",
            ),
            (
                req("OPTIONS sip:b@h SIP/2.0", "Call-ID: d\r\n"),
                400,
                "Duplicate Call-ID header",
            ),
            (
                req("OPTIONS sip:b@h SIP/2.0", "Require: foo\r\n"),
                420,
                "Bad Extension",
            ),
        ];
        for (raw, status, reason) in cases {
            let v = f.check_datagram(&raw);
            assert_eq!(
                status_of(&v),
                Some((status, reason)),
                "{}",
                String::from_utf8_lossy(&raw)
            );
        }
        let zero_mf = String::from_utf8(req("OPTIONS sip:b@h SIP/2.0", ""))
            .expect("utf8")
            .replace("Max-Forwards: 70", "Max-Forwards: 0");
        assert_eq!(
            status_of(&f.check_datagram(zero_mf.as_bytes())),
            Some((483, "Too Many Hops"))
        );
    }

    #[test]
    fn stateless_answer_copies_the_transaction_headers() {
        let v = front().check_datagram(&req("FOO sip:b@h SIP/2.0", ""));
        let Verdict::Respond { bytes, .. } = v else {
            panic!("expected a response");
        };
        let text = String::from_utf8(bytes).expect("utf8");
        assert!(text.starts_with("SIP/2.0 501 Not Implemented\r\n"));
        assert!(text.contains("Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"));
        assert!(text.contains("To: <sip:b@h>;tag="));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
    }

    /// Fuzz finding 4: a bare addr-spec after a name-addr in one Contact value was checked as
    /// if it were inside the name-addr, delivered on its own line, and refused there.
    #[test]
    fn list_elements_are_checked_one_by_one() {
        let f = front();
        for (contact, reason) in [
            ("<sip:x@h>, sip:y@h;;a", "Empty header parameter"),
            (
                "<sip:x@h>, sip:y@h?a=b",
                "URI with headers must be enclosed in <>",
            ),
            (
                "\"X\" <sip:x@h>, sip:y@h;a b",
                "Whitespace in header parameter name",
            ),
        ] {
            let raw = req(
                "OPTIONS sip:b@h SIP/2.0",
                &format!("Contact: {contact}\r\n"),
            );
            assert_eq!(
                status_of(&f.check_datagram(&raw)),
                Some((400, reason)),
                "{contact}"
            );
        }
        let raw = req(
            "OPTIONS sip:b@h SIP/2.0",
            "Contact: <sip:x@h>;q=0.5 , sip:y@h ; expires = 60\r\n",
        );
        let Verdict::Deliver { bytes, .. } = f.check_datagram(&raw) else {
            panic!("a well-formed mixed list is delivered");
        };
        let text = String::from_utf8(bytes.clone()).expect("utf8");
        assert!(text.contains("Contact: <sip:x@h>;q=0.5\r\nContact: sip:y@h;expires=60\r\n"));
        assert!(
            matches!(f.check_datagram(&bytes), Verdict::Deliver { bytes: again, .. } if again == bytes)
        );
    }

    /// generic-param = token [ EQUAL gen-value ] (RFC 3261 §25.1): LWS around `;` and `=` is
    /// allowed (SEMI, EQUAL), LWS splitting the name into two tokens is not.
    #[test]
    fn whitespace_inside_a_header_parameter_name_is_refused() {
        let f = front();
        let with_to = |to: &str| {
            let raw = String::from_utf8(req("OPTIONS sip:b@h SIP/2.0", "")).expect("utf8");
            f.check_datagram(raw.replace("To: <sip:b@h>", to).as_bytes())
        };
        for to in [
            "To: <sip:b@h>;tag x",
            "To: <sip:b@h>;t ag=1",
            "To: sip:b@h ;   tag   KPTIONS1",
            "To: <sip:b@h>;tag\tx=1",
        ] {
            assert_eq!(
                status_of(&with_to(to)),
                Some((400, "Whitespace in header parameter name")),
                "{to}"
            );
        }
        for to in [
            "To: <sip:b@h>;tag = x",
            "To: <sip:b@h> ; tag=x",
            "To: sip:b@h ;\ttag= x",
        ] {
            let Verdict::Deliver { bytes, .. } = with_to(to) else {
                panic!("{to} is delivered");
            };
            let text = String::from_utf8(bytes).expect("utf8");
            assert!(text.contains(";tag=x\r\n"), "{to}");
        }
    }

    #[test]
    fn squeeze_removes_lws_around_separators_only() {
        assert_eq!(
            squeeze(r#""J R \"" <sip:a@b>  ;  tag = 9"#, false),
            r#""J R \"" <sip:a@b>;tag=9"#
        );
        assert_eq!(
            squeeze("SIP  / 2.0  / TCP   h ; branch =  x", true),
            "SIP/2.0/TCP h;branch=x"
        );
    }
}
