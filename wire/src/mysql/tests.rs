//! Conversations built byte by byte with small encoders, fed whole, split and interleaved.

use super::*;
use crate::dependency::{DependencyError, DependencyParser, Lifetime, Mode, Side, Unit};

// ---- encoders -------------------------------------------------------------------------------

const CLIENT: u32 = caps::PROTOCOL_41
    | caps::SECURE_CONNECTION
    | caps::PLUGIN_AUTH
    | caps::PLUGIN_AUTH_LENENC_CLIENT_DATA
    | caps::CONNECT_WITH_DB
    | caps::CONNECT_ATTRS
    | 1 << 13 // transactions
    | 1 << 16 // multi statements
    | 1 << 17 // multi results
    | 1 << 18; // prepared-statement multi results
const SERVER: u32 = CLIENT
    | caps::DEPRECATE_EOF
    | caps::SSL
    | caps::COMPRESS
    | caps::QUERY_ATTRIBUTES
    | caps::ZSTD_COMPRESSION;

fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    out.push(seq);
    out.extend_from_slice(payload);
    out
}

fn lenenc(n: u64) -> Vec<u8> {
    match n {
        0..=0xFA => vec![n as u8],
        0xFB..=0xFFFF => [&[0xFC][..], &(n as u16).to_le_bytes()].concat(),
        0x1_0000..=0xFF_FFFF => [&[0xFD][..], &(n as u32).to_le_bytes()[..3]].concat(),
        _ => [&[0xFE][..], &n.to_le_bytes()].concat(),
    }
}

fn lenenc_str(bytes: &[u8]) -> Vec<u8> {
    [lenenc(bytes.len() as u64), bytes.to_vec()].concat()
}

const SCRAMBLE: [u8; 20] = *b"0123456789abcdefghij";

fn greeting(plugin: &str) -> Vec<u8> {
    let mut p = vec![10];
    p.extend_from_slice(b"8.0.36\0");
    p.extend_from_slice(&77u32.to_le_bytes());
    p.extend_from_slice(&SCRAMBLE[..8]);
    p.push(0);
    p.extend_from_slice(&(SERVER as u16).to_le_bytes());
    p.push(255); // utf8mb4_0900_ai_ci
    p.extend_from_slice(&2u16.to_le_bytes()); // autocommit
    p.extend_from_slice(&((SERVER >> 16) as u16).to_le_bytes());
    p.push(21);
    p.extend_from_slice(&[0; 10]);
    p.extend_from_slice(&SCRAMBLE[8..]);
    p.push(0);
    p.extend_from_slice(plugin.as_bytes());
    p.push(0);
    packet(0, &p)
}

fn handshake_response(
    seq: u8,
    capabilities: u32,
    plugin: &str,
    auth: &[u8],
    attrs: &[(&str, &str)],
) -> Vec<u8> {
    let mut p = capabilities.to_le_bytes().to_vec();
    p.extend_from_slice(&(16u32 << 20).to_le_bytes());
    p.push(255);
    p.extend_from_slice(&[0; 23]);
    p.extend_from_slice(b"app\0");
    p.extend(lenenc_str(auth));
    p.extend_from_slice(b"shop\0");
    p.extend_from_slice(plugin.as_bytes());
    p.push(0);
    let block: Vec<u8> = attrs
        .iter()
        .flat_map(|(k, v)| [lenenc_str(k.as_bytes()), lenenc_str(v.as_bytes())].concat())
        .collect();
    p.extend(lenenc_str(&block));
    packet(seq, &p)
}

fn ok(seq: u8, header: u8, status: u16) -> Vec<u8> {
    let mut p = vec![header, 1, 0];
    p.extend_from_slice(&status.to_le_bytes());
    p.extend_from_slice(&0u16.to_le_bytes());
    packet(seq, &p)
}

fn eof(seq: u8, status: u16) -> Vec<u8> {
    let mut p = vec![0xFE, 0, 0];
    p.extend_from_slice(&status.to_le_bytes());
    packet(seq, &p)
}

fn column(seq: u8, name: &str, ty: u8) -> Vec<u8> {
    let mut p = Vec::new();
    for part in ["def", "shop", "items", "items", name, name] {
        p.extend(lenenc_str(part.as_bytes()));
    }
    p.push(0x0C);
    p.extend_from_slice(&255u16.to_le_bytes());
    p.extend_from_slice(&11u32.to_le_bytes());
    p.push(ty);
    p.extend_from_slice(&[0, 0, 0, 0, 0]);
    packet(seq, &p)
}

fn text_row(seq: u8, values: &[Option<&str>]) -> Vec<u8> {
    let p: Vec<u8> = values
        .iter()
        .flat_map(|v| match v {
            Some(text) => lenenc_str(text.as_bytes()),
            None => vec![0xFB],
        })
        .collect();
    packet(seq, &p)
}

