//! Addresses, feeds and the namespace document.

use super::entity::entity_entry_into;
use super::rule::rule_entry_into;
use super::values::atom_date;
use super::write::*;
use super::*;
use crate::broker::entity::EntityInfo;
use crate::time::{iso8601, Millis};

pub(super) fn trim_base(base_url: &str) -> &str {
    base_url.trim_end_matches('/')
}

/// The namespace name shown as an entry's author: the first label of the base URL's host.
pub(super) fn namespace_name(base_url: &str) -> String {
    let rest = match base_url.find("://") {
        Some(i) => &base_url[i + 3..],
        None => base_url,
    };
    let host = rest.split(['/', ':', '?']).next().unwrap_or_default();
    host.split('.').next().unwrap_or_default().to_string()
}

pub(super) fn resource_url(base_url: &str, path: &str) -> String {
    format!("{}/{}?api-version={API_VERSION}", trim_base(base_url), path)
}

pub(super) fn feed_head(out: &mut String, title: &str, url: &str, now: Millis) {
    out.push_str(XML_DECL);
    out.push_str(&format!("<feed xmlns=\"{ATOM_NS}\">"));
    out.push_str("<title type=\"text\">");
    out.push_str(&esc(title));
    out.push_str("</title>");
    el(out, "id", url);
    el(out, "updated", &atom_date(now));
    out.push_str(&format!("<link rel=\"self\" href=\"{}\"/>", esc(url)));
}

/// A list of queues, topics or subscriptions as a feed document. `title` is `Queues`, `Topics`
/// or `Subscriptions`; `self_path` is the request path and query without the leading slash
/// (e.g. `$Resources/queues?$skip=0&$top=100&api-version=2021-05`), used as the feed's id and
/// self link; `now` is the feed's `updated` time.
pub fn entity_feed(
    title: &str,
    infos: &[EntityInfo],
    base_url: &str,
    self_path: &str,
    now: Millis,
) -> String {
    let url = format!(
        "{}/{}",
        trim_base(base_url),
        self_path.trim_start_matches('/')
    );
    let mut out = String::with_capacity(512 + infos.len() * 2048);
    feed_head(&mut out, title, &url, now);
    for info in infos {
        entity_entry_into(&mut out, false, info, base_url);
    }
    out.push_str("</feed>");
    out
}

/// The rules of subscription `topic/sub` as a feed document; `now` is the feed's `updated` time.
pub fn rule_feed(rules: &[Rule], topic: &str, sub: &str, base_url: &str, now: Millis) -> String {
    let url = resource_url(base_url, &format!("{topic}/Subscriptions/{sub}/Rules"));
    let mut out = String::with_capacity(512 + rules.len() * 1024);
    feed_head(&mut out, "Rules", &url, now);
    for rule in rules {
        rule_entry_into(&mut out, false, rule, topic, sub, base_url);
    }
    out.push_str("</feed>");
    out
}

/// The `NamespaceInfo` entry `GET /$namespaceinfo` returns: a Standard-tier messaging namespace
/// called `name`, created (and last modified) at `created`.
pub fn namespace_info(name: &str, created: Millis, base_url: &str) -> String {
    let url = resource_url(base_url, "$namespaceinfo");
    let mut info = format!("<NamespaceInfo xmlns=\"{SB_NS}\" xmlns:i=\"{XSI_NS}\">");
    el(&mut info, "CreatedTime", &iso8601(created));
    el(&mut info, "MessagingSKU", "Standard");
    el(&mut info, "ModifiedTime", &iso8601(created));
    el(&mut info, "Name", name);
    el(&mut info, "NamespaceType", "Messaging");
    info.push_str("</NamespaceInfo>");
    let mut out = String::from(XML_DECL);
    render_entry(&mut out, true, &url, name, None, created, Some(name), &info);
    out
}
