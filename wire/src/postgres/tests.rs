//! End-to-end tests of [`PostgresConnection`]: hand-encoded byte streams in, units out.

use super::connection::Limits;
use super::messages::frame;
use super::{PostgresConnection, decline_ssl, error_response};
use crate::dependency::{DependencyError, DependencyParser, Lifetime, Mode, Side, Unit};

const C: Side = Side::Client;
const S: Side = Side::Server;

// ---- frontend encoders ----

fn cstr(text: &str) -> Vec<u8> {
    let mut out = text.as_bytes().to_vec();
    out.push(0);
    out
}

fn untyped(body: &[u8]) -> Vec<u8> {
    let mut out = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn ssl_request() -> Vec<u8> {
    untyped(&80_877_103i32.to_be_bytes())
}

fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196_608i32.to_be_bytes().to_vec();
    for (name, value) in params {
        body.extend(cstr(name));
        body.extend(cstr(value));
    }
    body.push(0);
    untyped(&body)
}

fn query(sql: &str) -> Vec<u8> {
    frame(b'Q', &cstr(sql))
}

fn parse(name: &str, sql: &str, types: &[i32]) -> Vec<u8> {
    let mut body = cstr(name);
    body.extend(cstr(sql));
    body.extend((types.len() as u16).to_be_bytes());
    for oid in types {
        body.extend(oid.to_be_bytes());
    }
    frame(b'P', &body)
}

enum Param<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
    Null,
}

/// Bind with one format code per parameter and text results.
fn bind(portal: &str, statement: &str, params: &[Param]) -> Vec<u8> {
    let mut body = cstr(portal);
    body.extend(cstr(statement));
    body.extend((params.len() as u16).to_be_bytes());
    for param in params {
        let format: i16 = if matches!(param, Param::Binary(_)) {
            1
        } else {
            0
        };
        body.extend(format.to_be_bytes());
    }
    body.extend((params.len() as u16).to_be_bytes());
    for param in params {
        match param {
            Param::Text(text) => {
                body.extend((text.len() as i32).to_be_bytes());
                body.extend(text.as_bytes());
            }
            Param::Binary(bytes) => {
                body.extend((bytes.len() as i32).to_be_bytes());
                body.extend(*bytes);
            }
            Param::Null => body.extend((-1i32).to_be_bytes()),
        }
    }
    body.extend(0u16.to_be_bytes());
    frame(b'B', &body)
}

fn describe(kind: u8, name: &str) -> Vec<u8> {
    let mut body = vec![kind];
    body.extend(cstr(name));
    frame(b'D', &body)
}

fn execute(portal: &str, max_rows: i32) -> Vec<u8> {
    let mut body = cstr(portal);
    body.extend(max_rows.to_be_bytes());
    frame(b'E', &body)
}

fn sync() -> Vec<u8> {
    frame(b'S', b"")
}

fn flush() -> Vec<u8> {
    frame(b'H', b"")
}

fn terminate() -> Vec<u8> {
    frame(b'X', b"")
}

fn password(text: &str) -> Vec<u8> {
    frame(b'p', &cstr(text))
}

fn sasl_initial(mechanism: &str, data: &[u8]) -> Vec<u8> {
    let mut body = cstr(mechanism);
    body.extend((data.len() as i32).to_be_bytes());
    body.extend(data);
    frame(b'p', &body)
}

fn copy_data(data: &[u8]) -> Vec<u8> {
    frame(b'd', data)
}

fn copy_done() -> Vec<u8> {
    frame(b'c', b"")
}

// ---- backend encoders ----

fn auth(code: i32, extra: &[u8]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    body.extend(extra);
    frame(b'R', &body)
}

fn parameter_status(name: &str, value: &str) -> Vec<u8> {
    let mut body = cstr(name);
    body.extend(cstr(value));
    frame(b'S', &body)
}

fn backend_key() -> Vec<u8> {
    let mut body = 4242i32.to_be_bytes().to_vec();
    body.extend(0x1234_5678i32.to_be_bytes());
    frame(b'K', &body)
}

fn ready(status: u8) -> Vec<u8> {
    frame(b'Z', &[status])
}

fn row_description(columns: &[&str]) -> Vec<u8> {
    let mut body = (columns.len() as u16).to_be_bytes().to_vec();
    for column in columns {
        body.extend(cstr(column));
        body.extend([0u8; 18]);
    }
    frame(b'T', &body)
}

fn data_row(values: &[&str]) -> Vec<u8> {
    let mut body = (values.len() as u16).to_be_bytes().to_vec();
    for value in values {
        body.extend((value.len() as i32).to_be_bytes());
        body.extend(value.as_bytes());
    }
    frame(b'D', &body)
}

fn command_complete(tag: &str) -> Vec<u8> {
    frame(b'C', &cstr(tag))
}

