//! Reading: a minimal element tree built from a request body with quick-xml.

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::{err, AtomError};

/// Deepest element nesting accepted; real bodies are at most 8 levels deep.
pub(super) const MAX_DEPTH: usize = 64;
/// Most attributes accepted on one element. Real bodies carry at most a handful (namespace
/// declarations, `i:type`, `i:nil`); the bound keeps the duplicate-attribute check (pairwise)
/// trivially cheap: quick-xml's own check is quadratic and took 11–14 s on 60,000–90,000
/// attributes (issue 18).
pub(super) const MAX_ATTRIBUTES: usize = 64;
/// Most elements accepted in one document: the largest real body (a subscription with a
/// correlation rule and many properties) has well under a hundred.
pub(super) const MAX_ELEMENTS: usize = 10_000;

#[derive(Debug)]
pub(super) struct Attr {
    pub(super) prefix: Option<String>,
    pub(super) name: String,
    pub(super) value: String,
}

/// An XML element: local name, attributes, child elements and concatenated text.
#[derive(Debug)]
pub(super) struct Node {
    pub(super) name: String,
    pub(super) attrs: Vec<Attr>,
    pub(super) children: Vec<Node>,
    pub(super) text: String,
}

impl Node {
    /// The first child element with this local name.
    pub(super) fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The local part of the `xsi:type` attribute (any prefix), e.g. `SqlFilter` or `int`.
    pub(super) fn xsi_type(&self) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.name == "type" && matches!(&a.prefix, Some(p) if p != "xmlns"))
            .map(|a| local_part(a.value.trim()))
    }

    /// Whether the element carries `xsi:nil="true"`.
    pub(super) fn is_nil(&self) -> bool {
        self.attrs.iter().any(|a| {
            a.name == "nil"
                && matches!(&a.prefix, Some(p) if p != "xmlns")
                && a.value.trim() == "true"
        })
    }
}

pub(super) fn local_part(qname: &str) -> &str {
    match qname.rfind(':') {
        Some(i) => &qname[i + 1..],
        None => qname,
    }
}

pub(super) fn split_qname(raw: &[u8]) -> Result<(Option<String>, String), AtomError> {
    let s = std::str::from_utf8(raw)
        .map_err(|_| AtomError("malformed XML: a name is not valid UTF-8".to_string()))?;
    Ok(match s.find(':') {
        Some(i) => (Some(s[..i].to_string()), s[i + 1..].to_string()),
        None => (None, s.to_string()),
    })
}

pub(super) fn node_from_start(e: &BytesStart<'_>) -> Result<Node, AtomError> {
    let (_, name) = split_qname(e.name().as_ref())?;
    let mut attrs: Vec<Attr> = Vec::new();
    let mut keys: Vec<&[u8]> = Vec::new();
    // Checks off: the duplicate check below runs on at most MAX_ATTRIBUTES keys, so the whole
    // element is read in linear time.
    for a in e.attributes().with_checks(false) {
        let a = a.map_err(|e| AtomError(format!("malformed XML in <{name}>: {e}")))?;
        if keys.len() >= MAX_ATTRIBUTES {
            return err(format!(
                "malformed XML: <{}> has more than {MAX_ATTRIBUTES} attributes",
                clip(&name)
            ));
        }
        if keys.contains(&a.key.as_ref()) {
            return err(format!(
                "malformed XML in <{}>: duplicate attribute {}",
                clip(&name),
                clip(&String::from_utf8_lossy(a.key.as_ref()))
            ));
        }
        keys.push(a.key.into_inner());
        let (prefix, local) = split_qname(a.key.as_ref())?;
        let value = a
            .unescape_value()
            .map_err(|e| {
                AtomError(format!(
                    "malformed XML in attribute {local} of <{name}>: {e}"
                ))
            })?
            .into_owned();
        attrs.push(Attr {
            prefix,
            name: local,
            value,
        });
    }
    Ok(Node {
        name,
        attrs,
        children: Vec::new(),
        text: String::new(),
    })
}

pub(super) fn attach(
    stack: &mut [Node],
    root: &mut Option<Node>,
    node: Node,
) -> Result<(), AtomError> {
    if let Some(parent) = stack.last_mut() {
        parent.children.push(node);
        Ok(())
    } else if root.is_none() {
        *root = Some(node);
        Ok(())
    } else {
        err("malformed XML: more than one root element")
    }
}

