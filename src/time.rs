//! Time: the injected clock, timestamps, and the TimeSpan / xsd:duration form Azure uses.
//!
//! The broker never reads a clock: every operation carries its timestamp (milliseconds since the
//! UNIX epoch, UTC), so replaying the operation log gives the same state. The wire layers read
//! the clock through [`Clock`], which tests replace with a [`ManualClock`].

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicI64, Ordering};

/// Milliseconds since the UNIX epoch, UTC.
pub type Millis = i64;

/// The far future Azure reports for "never" (9999-12-31T23:59:59.9999999Z, as DateTime.MaxValue).
pub const MAX_MILLIS: Millis = 253_402_300_799_999;

/// A source of "now", injected so time-dependent behaviour is testable without sleeping.
pub trait Clock: Send + Sync {
    fn now(&self) -> Millis;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        Utc::now().timestamp_millis()
    }
}

/// A clock that moves only when told to; used by tests of lock expiry, TTL and scheduling.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: Millis) -> Self {
        ManualClock(AtomicI64::new(start))
    }
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
    pub fn set(&self, ms: Millis) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

fn to_datetime(ms: Millis) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms.clamp(0, MAX_MILLIS))
        .single()
        .unwrap_or_else(|| DateTime::<Utc>::from_timestamp(0, 0).unwrap_or_default())
}

/// RFC 1123 date, as REST BrokerProperties carry dates ("Wed, 25 Nov 2026 19:17:50 GMT").
pub fn rfc1123(ms: Millis) -> String {
    to_datetime(ms)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// ISO 8601 with 7 fractional digits, as the ATOM feeds carry dates.
pub fn iso8601(ms: Millis) -> String {
    if ms >= MAX_MILLIS {
        return "9999-12-31T23:59:59.9999999Z".to_string();
    }
    let s = to_datetime(ms).to_rfc3339_opts(SecondsFormat::Millis, true);
    // 2026-11-25T19:17:50.123Z -> 2026-11-25T19:17:50.1230000Z
    match s.strip_suffix('Z') {
        Some(head) => format!("{head}0000Z"),
        None => s,
    }
}

/// Parses an RFC 1123 or ISO 8601 date into milliseconds.
pub fn parse_date(s: &str) -> Option<Millis> {
    let t = s.trim();
    if let Ok(d) = DateTime::parse_from_rfc2822(t) {
        return Some(d.timestamp_millis());
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d.timestamp_millis());
    }
    if let Ok(d) = chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(d.and_utc().timestamp_millis());
    }
    httpdate::parse_http_date(t).ok().and_then(|st| {
        st.duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_millis() as i64)
    })
}

/// A .NET TimeSpan in 100 ns ticks: the unit of Azure's durations, kept exact so that the
/// "infinite" value `P10675199DT2H48M5.4775807S` (i64::MAX ticks) round-trips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TimeSpan(pub i64);

const TICKS_PER_MS: i64 = 10_000;
const TICKS_PER_SEC: i64 = crate::constants::TICKS_PER_SECOND;

impl TimeSpan {
    /// TimeSpan.MaxValue: what Azure means by "infinite".
    pub const MAX: TimeSpan = TimeSpan(i64::MAX);

    pub fn from_secs(s: i64) -> Self {
        TimeSpan(s.saturating_mul(TICKS_PER_SEC))
    }
    pub fn from_millis(ms: i64) -> Self {
        TimeSpan(ms.saturating_mul(TICKS_PER_MS))
    }
    pub fn as_millis(self) -> i64 {
        self.0 / TICKS_PER_MS
    }
    pub fn is_infinite(self) -> bool {
        self.0 == i64::MAX
    }
    /// `now + self`, saturating at [`MAX_MILLIS`].
    pub fn after(self, now: Millis) -> Millis {
        if self.is_infinite() {
            return MAX_MILLIS;
        }
        now.saturating_add(self.as_millis()).min(MAX_MILLIS)
    }