fn command(cmd: u8, body: &[u8]) -> Vec<u8> {
    packet(0, &[&[cmd][..], body].concat())
}

fn query(sql: &str) -> Vec<u8> {
    command(0x03, sql.as_bytes())
}

/// Text result set: `id`, `name`; rows (1, apple) and (2, NULL).
fn text_result(deprecate_eof: bool) -> Vec<u8> {
    let mut out = packet(1, &lenenc(2));
    out.extend(column(2, "id", 0x03));
    out.extend(column(3, "name", 0xFD));
    let mut seq = 4;
    if !deprecate_eof {
        out.extend(eof(seq, 2));
        seq += 1;
    }
    out.extend(text_row(seq, &[Some("1"), Some("apple")]));
    out.extend(text_row(seq + 1, &[Some("2"), None]));
    out.extend(if deprecate_eof {
        ok(seq + 2, 0xFE, 2)
    } else {
        eof(seq + 2, 2)
    });
    out
}

/// A COM_STMT_EXECUTE binding new types.
fn execute(id: u32, params: &[(u16, Option<Vec<u8>>)], bind: bool) -> Vec<u8> {
    let mut p = vec![0x17];
    p.extend_from_slice(&id.to_le_bytes());
    p.push(0);
    p.extend_from_slice(&1u32.to_le_bytes());
    if !params.is_empty() {
        let mut bitmap = vec![0u8; params.len().div_ceil(8)];
        for (i, (_, v)) in params.iter().enumerate() {
            if v.is_none() {
                bitmap[i / 8] |= 1 << (i % 8);
            }
        }
        p.extend(bitmap);
        p.push(u8::from(bind));
        if bind {
            for (ty, _) in params {
                p.extend_from_slice(&ty.to_le_bytes());
            }
        }
        for (_, v) in params {
            if let Some(v) = v {
                p.extend_from_slice(v);
            }
        }
    }
    packet(0, &p)
}

fn prepare_ok(id: u32, columns: u16, params: u16) -> Vec<u8> {
    let mut p = vec![0];
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(&columns.to_le_bytes());
    p.extend_from_slice(&params.to_le_bytes());
    p.push(0);
    p.extend_from_slice(&0u16.to_le_bytes());
    packet(1, &p)
}

/// Binary result set: `id` (LONG), `name` (VAR_STRING); one row (id, name or NULL).
fn binary_result(id: i32, name: Option<&str>) -> Vec<u8> {
    let mut out = packet(1, &lenenc(2));
    out.extend(column(2, "id", 0x03));
    out.extend(column(3, "name", 0xFD));
    out.extend(eof(4, 2));
    let mut row = vec![0x00, if name.is_none() { 0b1000 } else { 0 }];
    row.extend_from_slice(&id.to_le_bytes());
    if let Some(name) = name {
        row.extend(lenenc_str(name.as_bytes()));
    }
    out.extend(packet(5, &row));
    out.extend(eof(6, 2));
    out
}

// ---- running --------------------------------------------------------------------------------

type Script = Vec<(Side, Vec<u8>)>;

/// How the script's messages are cut into feeds.
#[derive(Clone, Copy)]
enum Feed {
    Whole,
    ByteByByte,
    /// Pseudo-random cuts, from this seed.
    Random(u64),
    /// All client bytes, then all server bytes.
    ClientFirst,
}

fn run(mode: Mode, script: &Script, how: Feed) -> (Vec<Unit>, Option<DependencyError>) {
    let mut conn = MySqlConnection::new(mode);
    let mut units = Vec::new();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut feed = |conn: &mut MySqlConnection, side: Side, bytes: &[u8]| match how {
        Feed::Whole | Feed::ClientFirst => conn.feed(side, bytes, 1),
        Feed::ByteByByte => bytes.iter().for_each(|b| conn.feed(side, &[*b], 1)),
        Feed::Random(seed) => {
            state ^= seed;
            let mut rest = bytes;
            while !rest.is_empty() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let n = (state % 7) as usize + 1;
                let (now, later) = rest.split_at(n.min(rest.len()));
                conn.feed(side, now, 1);
                rest = later;
            }
        }
    };
    let order: Vec<&(Side, Vec<u8>)> = match how {
        Feed::ClientFirst => script
            .iter()
            .filter(|(s, _)| *s == Side::Client)
            .chain(script.iter().filter(|(s, _)| *s == Side::Server))
            .collect(),
        _ => script.iter().collect(),
    };
    for (side, bytes) in order {
        feed(&mut conn, *side, bytes);
        units.extend(std::iter::from_fn(|| conn.next_unit()));
    }
    conn.close();
    units.extend(std::iter::from_fn(|| conn.next_unit()));
    (units, conn.error().cloned())
}

