//! Lexical helpers for header values made of name-addr / addr-spec and `;param` lists
//! (RFC 3261 §25.1): the quoted-string scanner every value walk shares, splitting at commas and
//! semicolons that are outside quoted strings and `<...>`, and reading a header parameter such
//! as `tag` or `branch`.

/// Quoted-string state of a left-to-right walk over a header value (RFC 3261 §25.1:
/// `quoted-string = SWS DQUOTE *(qdtext / quoted-pair) DQUOTE`, `quoted-pair = "\" …`, so an
/// escaped DQUOTE does not close it). The caller decides where a DQUOTE opens one: the
/// name-addr checks do not open one inside `<addr-spec>`, the list splitter does.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct QuotedString {
    open: bool,
    escaped: bool,
}

impl QuotedString {
    /// Feed `c`: true when it belongs to an open quoted string (its text, a quoted-pair or the
    /// closing DQUOTE), false when it is outside one and is the caller's to look at.
    pub(crate) fn consume(&mut self, c: char) -> bool {
        if !self.open {
            return false;
        }
        if self.escaped {
            self.escaped = false;
        } else if c == '\\' {
            self.escaped = true;
        } else if c == '"' {
            self.open = false;
        }
        true
    }

    /// The DQUOTE just seen outside a quoted string opens one.
    pub(crate) fn open(&mut self) {
        self.open = true;
    }

    /// True while inside a quoted string (at the end of a value: it is unterminated).
    pub(crate) fn is_open(&self) -> bool {
        self.open
    }
}

/// Split `value` at top-level occurrences of `sep` (outside quotes and angle brackets).
pub fn split_top_level(value: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quote = QuotedString::default();
    let mut angle = 0usize;
    let mut start = 0;
    for (i, c) in value.char_indices() {
        if quote.consume(c) {
            continue;
        }
        match c {
            '"' => quote.open(),
            '<' => angle += 1,
            '>' => angle = angle.saturating_sub(1),
            c if c == sep && angle == 0 => {
                parts.push(value.get(start..i).unwrap_or(""));
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(value.get(start..).unwrap_or(""));
    parts
}

/// The header parameters of one header value (after the `>` of a name-addr, or after the
/// first `;` of a bare addr-spec, RFC 3261 §20: bare addr-spec params are header params).
pub fn header_params(value: &str) -> Vec<(String, Option<String>)> {
    let after = match value.rfind('>') {
        Some(pos) if value.contains('<') => value.get(pos + 1..).unwrap_or(""),
        _ => value,
    };
    let mut parts = split_top_level(after, ';').into_iter();
    // The first part is the addr-spec / sent-by itself (or empty after `>`).
    parts.next();
    parts
        .map(|p| {
            let p = p.trim();
            match p.split_once('=') {
                Some((n, v)) => (n.trim().to_string(), Some(v.trim().to_string())),
                None => (p.to_string(), None),
            }
        })
        .collect()
}

/// The value of header parameter `name` (case-insensitive), `Some("")` for a flag parameter.
pub fn header_param(value: &str, name: &str) -> Option<String> {
    header_params(value)
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.unwrap_or_default())
}

/// The URI inside `<...>`, or the addr-spec before the first `;` when there are no brackets.
pub fn addr_spec(value: &str) -> &str {
    if let (Some(open), Some(close)) = (value.find('<'), value.rfind('>')) {
        if open < close {
            return value.get(open + 1..close).unwrap_or("").trim();
        }
    }
    split_top_level(value, ';')
        .first()
        .copied()
        .unwrap_or("")
        .trim()
}

/// The display name of a name-addr, unquoted (quoted-pairs resolved), if any.
pub fn display_name(value: &str) -> Option<String> {
    let open = value.find('<')?;
    let dn = value.get(..open)?.trim();
    if dn.is_empty() {
        return None;
    }
    if let Some(inner) = dn.strip_prefix('"').and_then(|d| d.strip_suffix('"')) {
        let mut out = String::new();
        let mut escaped = false;
        for c in inner.chars() {
            if escaped {
                out.push(c);
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else {
                out.push(c);
            }
        }
        return Some(out);
    }
    Some(dn.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_string_ends_at_an_unescaped_dquote_only() {
        let mut quote = QuotedString::default();
        let outside: String = r#"x"a\"b,c"y"op"#
            .chars()
            .filter(|&c| {
                if quote.consume(c) {
                    return false;
                }
                if c == '"' {
                    quote.open();
                }
                true
            })
            .collect();
        assert_eq!(outside, r#"x"y""#);
        assert!(quote.is_open(), "the last DQUOTE is unterminated");
        assert_eq!(split_top_level(r#""a\",b", c"#, ',').len(), 2);
    }

    #[test]
    fn params_outside_brackets_and_quotes() {
        let v = r#""a;b, c" <sip:x@y;lr>;tag=12 ; q=0.5"#;
        assert_eq!(header_param(v, "tag").as_deref(), Some("12"));
        assert_eq!(header_param(v, "lr"), None);
        assert_eq!(addr_spec(v), "sip:x@y;lr");
        assert_eq!(display_name(v).as_deref(), Some("a;b, c"));
        assert_eq!(split_top_level(v, ',').len(), 1);
        let bare = "sip:x@y;unknownparam";
        assert_eq!(header_param(bare, "unknownparam").as_deref(), Some(""));
        assert_eq!(addr_spec(bare), "sip:x@y");
        let via = "SIP/2.0/UDP h:5060;branch=z9hG4bK1;rport";
        assert_eq!(header_param(via, "branch").as_deref(), Some("z9hG4bK1"));
    }
}
