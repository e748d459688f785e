//! Human output of the CLI: the guide's stats block, sizes, thousands separators.

use crate::service::StorageStats;

/// `2.4 MB`, `45 KB`, `12 B`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `1,247`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The block `localzure storage stats` prints, as the persistence guide shows it.
pub fn stats_block(s: &StorageStats) -> String {
    let t = &s.totals;
    let entities = t.queues + t.topics + t.subscriptions;
    let last = s
        .last_snapshot
        .map(|ms| {
            chrono::DateTime::from_timestamp_millis(ms)
                .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_else(|| ms.to_string())
        })
        .unwrap_or_else(|| "never".to_string());
    let mut out = String::new();
    out.push_str("Storage Statistics\n==================\n");
    out.push_str(&format!("Backend:     {}\n", s.backend.backend));
    if let Some(loc) = &s.backend.location {
        out.push_str(&format!("Database:    {loc}\n"));
    }
    out.push_str(&format!(
        "Size:        {}\n",
        human_size(s.backend.size_bytes)
    ));
    out.push_str(&format!(
        "Entities:    {} ({} queues, {} topics, {} subscriptions)\n",
        thousands(entities),
        thousands(t.queues),
        thousands(t.topics),
        thousands(t.subscriptions)
    ));
    out.push_str(&format!(
        "Messages:    {} active, {} deadletter\n",
        thousands(t.active),
        thousands(t.dead_letter)
    ));
    out.push_str(&format!("Last Snapshot: {last}\n"));
    out.push_str(&format!("WAL Size:    {}\n", human_size(s.wal_size_bytes)));
    if let Some(reason) = &s.status.degraded {
        out.push_str(&format!(
            "Mode:        DEGRADED - running in memory, nothing is persisted ({reason})\n"
        ));
    }
    out
}

/// The `<Detail>` of an Azure-style XML error body (XML escapes resolved), or the body text.
pub fn error_detail(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    match (text.find("<Detail>"), text.find("</Detail>")) {
        (Some(a), Some(b)) if b > a => {
            let raw = &text[a + 8..b];
            quick_xml::escape::unescape(raw)
                .map(|s| s.into_owned())
                .unwrap_or_else(|_| raw.to_string())
        }
        _ => text.trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_counts() {
        assert_eq!(human_size(12), "12 B");
        assert_eq!(human_size(45 * 1024), "45 KB");
        assert_eq!(human_size(2_516_582), "2.4 MB");
        assert_eq!(thousands(1247), "1,247");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(7), "7");
    }

    #[test]
    fn error_detail_resolves_xml_escapes() {
        let body = b"<Error><Code>400</Code><Detail>queue &apos;a&apos; &lt;b&gt; &amp; &quot;c&quot;</Detail></Error>";
        assert_eq!(error_detail(body), "queue 'a' <b> & \"c\"");
        assert_eq!(error_detail(b" plain "), "plain");
    }
}