fn both(script: &Script) -> Vec<Unit> {
    let (units, error) = run(Mode::Both, script, Feed::Whole);
    assert_eq!(error, None);
    units
}

fn fields(unit: &Unit) -> Vec<(&str, &str)> {
    unit.fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn b64_of(bytes: &[u8]) -> String {
    b64(bytes)
}

/// Greeting, handshake with caching_sha2 fast auth, OK; `deprecate_eof` picks the client's
/// capability.
fn connect(deprecate_eof: bool) -> Script {
    let capabilities = CLIENT
        | if deprecate_eof {
            caps::DEPRECATE_EOF
        } else {
            0
        };
    vec![
        (Side::Server, greeting("caching_sha2_password")),
        (
            Side::Client,
            handshake_response(
                1,
                capabilities,
                "caching_sha2_password",
                &[7; 32],
                &[
                    ("_pid", "4242"),
                    ("program_name", "shop-api"),
                    ("_client_name", "libmysql"),
                    ("_os", "Linux"),
                ],
            ),
        ),
        (Side::Server, [packet(2, &[1, 3]), ok(3, 0, 2)].concat()),
    ]
}

fn with(mut script: Script, more: impl IntoIterator<Item = (Side, Vec<u8>)>) -> Script {
    script.extend(more);
    script
}

/// Everything the tests exercise, in one conversation.
fn full_conversation() -> Script {
    with(
        connect(false),
        [
            (Side::Client, query("SET NAMES utf8mb4")),
            (Side::Server, ok(1, 0, 2)),
            (Side::Client, query("SELECT id,  name\n FROM items")),
            (Side::Server, text_result(false)),
            (Side::Client, query("SELECT nope")),
            (
                Side::Server,
                err_packet(1, 1054, "42S22", "Unknown column 'nope'"),
            ),
            (
                Side::Client,
                command(
                    0x16,
                    b"SELECT id, name FROM items WHERE id = ? AND name = ?",
                ),
            ),
            (
                Side::Server,
                [
                    prepare_ok(1, 2, 2),
                    column(2, "?", 0xFD),
                    column(3, "?", 0xFD),
                    eof(4, 2),
                    column(5, "id", 0x03),
                    column(6, "name", 0xFD),
                    eof(7, 2),
                ]
                .concat(),
            ),
            (
                Side::Client,
                execute(
                    1,
                    &[
                        (0x03, Some(42i32.to_le_bytes().to_vec())),
                        (0xFE, Some(lenenc_str(b"x"))),
                    ],
                    true,
                ),
            ),
            (Side::Server, binary_result(42, Some("x"))),
            (
                Side::Client,
                execute(
                    1,
                    &[(0x08, Some(7i64.to_le_bytes().to_vec())), (0xFE, None)],
                    true,
                ),
            ),
            (Side::Server, binary_result(7, None)),
            (
                Side::Client,
                execute(
                    1,
                    &[
                        (0x08, Some(8i64.to_le_bytes().to_vec())),
                        (0xFE, Some(lenenc_str(b"y"))),
                    ],
                    false,
                ),
            ),
            (Side::Server, ok(1, 0, 2)),
            (Side::Client, command(0x0E, b"")),
            (Side::Server, ok(1, 0, 2)),
            (Side::Client, command(0x19, &1u32.to_le_bytes())),
            (Side::Client, query("SELECT 1; UPDATE items SET n = 1")),
            (
                Side::Server,
                [
                    packet(1, &lenenc(1)),
                    column(2, "1", 0x08),
                    eof(3, 2 | status::MORE_RESULTS_EXISTS),
                    text_row(4, &[Some("1")]),
                    eof(5, 2 | status::MORE_RESULTS_EXISTS),
                    ok(6, 0, 2),
                ]
                .concat(),
            ),
            (Side::Client, command(0x01, b"")),
        ],
    )
}

// ---- tests ----------------------------------------------------------------------------------

#[test]
fn mysql8_handshake_with_fast_auth() {
    let script = with(connect(true), [(Side::Client, command(0x01, b""))]);
    let units = both(&script);
    assert_eq!(units.len(), 3);

    let greeting_unit = &units[0];
    assert!(greeting_unit.request.is_empty());
    assert_eq!(greeting_unit.response, script[0].1);
    assert_eq!(fields(greeting_unit), [("type", "greeting")]);
    assert_eq!(greeting_unit.lifetime, Lifetime::Session);
    assert_eq!(
        greeting_unit.summary,
        "greeting 8.0.36 caching_sha2_password"
    );

    let handshake = &units[1];
    assert_eq!(handshake.request, script[1].1);
    assert_eq!(handshake.response, script[2].1);
    assert_eq!(handshake.lifetime, Lifetime::Session);
    let auth = b64_of(&[7; 32]);
    assert_eq!(
        fields(handshake),
        [
            ("type", "handshake_response"),
            ("user", "app"),
            ("database", "shop"),
            ("auth_plugin", "caching_sha2_password"),
            ("auth_response", auth.as_str()),
            ("attr._client_name", "libmysql"),
            ("attr._os", "Linux"),
            ("attr.program_name", "shop-api"),
        ]
    );

    let quit = &units[2];
    assert_eq!(fields(quit), [("command", "COM_QUIT")]);
    assert!(quit.response.is_empty());
    assert_eq!(quit.lifetime, Lifetime::Session);
}

#[test]
fn native_password_and_auth_switch() {
    let switch = packet(
        2,
        &[&[0xFE][..], b"mysql_native_password\0", &SCRAMBLE, &[0]].concat(),
    );
    let script: Script = vec![
        (Side::Server, greeting("mysql_native_password")),
        (
            Side::Client,
            handshake_response(1, CLIENT, "mysql_native_password", &[9; 20], &[]),
        ),
        (Side::Server, ok(2, 0, 2)),
        (Side::Client, command(0x0E, b"")),
        (Side::Server, ok(1, 0, 2)),
        (Side::Client, command(0x11, b"other\0")),
        (Side::Server, switch.clone()),
        (Side::Client, packet(3, &[5; 20])),
        (Side::Server, ok(4, 0, 2)),
    ];
    let units = both(&script);
    assert_eq!(units.len(), 5);
    assert_eq!(
        units[1].fields[3],
        ("auth_plugin".into(), "mysql_native_password".into())
    );
    assert_eq!(units[1].response, ok(2, 0, 2));
    assert_eq!(fields(&units[2]), [("command", "COM_PING")]);
    assert_eq!(units[2].lifetime, Lifetime::Session);
    assert_eq!(units[3].response, switch);
    assert_eq!(units[3].lifetime, Lifetime::Session);
    let auth = b64_of(&[5; 20]);
    assert_eq!(
        fields(&units[4]),
        [("type", "auth_data"), ("payload", auth.as_str())]
    );
    assert_eq!(units[4].response, ok(4, 0, 2));
}

#[test]
fn caching_sha2_full_auth_waits_for_the_client() {
    let script: Script = vec![
        (Side::Server, greeting("caching_sha2_password")),
        (
            Side::Client,
            handshake_response(1, CLIENT, "caching_sha2_password", &[7; 32], &[]),
        ),
        (Side::Server, packet(2, &[1, 4])),
        (Side::Client, packet(3, &[2])),
        (Side::Server, packet(4, b"\x01-----BEGIN PUBLIC KEY-----")),
        (Side::Client, packet(5, &[0xAB; 256])),
        (Side::Server, ok(6, 0, 2)),
        (Side::Client, query("SELECT 1")),
        (Side::Server, text_result(false)),
    ];
    let units = both(&script);
    let kinds: Vec<&str> = units.iter().map(|u| u.fields[0].1.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "greeting",
            "handshake_response",
            "auth_data",
            "auth_data",
            "COM_QUERY"
        ]
    );
    assert_eq!(units[1].response, packet(2, &[1, 4]));
    assert_eq!(units[4].lifetime, Lifetime::Session);
}

