//! Writing: escaped elements and the Atom `<entry>` envelope.

use super::values::atom_date;
use super::ATOM_NS;
use crate::time::{Millis, TimeSpan};

/// Escapes text for element content and attribute values.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            '\n' => out.push_str("&#xA;"),
            '\t' => out.push_str("&#x9;"),
            // Characters XML 1.0 cannot carry at all are dropped rather than producing a
            // document no parser accepts.
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// Appends `<name>text</name>` with `text` escaped.
pub(super) fn el(out: &mut String, name: &str, text: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    out.push_str(&esc(text));
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

pub(super) fn el_bool(out: &mut String, name: &str, v: bool) {
    el(out, name, if v { "true" } else { "false" });
}

pub(super) fn el_dur(out: &mut String, name: &str, v: TimeSpan) {
    el(out, name, &v.to_xsd());
}

/// rules, as the service does.
#[allow(clippy::too_many_arguments)]
pub(super) fn render_entry(
    out: &mut String,
    with_ns: bool,
    url: &str,
    title: &str,
    published: Option<Millis>,
    updated: Millis,
    author: Option<&str>,
    content: &str,
) {
    if with_ns {
        out.push_str(&format!("<entry xmlns=\"{ATOM_NS}\">"));
    } else {
        out.push_str("<entry>");
    }
    el(out, "id", url);
    out.push_str("<title type=\"text\">");
    out.push_str(&esc(title));
    out.push_str("</title>");
    if let Some(p) = published {
        el(out, "published", &atom_date(p));
    }
    el(out, "updated", &atom_date(updated));
    if let Some(a) = author {
        out.push_str("<author>");
        el(out, "name", a);
        out.push_str("</author>");
    }
    out.push_str(&format!("<link rel=\"self\" href=\"{}\"/>", esc(url)));
    out.push_str("<content type=\"application/xml\">");
    out.push_str(content);
    out.push_str("</content></entry>");
}

pub(super) const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>";
