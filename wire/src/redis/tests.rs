use super::*;

const SET: &[u8] = b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nEX\r\n$2\r\n60\r\n";
const GET: &[u8] = b"*2\r\n$3\r\nGET\r\n$7\r\nuser:42\r\n";
const DEL: &[u8] = b"*2\r\n$3\r\nDEL\r\n$1\r\nk\r\n";
const HELLO3: &[u8] = b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n";
const HELLO3_REPLY: &[u8] = b"%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n";

fn drain(conn: &mut RedisConnection) -> Vec<Unit> {
    std::iter::from_fn(|| conn.next_unit()).collect()
}

/// Feeds `(side, bytes)` steps with increasing timestamps 1, 2, 3…
fn run(mode: Mode, steps: &[(Side, &[u8])]) -> (Vec<Unit>, Option<DependencyError>) {
    let mut conn = RedisConnection::new(mode);
    for (ts, (side, bytes)) in steps.iter().enumerate() {
        conn.feed(*side, bytes, ts as u64 + 1);
    }
    (drain(&mut conn), conn.error().cloned())
}

fn pairs(steps: &[(&[u8], &[u8])]) -> Vec<Unit> {
    let script: Vec<(Side, &[u8])> = steps
        .iter()
        .flat_map(|(request, reply)| [(Side::Client, *request), (Side::Server, *reply)])
        .collect();
    let (units, error) = run(Mode::Both, &script);
    assert_eq!(error, None);
    units
}