    /// xsd:duration as Azure writes it: `PnDTnHnMn.fffffffS`.
    pub fn to_xsd(self) -> String {
        let mut ticks = self.0.max(0);
        let days = ticks / (86_400 * TICKS_PER_SEC);
        ticks %= 86_400 * TICKS_PER_SEC;
        let hours = ticks / (3_600 * TICKS_PER_SEC);
        ticks %= 3_600 * TICKS_PER_SEC;
        let mins = ticks / (60 * TICKS_PER_SEC);
        ticks %= 60 * TICKS_PER_SEC;
        let secs = ticks / TICKS_PER_SEC;
        let frac = ticks % TICKS_PER_SEC;
        let mut out = String::from("P");
        if days > 0 {
            out.push_str(&format!("{days}D"));
        }
        if hours > 0 || mins > 0 || secs > 0 || frac > 0 || days == 0 {
            out.push('T');
            if hours > 0 {
                out.push_str(&format!("{hours}H"));
            }
            if mins > 0 {
                out.push_str(&format!("{mins}M"));
            }
            if secs > 0 || frac > 0 || (hours == 0 && mins == 0) {
                if frac > 0 {
                    let f = format!("{frac:07}");
                    out.push_str(&format!("{secs}.{}S", f.trim_end_matches('0')));
                } else {
                    out.push_str(&format!("{secs}S"));
                }
            }
        }
        out
    }

    /// Parses xsd:duration (`P1DT2H3M4.5S`, `PT30S`, `P14D`), and also .NET's `d.hh:mm:ss.fffffff`
    /// form that BrokerProperties' TimeToLive may use as seconds (handled by the caller).
    pub fn parse_xsd(s: &str) -> Option<TimeSpan> {
        let s = s.trim();
        let rest = s.strip_prefix('P')?;
        let (date, time) = match rest.find('T') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let mut ticks: i128 = 0;
        let mut num = String::new();
        for c in date.chars() {
            match c {
                '0'..='9' => num.push(c),
                'Y' | 'M' | 'W' | 'D' => {
                    let n: i128 = num.parse().ok()?;
                    num.clear();
                    let days = match c {
                        'Y' => n * 365,
                        'M' => n * 30,
                        'W' => n * 7,
                        _ => n,
                    };
                    ticks += days * 86_400 * TICKS_PER_SEC as i128;
                }
                _ => return None,
            }
        }
        if !num.is_empty() {
            return None;
        }
        if let Some(time) = time {
            if time.is_empty() {
                return None;
            }
            for c in time.chars() {
                match c {
                    '0'..='9' | '.' => num.push(c),
                    'H' | 'M' => {
                        let n: i128 = num.parse().ok()?;
                        num.clear();
                        let secs = if c == 'H' { n * 3600 } else { n * 60 };
                        ticks += secs * TICKS_PER_SEC as i128;
                    }
                    'S' => {
                        let (whole, frac) = match num.find('.') {
                            Some(i) => (&num[..i], &num[i + 1..]),
                            None => (num.as_str(), ""),
                        };
                        let w: i128 = if whole.is_empty() {
                            0
                        } else {
                            whole.parse().ok()?
                        };
                        let mut f = frac.to_string();
                        if f.len() > 7 {
                            f.truncate(7);
                        }
                        while f.len() < 7 {
                            f.push('0');
                        }
                        let fr: i128 = f.parse().ok()?;
                        ticks += w * TICKS_PER_SEC as i128 + fr;
                        num.clear();
                    }
                    _ => return None,
                }
            }
            if !num.is_empty() {
                return None;
            }
        }
        Some(TimeSpan(ticks.min(i64::MAX as i128) as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infinite_round_trips() {
        assert_eq!(TimeSpan::MAX.to_xsd(), "P10675199DT2H48M5.4775807S");
        assert_eq!(
            TimeSpan::parse_xsd("P10675199DT2H48M5.4775807S"),
            Some(TimeSpan::MAX)
        );
    }

    #[test]
    fn common_durations() {
        assert_eq!(TimeSpan::from_secs(60).to_xsd(), "PT1M");
        assert_eq!(TimeSpan::parse_xsd("PT1M"), Some(TimeSpan::from_secs(60)));
        assert_eq!(TimeSpan::parse_xsd("PT30S"), Some(TimeSpan::from_secs(30)));
        assert_eq!(
            TimeSpan::parse_xsd("P14D"),
            Some(TimeSpan::from_secs(14 * 86400))
        );
        assert_eq!(
            TimeSpan::parse_xsd("PT0.5S"),
            Some(TimeSpan::from_millis(500))
        );
        assert_eq!(TimeSpan::from_secs(600).to_xsd(), "PT10M");
        assert_eq!(TimeSpan::from_secs(0).to_xsd(), "PT0S");
        assert_eq!(TimeSpan::parse_xsd("garbage"), None);
        assert_eq!(TimeSpan::parse_xsd("PT"), None);
    }

    #[test]
    fn dates_format_and_parse() {
        let ms = 1_764_098_270_123;
        assert_eq!(parse_date(&iso8601(ms)), Some(ms));
        assert_eq!(parse_date(&rfc1123(ms)), Some(ms - 123));
    }
}
