//! When and how long to wait before another attempt.
//!
//! Backoff is exponential with full jitter (a uniformly random wait up to the step), so many
//! concurrent cases that failed together do not retry together. A server's own hint wins over
//! the computed step: it knows when its window resets.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;

/// Upper bound of one backoff step.
const MAX_STEP: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub retries: u32,
    /// No attempt starts, and no wait is begun that would end, past this since the first.
    pub max_elapsed: Duration,
    pub base: Duration,
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0 for the first retry), or `None` to give up.
    /// `elapsed` is the time since the first attempt; `hint` is the server's requested wait.
    pub fn next_delay(
        &self,
        retry: u32,
        elapsed: Duration,
        hint: Option<Duration>,
    ) -> Option<Duration> {
        if retry >= self.retries {
            return None;
        }
        let delay = match hint {
            Some(h) => h,
            None => {
                let step = self
                    .base
                    .saturating_mul(1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX))
                    .min(MAX_STEP);
                jitter(step)
            }
        };
        (elapsed.saturating_add(delay) <= self.max_elapsed).then_some(delay)
    }
}

/// A uniformly random duration in `[0, max]`. Randomness quality barely matters here, so a
/// splitmix64 over the clock and a counter stands in for a random-number crate.
fn jitter(max: Duration) -> Duration {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut z = nanos ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let fraction = (z >> 11) as f64 / (1u64 << 53) as f64;
    max.mul_f64(fraction)
}

/// The wait a response asks for, from (in order of precision) `retry-after-ms`, `Retry-After`
/// (seconds or an HTTP date), then OpenAI's `x-ratelimit-reset-*` durations and Anthropic's
/// `anthropic-ratelimit-*-reset` timestamps. Of the reset headers, those whose limit is
/// exhausted count (all of them when none says so); the longest wins.
pub fn retry_hint(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    if let Some(value) = get("retry-after") {
        if let Ok(secs) = value.parse::<f64>() {
            if secs.is_finite() && secs >= 0.0 {
                return Some(Duration::from_secs_f64(secs));
            }
        }
        if let Some(at) = parse_http_date(value) {
            return Some(at.duration_since(now).unwrap_or(Duration::ZERO));
        }
    }
    let mut all = Vec::new();
    let mut exhausted = Vec::new();
    for limit in ["requests", "tokens"] {
        if let Some(d) = get(&format!("x-ratelimit-reset-{limit}")).and_then(parse_go_duration) {
            all.push(d);
            if get(&format!("x-ratelimit-remaining-{limit}")) == Some("0") {
                exhausted.push(d);
            }
        }
    }
    for limit in ["requests", "tokens", "input-tokens", "output-tokens"] {
        let reset = get(&format!("anthropic-ratelimit-{limit}-reset")).and_then(parse_rfc3339);
        if let Some(at) = reset {
            let d = at.duration_since(now).unwrap_or(Duration::ZERO);
            all.push(d);
            if get(&format!("anthropic-ratelimit-{limit}-remaining")) == Some("0") {
                exhausted.push(d);
            }
        }
    }
    let chosen = if exhausted.is_empty() { all } else { exhausted };
    chosen.into_iter().max()
}

/// Parses durations like `1s`, `6m0s`, `20ms`, `1h2m3.5s` (Go's format, which OpenAI uses).
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * factor;
    }
    (0.0..1e9)
        .contains(&total)
        .then(|| Duration::from_secs_f64(total))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn to_system_time(
    y: i64,
    mo: u32,
    d: u32,
    h: u32,
    mi: u32,
    s: f64,
    offset_s: i64,
) -> Option<SystemTime> {
    if !(1..=12).contains(&mo)
        || !(1..=31).contains(&d)
        || h > 23
        || mi > 59
        || !(0.0..61.0).contains(&s)
    {
        return None;
    }
    let secs =
        days_from_civil(y, mo, d) * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 - offset_s;
    let secs = u64::try_from(secs).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs) + Duration::from_secs_f64(s))
}