#[test]
fn text_result_set_with_and_without_deprecate_eof() {
    for deprecate_eof in [false, true] {
        let script = with(
            connect(deprecate_eof),
            [
                (Side::Client, query("  SELECT id,\n\tname FROM items  ")),
                (Side::Server, text_result(deprecate_eof)),
                (Side::Client, command(0x0E, b"")),
                (Side::Server, ok(1, 0, 2)),
            ],
        );
        let units = both(&script);
        assert_eq!(units.len(), 4, "deprecate_eof={deprecate_eof}");
        let select = &units[2];
        assert_eq!(
            fields(select),
            [
                ("command", "COM_QUERY"),
                ("query", "SELECT id, name FROM items")
            ]
        );
        assert_eq!(select.summary, "COM_QUERY SELECT id, name FROM items");
        assert_eq!(select.lifetime, Lifetime::PerTest);
        assert_eq!(select.response, text_result(deprecate_eof));
        assert_eq!(units[3].response, ok(1, 0, 2));
    }
}

#[test]
fn query_answered_by_err() {
    let err = err_packet(1, 1146, "42S02", "Table 'shop.nope' doesn't exist");
    let script = with(
        connect(false),
        [
            (Side::Client, query("SELECT * FROM nope")),
            (Side::Server, err.clone()),
            (Side::Client, command(0x0E, b"")),
            (Side::Server, ok(1, 0, 2)),
        ],
    );
    let units = both(&script);
    assert_eq!(units[2].response, err);
    assert_eq!(units[3].fields[0].1, "COM_PING");
}