/// XML 1.0's `Char` production (§2.2): tab, line feed, carriage return and everything from
/// U+0020 on except U+FFFE and U+FFFF. Text with other characters (NUL, other C0 controls) is
/// not XML: refusing it keeps what is stored renderable (the fuzz target found a parameter key
/// `"\u{0}\u{e}"` that was accepted and then rendered as an empty, unreadable key).
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= '\u{20}' && !matches!(c, '\u{FFFE}' | '\u{FFFF}'))
}

pub(super) fn push_text(stack: &mut [Node], text: &str) -> Result<(), AtomError> {
    if let Some(c) = text.chars().find(|&c| !is_xml_char(c)) {
        return err(format!(
            "malformed XML: character U+{:04X} is not allowed in XML 1.0 text",
            c as u32
        ));
    }
    match stack.last_mut() {
        Some(top) => {
            top.text.push_str(text);
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => err("malformed XML: text outside the root element"),
    }
}

/// Parses a whole document into its root element.
pub(super) fn parse_document(xml: &str) -> Result<Node, AtomError> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let mut elements = 0usize;
    loop {
        let event = reader.read_event().map_err(|e| {
            AtomError(format!(
                "malformed XML at byte {}: {e}",
                reader.error_position()
            ))
        })?;
        if matches!(event, Event::Start(_) | Event::Empty(_)) {
            elements += 1;
            if elements > MAX_ELEMENTS {
                return err(format!(
                    "malformed XML: the document has more than {MAX_ELEMENTS} elements"
                ));
            }
        }
        match event {
            Event::Start(e) => {
                if stack.is_empty() && root.is_some() {
                    return err("malformed XML: more than one root element");
                }
                if stack.len() >= MAX_DEPTH {
                    return err(format!(
                        "malformed XML: elements nested deeper than {MAX_DEPTH} levels"
                    ));
                }
                stack.push(node_from_start(&e)?);
            }
            Event::Empty(e) => {
                let node = node_from_start(&e)?;
                attach(&mut stack, &mut root, node)?;
            }
            Event::End(_) => {
                let node = stack
                    .pop()
                    .ok_or_else(|| AtomError("malformed XML: unexpected end tag".to_string()))?;
                attach(&mut stack, &mut root, node)?;
            }
            Event::Text(t) => {
                let s = t
                    .xml10_content()
                    .map_err(|e| AtomError(format!("malformed XML text: {e}")))?;
                push_text(&mut stack, &s)?;
            }
            Event::CData(c) => {
                let s = c
                    .decode()
                    .map_err(|e| AtomError(format!("malformed XML CDATA: {e}")))?;
                push_text(&mut stack, &s)?;
            }
            Event::GeneralRef(r) => {
                let resolved = match r
                    .resolve_char_ref()
                    .map_err(|e| AtomError(format!("malformed XML character reference: {e}")))?
                {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r
                            .decode()
                            .map_err(|e| AtomError(format!("malformed XML reference: {e}")))?;
                        match resolve_predefined_entity(&name) {
                            Some(s) => s.to_string(),
                            None => {
                                return err(format!(
                                    "malformed XML: unknown entity reference &{}; ",
                                    clip(&name)
                                ))
                            }
                        }
                    }
                };
                push_text(&mut stack, &resolved)?;
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
    if let Some(open) = stack.last() {
        return err(format!(
            "malformed XML: document ends before <{}> is closed",
            clip(&open.name)
        ));
    }
    root.ok_or_else(|| AtomError("malformed XML: the body has no root element".to_string()))
}

/// The description element of an `<entry><content>` (or a bare description document).
pub(super) fn find_description(root: &Node) -> Option<&Node> {
    if root.name == "entry" {
        root.child("content")?.children.first()
    } else {
        Some(root)
    }
}

/// Shortens a value for an error message (at most 100 characters).
pub(super) fn clip(s: &str) -> String {
    const MAX: usize = 100;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod char_tests {
    use super::parse_document;

    #[test]
    fn control_characters_in_text_are_refused() {
        assert!(parse_document("<a>\u{0}\u{e}</a>").is_err());
        assert!(parse_document("<a>&#x1;</a>").is_err());
        assert!(parse_document("<a>tab\tnewline\n ok</a>").is_ok());
    }
}