fn fields(unit: &Unit) -> Vec<(&str, &str)> {
    unit.fields
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

fn bytes(units: &[Unit]) -> Vec<(Vec<u8>, Vec<u8>)> {
    units
        .iter()
        .map(|unit| (unit.request.clone(), unit.response.clone()))
        .collect()
}

/// An expected `(request, response)`.
fn p(request: &[u8], response: &[u8]) -> (Vec<u8>, Vec<u8>) {
    (request.to_vec(), response.to_vec())
}

#[test]
fn set_get_del_pair_with_their_replies() {
    let units = pairs(&[
        (SET, b"+OK\r\n"),
        (GET, b"$5\r\nhello\r\n"),
        (DEL, b":1\r\n"),
    ]);
    assert_eq!(
        bytes(&units),
        [
            p(SET, b"+OK\r\n"),
            p(GET, b"$5\r\nhello\r\n"),
            p(DEL, b":1\r\n")
        ]
    );
    assert_eq!(
        fields(&units[0]),
        [
            ("command", "SET"),
            ("arg.1", "k"),
            ("arg.2", "v"),
            ("arg.3", "EX"),
            ("arg.4", "60")
        ]
    );
    assert_eq!(units[0].summary, "SET k v EX 60");
    assert_eq!(units[1].summary, "GET user:42");
    assert_eq!(fields(&units[2]), [("command", "DEL"), ("arg.1", "k")]);
    assert!(units.iter().all(|unit| unit.lifetime == Lifetime::PerTest));
    let times: Vec<_> = units
        .iter()
        .map(|unit| (unit.request_ts_ns, unit.response_ts_ns))
        .collect();
    assert_eq!(times, [(1, 2), (3, 4), (5, 6)]);
}

#[test]
fn pipelined_commands_in_one_feed_are_answered_in_order() {
    let client = [SET, GET, DEL].concat();
    let server = b"+OK\r\n$-1\r\n:0\r\n";
    let (units, error) = run(
        Mode::Both,
        &[(Side::Client, &client), (Side::Server, server)],
    );
    assert_eq!(error, None);
    assert_eq!(
        bytes(&units),
        [p(SET, b"+OK\r\n"), p(GET, b"$-1\r\n"), p(DEL, b":0\r\n")]
    );
    assert_eq!(units[2].request_ts_ns, 1);
    assert_eq!(units[2].response_ts_ns, 2);
}

#[test]
fn timestamps_are_those_of_the_first_and_last_byte() {
    let client = [SET, GET, DEL].concat();
    let split = SET.len() + 5;
    let (units, error) = run(
        Mode::Both,
        &[
            (Side::Client, &client[..split]),
            (Side::Client, &client[split..]),
            (Side::Server, b"+OK\r\n$2"),
            (Side::Server, b"\r\nhi\r\n:1"),
            (Side::Server, b"\r\n"),
        ],
    );
    assert_eq!(error, None);
    let times: Vec<_> = units
        .iter()
        .map(|unit| (unit.request_ts_ns, unit.response_ts_ns))
        .collect();
    assert_eq!(times, [(1, 3), (1, 4), (2, 5)]);
}

/// Everything the other tests use, as one conversation.
fn conversation() -> (Vec<u8>, Vec<u8>) {
    let client = [
        HELLO3,
        SET,
        GET,
        b"PING\r\n",
        b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nnews\r\n",
        DEL,
    ]
    .concat();
    let server = [
        HELLO3_REPLY,
        b"+OK\r\n",
        b"|1\r\n+ttl\r\n:10\r\n$2\r\nhi\r\n",
        b"+PONG\r\n",
        b">3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n",
        b":1\r\n",
    ]
    .concat();
    (client, server)
}

#[test]
fn byte_by_byte_equals_whole() {
    let (client, server) = conversation();
    let (whole, error) = run(
        Mode::Both,
        &[(Side::Client, &client), (Side::Server, &server)],
    );
    assert_eq!(error, None);
    assert_eq!(whole.len(), 6, "{whole:#?}");

    let mut conn = RedisConnection::new(Mode::Both);
    for i in 0..client.len().max(server.len()) {
        if let Some(byte) = client.get(i) {
            conn.feed(Side::Client, std::slice::from_ref(byte), 1);
        }
        if let Some(byte) = server.get(i) {
            conn.feed(Side::Server, std::slice::from_ref(byte), 2);
        }
    }
    assert_eq!(conn.error(), None);
    assert_eq!(drain(&mut conn), whole);

    let mut conn = RedisConnection::new(Mode::Both);
    for byte in &client {
        conn.feed(Side::Client, std::slice::from_ref(byte), 1);
    }
    for byte in &server {
        conn.feed(Side::Server, std::slice::from_ref(byte), 2);
    }
    assert_eq!(drain(&mut conn), whole);
}

#[test]
fn every_resp3_type_is_one_reply() {
    let replies: [&[u8]; 14] = [
        b"_\r\n",
        b"#t\r\n",
        b"#f\r\n",
        b",3.14\r\n",
        b",-inf\r\n",
        b"(3492890328409238509324850943850943825024385\r\n",
        b"!21\r\nSYNTAX invalid syntax\r\n",
        b"=15\r\ntxt:Some string\r\n",
        b"%2\r\n+first\r\n:1\r\n+second\r\n*2\r\n$1\r\na\r\n_\r\n",
        b"~3\r\n+orange\r\n+apple\r\n#t\r\n",
        b"|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n*2\r\n:2039123\r\n:9543892\r\n",
        b"*2\r\n|1\r\n+ttl\r\n:3600\r\n:1\r\n:2\r\n",
        b"%0\r\n",
        b"|0\r\n~0\r\n",
    ];
    let mut steps: Vec<(&[u8], &[u8])> = vec![(HELLO3, HELLO3_REPLY)];
    steps.extend(replies.iter().map(|reply| (GET, *reply)));
    let units = pairs(&steps);
    assert_eq!(units.len(), replies.len() + 1);
    for (unit, reply) in units[1..].iter().zip(replies) {
        assert_eq!(unit.request, GET);
        assert_eq!(unit.response, reply);
    }
    // All replies at once frame the same way.
    let client = [&[HELLO3][..], &[GET; 14]].concat().concat();
    let server = [&[HELLO3_REPLY][..], &replies].concat().concat();
    let (whole, error) = run(
        Mode::Both,
        &[(Side::Client, &client), (Side::Server, &server)],
    );
    assert_eq!(error, None);
    assert_eq!(bytes(&whole), bytes(&units));
}

#[test]
fn hello_3_is_a_session_unit() {
    let units = pairs(&[(HELLO3, HELLO3_REPLY), (GET, b"_\r\n")]);
    assert_eq!(units[0].response, HELLO3_REPLY);
    assert_eq!(units[0].lifetime, Lifetime::Session);
    assert_eq!(units[0].summary, "HELLO 3");
    assert_eq!(fields(&units[0]), [("command", "HELLO"), ("arg.1", "3")]);
    assert_eq!(units[1].lifetime, Lifetime::PerTest);
}

#[test]
fn null_bulk_and_null_array_are_replies() {
    let blpop = b"*3\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$1\r\n1\r\n";
    let units = pairs(&[(GET, b"$-1\r\n"), (blpop, b"*-1\r\n"), (GET, b"$0\r\n\r\n")]);
    assert_eq!(
        bytes(&units),
        [
            p(GET, b"$-1\r\n"),
            p(blpop, b"*-1\r\n"),
            p(GET, b"$0\r\n\r\n")
        ]
    );
}

#[test]
fn error_replies_end_their_command() {
    let subscribe_nothing = b"*1\r\n$9\r\nsubscribe\r\n";
    let units = pairs(&[
        (
            b"*1\r\n$4\r\nNOPE\r\n",
            b"-ERR unknown command 'NOPE', with args beginning with: \r\n",
        ),
        (
            GET,
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        ),
        (
            subscribe_nothing,
            b"-ERR wrong number of arguments for 'subscribe' command\r\n",
        ),
        (DEL, b":1\r\n"),
    ]);
    assert_eq!(units.len(), 4);
    assert_eq!(
        units[1].response,
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    );
    assert_eq!(fields(&units[2]), [("command", "SUBSCRIBE")]);
    assert_eq!(units[3].response, b":1\r\n");
}

#[test]
fn inline_commands_are_parsed_like_redis() {
    let units = pairs(&[
        (b"PING\r\n", b"+PONG\r\n"),
        (b"\r\n\nset \"a b\\x41\\n\" 'it\\'s'\n", b"+OK\r\n"),
    ]);
    assert_eq!(bytes(&units)[0], p(b"PING\r\n", b"+PONG\r\n"));
    assert_eq!(fields(&units[0]), [("command", "PING")]);
    assert_eq!(units[0].lifetime, Lifetime::Session);
    // Blank lines make no unit; the command keeps exactly its own line.
    assert_eq!(units[1].request, b"set \"a b\\x41\\n\" 'it\\'s'\n");
    assert_eq!(
        fields(&units[1]),
        [("command", "SET"), ("arg.1", "a bA\n"), ("arg.2", "it's")]
    );
    assert_eq!(units[1].summary, "SET \"a bA\\n\" it's");

    let (_, error) = run(Mode::Both, &[(Side::Client, b"SET \"open\r\n")]);
    assert!(matches!(error, Some(DependencyError::Malformed { .. })));
    let long = vec![b'a'; command::MAX_INLINE + 1];
    let (_, error) = run(Mode::Both, &[(Side::Client, &long)]);
    assert!(matches!(error, Some(DependencyError::Malformed { .. })));
}

#[test]
fn requests_only_yields_each_command_at_once() {
    let mut conn = RedisConnection::new(Mode::RequestsOnly);
    conn.feed(Side::Client, &GET[..10], 5);
    assert_eq!(conn.next_unit(), None);
    conn.feed(Side::Client, &[&GET[10..], SET, b"PI"].concat(), 6);
    conn.feed(Side::Server, b"garbage that is ignored", 7);
    let units = drain(&mut conn);
    assert_eq!(bytes(&units), [p(GET, b""), p(SET, b"")]);
    assert_eq!(units[0].summary, "GET user:42");
    assert_eq!((units[0].request_ts_ns, units[0].response_ts_ns), (5, 6));
    conn.feed(Side::Client, b"NG\r\n", 8);
    let ping = conn.next_unit();
    assert_eq!(ping.map(|unit| unit.request), Some(b"PING\r\n".to_vec()));
    conn.close();
    assert_eq!(conn.error(), None);
}

#[test]
fn malformed_input_stops_with_an_error() {
    let cases: [(Side, &[u8]); 8] = [
        (Side::Server, b"?what\r\n"),
        (Side::Server, b"$abc\r\n"),
        (Side::Server, b"$3\r\nabcXY"),
        (Side::Server, b":12x\r\n"),
        (Side::Server, b"#maybe\r\n"),
        (Side::Client, b"*1\r\n:5\r\n"),
        (Side::Client, b"*2\r\n$3\r\nGET\r\n*1\r\n"),
        (Side::Server, b"*123456789012345678901234567890\r\n"),
    ];
    for (side, input) in cases {
        let mut conn = RedisConnection::new(Mode::Both);
        conn.feed(Side::Client, GET, 1);
        conn.feed(Side::Server, b"+OK\r\n", 2);
        conn.feed(side, input, 3);
        assert!(
            matches!(conn.error(), Some(DependencyError::Malformed { .. })),
            "{input:?}: {:?}",
            conn.error()
        );
        // What completed before the error is still handed out; nothing after it.
        assert_eq!(
            conn.next_unit().map(|unit| unit.response),
            Some(b"+OK\r\n".to_vec())
        );
        conn.feed(Side::Client, GET, 4);
        conn.feed(Side::Server, b"+OK\r\n", 5);
        conn.close();
        assert_eq!(conn.next_unit(), None);
    }
}

#[test]
fn nesting_is_capped_at_64() {
    let nested = |depth: usize| [b"*1\r\n".repeat(depth), b":1\r\n".to_vec()].concat();
    let ok = nested(resp::MAX_DEPTH);
    let units = pairs(&[(GET, &ok)]);
    assert_eq!(units[0].response, ok);

    let (_, error) = run(
        Mode::Both,
        &[
            (Side::Client, GET),
            (Side::Server, &nested(resp::MAX_DEPTH + 1)),
        ],
    );
    assert!(matches!(error, Some(DependencyError::Malformed { .. })));
    // Far deeper input costs no recursion.
    let (_, error) = run(Mode::Both, &[(Side::Server, &b"%1\r\n".repeat(200_000))]);
    assert!(matches!(error, Some(DependencyError::Malformed { .. })));
}

#[test]
fn sizes_beyond_the_cap_are_too_large() {
    let (_, error) = run(Mode::Both, &[(Side::Server, b"$104857600\r\n")]);
    assert_eq!(
        error,
        Some(DependencyError::TooLarge {
            protocol: "redis",
            limit: MAX_HELD
        })
    );
    let (_, error) = run(Mode::Both, &[(Side::Client, b"*1\r\n$536870913\r\n")]);
    assert!(matches!(error, Some(DependencyError::Malformed { .. })));
    // Held bytes: a simple string that never ends.
    let mut conn = RedisConnection::new(Mode::Both);
    conn.feed(Side::Server, b"+", 1);
    let chunk = vec![b'x'; 8 * 1024 * 1024];
    for _ in 0..9 {
        conn.feed(Side::Server, &chunk, 2);
    }
    assert!(matches!(
        conn.error(),
        Some(DependencyError::TooLarge { .. })
    ));
}

#[test]
fn gap_stops_the_connection() {
    let mut conn = RedisConnection::new(Mode::Both);
    conn.feed(Side::Client, GET, 1);
    conn.feed(Side::Server, b"$5\r\nhello\r\n", 2);
    conn.feed(Side::Client, SET, 3);
    conn.gap(Side::Server, 10);
    assert_eq!(conn.error(), Some(&DependencyError::Gap));
    conn.feed(Side::Server, b"+OK\r\n", 4);
    conn.close();
    assert_eq!(bytes(&drain(&mut conn)), [p(GET, b"$5\r\nhello\r\n")]);
}

#[test]
fn a_reply_fed_before_its_command_waits_for_it() {
    let (units, error) = run(
        Mode::Both,
        &[
            (Side::Server, b"+OK\r\n:1\r\n"),
            (Side::Client, SET),
            (Side::Client, DEL),
        ],
    );
    assert_eq!(error, None);
    assert_eq!(bytes(&units), [p(SET, b"+OK\r\n"), p(DEL, b":1\r\n")]);
}

#[test]
fn close_completes_commands_still_waiting() {
    let quit = b"*1\r\n$4\r\nQUIT\r\n";
    let mut conn = RedisConnection::new(Mode::Both);
    conn.feed(Side::Client, &[GET, quit, DEL].concat(), 1);
    conn.feed(Side::Server, b"$1\r\nx\r\n+OK\r\n$3\r\nab", 2);
    assert_eq!(drain(&mut conn).len(), 2);
    conn.close();
    let units = drain(&mut conn);
    assert_eq!(bytes(&units), [p(DEL, b"")]);
    assert_eq!(units[0].response_ts_ns, 1);
}

#[test]
fn resp2_subscribe_takes_one_array_per_channel() {
    let subscribe: &[u8] = b"*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$1\r\nb\r\n";
    let confirm_a: &[u8] = b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n";
    let confirm_b: &[u8] = b"*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n";
    let message: &[u8] = b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n";
    let ping: &[u8] = b"*1\r\n$4\r\nPING\r\n";
    let pong: &[u8] = b"*2\r\n$4\r\npong\r\n$0\r\n\r\n";
    let unsubscribe: &[u8] = b"*1\r\n$11\r\nUNSUBSCRIBE\r\n";
    let gone_a: &[u8] = b"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n";
    let gone_b: &[u8] = b"*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:0\r\n";
    let (units, error) = run(
        Mode::Both,
        &[
            (Side::Client, subscribe),
            (Side::Server, confirm_a),
            (Side::Server, &[confirm_b, message].concat()),
            (Side::Client, ping),
            (Side::Server, &[message, pong].concat()),
            (Side::Client, unsubscribe),
            (Side::Server, &[gone_a, gone_b].concat()),
            (Side::Client, GET),
            (
                Side::Server,
                b"*3\r\n$7\r\nmessage\r\n$1\r\nx\r\n$1\r\ny\r\n",
            ),
        ],
    );
    assert_eq!(error, None);
    let expected: [(&[u8], Vec<u8>); 5] = [
        (subscribe, [confirm_a, confirm_b].concat()),
        (b"", message.to_vec()),
        (ping, [message, pong].concat()),
        (unsubscribe, [gone_a, gone_b].concat()),
        // Unsubscribed: an array with "message" first is an ordinary reply again.
        (
            GET,
            b"*3\r\n$7\r\nmessage\r\n$1\r\nx\r\n$1\r\ny\r\n".to_vec(),
        ),
    ];
    let got: Vec<(&[u8], Vec<u8>)> = units
        .iter()
        .map(|unit| (unit.request.as_slice(), unit.response.clone()))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(
        fields(&units[0]),
        [("command", "SUBSCRIBE"), ("arg.1", "a"), ("arg.2", "b")]
    );
    assert_eq!(units[1].fields, []);
    assert_eq!(units[1].summary, "(push) message a");
    assert_eq!(units[1].lifetime, Lifetime::PerTest);
}

#[test]
fn resp3_pushes_are_attached_or_stand_alone() {
    let subscribe: &[u8] = b"*2\r\n$10\r\nPSUBSCRIBE\r\n$2\r\nn*\r\n";
    let confirm: &[u8] = b">3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:1\r\n";
    let message: &[u8] = b">4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$2\r\nnn\r\n$1\r\nx\r\n";
    let invalidate: &[u8] = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$7\r\nuser:42\r\n";
    let (units, error) = run(
        Mode::Both,
        &[
            (Side::Client, HELLO3),
            (Side::Server, HELLO3_REPLY),
            (Side::Client, subscribe),
            // A message can overtake the confirmation of a later channel, never the first.
            (Side::Server, &[confirm, message].concat()),
            (Side::Server, invalidate),
            (Side::Client, GET),
            (
                Side::Server,
                &[invalidate, b"$2\r\nhi\r\n".as_slice()].concat(),
            ),
        ],
    );
    assert_eq!(error, None);
    assert_eq!(
        bytes(&units),
        [
            p(HELLO3, HELLO3_REPLY),
            p(subscribe, confirm),
            p(b"", message),
            p(b"", invalidate),
            p(GET, &[invalidate, b"$2\r\nhi\r\n".as_slice()].concat()),
        ]
    );
    assert_eq!(units[2].summary, "(push) pmessage n*");
    assert_eq!(units[3].summary, "(push) invalidate nil");
}

#[test]
fn a_confirmation_push_waits_for_its_command() {
    let subscribe: &[u8] = b"*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n";
    let confirm: &[u8] = b">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n";
    let (units, _) = run(
        Mode::Both,
        &[
            (Side::Client, HELLO3),
            (Side::Server, HELLO3_REPLY),
            (Side::Server, confirm),
            (Side::Client, subscribe),
        ],
    );
    assert_eq!(
        bytes(&units),
        [p(HELLO3, HELLO3_REPLY), p(subscribe, confirm)]
    );

    // A server-initiated unsubscribe with no command to answer stands alone at close.
    let moved: &[u8] = b">3\r\n$12\r\nsunsubscribe\r\n$1\r\ns\r\n:0\r\n";
    let mut conn = RedisConnection::new(Mode::Both);
    conn.feed(Side::Server, moved, 1);
    assert_eq!(conn.next_unit(), None);
    conn.close();
    let units = drain(&mut conn);
    assert_eq!(bytes(&units), [p(b"", moved)]);
    assert_eq!(units[0].summary, "(push) sunsubscribe s");
}

#[test]
fn client_reply_off_means_no_replies() {
    let off = b"*3\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$3\r\nOFF\r\n";
    let on = b"*3\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$2\r\nON\r\n";
    let skip = b"*3\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$4\r\nSKIP\r\n";
    let client = [off, SET, on, skip, DEL, GET].concat();
    let (units, error) = run(
        Mode::Both,
        &[
            (Side::Client, &client),
            (Side::Server, b"+OK\r\n$1\r\nv\r\n"),
        ],
    );
    assert_eq!(error, None);
    assert_eq!(
        bytes(&units),
        [
            p(off, b""),
            p(SET, b""),
            p(on, b"+OK\r\n"),
            p(skip, b""),
            p(DEL, b""),
            p(GET, b"$1\r\nv\r\n"),
        ]
    );
    assert_eq!(units[0].lifetime, Lifetime::Session);
}

#[test]
fn binary_values_and_summaries() {
    let binary = b"*3\r\n$3\r\nSET\r\n$4\r\nb64:\r\n$2\r\n\xff\x00\r\n";
    let units = pairs(&[(binary, b"+OK\r\n")]);
    assert_eq!(
        fields(&units[0]),
        [
            ("command", "SET"),
            ("arg.1", "b64:YjY0Og=="),
            ("arg.2", "b64:/wA=")
        ]
    );
    assert_eq!(units[0].summary, "SET b64: <2 bytes>");

    let auth = b"*3\r\n$4\r\nAUTH\r\n$5\r\nalice\r\n$6\r\nsecret\r\n";
    let hello = b"*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$2\r\npw\r\n";
    let units = pairs(&[(auth, b"+OK\r\n"), (hello, HELLO3_REPLY)]);
    assert_eq!(units[0].summary, "AUTH alice ***");
    assert_eq!(fields(&units[0])[2], ("arg.2", "secret"));
    assert_eq!(units[0].lifetime, Lifetime::Session);
    assert_eq!(units[1].summary, "HELLO 3 AUTH u ***");

    let value = "x".repeat(300);
    let long = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$300\r\n{value}\r\n");
    let units = pairs(&[(long.as_bytes(), b"+OK\r\n")]);
    assert_eq!(units[0].summary.chars().count(), 120);
    assert!(units[0].summary.starts_with("SET k xxx"));
    assert!(units[0].summary.ends_with('…'));
    assert_eq!(fields(&units[0])[2].1, value);
}

#[test]
fn lifetimes_follow_the_command() {
    let session = [
        "HELLO 3",
        "AUTH pw",
        "SELECT 1",
        "client setname app",
        "CLIENT SETINFO LIB-NAME redis-py",
        "PING",
        "INFO server",
        "COMMAND",
        "COMMAND DOCS",
        "CONFIG GET maxmemory",
        "CLUSTER SLOTS",
        "READONLY",
    ];
    let per_test = [
        "GET k",
        "SET k v",
        "CONFIG SET maxmemory 1",
        "FLUSHALL",
        "CLUSTER FAILOVER",
    ];
    for (line, lifetime) in session
        .iter()
        .map(|line| (line, Lifetime::Session))
        .chain(per_test.iter().map(|line| (line, Lifetime::PerTest)))
    {
        let args: Vec<Vec<u8>> = line.split(' ').map(|w| w.as_bytes().to_vec()).collect();
        assert_eq!(command::lifetime(&args), lifetime, "{line}");
    }
}

#[test]
fn error_reply_is_one_resp_error_line() {
    assert_eq!(
        error_reply("no mock for GET user:42"),
        b"-ERR kreplay: no mock for GET user:42\r\n"
    );
    assert_eq!(error_reply("a\r\nb\nc"), b"-ERR kreplay: a  b c\r\n");
}

/// Runs a script from arbitrary bytes (`[op][len][bytes]`, as in the HTTP fuzz entry point)
/// and checks what every caller relies on.
fn fuzz(data: &[u8]) {
    let mode = if data.first().is_some_and(|b| b % 5 == 0) {
        Mode::RequestsOnly
    } else {
        Mode::Both
    };
    let mut conn = RedisConnection::new(mode);
    let mut rest = data;
    let mut client_bytes = Vec::new();
    let mut units = Vec::new();
    while let [op, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        match op % 8 {
            0..=2 => {
                client_bytes.extend_from_slice(payload);
                conn.feed(Side::Client, payload, 1);
            }
            3..=5 => conn.feed(Side::Server, payload, 2),
            6 => conn.gap(Side::Client, u64::from(*op)),
            _ => conn.close(),
        }
        units.extend(drain(&mut conn));
    }
    conn.close();
    units.extend(drain(&mut conn));
    // Requests are consecutive pieces of what the client sent.
    let mut at = 0;
    for unit in &units {
        if unit.request.is_empty() {
            continue;
        }
        let found = client_bytes[at..]
            .windows(unit.request.len())
            .position(|window| window == unit.request);
        let Some(found) = found else {
            panic!("request {:?} not in client bytes", unit.request);
        };
        at += found + unit.request.len();
        assert!(
            unit.fields
                .first()
                .is_some_and(|(name, _)| name == "command")
        );
        if mode == Mode::RequestsOnly {
            assert!(unit.response.is_empty());
        }
    }
}

#[test]
fn pseudo_random_mutations_never_panic() {
    let (client, server) = conversation();
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for split in [7usize, 31, 255] {
        let mut script = Vec::new();
        for (c, s) in client.chunks(split).zip(server.chunks(split)) {
            script.extend([1, c.len() as u8]);
            script.extend_from_slice(c);
            script.extend([4, s.len() as u8]);
            script.extend_from_slice(s);
        }
        seeds.push(script);
    }
    seeds.push(
        [
            &[0u8, 40][..],
            b"*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$1\r\nb\r\n\r\nPING\r\n",
            &[3, 28],
            b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n",
            &[7, 0],
        ]
        .concat(),
    );
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for seed in &seeds {
        fuzz(seed);
        for _ in 0..300 {
            let mut input = seed.clone();
            for _ in 0..1 + state % 6 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state as usize) % input.len();
                let byte = (state >> 32) as u8;
                match state % 3 {
                    0 => input[at] = byte,
                    1 => input.insert(at, b"*$%>|:-\r\n0123"[usize::from(byte) % 13]),
                    _ => {
                        input.remove(at);
                    }
                }
            }
            fuzz(&input);
        }
    }
}
