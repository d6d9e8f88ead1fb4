//! Command phase requests: what each command means for matching (fields, summary), how long
//! its recorded answer may be reused, and what shape of answer to expect.

use super::codec::{Reader, text_or_b64};
use super::response::Expect;
use super::values::{Params, Statements, decode_params, parse_execute};
use super::{b64, caps, malformed};
use crate::dependency::{DependencyError, Lifetime};

pub(super) const COM_QUIT: u8 = 0x01;
pub(super) const COM_INIT_DB: u8 = 0x02;
pub(super) const COM_QUERY: u8 = 0x03;
pub(super) const COM_FIELD_LIST: u8 = 0x04;
pub(super) const COM_STATISTICS: u8 = 0x09;
pub(super) const COM_PROCESS_INFO: u8 = 0x0A;
pub(super) const COM_DEBUG: u8 = 0x0D;
pub(super) const COM_PING: u8 = 0x0E;
pub(super) const COM_CHANGE_USER: u8 = 0x11;
pub(super) const COM_BINLOG_DUMP: u8 = 0x12;
pub(super) const COM_STMT_PREPARE: u8 = 0x16;
pub(super) const COM_STMT_EXECUTE: u8 = 0x17;
pub(super) const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
pub(super) const COM_STMT_CLOSE: u8 = 0x19;
pub(super) const COM_STMT_RESET: u8 = 0x1A;
pub(super) const COM_SET_OPTION: u8 = 0x1B;
pub(super) const COM_STMT_FETCH: u8 = 0x1C;
pub(super) const COM_BINLOG_DUMP_GTID: u8 = 0x1E;
pub(super) const COM_RESET_CONNECTION: u8 = 0x1F;
pub(super) const COM_CLONE: u8 = 0x20;

/// Longest summary, in characters; the fields keep the whole query.
const SUMMARY_CHARS: usize = 200;

pub(super) fn command_name(command: u8) -> &'static str {
    match command {
        0x00 => "COM_SLEEP",
        COM_QUIT => "COM_QUIT",
        COM_INIT_DB => "COM_INIT_DB",
        COM_QUERY => "COM_QUERY",
        COM_FIELD_LIST => "COM_FIELD_LIST",
        0x05 => "COM_CREATE_DB",
        0x06 => "COM_DROP_DB",
        0x07 => "COM_REFRESH",
        0x08 => "COM_SHUTDOWN",
        COM_STATISTICS => "COM_STATISTICS",
        COM_PROCESS_INFO => "COM_PROCESS_INFO",
        0x0B => "COM_CONNECT",
        0x0C => "COM_PROCESS_KILL",
        COM_DEBUG => "COM_DEBUG",
        COM_PING => "COM_PING",
        0x0F => "COM_TIME",
        0x10 => "COM_DELAYED_INSERT",
        COM_CHANGE_USER => "COM_CHANGE_USER",
        COM_BINLOG_DUMP => "COM_BINLOG_DUMP",
        0x13 => "COM_TABLE_DUMP",
        0x14 => "COM_CONNECT_OUT",
        0x15 => "COM_REGISTER_SLAVE",
        COM_STMT_PREPARE => "COM_STMT_PREPARE",
        COM_STMT_EXECUTE => "COM_STMT_EXECUTE",
        COM_STMT_SEND_LONG_DATA => "COM_STMT_SEND_LONG_DATA",
        COM_STMT_CLOSE => "COM_STMT_CLOSE",
        COM_STMT_RESET => "COM_STMT_RESET",
        COM_SET_OPTION => "COM_SET_OPTION",
        COM_STMT_FETCH => "COM_STMT_FETCH",
        0x1D => "COM_DAEMON",
        COM_BINLOG_DUMP_GTID => "COM_BINLOG_DUMP_GTID",
        COM_RESET_CONNECTION => "COM_RESET_CONNECTION",
        COM_CLONE => "COM_CLONE",
        _ => "COM_UNKNOWN",
    }
}

/// A client message, understood.
#[derive(Debug)]
pub(super) struct Request {
    pub fields: Vec<(String, String)>,
    pub summary: String,
    pub lifetime: Lifetime,
    pub expect: Expect,
}

fn field(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_owned(), value.into())
}

