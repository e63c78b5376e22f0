//! Small quick-xml helpers shared by the is-composing and IMDN bodies: a flat reading of
//! an XML document (element path by local name, text) and a document writer.

use quick_xml::events::{BytesDecl, Event};
use quick_xml::{Reader, Writer};

/// Why an XML body does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// Not well-formed XML or not UTF-8.
    #[error("malformed XML: {0}")]
    Malformed(String),
    /// Root element or a required element is missing or wrong.
    #[error("unexpected XML content: {0}")]
    Content(&'static str),
    /// Larger than any body these types need.
    #[error("XML body too large")]
    TooLarge,
}

/// No is-composing or IMDN document needs more.
const MAX_XML: usize = 64 * 1024;
/// Nesting deeper than this is not a document we understand.
const MAX_DEPTH: usize = 16;

/// One element: its path of local names from the root, and its text content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Element {
    pub path: Vec<String>,
    pub text: String,
}

impl Element {
    /// Path matches these local names exactly.
    pub fn is(&self, path: &[&str]) -> bool {
        self.path.len() == path.len() && self.path.iter().zip(path).all(|(a, b)| a == b)
    }
}

/// Every element in document order with its (trimmed) text.
pub(crate) fn elements(data: &[u8]) -> Result<Vec<Element>, XmlError> {
    if data.len() > MAX_XML {
        return Err(XmlError::TooLarge);
    }
    let s = std::str::from_utf8(data).map_err(|e| XmlError::Malformed(e.to_string()))?;
    let mut reader = Reader::from_str(s);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<String> = Vec::new();
    let mut out: Vec<Element> = Vec::new();
    // Index in `out` of each open element.
    let mut open: Vec<usize> = Vec::new();
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| XmlError::Malformed(e.to_string()))?;
        match ev {
            Event::Start(_) | Event::Empty(_) if stack.len() >= MAX_DEPTH => {
                return Err(XmlError::Content("nesting too deep"));
            }
            Event::Start(e) => {
                stack.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
                out.push(Element {
                    path: stack.clone(),
                    text: String::new(),
                });
                open.push(out.len() - 1);
            }
            Event::Empty(e) => {
                let mut path = stack.clone();
                path.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
                out.push(Element {
                    path,
                    text: String::new(),
                });
            }
            Event::End(_) => {
                stack.pop();
                if let Some(i) = open.pop() {
                    if let Some(el) = out.get_mut(i) {
                        el.text = el.text.trim().to_string();
                    }
                }
            }
            Event::Text(t) => {
                let text = t.decode().map_err(|e| XmlError::Malformed(e.to_string()))?;
                if let Some(el) = open.last().and_then(|&i| out.get_mut(i)) {
                    el.text.push_str(&text);
                }
            }
            Event::CData(t) => {
                let text = t.decode().map_err(|e| XmlError::Malformed(e.to_string()))?;
                if let Some(el) = open.last().and_then(|&i| out.get_mut(i)) {
                    el.text.push_str(&text);
                }
            }
            Event::GeneralRef(r) => {
                let c = if r.is_char_ref() {
                    r.resolve_char_ref()
                        .map_err(|e| XmlError::Malformed(e.to_string()))?
                } else {
                    let name: &[u8] = &r;
                    match name {
                        b"lt" => Some('<'),
                        b"gt" => Some('>'),
                        b"amp" => Some('&'),
                        b"quot" => Some('"'),
                        b"apos" => Some('\''),
                        _ => None,
                    }
                };
                let c = c.ok_or(XmlError::Content("unknown entity"))?;
                if let Some(el) = open.last().and_then(|&i| out.get_mut(i)) {
                    el.text.push(c);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Malformed("unclosed element".into()));
    }
    Ok(out)
}

/// A writer with the `<?xml version="1.0" encoding="UTF-8"?>` declaration written.
pub(crate) fn document() -> Writer<Vec<u8>> {
    let mut w = Writer::new(Vec::new());
    // Writing into a Vec cannot fail.
    let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
    w
}
