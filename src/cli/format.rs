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

/// `200 healthy; storage sqlite (persistent)`: the `/health` answer `localzure health` checked.
pub fn health_line(status: u16, body: &serde_json::Value) -> String {
    let state = body["status"].as_str().unwrap_or("no status");
    let storage = &body["storage"];
    let kind = storage["type"].as_str().unwrap_or("unknown");
    let mode = if let Some(reason) = storage["degraded"].as_str() {
        format!("degraded to memory: {reason}")
    } else if storage["persistent"].as_bool() == Some(true) {
        "persistent".to_string()
    } else {
        "not persistent".to_string()
    };
    let mut line = format!("{status} {state}; storage {kind} ({mode})");
    if let Some(e) = storage["journalError"].as_str() {
        line.push_str(&format!("; journal error: {e}"));
    }
    line
}

/// The per-entity table of `storage stats --entities`.
pub fn entities_table(entities: &[crate::service::EntityCounts]) -> String {
    let width = entities
        .iter()
        .map(|e| e.path.chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut out = format!(
        "\n{:<width$}  {:<12}  {:>8}  {:>9}  {:>8}  {:>11}  {:>12}  {:>9}\n",
        "Entity", "Kind", "Active", "Scheduled", "Deferred", "DeadLetter", "TransferDLQ", "Size"
    );
    for e in entities {
        out.push_str(&format!(
            "{:<width$}  {:<12}  {:>8}  {:>9}  {:>8}  {:>11}  {:>12}  {:>9}\n",
            e.path,
            e.kind,
            thousands(e.active),
            thousands(e.scheduled),
            thousands(e.deferred),
            thousands(e.dead_letter),
            thousands(e.transfer_dead_letter),
            human_size(e.size_bytes)
        ));
    }
    if entities.is_empty() {
        out.push_str("(no entities)\n");
    }
    out
}

/// Bodies longer than this are cut in `localzure peek`'s output.
const BODY_PREVIEW: usize = 2000;

/// One peeked message: system properties, application properties, dead-letter reason and
/// the body (text when it is UTF-8, else hex).
pub fn message_block(m: &crate::broker::message::Message) -> String {
    let c = &m.content;
    let time = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_else(|| ms.to_string())
    };
    let opt = |v: Option<&str>| v.unwrap_or("-").to_string();
    let mut out = format!(
        "#{} id={} state={} enqueued={} deliveries={}\n",
        m.sequence_number,
        c.message_id(),
        m.state.as_str(),
        time(m.enqueued_time),
        m.delivery_count
    );
    out.push_str(&format!(
        "  content-type={} subject={} session={} correlation={}\n",
        opt(c.content_type()),
        opt(c.label()),
        opt(c.session_id()),
        opt(c.correlation_id())
    ));
    if let Some(t) = c.scheduled_enqueue_time() {
        out.push_str(&format!("  scheduled={}\n", time(t)));
    }
    if !c.properties().is_empty() {
        let props: Vec<String> = c
            .properties()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push_str(&format!("  properties: {}\n", props.join(", ")));
    }
    let body = match std::str::from_utf8(c.body()) {
        Ok(text) => text.chars().take(BODY_PREVIEW).collect::<String>(),
        Err(_) => c
            .body()
            .iter()
            .take(BODY_PREVIEW / 2)
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    };
    let kind = if std::str::from_utf8(c.body()).is_ok() {
        "body"
    } else {
        "body (hex)"
    };
    out.push_str(&format!("  {kind}: {body}\n"));
    out
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