/// A command packet (sequence id 0) of the command phase. `capabilities` are the client's, so
/// the same packet gives the same request whether or not the server side is seen.
pub(super) fn classify(
    payload: &[u8],
    capabilities: u32,
    statements: &mut Statements,
) -> Result<Request, DependencyError> {
    let Some(&command) = payload.first() else {
        return Err(malformed("empty command packet"));
    };
    let name = command_name(command);
    let body = payload.get(1..).unwrap_or_default();
    let mut fields = vec![field("command", name)];
    let request = |fields, summary, lifetime, expect| Request {
        fields,
        summary,
        lifetime,
        expect,
    };
    Ok(match command {
        COM_QUERY => {
            let (query, attrs) = parse_query(body, capabilities)?;
            let lifetime = if is_session_query(&query) {
                Lifetime::Session
            } else {
                Lifetime::PerTest
            };
            let summary = shorten(&format!("{name} {query}"));
            fields.push(field("query", query));
            fields.extend(
                attrs
                    .into_iter()
                    .map(|(key, value)| (format!("query_attr.{key}"), value)),
            );
            request(fields, summary, lifetime, Expect::results(false))
        }
        COM_STMT_PREPARE => {
            let query = normalize_sql(body);
            let summary = shorten(&format!("{name} {query}"));
            fields.push(field("query", query.clone()));
            request(
                fields,
                summary,
                Lifetime::Connection,
                Expect::prepare(query),
            )
        }
        COM_STMT_EXECUTE => {
            let execute = parse_execute(payload, capabilities, statements)?;
            let id = execute.statement_id;
            fields.push(field("statement_id", id.to_string()));
            let shown = match execute.params {
                Params::Decoded(params) => {
                    let mut shown = Vec::with_capacity(params.len());
                    let mut position = 0;
                    for (key, value) in params {
                        shown.push(value.clone());
                        if key.is_empty() {
                            position += 1;
                            fields.push((format!("param.{position}"), value));
                        } else {
                            fields.push((format!("query_attr.{key}"), value));
                        }
                    }
                    shown.join(", ")
                }
                Params::Raw(raw) => {
                    fields.push(field("params", b64(&raw)));
                    "?".to_owned()
                }
            };
            let sql = statements
                .query(id)
                .map(|q| format!(" {q}"))
                .unwrap_or_default();
            let summary = shorten(&format!("{name} #{id}{sql} [{shown}]"));
            request(fields, summary, Lifetime::PerTest, Expect::results(true))
        }
        COM_STMT_CLOSE | COM_STMT_RESET | COM_STMT_FETCH | COM_STMT_SEND_LONG_DATA => {
            let mut r = Reader::new(body);
            let id = r.u32("statement id")?;
            fields.push(field("statement_id", id.to_string()));
            let (lifetime, expect) = match command {
                COM_STMT_CLOSE => {
                    statements.closed(id);
                    (Lifetime::Connection, Expect::None)
                }
                COM_STMT_RESET => (Lifetime::Connection, Expect::Single),
                COM_STMT_FETCH => {
                    fields.push(field("rows", r.u32("row count")?.to_string()));
                    (Lifetime::PerTest, Expect::UntilEof)
                }
                _ => {
                    fields.push(field("param_id", r.u16("parameter id")?.to_string()));
                    fields.push(field("payload", b64(r.rest())));
                    (Lifetime::PerTest, Expect::None)
                }
            };
            request(fields, format!("{name} #{id}"), lifetime, expect)
        }
        COM_BINLOG_DUMP | COM_BINLOG_DUMP_GTID | COM_CLONE => {
            return Err(malformed(format!(
                "{name}: replication and clone streams are not supported"
            )));
        }
        _ => {
            if !body.is_empty() {
                fields.push(field("payload", b64(body)));
            }
            let (lifetime, expect) = match command {
                COM_QUIT => (Lifetime::Session, Expect::None),
                COM_PING | COM_STATISTICS | COM_DEBUG | COM_RESET_CONNECTION | COM_INIT_DB
                | COM_SET_OPTION => (Lifetime::Session, Expect::Single),
                COM_CHANGE_USER => (Lifetime::Session, Expect::Auth),
                COM_FIELD_LIST => (Lifetime::PerTest, Expect::UntilEof),
                COM_PROCESS_INFO => (Lifetime::PerTest, Expect::results(false)),
                // Anything else (the server answers unknown commands with ERR) is one packet.
                _ => (Lifetime::PerTest, Expect::Single),
            };
            let summary = match command {
                COM_INIT_DB => shorten(&format!("{name} {}", text_or_b64(body))),
                _ => name.to_owned(),
            };
            request(fields, summary, lifetime, expect)
        }
    })
}