/// Parses the IMF-fixdate form of HTTP dates: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn parse_http_date(text: &str) -> Option<SystemTime> {
    let (_, rest) = text.trim().split_once(", ")?;
    let parts: Vec<&str> = rest.split_whitespace().collect();
    let [day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mo = MONTHS.iter().position(|m| m == month)? as u32 + 1;
    let mut hms = time.split(':');
    let h = hms.next()?.parse().ok()?;
    let mi = hms.next()?.parse().ok()?;
    let s: u32 = hms.next()?.parse().ok()?;
    to_system_time(
        year.parse().ok()?,
        mo,
        day.parse().ok()?,
        h,
        mi,
        f64::from(s),
        0,
    )
}

/// Parses RFC 3339 timestamps: `2025-01-02T03:04:05Z`, `...05.123+01:00`.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let (date, time) = text.split_once(['T', 't', ' '])?;
    let mut ymd = date.split('-');
    let y = ymd.next()?.parse().ok()?;
    let mo = ymd.next()?.parse().ok()?;
    let d = ymd.next()?.parse().ok()?;
    let (clock, offset) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else {
        let p = time.rfind(['+', '-'])?;
        let (c, off) = time.split_at(p);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':')?;
        let oh: i64 = oh.parse().ok()?;
        let om: i64 = om.parse().ok()?;
        (c, sign * (oh * 3600 + om * 60))
    };
    let mut hms = clock.split(':');
    let h = hms.next()?.parse().ok()?;
    let mi = hms.next()?.parse().ok()?;
    let s: f64 = hms.next()?.parse().ok()?;
    to_system_time(y, mo, d, h, mi, s, offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_go_duration("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(
            parse_go_duration("1h2m3.5s"),
            Some(Duration::from_secs_f64(3723.5))
        );
        assert_eq!(parse_go_duration("soon"), None);
        assert_eq!(parse_go_duration(""), None);
        assert_eq!(parse_go_duration("5"), None);
    }

    #[test]
    fn dates() {
        let t = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().as_secs(), 784_111_777);
        let t = parse_rfc3339("1994-11-06T08:49:37Z").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().as_secs(), 784_111_777);
        let t = parse_rfc3339("1994-11-06T09:49:37.5+01:00").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_millis(),
            784_111_777_500
        );
        assert!(parse_http_date("yesterday").is_none());
        assert!(parse_rfc3339("2025-13-01T00:00:00Z").is_none());
        assert!(parse_rfc3339("ÿÿÿ-é-Tx").is_none());
    }

    #[test]
    fn hints() {
        let now = parse_rfc3339("2025-01-01T00:00:00Z").unwrap();
        assert_eq!(
            retry_hint(&headers(&[("retry-after", "3")]), now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_hint(
                &headers(&[("retry-after", "Wed, 01 Jan 2025 00:00:07 GMT")]),
                now
            ),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_hint(
                &headers(&[("retry-after-ms", "250"), ("retry-after", "3")]),
                now
            ),
            Some(Duration::from_millis(250))
        );
        let openai = headers(&[
            ("x-ratelimit-reset-requests", "1s"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-tokens", "6m0s"),
            ("x-ratelimit-remaining-tokens", "1000"),
        ]);
        assert_eq!(retry_hint(&openai, now), Some(Duration::from_secs(1)));
        let anthropic = headers(&[("anthropic-ratelimit-requests-reset", "2025-01-01T00:00:12Z")]);
        assert_eq!(retry_hint(&anthropic, now), Some(Duration::from_secs(12)));
        assert_eq!(retry_hint(&headers(&[]), now), None);
    }

    #[test]
    fn backoff_is_bounded() {
        let p = RetryPolicy {
            retries: 3,
            max_elapsed: Duration::from_secs(10),
            base: Duration::from_secs(1),
        };
        for retry in 0..3 {
            let d = p.next_delay(retry, Duration::ZERO, None).unwrap();
            assert!(d <= Duration::from_secs(1 << retry));
        }
        assert_eq!(p.next_delay(3, Duration::ZERO, None), None);
        assert_eq!(
            p.next_delay(0, Duration::ZERO, Some(Duration::from_secs(11))),
            None
        );
        assert_eq!(
            p.next_delay(0, Duration::from_secs(2), Some(Duration::from_secs(3))),
            Some(Duration::from_secs(3))
        );
        assert_eq!(p.next_delay(u32::MAX - 1, Duration::ZERO, None), None);
    }
}