#[test]
fn multi_statement_results_follow_the_more_results_flag() {
    let units = both(&full_conversation());
    let multi = units
        .iter()
        .find(|u| u.summary.contains("UPDATE items"))
        .expect("multi-statement unit");
    assert!(multi.response.ends_with(&ok(6, 0, 2)));
    assert_eq!(
        units.last().map(|u| u.fields[0].1.as_str()),
        Some("COM_QUIT")
    );
}

#[test]
fn ok_with_more_results_then_result_set() {
    let script = with(
        connect(true),
        [
            (
                Side::Client,
                query("UPDATE a SET x=1; SELECT id, name FROM items"),
            ),
            (
                Side::Server,
                [ok(1, 0, 2 | status::MORE_RESULTS_EXISTS), {
                    let mut rs = text_result(true);
                    // Renumber: the second result continues the sequence.
                    let mut at = 0;
                    let mut seq = 2u8;
                    while at + 4 <= rs.len() {
                        let len = usize::from(rs[at]) | usize::from(rs[at + 1]) << 8;
                        rs[at + 3] = seq;
                        seq += 1;
                        at += 4 + len;
                    }
                    rs
                }]
                .concat(),
            ),
            (Side::Client, command(0x0E, b"")),
            (Side::Server, ok(1, 0, 2)),
        ],
    );
    let units = both(&script);
    assert_eq!(units.len(), 4);
    assert_eq!(units[3].response, ok(1, 0, 2));
}

#[test]
fn prepared_statements() {
    let units = both(&full_conversation());
    let prepare = &units[5];
    assert_eq!(
        fields(prepare),
        [
            ("command", "COM_STMT_PREPARE"),
            (
                "query",
                "SELECT id, name FROM items WHERE id = ? AND name = ?"
            ),
        ]
    );
    assert_eq!(prepare.lifetime, Lifetime::Connection);
    assert!(prepare.response.starts_with(&prepare_ok(1, 2, 2)));

    let first = &units[6];
    assert_eq!(
        fields(first),
        [
            ("command", "COM_STMT_EXECUTE"),
            ("statement_id", "1"),
            ("param.1", "42"),
            ("param.2", "x"),
        ]
    );
    assert_eq!(first.lifetime, Lifetime::PerTest);
    assert_eq!(first.response, binary_result(42, Some("x")));
    assert_eq!(
        first.summary,
        "COM_STMT_EXECUTE #1 SELECT id, name FROM items WHERE id = ? AND name = ? [42, x]"
    );

    let second = &units[7];
    assert_eq!(
        fields(second),
        [
            ("command", "COM_STMT_EXECUTE"),
            ("statement_id", "1"),
            ("param.1", "7"),
            ("param.2", "NULL"),
        ]
    );
    assert_eq!(second.response, binary_result(7, None));
    assert_ne!(first.fields, second.fields);

    // The third execute reuses the types bound by the second.
    assert_eq!(
        units[8].fields[2..],
        [
            ("param.1".to_owned(), "8".to_owned()),
            ("param.2".to_owned(), "y".to_owned())
        ]
    );

    let close = units
        .iter()
        .find(|u| u.fields[0].1 == "COM_STMT_CLOSE")
        .expect("close");
    assert!(close.response.is_empty());
    assert_eq!(close.lifetime, Lifetime::Connection);
}

#[test]
fn ping_is_session_and_set_is_session() {
    let units = both(&full_conversation());
    assert_eq!(
        fields(&units[2]),
        [("command", "COM_QUERY"), ("query", "SET NAMES utf8mb4")]
    );
    assert_eq!(units[2].lifetime, Lifetime::Session);
    let ping = units
        .iter()
        .find(|u| u.fields[0].1 == "COM_PING")
        .expect("ping");
    assert_eq!(ping.lifetime, Lifetime::Session);
    assert_eq!(ping.response, ok(1, 0, 2));
    assert_eq!(ping.summary, "COM_PING");
}

#[test]
fn every_way_of_feeding_gives_the_same_units() {
    let script = full_conversation();
    let whole = both(&script);
    assert_eq!(whole.len(), 13);
    for how in [
        Feed::ByteByByte,
        Feed::ClientFirst,
        Feed::Random(1),
        Feed::Random(99),
        Feed::Random(12345),
    ] {
        let (units, error) = run(Mode::Both, &script, how);
        assert_eq!(error, None);
        assert_eq!(units, whole);
    }
}

