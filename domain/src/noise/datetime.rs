//! Small, dependency-free date/time parsing and formatting: enough to recognise timestamps in
//! recorded responses (record-time noise) and to write report timestamps.
//!
//! Accepted forms (surrounding whitespace ignored, whole string must match):
//! - ISO 8601 / RFC 3339: `2024-08-19T10:36:18Z`, `2024-08-19T10:36:18.340635824+05:30`,
//!   `2024-08-19 10:36:18`, `2024-08-19 10:36:18.123 +0000 UTC` (Go's `time.String()`),
//!   `2024/08/19 10:36:18`; zone optional (`Z`, `±HH:MM`, `±HHMM`, `±HH`, then an optional
//!   abbreviation). A time of day with seconds is required: bare dates are not volatile enough.
//! - RFC 1123 / RFC 2822 / RFC 850: `Mon, 19 Aug 2024 10:36:18 GMT`, `19 Aug 2024 10:36 +0200`,
//!   `Monday, 19-Aug-24 10:36:18 GMT`.
//! - asctime and Go's UnixDate/RubyDate: `Mon Aug 19 10:36:18 2024`, `Mon Aug  9 10:36:18 UTC 2024`,
//!   `Mon Aug 19 10:36:18 -0700 2024`.

const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (`civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // Both values are small and positive by construction.
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// RFC 3339 in UTC with nanoseconds: `2024-08-19T10:36:18.340635824Z`.
pub fn format_rfc3339_nanos(unix_ns: u64) -> String {
    let secs = (unix_ns / 1_000_000_000) as i64;
    let nanos = unix_ns % 1_000_000_000;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Unix seconds of a date/time in one of the accepted forms (module docs); `None` otherwise.
/// A missing zone is taken as UTC.
pub fn parse_datetime(text: &str) -> Option<i64> {
    let s = text.trim();
    // Longest accepted form is well under this; long texts are never timestamps.
    if s.len() < 14 || s.len() > 64 {
        return None;
    }
    let b = s.as_bytes();
    parse_iso(b)
        .or_else(|| parse_http_date(b))
        .or_else(|| parse_asctime(b))
}

/// Whether a number looks like a unix time in seconds or milliseconds within ±24h of `now`.
pub fn is_epoch_near(value: f64, now_unix_s: i64) -> bool {
    const DAY: f64 = 86_400.0;
    // Small numbers are never timestamps, whatever `now` is.
    if !value.is_finite() || value < 100_000_000.0 {
        return false;
    }
    let now = now_unix_s as f64;
    (value - now).abs() <= DAY || (value / 1000.0 - now).abs() <= DAY
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn new(b: &'a [u8]) -> Self {
        Cursor { b, i: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn eat_any(&mut self, set: &[u8]) -> Option<u8> {
        let c = self.peek().filter(|c| set.contains(c))?;
        self.i += 1;
        Some(c)
    }

    /// Between `min` and `max` digits (greedy).
    fn number(&mut self, min: usize, max: usize) -> Option<u32> {
        let start = self.i;
        let mut v: u32 = 0;
        while self.i - start < max {
            match self.peek() {
                Some(c @ b'0'..=b'9') => {
                    v = v * 10 + u32::from(c - b'0');
                    self.i += 1;
                }
                _ => break,
            }
        }
        (self.i - start >= min).then_some(v)
    }

    fn word(&mut self) -> &'a str {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            self.i += 1;
        }
        std::str::from_utf8(&self.b[start..self.i]).unwrap_or("")
    }

    fn spaces(&mut self) -> usize {
        let start = self.i;
        while self.eat(b' ') {}
        self.i - start
    }

    fn done(&self) -> bool {
        self.i == self.b.len()
    }
}

fn name_index(names: &[&str], word: &str) -> Option<usize> {
    let w = word.to_ascii_lowercase();
    names
        .iter()
        .position(|n| w.len() >= 3 && (n.get(..3) == Some(w.as_str()) || *n == w))
}

fn month(word: &str) -> Option<u32> {
    name_index(&MONTHS, word).map(|i| i as u32 + 1)
}

fn is_weekday(word: &str) -> bool {
    name_index(&WEEKDAYS, word).is_some()
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

struct Clock {
    h: u32,
    m: u32,
    s: u32,
}

/// `HH:MM:SS` (seconds optional when `seconds_optional`), then an optional fraction.
fn clock(c: &mut Cursor, seconds_optional: bool) -> Option<Clock> {
    let h = c.number(2, 2)?;
    c.eat(b':').then_some(())?;
    let m = c.number(2, 2)?;
    let s = if c.eat(b':') {
        c.number(2, 2)?
    } else if seconds_optional {
        0
    } else {
        return None;
    };
    if c.eat_any(b".,").is_some() {
        c.number(1, 9)?;
    }
    Some(Clock { h, m, s })
}

/// Numeric offset `±HH[:MM]` / `±HHMM`, in seconds east of UTC.
fn numeric_offset(c: &mut Cursor) -> Option<i64> {
    let sign = match c.eat_any(b"+-")? {
        b'-' => -1,
        _ => 1,
    };
    let h = c.number(2, 2)?;
    c.eat(b':');
    let m = c.number(2, 2).unwrap_or(0);
    (h < 24 && m < 60).then_some(sign * i64::from(h * 3600 + m * 60))
}

/// A zone abbreviation; US zones get their offset, other names count as UTC (detection only).
fn named_offset(word: &str) -> Option<i64> {
    if word.is_empty() || word.len() > 5 || !word.bytes().all(|c| c.is_ascii_uppercase()) {
        return None;
    }
    let hours = match word {
        "EST" | "CDT" => -5,
        "EDT" => -4,
        "CST" | "MDT" => -6,
        "MST" | "PDT" => -7,
        "PST" => -8,
        _ => 0,
    };
    Some(hours * 3600)
}

/// Optional zone: `Z`, numeric, name, or numeric followed by a name (Go's `-0700 MST`).
fn zone(c: &mut Cursor) -> Option<i64> {
    if c.eat(b'Z') || c.eat(b'z') {
        return Some(0);
    }
    let had_space = c.spaces() > 0;
    let mut offset = 0;
    if matches!(c.peek(), Some(b'+' | b'-')) {
        offset = numeric_offset(c)?;
        c.spaces();
    } else if !had_space && !c.done() {
        return None;
    }
    let word = c.word();
    if !word.is_empty() {
        let named = named_offset(word)?;
        if offset == 0 {
            offset = named;
        }
    }
    Some(offset)
}

fn assemble(year: i64, month: u32, day: u32, t: &Clock, offset: i64) -> Option<i64> {
    let valid = (1..=12).contains(&month)
        && day >= 1
        && day <= days_in_month(year, month)
        && t.h < 24
        && t.m < 60
        && t.s <= 60;
    valid.then(|| {
        days_from_civil(year, month, day) * 86_400 + i64::from(t.h * 3600 + t.m * 60 + t.s) - offset
    })
}

fn parse_iso(b: &[u8]) -> Option<i64> {
    let mut c = Cursor::new(b);
    let year = c.number(4, 4)?;
    let sep = c.eat_any(b"-/")?;
    let month = c.number(2, 2)?;
    c.eat(sep).then_some(())?;
    let day = c.number(2, 2)?;
    c.eat_any(b"Tt ")?;
    let t = clock(&mut c, false)?;
    let offset = zone(&mut c)?;
    c.spaces();
    c.done().then_some(())?;
    assemble(i64::from(year), month, day, &t, offset)
}

/// RFC 1123 / 2822 (`[Wkd, ]D Mon YYYY HH:MM[:SS] [zone]`) and RFC 850 (`Weekday, DD-Mon-YY ...`).
fn parse_http_date(b: &[u8]) -> Option<i64> {
    let mut c = Cursor::new(b);
    if c.peek().is_some_and(|ch| ch.is_ascii_alphabetic()) {
        is_weekday(c.word()).then_some(())?;
        c.eat(b',').then_some(())?;
        c.spaces();
    }
    let day = c.number(1, 2)?;
    let sep = if c.eat(b'-') {
        b'-'
    } else {
        (c.spaces() > 0).then_some(b' ')?
    };
    let month = month(c.word())?;
    if sep == b'-' {
        c.eat(b'-').then_some(())?;
    } else {
        (c.spaces() > 0).then_some(())?;
    }
    let start = c.i;
    let raw_year = c.number(2, 4)?;
    let year = match c.i - start {
        4 => i64::from(raw_year),
        // RFC 850 two-digit years: 70..99 are 19xx, the rest 20xx.
        2 if raw_year >= 70 => 1900 + i64::from(raw_year),
        2 => 2000 + i64::from(raw_year),
        _ => return None,
    };
    (c.spaces() > 0).then_some(())?;
    let t = clock(&mut c, true)?;
    let offset = zone(&mut c)?;
    c.spaces();
    c.done().then_some(())?;
    assemble(year, month, day, &t, offset)
}

/// asctime `Wkd Mon D HH:MM:SS YYYY`, optionally with a zone before the year (Go UnixDate/RubyDate).
fn parse_asctime(b: &[u8]) -> Option<i64> {
    let mut c = Cursor::new(b);
    is_weekday(c.word()).then_some(())?;
    (c.spaces() > 0).then_some(())?;
    let month = month(c.word())?;
    (c.spaces() > 0).then_some(())?;
    let day = c.number(1, 2)?;
    (c.spaces() > 0).then_some(())?;
    let t = clock(&mut c, false)?;
    (c.spaces() > 0).then_some(())?;
    let mut offset = 0;
    if matches!(c.peek(), Some(b'+' | b'-')) {
        offset = numeric_offset(&mut c)?;
        (c.spaces() > 0).then_some(())?;
    } else if c.peek().is_some_and(|ch| ch.is_ascii_alphabetic()) {
        offset = named_offset(c.word())?;
        (c.spaces() > 0).then_some(())?;
    }
    let year = c.number(4, 4)?;
    c.done().then_some(())?;
    assemble(i64::from(year), month, day, &t, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2024-08-19T10:36:18Z
    const T: i64 = 1_724_063_778;

    #[test]
    fn civil_round_trip_and_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(civil_from_days(19_954), (2024, 8, 19));
        assert_eq!(civil_from_days(-719_468), (0, 3, 1));
        for d in (-800_000..800_000).step_by(997) {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        // Leap days.
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(civil_from_days(days_from_civil(2000, 2, 29)), (2000, 2, 29));
        assert_eq!(
            days_from_civil(1900, 3, 1) - days_from_civil(1900, 2, 28),
            1
        );
    }

    #[test]
    fn formats_rfc3339_nanos() {
        assert_eq!(format_rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            format_rfc3339_nanos(T as u64 * 1_000_000_000 + 340_635_824),
            "2024-08-19T10:36:18.340635824Z"
        );
        assert_eq!(
            format_rfc3339_nanos(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
        assert_eq!(
            format_rfc3339_nanos(u64::MAX),
            "2554-07-21T23:34:33.709551615Z"
        );
    }

    #[test]
    fn parses_iso_forms() {
        for s in [
            "2024-08-19T10:36:18Z",
            "2024-08-19t10:36:18z",
            "2024-08-19T10:36:18.340635824Z",
            "2024-08-19T16:06:18.340635824+05:30",
            "2024-08-19T16:06:18+0530",
            "2024-08-19T05:36:18-05",
            "2024-08-19T10:36:18",
            "2024-08-19 10:36:18",
            "2024-08-19 10:36:18.123",
            "2024-08-19 10:36:18,5",
            "2024-08-19 10:36:18 UTC",
            "2024-08-19 10:36:18.999 +0000 UTC",
            "2024/08/19 10:36:18",
            "  2024-08-19T10:36:18Z  ",
        ] {
            assert_eq!(parse_datetime(s), Some(T), "{s}");
        }
        assert_eq!(parse_datetime("2024-08-19 03:36:18 -0700 MST"), Some(T));
        assert_eq!(parse_datetime("2024-08-19 03:36:18 PDT"), Some(T));
    }

    #[test]
    fn parses_http_dates() {
        for s in [
            "Mon, 19 Aug 2024 10:36:18 GMT",
            "mon, 19 aug 2024 10:36:18 GMT",
            "Mon, 19 Aug 2024 10:36:18 +0000",
            "Mon, 19 Aug 2024 12:36:18 +0200",
            "19 Aug 2024 10:36:18 UT",
            "Monday, 19-Aug-24 10:36:18 GMT",
            "Mon Aug 19 10:36:18 2024",
            "Mon Aug 19 10:36:18 UTC 2024",
            "Mon Aug 19 03:36:18 -0700 2024",
            "Monday, 19 August 2024 10:36:18",
        ] {
            assert_eq!(parse_datetime(s), Some(T), "{s}");
        }
        assert_eq!(
            parse_datetime("Fri, 9 Aug 2024 10:36 GMT"),
            Some(T - 10 * 86_400 - 18)
        );
        assert_eq!(
            parse_datetime("Fri Aug  9 10:36:18 2024"),
            Some(T - 10 * 86_400)
        );
        assert_eq!(parse_datetime("Thu, 01-Jan-70 00:00:00 GMT"), Some(0));
    }

    #[test]
    fn rejects_non_dates() {
        for s in [
            "",
            "1.5",
            "42",
            "1.2.3",
            "v1.2.3-beta.4",
            "hello world",
            "550e8400-e29b-41d4-a716-446655440000",
            "2024-08-19",
            "10:36:18",
            "2024-13-19T10:36:18Z",
            "2024-02-30T10:36:18Z",
            "2023-02-29T10:36:18Z",
            "2024-08-19T24:00:00Z",
            "2024-08-19T10:60:00Z",
            "2024-08-19T10:36:18Zjunk",
            "2024-08-19T10:36:18 and more",
            "2024-08-19T10:36:18+25:00",
            "2024-08/19T10:36:18Z",
            "Mon, 32 Aug 2024 10:36:18 GMT",
            "Foo, 19 Aug 2024 10:36:18 GMT",
            "Mon, 19 Xyz 2024 10:36:18 GMT",
            "Mon, 19 Aug 2024 10:36:18 gmt",
            "application/json; charset=utf-8",
            "max-age=3600, must-revalidate",
            "W/\"1724063778\"",
            "20240819103618",
        ] {
            assert_eq!(parse_datetime(s), None, "{s}");
        }
    }

    #[test]
    fn epoch_near_now() {
        assert!(is_epoch_near(T as f64, T));
        assert!(is_epoch_near((T + 86_000) as f64, T));
        assert!(is_epoch_near((T - 86_400) as f64, T));
        assert!(!is_epoch_near((T + 90_000) as f64, T));
        assert!(is_epoch_near(T as f64 * 1000.0 + 123.0, T));
        assert!(is_epoch_near(T as f64 + 0.25, T));
        assert!(!is_epoch_near(1.5, T));
        assert!(!is_epoch_near(42.0, 0));
        assert!(!is_epoch_near(f64::NAN, T));
        assert!(!is_epoch_near(T as f64 * 1_000_000.0, T));
    }
}