fn error_message(sqlstate: &str, message: &str) -> Vec<u8> {
    let mut body = b"SERROR\0".to_vec();
    body.extend(b"C");
    body.extend(cstr(sqlstate));
    body.extend(b"M");
    body.extend(cstr(message));
    body.push(0);
    frame(b'E', &body)
}

fn simple(tag: u8) -> Vec<u8> {
    frame(tag, b"")
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

// ---- driving ----

/// One step of a conversation: bytes of a side.
type Script = Vec<(Side, Vec<u8>)>;

fn drain(conn: &mut PostgresConnection) -> Vec<Unit> {
    std::iter::from_fn(|| conn.next_unit()).collect()
}

fn run_with(mode: Mode, script: &Script, close: bool) -> (Vec<Unit>, Option<DependencyError>) {
    let mut conn = PostgresConnection::new(mode);
    for (ts, (side, bytes)) in script.iter().enumerate() {
        conn.feed(*side, bytes, ts as u64 + 1);
    }
    if close {
        conn.close();
    }
    let units = drain(&mut conn);
    (units, conn.error().cloned())
}

fn run(script: &Script) -> Vec<Unit> {
    let (units, error) = run_with(Mode::Both, script, false);
    assert_eq!(error, None);
    units
}

/// Runs `script` on a connection that already completed a trust start-up; returns the units
/// after the start-up one.
fn run_connected(script: Script) -> Vec<Unit> {
    let mut full = vec![
        (C, startup(&[("user", "app")])),
        (S, cat(&[auth(0, b""), ready(b'I')])),
    ];
    full.extend(script);
    let mut units = run(&full);
    assert_eq!(
        units.first().map(|unit| unit.fields[0].1.as_str()),
        Some("startup")
    );
    units.remove(0);
    units
}

/// A connection in Mode::Both past a trust start-up.
fn connected() -> PostgresConnection {
    let mut conn = PostgresConnection::new(Mode::Both);
    conn.feed(C, &startup(&[("user", "app")]), 1);
    conn.feed(S, &cat(&[auth(0, b""), ready(b'I')]), 1);
    assert_eq!(drain(&mut conn).len(), 1);
    conn
}

fn fields(unit: &Unit) -> Vec<(&str, &str)> {
    unit.fields
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

fn md5_hash() -> String {
    "0123456789abcdef0123456789abcdef".to_string()
}

/// SSL declined, start-up with md5, a simple query, an extended query, a named statement,
/// terminate: every kind of unit, with the server's bytes for each.
fn conversation() -> Script {
    vec![
        (C, ssl_request()),
        (S, b"N".to_vec()),
        (C, startup(&[("user", "app"), ("database", "shop")])),
        (S, auth(5, &[1, 2, 3, 4])),
        (C, password(&format!("md5{}", md5_hash()))),
        (
            S,
            cat(&[
                auth(0, b""),
                parameter_status("server_version", "16.2"),
                backend_key(),
                ready(b'I'),
            ]),
        ),
        (C, query("SELECT name FROM items")),
        (
            S,
            cat(&[
                row_description(&["name"]),
                data_row(&["pen"]),
                command_complete("SELECT 1"),
                ready(b'I'),
            ]),
        ),
        (
            C,
            cat(&[
                parse("", "SELECT * FROM items WHERE id = $1", &[23]),
                bind("", "", &[Param::Text("42")]),
                describe(b'P', ""),
                execute("", 0),
                sync(),
            ]),
        ),
        (
            S,
            cat(&[
                simple(b'1'),
                simple(b'2'),
                row_description(&["id"]),
                data_row(&["42"]),
                command_complete("SELECT 1"),
                ready(b'I'),
            ]),
        ),
        (
            C,
            cat(&[
                parse("s1", "UPDATE items SET n = n + 1", &[]),
                bind("", "s1", &[]),
                execute("", 0),
                sync(),
            ]),
        ),
        (
            S,
            cat(&[
                simple(b'1'),
                simple(b'2'),
                command_complete("UPDATE 1"),
                ready(b'I'),
            ]),
        ),
        (C, terminate()),
    ]
}

// ---- tests ----

#[test]
fn ssl_declined_then_trust_startup() {
    let server_hello = cat(&[
        auth(0, b""),
        parameter_status("server_version", "16.2"),
        parameter_status("client_encoding", "UTF8"),
        backend_key(),
        ready(b'I'),
    ]);
    let startup_bytes = startup(&[
        ("user", "app"),
        ("database", "shop"),
        ("client_encoding", "UTF8"),
        ("application_name", "svc"),
    ]);
    let units = run(&vec![
        (C, ssl_request()),
        (S, b"N".to_vec()),
        (C, startup_bytes.clone()),
        (S, server_hello.clone()),
    ]);
    assert_eq!(units.len(), 2);
    assert_eq!(units[0].request, ssl_request());
    assert_eq!(units[0].response, b"N");
    assert_eq!(units[0].summary, "SSLRequest -> N");
    assert_eq!(units[0].lifetime, Lifetime::Session);
    assert_eq!(fields(&units[0]), [("type", "ssl_request")]);
    assert_eq!((units[0].request_ts_ns, units[0].response_ts_ns), (1, 2));

    assert_eq!(units[1].request, startup_bytes);
    assert_eq!(units[1].response, server_hello);
    assert_eq!(units[1].summary, "startup user=app database=shop");
    assert_eq!(units[1].lifetime, Lifetime::Session);
    assert_eq!(
        fields(&units[1]),
        [
            ("type", "startup"),
            ("user", "app"),
            ("database", "shop"),
            ("application_name", "svc"),
            ("client_encoding", "UTF8"),
        ]
    );
    assert_eq!((units[1].request_ts_ns, units[1].response_ts_ns), (3, 4));
}

#[test]
fn startup_fields_drop_time_zone_and_default_the_database() {
    let units = run(&vec![
        (C, startup(&[("TimeZone", "Europe/Paris"), ("user", "bob")])),
        (S, cat(&[auth(0, b""), ready(b'I')])),
    ]);
    assert_eq!(
        fields(&units[0]),
        [("type", "startup"), ("user", "bob"), ("database", "bob")]
    );
}

#[test]
fn md5_authentication() {
    let units = run(&conversation()[2..6].to_vec());
    assert_eq!(units.len(), 2);
    assert_eq!(units[0].response, auth(5, &[1, 2, 3, 4]));
    assert_eq!(units[1].request, password(&format!("md5{}", md5_hash())));
    assert_eq!(
        fields(&units[1]),
        [("type", "password"), ("md5", md5_hash().as_str())]
    );
    assert_eq!(units[1].summary, "password (md5)");
    assert_eq!(units[1].lifetime, Lifetime::Session);
    assert_eq!(units[1].response, conversation()[5].1);
}

#[test]
fn cleartext_password_is_not_copied_into_fields() {
    let units = run(&vec![
        (C, startup(&[("user", "app")])),
        (S, auth(3, b"")),
        (C, password("hunter2")),
        (S, cat(&[auth(0, b""), ready(b'I')])),
    ]);
    assert_eq!(
        fields(&units[1]),
        [("type", "password"), ("auth", "cleartext")]
    );
    assert!(!units[1].summary.contains("hunter2"));
}

#[test]
fn scram_exchange_gives_one_unit_per_client_message() {
    let final_answer = cat(&[auth(12, b"v=proof"), auth(0, b""), ready(b'I')]);
    let units = run(&vec![
        (C, startup(&[("user", "app")])),
        (S, auth(10, b"SCRAM-SHA-256\0\0")),
        (C, sasl_initial("SCRAM-SHA-256", b"n,,n=,r=abc")),
        (S, auth(11, b"r=abcdef,s=salt,i=4096")),
        (C, frame(b'p', b"c=biws,r=abcdef,p=xyz")),
        (S, final_answer.clone()),
    ]);
    assert_eq!(units.len(), 3);
    assert_eq!(units[0].response, auth(10, b"SCRAM-SHA-256\0\0"));
    assert_eq!(
        fields(&units[1]),
        [
            ("type", "password"),
            ("sasl.mechanism", "SCRAM-SHA-256"),
            ("sasl.data", "b64:biwsbj0scj1hYmM="),
        ]
    );
    assert_eq!(units[1].response, auth(11, b"r=abcdef,s=salt,i=4096"));
    assert_eq!(
        fields(&units[2]),
        [
            ("type", "password"),
            ("sasl.data", "b64:Yz1iaXdzLHI9YWJjZGVmLHA9eHl6")
        ]
    );
    assert_eq!(units[2].response, final_answer);
}

#[test]
fn simple_query_until_ready_for_query() {
    let answer = cat(&[
        row_description(&["id", "name"]),
        data_row(&["1", "pen"]),
        data_row(&["2", "ink"]),
        command_complete("SELECT 2"),
        ready(b'I'),
    ]);
    let sql = "SELECT  id,\n\tname FROM items ";
    let units = run_connected(vec![(C, query(sql)), (S, answer.clone())]);
    assert_eq!(units.len(), 1);
    assert_eq!(units[0].request, query(sql));
    assert_eq!(units[0].response, answer);
    assert_eq!(
        fields(&units[0]),
        [("type", "query"), ("query", "SELECT id, name FROM items")]
    );
    assert_eq!(units[0].summary, "SELECT id, name FROM items");
    assert_eq!(units[0].lifetime, Lifetime::PerTest);
}

#[test]
fn start_up_style_queries_are_session() {
    for (sql, lifetime) in [
        ("SET search_path TO app", Lifetime::Session),
        ("show  TimeZone", Lifetime::Session),
        ("select 1", Lifetime::Session),
        ("SELECT version();", Lifetime::Session),
        ("select pg_catalog.version()", Lifetime::Session),
        ("DISCARD ALL", Lifetime::Session),
        ("RESET ALL", Lifetime::Session),
        ("SELECT 1; DROP TABLE x", Lifetime::PerTest),
        ("BEGIN", Lifetime::PerTest),
        ("SELECT 12", Lifetime::PerTest),
    ] {
        let units = run_connected(vec![
            (C, query(sql)),
            (S, cat(&[command_complete("SET"), ready(b'I')])),
        ]);
        assert_eq!(units[0].lifetime, lifetime, "{sql}");
    }
}

#[test]
fn extended_query_fields_with_text_binary_and_null_params() {
    let sql = "SELECT * FROM items\n WHERE id = $1 AND name = $2 AND blob = $3 AND x = $4";
    let request = cat(&[
        parse("", sql, &[23, 25, 17, 25]),
        bind(
            "",
            "",
            &[
                Param::Text("42"),
                Param::Text("bob"),
                Param::Binary(&[1, 2, 3]),
                Param::Null,
            ],
        ),
        describe(b'P', ""),
        execute("", 0),
        sync(),
    ]);
    let answer = cat(&[
        simple(b'1'),
        simple(b'2'),
        row_description(&["id"]),
        data_row(&["42"]),
        command_complete("SELECT 1"),
        ready(b'I'),
    ]);
    let units = run_connected(vec![(C, request.clone()), (S, answer.clone())]);
    assert_eq!(units.len(), 1);
    assert_eq!(units[0].request, request);
    assert_eq!(units[0].response, answer);
    let normalized = "SELECT * FROM items WHERE id = $1 AND name = $2 AND blob = $3 AND x = $4";
    assert_eq!(
        fields(&units[0]),
        [
            ("type", "extended"),
            ("parse.query", normalized),
            ("bind.param.1", "42"),
            ("bind.param.2", "bob"),
            ("bind.param.3", "b64:AQID"),
            ("bind.param.4", "NULL"),
            ("describe", "P:"),
            ("execute", ""),
            ("end", "sync"),
        ]
    );
    assert_eq!(
        units[0].summary,
        format!("{normalized} [42, bob, b64:AQID, NULL]")
    );
    assert_eq!(units[0].lifetime, Lifetime::PerTest);
}

#[test]
fn named_statement_is_connection_scoped_and_executions_differ_by_params() {
    let sql = "SELECT * FROM items WHERE id = $1";
    let prepare = cat(&[parse("s1", sql, &[23]), describe(b'S', "s1"), sync()]);
    let prepared = cat(&[
        simple(b'1'),
        frame(b't', &[0, 1, 0, 0, 0, 23]),
        row_description(&["id"]),
        ready(b'I'),
    ]);
    let exec = |id: &str| cat(&[bind("", "s1", &[Param::Text(id)]), execute("", 0), sync()]);
    let answer = |id: &str| {
        cat(&[
            simple(b'2'),
            data_row(&[id]),
            command_complete("SELECT 1"),
            ready(b'I'),
        ])
    };
    let units = run_connected(vec![
        (C, prepare),
        (S, prepared.clone()),
        (C, exec("7")),
        (S, answer("7")),
        (C, exec("8")),
        (S, answer("8")),
    ]);
    assert_eq!(units.len(), 3);
    assert_eq!(units[0].lifetime, Lifetime::Connection);
    assert_eq!(
        fields(&units[0]),
        [
            ("type", "extended"),
            ("parse.query", sql),
            ("parse.name", "s1"),
            ("describe", "S:s1"),
            ("end", "sync"),
        ]
    );
    assert_eq!(units[0].response, prepared);
    for (unit, id) in units[1..].iter().zip(["7", "8"]) {
        assert_eq!(unit.lifetime, Lifetime::PerTest);
        assert_eq!(
            fields(unit),
            [
                ("type", "extended"),
                ("bind.statement", "s1"),
                ("bind.param.1", id),
                ("execute", ""),
                ("end", "sync"),
            ]
        );
        assert_eq!(unit.response, answer(id));
        assert_eq!(unit.summary, format!("execute s1 [{id}]"));
    }
    assert_ne!(units[1].fields, units[2].fields);
}

#[test]
fn error_responses_end_the_answer_at_ready_for_query() {
    let failed = cat(&[
        error_message("42P01", "relation \"missing\" does not exist"),
        ready(b'I'),
    ]);
    let extended = cat(&[
        parse("", "SELECT * FROM missing", &[]),
        bind("", "", &[]),
        execute("", 0),
        sync(),
    ]);
    let units = run_connected(vec![
        (C, query("SELECT * FROM missing")),
        (S, failed.clone()),
        (C, extended),
        (S, failed.clone()),
        (C, query("SELECT 2")),
        (S, cat(&[command_complete("SELECT 1"), ready(b'I')])),
    ]);
    assert_eq!(units.len(), 3);
    assert_eq!(units[0].response, failed);
    assert_eq!(units[1].response, failed);
    assert_eq!(units[2].fields[1].1, "SELECT 2");
}

#[test]
fn flush_batch_ends_when_every_message_is_answered() {
    let first = cat(&[
        parse("", "SELECT 1", &[]),
        bind("", "", &[]),
        describe(b'P', ""),
        execute("", 0),
        flush(),
    ]);
    let first_answer = cat(&[
        simple(b'1'),
        simple(b'2'),
        row_description(&["?column?"]),
        data_row(&["1"]),
        command_complete("SELECT 1"),
    ]);
    let units = run_connected(vec![
        (C, first.clone()),
        (S, first_answer.clone()),
        (C, sync()),
        (S, ready(b'I')),
    ]);
    assert_eq!(units.len(), 2);
    assert_eq!(units[0].request, first);
    assert_eq!(units[0].response, first_answer);
    assert_eq!(fields(&units[0]).last(), Some(&("end", "flush")));
    assert_eq!(units[1].request, sync());
    assert_eq!(units[1].response, ready(b'I'));
}

#[test]
fn after_an_error_a_flush_batch_gets_no_answer_until_sync() {
    let failing = cat(&[parse("", "SELEC 1", &[]), flush()]);
    let ignored = cat(&[parse("", "SELECT 2", &[]), flush()]);
    let err = error_message("42601", "syntax error");
    let units = run_connected(vec![
        (C, failing),
        (S, err.clone()),
        (C, ignored.clone()),
        (C, sync()),
        (S, ready(b'I')),
    ]);
    assert_eq!(units.len(), 3);
    assert_eq!(units[0].response, err);
    assert_eq!(units[1].request, ignored);
    assert!(units[1].response.is_empty());
    assert_eq!(units[2].response, ready(b'I'));
}

#[test]
fn timestamps_are_those_of_the_first_request_and_last_response_byte() {
    let mut conn = connected();
    let request = query("SELECT 1");
    let answer = cat(&[command_complete("SELECT 1"), ready(b'I')]);
    conn.feed(C, &request[..3], 10);
    conn.feed(C, &request[3..], 11);
    conn.feed(S, &answer[..4], 12);
    conn.feed(S, &answer[4..], 13);
    let units = drain(&mut conn);
    assert_eq!(units.len(), 1);
    assert_eq!((units[0].request_ts_ns, units[0].response_ts_ns), (10, 13));
}

#[test]
fn pipelined_simple_queries_in_one_feed() {
    let answer = |n: &str| cat(&[data_row(&[n]), command_complete("SELECT 1"), ready(b'I')]);
    let units = run_connected(vec![
        (
            C,
            cat(&[
                query("SELECT 'a'"),
                query("SELECT 'b'"),
                query("SELECT 'c'"),
            ]),
        ),
        (S, cat(&[answer("a"), answer("b"), answer("c")])),
    ]);
    assert_eq!(units.len(), 3);
    for (unit, n) in units.iter().zip(["a", "b", "c"]) {
        assert_eq!(unit.request, query(&format!("SELECT '{n}'")));
        assert_eq!(unit.response, answer(n));
    }
}

#[test]
fn server_bytes_fed_before_the_request_are_held() {
    let answer = cat(&[command_complete("SELECT 0"), ready(b'I')]);
    let units = run(&vec![
        (S, b"N".to_vec()),
        (S, cat(&[auth(0, b""), ready(b'I')])),
        (S, answer.clone()),
        (C, ssl_request()),
        (C, startup(&[("user", "app")])),
        (C, query("SELECT 0")),
    ]);
    assert_eq!(units.len(), 3);
    assert_eq!(units[0].response, b"N");
    assert_eq!(units[2].response, answer);
}

#[test]
fn byte_by_byte_feeding_equals_whole_feeding() {
    let script = conversation();
    let (whole, error) = run_with(Mode::Both, &script, true);
    assert_eq!(error, None);
    assert_eq!(whole.len(), 7);

    let client: Vec<u8> = script
        .iter()
        .filter(|(side, _)| *side == C)
        .flat_map(|(_, bytes)| bytes.clone())
        .collect();
    let server: Vec<u8> = script
        .iter()
        .filter(|(side, _)| *side == S)
        .flat_map(|(_, bytes)| bytes.clone())
        .collect();
    let without_ts = |units: Vec<Unit>| {
        units
            .into_iter()
            .map(|unit| (unit.request, unit.response, unit.fields, unit.summary))
            .collect::<Vec<_>>()
    };
    let expected = without_ts(whole);

    // Alternate sides one byte at a time, and also feed each side whole in either order.
    let mut conn = PostgresConnection::new(Mode::Both);
    for index in 0..client.len().max(server.len()) {
        if let Some(byte) = client.get(index) {
            conn.feed(C, &[*byte], index as u64);
        }
        if let Some(byte) = server.get(index) {
            conn.feed(S, &[*byte], index as u64);
        }
    }
    conn.close();
    assert_eq!(conn.error(), None);
    assert_eq!(without_ts(drain(&mut conn)), expected);

    for order in [[C, S], [S, C]] {
        let mut conn = PostgresConnection::new(Mode::Both);
        for side in order {
            let bytes = if side == C { &client } else { &server };
            for byte in bytes {
                conn.feed(side, &[*byte], 1);
            }
        }
        conn.close();
        assert_eq!(conn.error(), None);
        assert_eq!(without_ts(drain(&mut conn)), expected, "{order:?}");
    }
}

#[test]
fn requests_only_yields_the_same_requests_with_empty_responses() {
    let script = conversation();
    let both = run(&script);
    let client_only: Script = script
        .iter()
        .filter(|(side, _)| *side == C)
        .cloned()
        .collect();
    let (only, error) = run_with(Mode::RequestsOnly, &client_only, false);
    assert_eq!(error, None);
    assert_eq!(only.len(), both.len());
    for (a, b) in only.iter().zip(&both) {
        assert_eq!(a.request, b.request);
        assert_eq!(a.fields, b.fields);
        assert_eq!(a.lifetime, b.lifetime);
        assert!(a.response.is_empty());
    }
    assert_eq!(only[0].summary, "SSLRequest");
}

#[test]
fn requests_only_yields_each_request_as_soon_as_it_is_complete() {
    let mut conn = PostgresConnection::new(Mode::RequestsOnly);
    conn.feed(C, &ssl_request(), 1);
    assert_eq!(drain(&mut conn).len(), 1);
    conn.feed(C, &startup(&[("user", "app")]), 2);
    assert_eq!(drain(&mut conn).len(), 1);
    conn.feed(C, &cat(&[parse("", "SELECT 1", &[]), bind("", "", &[])]), 3);
    assert!(drain(&mut conn).is_empty());
    conn.feed(C, &cat(&[execute("", 0), sync(), query("SELECT 2")]), 4);
    let units = drain(&mut conn);
    assert_eq!(units.len(), 2);
    assert_eq!(units[0].lifetime, Lifetime::Session);
    assert_eq!(units[1].fields[1].1, "SELECT 2");
    // Server bytes are not expected here and change nothing.
    conn.feed(S, b"garbage", 5);
    assert_eq!(conn.error(), None);
}

#[test]
fn terminate_has_an_empty_response() {
    let units = run(&vec![
        (C, startup(&[("user", "app")])),
        (S, cat(&[auth(0, b""), ready(b'I')])),
        (C, terminate()),
    ]);
    assert_eq!(units.len(), 2);
    assert_eq!(units[1].request, terminate());
    assert!(units[1].response.is_empty());
    assert_eq!(fields(&units[1]), [("type", "terminate")]);
    assert_eq!(units[1].lifetime, Lifetime::Session);
}

#[test]
fn copy_from_stdin_belongs_to_its_query() {
    let request = query("COPY items FROM STDIN");
    let copy = cat(&[copy_data(b"1\tpen\n"), copy_data(b"2\tink\n"), copy_done()]);
    let copy_in = frame(b'G', &[0, 0, 2, 0, 0, 0, 0]);
    let done = cat(&[command_complete("COPY 2"), ready(b'I')]);
    let expected_request = cat(&[request.clone(), copy.clone()]);
    let expected_response = cat(&[copy_in.clone(), done.clone()]);
    // The server's feed may run ahead of the client's.
    for script in [
        vec![
            (C, request.clone()),
            (S, copy_in.clone()),
            (C, copy.clone()),
            (S, done.clone()),
        ],
        vec![
            (C, request.clone()),
            (S, cat(&[copy_in.clone(), done.clone()])),
            (C, copy.clone()),
        ],
    ] {
        let units = run_connected(script);
        assert_eq!(units.len(), 1);
        assert_eq!(units[0].request, expected_request);
        assert_eq!(units[0].response, expected_response);
        assert_eq!(
            fields(&units[0]),
            [("type", "query"), ("query", "COPY items FROM STDIN")]
        );
    }
}

#[test]
fn extended_copy_keeps_the_trailing_sync() {
    let batch = cat(&[
        parse("", "COPY items FROM STDIN", &[]),
        bind("", "", &[]),
        execute("", 0),
        sync(),
    ]);
    let copy = cat(&[copy_data(b"1\n"), copy_done(), sync()]);
    let answer = cat(&[
        simple(b'1'),
        simple(b'2'),
        frame(b'G', &[0, 0, 0]),
        command_complete("COPY 1"),
        ready(b'I'),
    ]);
    let units = run_connected(vec![
        (C, batch.clone()),
        (C, copy.clone()),
        (S, answer.clone()),
        (C, query("SELECT 1")),
        (S, cat(&[command_complete("SELECT 1"), ready(b'I')])),
    ]);
    assert_eq!(units.len(), 2);
    assert_eq!(units[0].request, cat(&[batch, copy]));
    assert_eq!(units[0].response, answer);
}

#[test]
fn accepted_ssl_yields_the_negotiation_then_stops() {
    let tls_hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01];
    for script in [
        vec![
            (C, ssl_request()),
            (S, b"S".to_vec()),
            (C, tls_hello.to_vec()),
        ],
        vec![
            (C, ssl_request()),
            (C, tls_hello.to_vec()),
            (S, b"S".to_vec()),
        ],
    ] {
        let (units, error) = run_with(Mode::Both, &script, true);
        assert_eq!(units.len(), 1);
        assert_eq!(units[0].response, b"S");
        assert_eq!(units[0].summary, "SSLRequest -> S");
        match error {
            Some(DependencyError::Malformed { reason, .. }) => {
                assert!(reason.contains("TLS"), "{reason}");
            }
            other => panic!("expected a TLS error, got {other:?}"),
        }
    }
}

#[test]
fn malformed_lengths_are_errors_not_panics() {
    let after_startup = |bytes: Vec<u8>, side: Side| {
        let mut conn = PostgresConnection::new(Mode::Both);
        conn.feed(C, &startup(&[("user", "app")]), 1);
        conn.feed(S, &cat(&[auth(0, b""), ready(b'I')]), 2);
        conn.feed(side, &bytes, 3);
        let error = conn.error().cloned();
        // Everything after the failure is ignored.
        conn.feed(C, &query("SELECT 1"), 4);
        conn.feed(S, &ready(b'I'), 5);
        conn.close();
        (drain(&mut conn).len(), error)
    };
    let (units, error) = after_startup(vec![b'Q', 0, 0, 0, 2], C);
    assert_eq!(units, 1);
    assert!(matches!(error, Some(DependencyError::Malformed { .. })));
    let (_, error) = after_startup(vec![b'Q', 0x7f, 0xff, 0xff, 0xff], C);
    assert_eq!(
        error,
        Some(DependencyError::TooLarge {
            protocol: "postgres",
            limit: 64 << 20
        })
    );
    let (_, error) = after_startup(vec![b'?', 0, 0, 0, 4], C);
    assert!(matches!(error, Some(DependencyError::Malformed { .. })));

    let mut conn = PostgresConnection::new(Mode::Both);
    conn.feed(C, &[0, 0, 0, 3], 1);
    assert!(matches!(
        conn.error(),
        Some(DependencyError::Malformed { .. })
    ));

    let mut conn = PostgresConnection::new(Mode::Both);
    conn.feed(C, &startup(&[("user", "app")]), 1);
    conn.feed(S, &[b'R', 0, 0, 0, 3], 2);
    assert!(matches!(
        conn.error(),
        Some(DependencyError::Malformed { .. })
    ));
    assert!(drain(&mut conn).is_empty());
}

#[test]
fn held_bytes_are_capped() {
    let limits = Limits {
        max_message: 64,
        max_held: 128,
        max_pending: 4,
    };
    let mut conn = PostgresConnection::with_limits(Mode::Both, limits);
    for _ in 0..100 {
        conn.feed(S, &ready(b'I'), 1);
    }
    assert_eq!(
        conn.error(),
        Some(&DependencyError::TooLarge {
            protocol: "postgres",
            limit: 192
        })
    );

    let mut conn = PostgresConnection::with_limits(Mode::Both, limits);
    conn.feed(C, &startup(&[("user", "app")]), 1);
    for _ in 0..5 {
        conn.feed(C, &query("SELECT 1"), 2);
    }
    assert!(matches!(
        conn.error(),
        Some(DependencyError::Malformed { .. })
    ));
}

#[test]
fn client_gap_still_pairs_complete_requests() {
    let mut conn = connected();
    conn.feed(C, &query("SELECT 1"), 1);
    conn.gap(C, 10);
    conn.feed(C, &query("SELECT 2"), 2);
    conn.feed(S, &cat(&[command_complete("SELECT 1"), ready(b'I')]), 3);
    assert_eq!(conn.error(), Some(&DependencyError::Gap));
    let units = drain(&mut conn);
    assert_eq!(units.len(), 1);
    assert_eq!(units[0].fields[1].1, "SELECT 1");

    let mut conn = connected();
    conn.feed(C, &query("SELECT 1"), 1);
    conn.gap(S, 3);
    conn.feed(S, &ready(b'I'), 2);
    assert_eq!(conn.error(), Some(&DependencyError::Gap));
    assert!(drain(&mut conn).is_empty());
}

#[test]
fn close_yields_answers_cut_short() {
    let (units, error) = run_with(
        Mode::Both,
        &vec![
            (C, startup(&[("user", "app")])),
            (S, auth(0, b"")),
            (S, error_message("57P01", "terminating connection")),
            (C, query("SELECT 1")),
        ],
        true,
    );
    assert_eq!(error, None);
    // The start-up answer ended at the fatal error; the query got nothing.
    assert_eq!(units.len(), 1);
    assert_eq!(
        units[0].response,
        cat(&[
            auth(0, b""),
            error_message("57P01", "terminating connection")
        ])
    );
}

#[test]
fn helpers_for_the_mock_server() {
    assert_eq!(decline_ssl(), b"N");
    let bytes = error_response("XX000", "no mock\0matched");
    let mut expected = b"SERROR\0VERROR\0CXX000\0Mno mockmatched\0\0".to_vec();
    expected = frame(b'E', &expected);
    expected.extend(ready(b'I'));
    assert_eq!(bytes, expected);
    // It is what a server would send: it answers a query cleanly.
    let units = run(&vec![
        (C, startup(&[("user", "app")])),
        (S, cat(&[auth(0, b""), ready(b'I')])),
        (C, query("SELECT 1")),
        (S, bytes.clone()),
    ]);
    assert_eq!(units[1].response, bytes);
}

/// Feeds `data` as a script: `[op][len][bytes]` records; `op % 4`: 0 client bytes, 1 server
/// bytes, 2 a gap on side `op / 4 % 2`, 3 close. Panics only when an invariant breaks.
fn fuzz_script(mode: Mode, data: &[u8]) -> usize {
    let limits = Limits {
        max_message: 256,
        max_held: 512,
        max_pending: 8,
    };
    let mut conn = PostgresConnection::with_limits(mode, limits);
    let mut rest = data;
    let mut count = 0;
    while let [op, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        let side = if op / 4 % 2 == 0 { C } else { S };
        match op % 4 {
            0 => conn.feed(C, payload, 1),
            1 => conn.feed(S, payload, 2),
            2 => conn.gap(side, len as u64),
            _ => conn.close(),
        }
        for unit in drain(&mut conn) {
            count += 1;
            assert!(unit.request.len() <= 2 * (limits.max_held + limits.max_message));
            assert!(!unit.fields.is_empty());
            if mode == Mode::RequestsOnly {
                assert!(unit.response.is_empty());
            }
        }
    }
    conn.close();
    count + drain(&mut conn).len()
}

fn script_bytes(script: &Script) -> Vec<u8> {
    let mut out = Vec::new();
    for (side, bytes) in script {
        for piece in bytes.chunks(255) {
            out.push(if *side == C { 0 } else { 1 });
            out.push(piece.len() as u8);
            out.extend_from_slice(piece);
        }
    }
    out
}

#[test]
fn pseudo_random_mutations_never_panic() {
    let seeds = [
        script_bytes(&conversation()),
        script_bytes(&vec![
            (C, startup(&[("user", "app")])),
            (S, cat(&[auth(0, b""), ready(b'I')])),
            (C, query("COPY t FROM STDIN")),
            (S, frame(b'G', &[0, 0, 0])),
            (C, cat(&[copy_data(b"x"), copy_done()])),
            (S, cat(&[command_complete("COPY 1"), ready(b'I')])),
        ]),
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    // The unmutated scripts parse completely in both modes (the copy is a unit of its own
    // when the query was already yielded).
    for (seed, expected) in seeds.iter().zip([[7, 7], [2, 3]]) {
        assert_eq!(fuzz_script(Mode::Both, seed), expected[0]);
        assert_eq!(fuzz_script(Mode::RequestsOnly, seed), expected[1]);
    }
    for seed in &seeds {
        for round in 0..600 {
            let mut input = seed.clone();
            for _ in 0..1 + round % 6 {
                let value = next();
                let at = (value as usize) % input.len();
                match value >> 60 {
                    0 => {
                        input.remove(at);
                    }
                    1 => input.insert(at, (value >> 32) as u8),
                    _ => input[at] = (value >> 32) as u8,
                }
            }
            let mode = if round % 2 == 0 {
                Mode::Both
            } else {
                Mode::RequestsOnly
            };
            fuzz_script(mode, &input);
        }
    }
}