#[test]
fn requests_only_yields_the_same_requests() {
    let script = full_conversation();
    let recorded = both(&script);
    for how in [Feed::Whole, Feed::ByteByByte, Feed::Random(7)] {
        let (replayed, error) = run(Mode::RequestsOnly, &script, how);
        assert_eq!(error, None);
        // No greeting: the mock server sends the recorded one itself.
        assert_eq!(replayed.len(), recorded.len() - 1);
        for (live, mock) in replayed.iter().zip(&recorded[1..]) {
            assert_eq!(live.fields, mock.fields);
            assert_eq!(live.request, mock.request);
            assert_eq!(live.lifetime, mock.lifetime);
            assert!(live.response.is_empty());
        }
    }
}

#[test]
fn timestamps_come_from_the_first_request_and_last_response_byte() {
    let mut conn = MySqlConnection::new(Mode::Both);
    let script = connect(false);
    conn.feed(Side::Server, &script[0].1, 10);
    conn.feed(Side::Client, &script[1].1[..5], 20);
    conn.feed(Side::Client, &script[1].1[5..], 21);
    conn.feed(Side::Server, &script[2].1[..6], 30);
    conn.feed(Side::Server, &script[2].1[6..], 31);
    let q = query("SELECT 2");
    conn.feed(Side::Client, &q, 40);
    conn.feed(Side::Server, &ok(1, 0, 2), 50);
    let units: Vec<Unit> = std::iter::from_fn(|| conn.next_unit()).collect();
    let times: Vec<(u64, u64)> = units
        .iter()
        .map(|u| (u.request_ts_ns, u.response_ts_ns))
        .collect();
    assert_eq!(times, [(10, 10), (20, 31), (40, 50)]);
}

#[test]
fn a_payload_of_exactly_0xffffff_bytes_continues_in_the_next_packet() {
    let sql = format!("SELECT '{}'", "x".repeat(MAX_FRAGMENT - 10));
    let mut body = vec![0x03];
    body.extend_from_slice(sql.as_bytes());
    assert_eq!(body.len(), MAX_FRAGMENT);
    let mut request = packet(0, &body);
    request.extend(packet(1, b""));
    assert_eq!(response_sequence_id(&request), 2);
    let script = with(
        connect(false),
        [(Side::Client, request.clone()), (Side::Server, ok(2, 0, 2))],
    );
    for how in [Feed::Whole, Feed::Random(3)] {
        let (units, error) = run(Mode::Both, &script, how);
        assert_eq!(error, None);
        assert_eq!(units.len(), 3);
        assert_eq!(units[2].request, request);
        assert_eq!(units[2].fields[1], ("query".to_owned(), sql.clone()));
        assert_eq!(units[2].response, ok(2, 0, 2));
    }
}

#[test]
fn requests_only_needs_no_server_bytes() {
    let mut conn = MySqlConnection::new(Mode::RequestsOnly);
    let script = connect(false);
    conn.feed(Side::Client, &script[1].1, 1);
    let handshake = conn.next_unit().expect("handshake at once");
    assert_eq!(handshake.fields[0].1, "handshake_response");
    conn.feed(Side::Client, &query("SELECT 1"), 2);
    let select = conn.next_unit().expect("query at once");
    assert_eq!(select.lifetime, Lifetime::Session);
    // The mock server's own answers are ignored.
    conn.feed(Side::Server, b"\xff\xff\xff", 3);
    assert!(conn.next_unit().is_none());
    assert_eq!(conn.error(), None);
}

#[test]
fn query_attributes_are_read_before_the_sql() {
    let capabilities = CLIENT | caps::QUERY_ATTRIBUTES;
    let mut body = vec![1, 1, 0, 1]; // one attribute, one set, bitmap, bound
    body.extend_from_slice(&0xFEu16.to_le_bytes());
    body.extend(lenenc_str(b"trace"));
    body.extend(lenenc_str(b"abc"));
    body.extend_from_slice(b"SELECT 3");
    let script: Script = vec![
        (Side::Server, greeting("caching_sha2_password")),
        (
            Side::Client,
            handshake_response(1, capabilities, "caching_sha2_password", &[1; 32], &[]),
        ),
        (Side::Server, ok(2, 0, 2)),
        (Side::Client, command(0x03, &body)),
        (Side::Server, ok(1, 0, 2)),
        (
            Side::Client,
            command(0x03, &[0, 1, b'S', b'E', b'T', b' ', b'a', b'=', b'1']),
        ),
        (Side::Server, ok(1, 0, 2)),
    ];
    let units = both(&script);
    assert_eq!(
        fields(&units[2]),
        [
            ("command", "COM_QUERY"),
            ("query", "SELECT 3"),
            ("query_attr.trace", "abc")
        ]
    );
    assert_eq!(
        fields(&units[3]),
        [("command", "COM_QUERY"), ("query", "SET a=1")]
    );
}