/// COM_QUERY's body: the query attributes (when the client enabled them) and the SQL.
fn parse_query(
    body: &[u8],
    capabilities: u32,
) -> Result<(String, Vec<(String, String)>), DependencyError> {
    let mut r = Reader::new(body);
    let mut attrs = Vec::new();
    if capabilities & caps::QUERY_ATTRIBUTES != 0 {
        let count = r.lenenc("query attribute count")?;
        r.lenenc("query attribute set count")?;
        let count = usize::try_from(count)
            .ok()
            .filter(|count| *count <= r.remaining())
            .ok_or_else(|| malformed("query attribute count larger than the packet"))?;
        attrs = decode_params(&mut r, count, true, None)?.0;
        attrs.sort();
    }
    Ok((normalize_sql(r.rest()), attrs))
}

/// SQL for matching: whitespace runs outside quotes become one space, ends trimmed; text in
/// quotes is kept exactly. Not UTF-8: `b64:` of the bytes.
pub(super) fn normalize_sql(bytes: &[u8]) -> String {
    let Ok(sql) = std::str::from_utf8(bytes) else {
        return b64(bytes);
    };
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut pending_space = false;
    for c in sql.chars() {
        match quote {
            Some(q) => {
                out.push(c);
                if escaped {
                    escaped = false;
                } else if c == '\\' && q != '`' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if c.is_whitespace() => pending_space = !out.is_empty(),
            None => {
                if pending_space {
                    out.push(' ');
                    pending_space = false;
                }
                if matches!(c, '\'' | '"' | '`') {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
    }
    out
}

/// Start-up and environment queries every connection makes (`SET ...`, `SHOW VARIABLES`,
/// `SELECT @@...`, `SELECT 1`): their answers do not depend on the test, so they are kept for
/// every connection. Leading comments (Connector/J tags its queries) are skipped.
pub(super) fn is_session_query(query: &str) -> bool {
    let mut rest = query.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("/*") {
            match after.find("*/") {
                Some(end) => rest = after[end + 2..].trim_start(),
                None => return false,
            }
        } else if rest.starts_with("-- ") || rest.starts_with('#') {
            match rest.find('\n') {
                Some(end) => rest = rest[end + 1..].trim_start(),
                None => return false,
            }
        } else {
            break;
        }
    }
    let upper: String = rest
        .trim_end_matches(|c: char| c == ';' || c.is_whitespace())
        .chars()
        .take(32)
        .collect::<String>()
        .to_ascii_uppercase();
    let word_after = |prefix: &str| {
        upper.strip_prefix(prefix).is_some_and(|after| {
            !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        })
    };
    word_after("SET")
        || upper.starts_with("SHOW VARIABLES")
        || upper.starts_with("SHOW SESSION VARIABLES")
        || upper.starts_with("SHOW GLOBAL VARIABLES")
        || upper.starts_with("SELECT @@")
        || upper == "SELECT 1"
        || upper == "SELECT 1 FROM DUAL"
}

/// At most [`SUMMARY_CHARS`] characters, marked when cut.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(SUMMARY_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_whitespace_outside_quotes_only() {
        assert_eq!(
            normalize_sql(b"  SELECT *\n\tFROM  t WHERE a = 'x  y' AND b=\"it\\\"s  \"  "),
            "SELECT * FROM t WHERE a = 'x  y' AND b=\"it\\\"s  \""
        );
        assert_eq!(normalize_sql(b"a  `b  c`  d"), "a `b  c` d");
        assert_eq!(normalize_sql(&[0xFF, b' ']), "b64:/yA=");
    }

    #[test]
    fn recognises_session_queries() {
        for yes in [
            "SET NAMES utf8mb4",
            "set autocommit=1",
            "SET",
            "SHOW VARIABLES LIKE 'x'",
            "select @@version_comment limit 1",
            "/* mysql-connector-j-8.0.33 */SELECT @@session.auto_increment_increment",
            "SELECT 1",
            "select 1;",
            "-- ping\nSELECT 1",
        ] {
            assert!(is_session_query(yes), "{yes}");
        }
        for no in [
            "SELECT 12",
            "SETTINGS",
            "SELECT * FROM t",
            "INSERT INTO t VALUES (1)",
            "/* unterminated SET",
            "SHOW TABLES",
        ] {
            assert!(!is_session_query(no), "{no}");
        }
    }

    #[test]
    fn shortens_long_summaries_on_char_boundaries() {
        let long = "é".repeat(300);
        let short = shorten(&long);
        assert_eq!(short.chars().count(), SUMMARY_CHARS + 1);
        assert!(short.ends_with('…'));
    }
}
