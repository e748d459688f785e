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

pub(super) fn feed_head(out: &mut String, title: &str, url: &str, next: Option<&str>, now: Millis) {
    out.push_str(XML_DECL);
    out.push_str(&format!("<feed xmlns=\"{ATOM_NS}\">"));
    out.push_str("<title type=\"text\">");
    out.push_str(&esc(title));
    out.push_str("</title>");
    el(out, "id", url);
    el(out, "updated", &atom_date(now));
    out.push_str(&format!("<link rel=\"self\" href=\"{}\"/>", esc(url)));
    // The `next` link must be the feed's second `<link>`: azure-servicebus 7.15's
    // `management/_utils.py` `extract_data_template` takes `link[1].href` only when the feed
    // has exactly two links, and reads `$skip`/`$top` from its query (`get_next_template`).
    // @azure/service-bus 7.9.5 (`atomXmlHelper.ts` `parseLinkInfo`) looks for `rel="next"` and
    // reads `$skip` (`getMarkerFromNextLinkUrl`). Both stop paging when there is no such link.
    if let Some(next) = next {
        out.push_str(&format!("<link rel=\"next\" href=\"{}\"/>", esc(next)));
    }
}

/// Where one page of a list sits: the list's path (`$Resources/Queues`, `{topic}/Subscriptions`,
/// `{topic}/Subscriptions/{sub}/Rules`), the request's `$skip` and `$top`, how many entries
/// the whole list has and the request's `api-version`.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    pub path: &'a str,
    pub skip: usize,
    pub top: usize,
    pub total: usize,
    pub api_version: &'a str,
}

impl Page<'_> {
    /// The page's own address, the feed's `id` and `self` link, as the service echoes the
    /// request (`$Resources/queues?$skip=0&$top=100&api-version=2021-05`).
    pub fn self_url(&self, base_url: &str) -> String {
        format!(
            "{}/{}?$skip={}&$top={}&api-version={}",
            trim_base(base_url),
            self.path,
            self.skip,
            self.top,
            self.api_version
        )
    }

    /// The next page's address when entries follow this page (none after the last page, and
    /// none for `$top=0`, which would never advance). The service percent-encodes the `$` of
    /// the paging parameters here; both clients decode query values before reading them.
    pub fn next_url(&self, base_url: &str) -> Option<String> {
        let next = self.skip.saturating_add(self.top);
        (self.top > 0 && next < self.total).then(|| {
            format!(
                "{}/{}?%24skip={next}&%24top={}&api-version={}",
                trim_base(base_url),
                self.path,
                self.top,
                self.api_version
            )
        })
    }
}

/// A feed document: its head and links, then `entry` renders each item.
fn feed<T>(
    title: &str,
    items: &[T],
    url: &str,
    next: Option<&str>,
    now: Millis,
    entry: impl Fn(&mut String, &T),
) -> String {
    let mut out = String::with_capacity(512 + items.len() * 2048);
    feed_head(&mut out, title, url, next, now);
    for item in items {
        entry(&mut out, item);
    }
    out.push_str("</feed>");
    out
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
    feed(title, infos, &url, None, now, |out, info| {
        entity_entry_into(out, false, info, base_url)
    })
}

/// One page of a list of queues, topics or subscriptions (`infos` are the page's entries),
/// with the `self` and, when more follow, `next` links of `page`.
pub fn entity_feed_page(
    title: &str,
    infos: &[EntityInfo],
    base_url: &str,
    page: &Page,
    now: Millis,
) -> String {
    let next = page.next_url(base_url);
    feed(
        title,
        infos,
        &page.self_url(base_url),
        next.as_deref(),
        now,
        |out, info| entity_entry_into(out, false, info, base_url),
    )
}

/// The rules of subscription `topic/sub` as a feed document; `now` is the feed's `updated` time.
pub fn rule_feed(rules: &[Rule], topic: &str, sub: &str, base_url: &str, now: Millis) -> String {
    let url = resource_url(base_url, &format!("{topic}/Subscriptions/{sub}/Rules"));
    feed("Rules", rules, &url, None, now, |out, rule| {
        rule_entry_into(out, false, rule, topic, sub, base_url)
    })
}

/// One page of the rules of subscription `topic/sub`, with the links of `page`.
pub fn rule_feed_page(
    rules: &[Rule],
    topic: &str,
    sub: &str,
    base_url: &str,
    page: &Page,
    now: Millis,
) -> String {
    let next = page.next_url(base_url);
    feed(
        "Rules",
        rules,
        &page.self_url(base_url),
        next.as_deref(),
        now,
        |out, rule| rule_entry_into(out, false, rule, topic, sub, base_url),
    )
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