#[test]
fn a_refusing_greeting_is_one_unit() {
    let refused = err_packet(0, 1040, "08004", "Too many connections");
    let (units, error) = run(
        Mode::Both,
        &vec![(Side::Server, refused.clone())],
        Feed::Whole,
    );
    assert_eq!(error, None);
    assert_eq!(units.len(), 1);
    assert_eq!(units[0].response, refused);
    assert_eq!(units[0].summary, "greeting ERR 1040 Too many connections");
}

#[test]
fn unsupported_and_malformed_input_stops_with_an_error() {
    let ssl_request = {
        let mut p = (CLIENT | caps::SSL).to_le_bytes().to_vec();
        p.extend_from_slice(&(16u32 << 20).to_le_bytes());
        p.push(255);
        p.extend_from_slice(&[0; 23]);
        packet(1, &p)
    };
    let cases: Vec<(Script, &str)> = vec![
        (
            vec![(Side::Server, packet(0, &[9, b'x', 0]))],
            "protocol version 9",
        ),
        (
            vec![
                (Side::Server, greeting("caching_sha2_password")),
                (Side::Client, ssl_request.clone()),
                (
                    Side::Client,
                    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
                ),
            ],
            "TLS",
        ),
        (
            vec![
                (Side::Server, greeting("caching_sha2_password")),
                (Side::Client, ssl_request),
                (Side::Server, b"\x16\x03\x03\x00\x7a\x02".to_vec()),
            ],
            "TLS",
        ),
        (
            vec![
                (Side::Server, greeting("x")),
                (
                    Side::Client,
                    handshake_response(1, CLIENT | caps::COMPRESS, "x", b"", &[]),
                ),
            ],
            "compressed",
        ),
        (
            with(
                connect(false),
                [
                    (
                        Side::Client,
                        query("LOAD DATA LOCAL INFILE 'f' INTO TABLE t"),
                    ),
                    (Side::Server, packet(1, b"\xfbf")),
                ],
            ),
            "LOCAL INFILE",
        ),
        (
            with(connect(false), [(Side::Client, packet(0, b""))]),
            "empty command",
        ),
        (
            with(
                connect(false),
                [
                    (Side::Client, execute(1, &[], false)),
                    (
                        Side::Server,
                        [
                            packet(1, &lenenc(1)),
                            column(2, "a", 3),
                            eof(3, 2),
                            packet(4, b"\x05"),
                        ]
                        .concat(),
                    ),
                ],
            ),
            "binary row",
        ),
    ];
    for (script, expected) in cases {
        let (_, error) = run(Mode::Both, &script, Feed::Whole);
        match error {
            Some(DependencyError::Malformed { protocol, reason }) => {
                assert_eq!(protocol, "mysql");
                assert!(
                    reason.contains(expected),
                    "{reason} should mention {expected}"
                );
            }
            other => panic!("expected a malformed error about {expected}, got {other:?}"),
        }
    }
}

#[test]
fn a_gap_stops_parsing() {
    let script = connect(false);
    let mut conn = MySqlConnection::new(Mode::Both);
    conn.feed(Side::Server, &script[0].1, 1);
    conn.gap(Side::Client, 10);
    conn.feed(Side::Client, &script[1].1, 2);
    assert_eq!(conn.error(), Some(&DependencyError::Gap));
    assert_eq!(
        conn.next_unit().map(|u| u.fields[0].1.clone()),
        Some("greeting".to_owned())
    );
    assert!(conn.next_unit().is_none());
}

#[test]
fn err_packet_layout() {
    let packet_bytes = err_packet(3, 1105, "HY000", "no mock");
    assert_eq!(
        packet_bytes,
        [&[16, 0, 0, 3, 0xFF, 0x51, 0x04, b'#'][..], b"HY000no mock"].concat()
    );
    // A bad state becomes the general one.
    assert!(err_packet(1, 1, "bad", "").ends_with(b"#HY000"));
    assert_eq!(response_sequence_id(&query("SELECT 1")), 1);
    let units = both(&full_conversation());
    let silent: Vec<&str> = units
        .iter()
        .filter(|u| !expects_answer(&u.fields))
        .map(|u| u.fields[0].1.as_str())
        .collect();
    assert_eq!(silent, ["COM_STMT_CLOSE", "COM_QUIT"]);
    assert_eq!(response_sequence_id(b"\x01"), 1);
}

#[test]
fn pseudo_random_mutations_never_panic() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let base = full_conversation();
    for round in 0..300 {
        let mut script = base.clone();
        for _ in 0..1 + round % 5 {
            let i = next() as usize % script.len();
            let bytes = &mut script[i].1;
            match next() % 4 {
                0 if !bytes.is_empty() => {
                    let at = next() as usize % bytes.len();
                    bytes[at] = next() as u8;
                }
                1 if !bytes.is_empty() => {
                    let at = next() as usize % bytes.len();
                    bytes.truncate(at);
                }
                2 => {
                    let at = next() as usize % (bytes.len() + 1);
                    bytes.insert(at, next() as u8);
                }
                _ => script.swap(i, next() as usize % base.len()),
            }
        }
        for mode in [Mode::Both, Mode::RequestsOnly] {
            let _ = run(mode, &script, Feed::Random(next()));
        }
    }
}

