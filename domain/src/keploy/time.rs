//! RFC 3339 timestamps <-> unix nanoseconds, with the civil-date arithmetic done here so the
//! crate needs no date library.

const NANOS_PER_SEC: i128 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;

/// Days since 1970-01-01 of a proleptic Gregorian date (`month` 1..=12, `day` 1..=31).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Count years from March so the leap day is the last day of the (shifted) year.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = i64::from((month + 9) % 12);
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    // Both casts are in range by construction: day 1..=31, month 1..=12.
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Unix nanoseconds as RFC 3339 in UTC, fraction trimmed of trailing zeros like Go's
/// `time.RFC3339Nano` (`2024-08-19T10:36:18.340635824Z`, `1970-01-01T00:00:00Z`).
pub fn format_rfc3339_utc(unix_ns: u64) -> String {
    let secs = (unix_ns / 1_000_000_000) as i64;
    let nanos = unix_ns % 1_000_000_000;
    let (year, month, day) = civil_from_days(secs.div_euclid(SECS_PER_DAY));
    let sod = secs.rem_euclid(SECS_PER_DAY);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Parses an RFC 3339 timestamp with any offset (`Z`, `+05:30`, `-07:00`) to unix
/// nanoseconds. Fractions longer than nanoseconds are truncated. Go's zero time (year 1,
/// which Keploy writes for "unset") reads as 0; other instants before 1970 are errors.
pub fn parse_rfc3339(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let b = s.as_bytes();
    let bad =
        || format!("{text:?} is not an RFC 3339 timestamp (like 2024-08-19T16:06:18.34+05:30)");
    // The checks below index bytes; slicing `s` is safe once the fixed part is ASCII.
    if b.len() < 20
        || !b[..19].is_ascii()
        || b[4] != b'-'
        || b[7] != b'-'
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    let num = |range: std::ops::Range<usize>| -> Result<u32, String> {
        let part = &s[range];
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let (year, month, day) = (i64::from(num(0..4)?), num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(format!("{text:?} has no such date"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(format!("{text:?} has no such time of day"));
    }
    let mut rest = &s[19..];
    let mut nanos: u32 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let kept = &frac[..digits.min(9)];
        nanos = kept.parse::<u32>().map_err(|_| bad())? * 10u32.pow(9 - kept.len() as u32);
        rest = &frac[digits..];
    }
    let offset_secs: i64 = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let field = |d1: u8, d2: u8| -> Result<i64, String> {
                if d1.is_ascii_digit() && d2.is_ascii_digit() {
                    Ok(i64::from((d1 - b'0') * 10 + (d2 - b'0')))
                } else {
                    Err(bad())
                }
            };
            let (oh, om) = (field(*h1, *h2)?, field(*m1, *m2)?);
            if oh > 23 || om > 59 {
                return Err(format!("{text:?} has an offset out of range"));
            }
            let secs = oh * 3600 + om * 60;
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return Err(bad()),
    };
    if year == 1 {
        // Go's zero `time.Time`: the field was never set.
        return Ok(0);
    }
    let local_secs = days_from_civil(year, month, day) * SECS_PER_DAY
        + i64::from(hour) * 3600
        + i64::from(minute) * 60
        + i64::from(second);
    let unix_ns = i128::from(local_secs - offset_secs) * NANOS_PER_SEC + i128::from(nanos);
    u64::try_from(unix_ns).map_err(|_| format!("{text:?} is outside 1970..2554"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keploy_time_civil_round_trip_over_centuries() {
        for days in (-800_000..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn keploy_time_formats_utc_like_go_rfc3339nano() {
        assert_eq!(format_rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_rfc3339_utc(1_724_063_778_340_635_824),
            "2024-08-19T10:36:18.340635824Z"
        );
        assert_eq!(
            format_rfc3339_utc(1_724_063_778_500_000_000),
            "2024-08-19T10:36:18.5Z"
        );
        assert_eq!(
            format_rfc3339_utc(951_868_799_000_000_001),
            "2000-02-29T23:59:59.000000001Z"
        );
        assert_eq!(
            format_rfc3339_utc(u64::MAX),
            "2554-07-21T23:34:33.709551615Z"
        );
    }

    #[test]
    fn keploy_time_parses_offsets() {
        let ist = parse_rfc3339("2024-08-19T16:06:18.340635824+05:30");
        assert_eq!(ist, Ok(1_724_063_778_340_635_824));
        assert_eq!(parse_rfc3339("2024-08-19T10:36:18.340635824Z"), ist);
        assert_eq!(parse_rfc3339("2024-08-19T03:36:18.340635824-07:00"), ist);
        assert_eq!(parse_rfc3339("2024-08-19t10:36:18.340635824z"), ist);
        assert_eq!(parse_rfc3339("1969-12-31T17:00:00-07:00"), Ok(0));
        assert_eq!(
            parse_rfc3339("2000-02-29T23:59:59-03:30"),
            Ok(951_881_399_000_000_000)
        );
        assert_eq!(
            parse_rfc3339("2024-08-19T16:06:20+05:30"),
            Ok(1_724_063_780_000_000_000)
        );
        // Sub-nanosecond digits are dropped, short fractions scaled.
        assert_eq!(
            parse_rfc3339("1970-01-01T00:00:01.1234567899Z"),
            Ok(1_123_456_789)
        );
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Ok(1_500_000_000));
        assert_eq!(parse_rfc3339("0001-01-01T00:00:00Z"), Ok(0));
    }

    #[test]
    fn keploy_time_rejects_nonsense() {
        for bad in [
            "",
            "2024-08-19",
            "2024-08-19T10:36:18",
            "2024-08-19T10:36:18+0530",
            "2024-02-30T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-08-19T24:00:00Z",
            "2024-08-19T10:36:18.Z",
            "2024-08-19T10:36:18+24:00",
            "1969-12-31T23:59:59Z",
            "2024-08-19T1a:36:18Z",
            "+024-08-19T10:36:18Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad:?} parsed");
        }
        assert!(parse_rfc3339("2000-02-29T00:00:00Z").is_ok());
    }

    #[test]
    fn keploy_time_round_trips() {
        let mut ns: u64 = 1;
        while ns < u64::MAX / 3 {
            assert_eq!(parse_rfc3339(&format_rfc3339_utc(ns)), Ok(ns));
            ns = ns * 3 + 7;
        }
        assert_eq!(parse_rfc3339(&format_rfc3339_utc(u64::MAX)), Ok(u64::MAX));
    }
}
