//! Record-time noise: fields whose value is a timestamp will differ on replay, so they are
//! written into the test case as `{path: []}` when it is recorded.

use std::collections::BTreeSet;

use serde_json::Value;

use super::NoiseMap;
use super::datetime::{is_epoch_near, parse_datetime};
use crate::http::HttpResponse;

/// Response headers whose value is a date/time (or a unix time near `now_unix_s`) and JSON body
/// leaves that are date/time strings or unix seconds/milliseconds within ±24h of `now_unix_s`.
/// Array elements use index-free paths (`body.items.ts`); a body that is itself a timestamp (JSON
/// scalar or plain text) gives `body`. Keys containing `.` cannot be expressed and are skipped.
pub fn detect_timestamp_noise(resp: &HttpResponse, now_unix_s: i64) -> NoiseMap {
    let mut out = NoiseMap::new();
    let mut seen = BTreeSet::new();
    for h in &resp.headers {
        let lower = h.name.to_ascii_lowercase();
        // Sizes are not times even when the number happens to be in range.
        if lower == "content-length" || seen.contains(&lower) {
            continue;
        }
        if is_time_text(&h.value, now_unix_s) {
            out.insert(format!("header.{}", h.name), Vec::new());
            seen.insert(lower);
        }
    }
    match serde_json::from_slice::<Value>(&resp.body) {
        Ok(v) => walk(&v, "body", now_unix_s, &mut out),
        Err(_) => {
            if std::str::from_utf8(&resp.body).is_ok_and(|t| parse_datetime(t).is_some()) {
                out.insert("body".to_string(), Vec::new());
            }
        }
    }
    out
}

fn walk(v: &Value, path: &str, now: i64, out: &mut NoiseMap) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if !k.is_empty() && !k.contains('.') {
                    walk(child, &format!("{path}.{k}"), now, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|child| walk(child, path, now, out)),
        Value::String(s) if is_time_text(s, now) => {
            out.insert(path.to_string(), Vec::new());
        }
        Value::Number(n) if n.as_f64().is_some_and(|f| is_epoch_near(f, now)) => {
            out.insert(path.to_string(), Vec::new());
        }
        _ => {}
    }
}

/// A date/time in an accepted form, or a plain decimal number that is a unix time near `now`.
fn is_time_text(text: &str, now: i64) -> bool {
    let t = text.trim();
    if parse_datetime(t).is_some() {
        return true;
    }
    let mut parts = t.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac_ok = parts
        .next()
        .is_none_or(|f| !f.is_empty() && f.bytes().all(|c| c.is_ascii_digit()));
    !int.is_empty()
        && int.bytes().all(|c| c.is_ascii_digit())
        && frac_ok
        && t.parse::<f64>().is_ok_and(|f| is_epoch_near(f, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Header;

    const NOW: i64 = 1_724_063_778;

    fn resp(headers: &[(&str, &str)], body: &str) -> HttpResponse {
        HttpResponse {
            status_code: 200,
            headers: headers.iter().map(|(n, v)| Header::new(*n, *v)).collect(),
            body: body.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    fn keys(m: &NoiseMap) -> Vec<&str> {
        assert!(m.values().all(Vec::is_empty));
        m.keys().map(String::as_str).collect()
    }

    #[test]
    fn flags_date_headers_only() {
        let r = resp(
            &[
                ("Date", "Mon, 19 Aug 2024 10:36:18 GMT"),
                ("date", "Mon, 19 Aug 2024 10:36:19 GMT"),
                ("Last-Modified", "Sun, 18 Aug 2024 08:00:00 GMT"),
                ("X-RateLimit-Reset", "1724067000"),
                ("X-Generated-At", "2024-08-19T10:36:18.123Z"),
                ("Content-Length", "1724063778"),
                ("Content-Type", "application/json"),
                ("X-Request-Id", "550e8400-e29b-41d4-a716-446655440000"),
                ("Server", "nginx/1.25.3"),
                ("Retry-After", "120"),
                ("X-Version", "1.2.3"),
            ],
            "",
        );
        assert_eq!(
            keys(&detect_timestamp_noise(&r, NOW)),
            vec![
                "header.Date",
                "header.Last-Modified",
                "header.X-Generated-At",
                "header.X-RateLimit-Reset"
            ]
        );
    }

    #[test]
    fn flags_json_leaves_with_index_free_paths() {
        let body = serde_json::json!({
            "created_at": "2024-08-19T10:36:18Z",
            "updated": "2024-08-19 10:36:18",
            "ts": NOW,
            "ts_ms": NOW * 1000 + 5,
            "ts_float": NOW as f64 + 0.5,
            "old": 946_684_800,
            "birthday": "1990-01-01",
            "ratio": 1.5,
            "count": 3,
            "id": "550e8400-e29b-41d4-a716-446655440000",
            "version": "1.2.3",
            "word": "hello",
            "flag": true,
            "nothing": null,
            "epoch_text": "1724063778",
            "items": [
                {"ts": "Mon, 19 Aug 2024 10:36:18 GMT", "n": 1},
                {"ts": "Mon, 19 Aug 2024 10:36:20 GMT", "n": 2, "nested": [[{"at": NOW}]]}
            ],
            "a.b": "2024-08-19T10:36:18Z"
        });
        let r = resp(&[], &body.to_string());
        assert_eq!(
            keys(&detect_timestamp_noise(&r, NOW)),
            vec![
                "body.created_at",
                "body.epoch_text",
                "body.items.nested.at",
                "body.items.ts",
                "body.ts",
                "body.ts_float",
                "body.ts_ms",
                "body.updated",
            ]
        );
    }

    #[test]
    fn whole_body_timestamps() {
        assert_eq!(
            keys(&detect_timestamp_noise(
                &resp(&[], "\"2024-08-19T10:36:18Z\""),
                NOW
            )),
            vec!["body"]
        );
        assert_eq!(
            keys(&detect_timestamp_noise(
                &resp(&[], "2024-08-19T10:36:18Z\n"),
                NOW
            )),
            vec!["body"]
        );
        assert_eq!(
            keys(&detect_timestamp_noise(&resp(&[], "1724063778"), NOW)),
            vec!["body"]
        );
        assert!(detect_timestamp_noise(&resp(&[], "Hello, World!"), NOW).is_empty());
        assert!(detect_timestamp_noise(&resp(&[], "[1, 2, 1.5, \"1.2.3\"]"), NOW).is_empty());
    }

    #[test]
    fn numeric_text_rules() {
        assert!(is_time_text("1724063778", NOW));
        assert!(is_time_text("1724063778.25", NOW));
        assert!(is_time_text("1724063778250", NOW));
        assert!(!is_time_text("1724063778.", NOW));
        assert!(!is_time_text("-1724063778", NOW));
        assert!(!is_time_text("1e9", NOW));
        assert!(!is_time_text("1.5", NOW));
        assert!(!is_time_text("", NOW));
    }
}