#[test]
fn fuzz_scripts_never_panic() {
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for mode in [0u8, 1] {
        let mut seed = vec![mode];
        for (side, bytes) in full_conversation().iter().take(12) {
            for chunk in bytes.chunks(200) {
                seed.push(if *side == Side::Client { 0 } else { 1 });
                seed.push(chunk.len() as u8);
                seed.extend_from_slice(chunk);
            }
        }
        seeds.push(seed);
    }
    for seed in &seeds {
        fuzz_connection(seed);
        for _ in 0..200 {
            let mut input = seed.clone();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state as usize) % input.len();
                input[at] = (state >> 32) as u8;
            }
            fuzz_connection(&input);
        }
    }
    fuzz_connection(&[]);
    fuzz_connection(&[0, 1]);
}

#[test]
fn plaintext_after_an_ssl_request_joins_the_handshake() {
    // What a capture below TLS (library probes) sees: SSLRequest, then the plain handshake.
    let ssl_request = {
        let mut p = (CLIENT | caps::SSL).to_le_bytes().to_vec();
        p.extend_from_slice(&(16u32 << 20).to_le_bytes());
        p.push(255);
        p.extend_from_slice(&[0; 23]);
        packet(1, &p)
    };
    let response = handshake_response(2, CLIENT | caps::SSL, "caching_sha2_password", &[], &[]);
    let script: Script = vec![
        (Side::Server, greeting("caching_sha2_password")),
        (Side::Client, ssl_request.clone()),
        (Side::Client, response.clone()),
        (Side::Server, ok(3, 0, 2)),
        (Side::Client, query("SELECT 1")),
        (Side::Server, ok(1, 0, 2)),
    ];
    for how in [Feed::Whole, Feed::ByteByByte] {
        let (units, error) = run(Mode::Both, &script, how);
        assert_eq!(error, None);
        assert_eq!(units.len(), 3);
        assert_eq!(
            units[1].request,
            [ssl_request.clone(), response.clone()].concat()
        );
        assert_eq!(units[1].response, ok(3, 0, 2));
        assert_eq!(units[2].fields[1].1, "SELECT 1");
    }
}

#[test]
fn execute_parameters_without_known_types_are_kept_raw() {
    // Requests only, and the statement's types were never bound on this connection.
    let mut conn = MySqlConnection::new(Mode::RequestsOnly);
    conn.feed(
        Side::Client,
        &handshake_response(1, CLIENT, "caching_sha2_password", &[], &[]),
        1,
    );
    let reused = execute(9, &[(0x03, Some(5i32.to_le_bytes().to_vec()))], false);
    conn.feed(Side::Client, &reused, 2);
    let units: Vec<Unit> = std::iter::from_fn(|| conn.next_unit()).collect();
    let raw = b64_of(&reused[14..]);
    assert_eq!(
        fields(&units[1]),
        [
            ("command", "COM_STMT_EXECUTE"),
            ("statement_id", "9"),
            ("params", raw.as_str())
        ]
    );
    assert_eq!(units[1].summary, "COM_STMT_EXECUTE #9 [?]");
}

#[test]
fn execute_with_query_attributes_reads_the_parameter_count() {
    let capabilities = CLIENT | caps::QUERY_ATTRIBUTES;
    let mut body = vec![0x17];
    body.extend_from_slice(&3u32.to_le_bytes());
    body.push(0x08); // PARAMETER_COUNT_AVAILABLE
    body.extend_from_slice(&1u32.to_le_bytes());
    body.extend_from_slice(&[2, 0b10, 1]); // two parameters, the second NULL, types bound
    body.extend_from_slice(&[0x01, 0x80, 0]); // unsigned TINY, no name
    body.extend_from_slice(&[0x0F, 0x00, 1, b'a']); // VARCHAR named "a"
    body.push(200);
    let mut conn = MySqlConnection::new(Mode::RequestsOnly);
    conn.feed(
        Side::Client,
        &handshake_response(1, capabilities, "caching_sha2_password", &[], &[]),
        1,
    );
    conn.feed(Side::Client, &packet(0, &body), 2);
    let units: Vec<Unit> = std::iter::from_fn(|| conn.next_unit()).collect();
    assert_eq!(
        fields(&units[1]),
        [
            ("command", "COM_STMT_EXECUTE"),
            ("statement_id", "3"),
            ("param.1", "200"),
            ("query_attr.a", "NULL"),
        ]
    );
}
