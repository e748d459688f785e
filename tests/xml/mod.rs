//! Shared by the test harnesses (tests/common, the in-process server; tests/process, the
//! real binary): the ATOM bodies the SDKs send and an XML reader for the answers.

/// The namespace of entity descriptions.
pub const SB_NS: &str = "http://schemas.microsoft.com/netservices/2010/10/servicebus/connect";
/// The XML Schema instance namespace.
pub const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// The XML Schema namespace (typed values).
pub const XSD_NS: &str = "http://www.w3.org/2001/XMLSchema";
/// Content type of an Atom entry, as the SDKs send it.
pub const ATOM_CT: &str = "application/atom+xml;type=entry;charset=utf-8";
/// Content type of a batch send.
pub const BATCH_CT: &str = "application/vnd.microsoft.servicebus.json";

// ----- ATOM bodies ---------------------------------------------------------------------------

/// An Atom entry around a description element, as the .NET administration client sends it.
pub fn atom_entry(description: &str, inner: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
         <entry xmlns=\"http://www.w3.org/2005/Atom\">\
         <content type=\"application/xml\">\
         <{description} xmlns=\"{SB_NS}\" xmlns:i=\"{XSI_NS}\">{inner}</{description}>\
         </content></entry>"
    )
}

pub fn queue_xml(props: &str) -> String {
    atom_entry("QueueDescription", props)
}

pub fn topic_xml(props: &str) -> String {
    atom_entry("TopicDescription", props)
}

pub fn subscription_xml(props: &str) -> String {
    atom_entry("SubscriptionDescription", props)
}

/// A RuleDescription body with the given `<Filter …>…</Filter>` (and optional action) XML.
pub fn rule_xml(name: &str, filter_and_action: &str) -> String {
    atom_entry(
        "RuleDescription",
        &format!("{filter_and_action}<Name>{name}</Name>"),
    )
}

/// A CorrelationFilter element. `fields` are system properties (`Label`, `CorrelationId`, …),
/// `props` user properties as (key, xsd type, value).
pub fn correlation_filter(fields: &[(&str, &str)], props: &[(&str, &str, &str)]) -> String {
    let mut f = String::from("<Filter i:type=\"CorrelationFilter\">");
    for (k, v) in fields {
        f.push_str(&format!("<{k}>{v}</{k}>"));
    }
    if !props.is_empty() {
        f.push_str(&format!("<Properties>{}</Properties>", key_values(props)));
    }
    f.push_str("</Filter><Action i:type=\"EmptyRuleAction\"/>");
    f
}

/// A SqlFilter element.
pub fn sql_filter(expression: &str) -> String {
    format!(
        "<Filter i:type=\"SqlFilter\"><SqlExpression>{expression}</SqlExpression>\
         <CompatibilityLevel>20</CompatibilityLevel></Filter>\
         <Action i:type=\"EmptyRuleAction\"/>"
    )
}

/// `KeyValueOfstringanyType` items for SQL `Parameters`: (key, xsd type, value text).
pub fn sql_parameters(params: &[(&str, &str, &str)]) -> String {
    format!("<Parameters>{}</Parameters>", key_values(params))
}

/// `KeyValueOfstringanyType` items (key, xsd type, value text), as in filter properties and
/// SQL parameters.
fn key_values(items: &[(&str, &str, &str)]) -> String {
    items
        .iter()
        .map(|(k, ty, v)| {
            format!(
                "<KeyValueOfstringanyType><Key>{k}</Key>\
                 <Value i:type=\"d6p1:{ty}\" xmlns:d6p1=\"{XSD_NS}\">{v}</Value>\
                 </KeyValueOfstringanyType>"
            )
        })
        .collect()
}

/// A SqlFilter with typed parameters, and a SqlRuleAction when `action` is given (XML-escaped
/// text in both).
pub fn sql_rule_body(filter: &str, params: &[(&str, &str, &str)], action: Option<&str>) -> String {
    let action = match action {
        Some(a) => format!(
            "<Action i:type=\"SqlRuleAction\"><SqlExpression>{a}</SqlExpression>\
             <CompatibilityLevel>20</CompatibilityLevel></Action>"
        ),
        None => "<Action i:type=\"EmptyRuleAction\"/>".to_string(),
    };
    format!(
        "<Filter i:type=\"SqlFilter\"><SqlExpression>{filter}</SqlExpression>\
         <CompatibilityLevel>20</CompatibilityLevel>{}</Filter>{action}",
        sql_parameters(params)
    )
}

// ----- XML reading ---------------------------------------------------------------------------

/// The text of every element with this local name (any prefix), in document order.
pub fn xml_all(xml: &str, local_name: &str) -> Vec<String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = Vec::new();
    let mut capture: Option<(usize, String)> = None;
    let mut depth = 0usize;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                depth += 1;
                if capture.is_none() && e.local_name().as_ref() == local_name.as_bytes() {
                    capture = Some((depth, String::new()));
                }
            }
            Ok(Event::Empty(e)) => {
                if capture.is_none() && e.local_name().as_ref() == local_name.as_bytes() {
                    out.push(String::new());
                }
            }
            Ok(Event::End(_)) => {
                if let Some((d, text)) = capture.take() {
                    if d == depth {
                        out.push(text);
                    } else {
                        capture = Some((d, text));
                    }
                }
                depth = depth.saturating_sub(1);
            }
            Ok(Event::Text(t)) => {
                if let Some((_, text)) = capture.as_mut() {
                    text.push_str(&t.xml10_content().expect("XML text"));
                }
            }
            Ok(Event::GeneralRef(r)) => {
                if let Some((_, text)) = capture.as_mut() {
                    let name = r.decode().expect("entity name");
                    let resolved = match r.resolve_char_ref().expect("char ref") {
                        Some(c) => c.to_string(),
                        None => quick_xml::escape::resolve_predefined_entity(&name)
                            .expect("predefined entity")
                            .to_string(),
                    };
                    text.push_str(&resolved);
                }
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("response is not well-formed XML ({e}): {xml}"),
        }
    }
    out
}

/// The text of the first element with this local name.
pub fn xml_text(xml: &str, local_name: &str) -> Option<String> {
    xml_all(xml, local_name).into_iter().next()
}

/// The text of the first element with this local name, which must exist.
pub fn xml_get(xml: &str, local_name: &str) -> String {
    xml_text(xml, local_name).unwrap_or_else(|| panic!("no <{local_name}> in {xml}"))
}

/// A numeric element's value.
pub fn xml_u64(xml: &str, local_name: &str) -> u64 {
    let t = xml_get(xml, local_name);
    t.trim()
        .parse()
        .unwrap_or_else(|_| panic!("<{local_name}> is not a number: {t}"))
}

/// The titles of the entries of a feed.
pub fn feed_titles(xml: &str) -> Vec<String> {
    // The feed's own <title> comes first.
    let mut t = xml_all(xml, "title");
    if !t.is_empty() {
        t.remove(0);
    }
    t
}
