//! End-to-end tests of [`Connection`] (and through it the per-direction parser): raw bytes in
//! through `feed`, `gap` and `close`, exchanges and counters out.

use std::io::Write;

use flate2::Compression;
use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};

use super::Connection;
use crate::http1::{Direction, Exchange, Header, Limits, ParseError, Stats};

const REQ: Direction = Direction::Request;
const RESP: Direction = Direction::Response;

fn drain(conn: &mut Connection) -> Vec<Exchange> {
    std::iter::from_fn(|| conn.next_exchange()).collect()
}

fn header<'a>(headers: &'a [Header], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| h.value.as_slice())
}

/// The parts most assertions care about: method, target, status, request body, response body.
fn summary(exchange: &Exchange) -> (&str, &str, u16, &[u8], &[u8]) {
    (
        exchange.request.method.as_str(),
        exchange.request.target.as_str(),
        exchange.response.status_code,
        exchange.request.body.as_slice(),
        exchange.response.body.as_slice(),
    )
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).expect("in memory");
    encoder.finish().expect("in memory")
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut encoder = ZlibEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).expect("in memory");
    encoder.finish().expect("in memory")
}

fn raw_deflate(data: &[u8]) -> Vec<u8> {
    let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).expect("in memory");
    encoder.finish().expect("in memory")
}

/// `data` as one chunk of the chunked coding, then the last chunk.
fn one_chunk(data: &[u8]) -> Vec<u8> {
    [
        format!("{:x}\r\n", data.len()).as_bytes(),
        data,
        b"\r\n0\r\n\r\n",
    ]
    .concat()
}

fn text(len: usize) -> Vec<u8> {
    (0..len).map(|i| b"the quick brown fox "[i % 20]).collect()
}

#[test]
fn keep_alive_exchanges_pair_in_order() {
    let mut conn = Connection::new(Limits::default());
    conn.feed(REQ, b"GET /a HTTP/1.1\r\nHost: example\r\n\r\n", 1);
    conn.feed(
        RESP,
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nfirst",
        2,
    );
    let first = drain(&mut conn);
    assert_eq!(
        first.len(),
        1,
        "an exchange is ready as soon as it is complete"
    );
    conn.feed(
        REQ,
        b"POST /b?x=1 HTTP/1.1\r\nHost: example\r\nContent-Length: 11\r\n\r\n{\"k\": true}",
        3,
    );
    conn.feed(
        RESP,
        b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
        4,
    );
    conn.feed(REQ, b"DELETE /c HTTP/1.1\r\nHost: example\r\n\r\n", 5);
    conn.feed(
        RESP,
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        6,
    );
    let rest = drain(&mut conn);
    let all: Vec<_> = first.iter().chain(&rest).map(summary).collect();
    assert_eq!(
        all,
        [
            ("GET", "/a", 200, &b""[..], &b"first"[..]),
            ("POST", "/b?x=1", 201, b"{\"k\": true}", b"ok"),
            ("DELETE", "/c", 404, b"", b""),
        ]
    );
    let get = &first[0];
    assert_eq!(get.request.version_minor, 1);
    assert_eq!(get.request.headers.len(), 1);
    assert_eq!(header(&get.request.headers, "host"), Some(&b"example"[..]));
    assert_eq!(get.response.reason, "OK");
    assert_eq!(
        header(&get.response.headers, "Content-Type"),
        Some(&b"text/plain"[..])
    );
    assert_eq!(get.response.body_wire_size, 5);
    assert!(!get.response.body_truncated);
    assert_eq!(rest[0].request.body_wire_size, 11);
    assert_eq!(rest[1].response.reason, "Not Found");

    conn.close(7);
    assert!(conn.next_exchange().is_none());
    assert_eq!(
        conn.stats(),
        Stats {
            exchanges: 3,
            ..Stats::default()
        }
    );
    assert_eq!(conn.last_error(), None);
}

const PIPELINED_REQUESTS: &[u8] = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n\
POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
GET /3 HTTP/1.1\r\nHost: x\r\n\r\n";

const PIPELINED_RESPONSES: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA\
HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2;e=1\r\nBB\r\n0\r\nT: 1\r\n\r\n\
HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nCCC";

/// Feeds the pipelined requests and then the responses, each cut into the given pieces, all
/// with the same timestamp so that results can be compared whole.
fn pipelined(requests: &[&[u8]], responses: &[&[u8]]) -> (Vec<Exchange>, Stats) {
    let mut conn = Connection::new(Limits::default());
    for piece in requests {
        conn.feed(REQ, piece, 9);
    }
    assert!(conn.next_exchange().is_none(), "no response yet");
    for piece in responses {
        conn.feed(RESP, piece, 9);
    }
    let exchanges = drain(&mut conn);
    conn.close(10);
    (exchanges, conn.stats())
}

#[test]
fn pipelined_requests_pair_with_responses_in_order() {
    let (exchanges, stats) = pipelined(&[PIPELINED_REQUESTS], &[PIPELINED_RESPONSES]);
    let got: Vec<_> = exchanges.iter().map(summary).collect();
    assert_eq!(
        got,
        [
            ("GET", "/1", 200, &b""[..], &b"A"[..]),
            ("POST", "/2", 201, b"abc", b"BB"),
            ("GET", "/3", 404, b"", b"CCC"),
        ]
    );
    assert_eq!(exchanges[1].response.body_wire_size, 22);
    assert_eq!(
        stats,
        Stats {
            exchanges: 3,
            ..Stats::default()
        }
    );
}

#[test]
fn pipelined_exchanges_do_not_depend_on_how_bytes_are_split() {
    let whole = pipelined(&[PIPELINED_REQUESTS], &[PIPELINED_RESPONSES]);
    assert_eq!(whole.0.len(), 3);

    let request_bytes: Vec<&[u8]> = PIPELINED_REQUESTS.chunks(1).collect();
    let response_bytes: Vec<&[u8]> = PIPELINED_RESPONSES.chunks(1).collect();
    assert_eq!(
        pipelined(&[PIPELINED_REQUESTS], &response_bytes),
        whole,
        "responses byte by byte"
    );
    assert_eq!(
        pipelined(&request_bytes, &response_bytes),
        whole,
        "both directions byte by byte"
    );
    for at in 1..PIPELINED_RESPONSES.len() {
        let (a, b) = PIPELINED_RESPONSES.split_at(at);
        assert_eq!(
            pipelined(&[PIPELINED_REQUESTS], &[a, b]),
            whole,
            "split at {at}"
        );
    }
    for at in 1..PIPELINED_REQUESTS.len() {
        let (a, b) = PIPELINED_REQUESTS.split_at(at);
        assert_eq!(
            pipelined(&[a, b], &[PIPELINED_RESPONSES]),
            whole,
            "split at {at}"
        );
    }
}

#[test]
fn chunked_bodies_are_dechunked_and_extensions_and_trailers_dropped() {
    let request_body =
        b"4;name=\"v;al\"\r\nWiki\r\n5\r\npedia\r\nE ; ext\r\n in\r\n\r\nchunks.\r\n\
0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n";
    let response_body =
        b"3\r\none\r\n003;a=b;c\r\ntwo\r\n0;last\r\nServer-Timing: db;dur=53\r\n\r\n";
    let requests = [
        &b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        request_body,
        b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    .concat();
    let responses = [
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Server-Timing\r\n\r\n"[..],
        response_body,
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext",
    ]
    .concat();
    for step in [requests.len().max(responses.len()), 7, 1] {
        let mut conn = Connection::new(Limits::default());
        for piece in requests.chunks(step) {
            conn.feed(REQ, piece, 1);
        }
        for piece in responses.chunks(step) {
            conn.feed(RESP, piece, 2);
        }
        let exchanges = drain(&mut conn);
        let got: Vec<_> = exchanges.iter().map(summary).collect();
        assert_eq!(
            got,
            [
                (
                    "POST",
                    "/upload",
                    200,
                    &b"Wikipedia in\r\n\r\nchunks."[..],
                    &b"onetwo"[..]
                ),
                ("GET", "/next", 200, b"", b"next"),
            ],
            "step {step}"
        );
        let upload = &exchanges[0];
        assert_eq!(upload.request.body_wire_size, request_body.len() as u64);
        assert_eq!(upload.response.body_wire_size, response_body.len() as u64);
        assert_eq!(
            header(&upload.request.headers, "transfer-encoding"),
            Some(&b"chunked"[..]),
            "framing headers are kept as sent"
        );
        assert_eq!(upload.response.headers.len(), 2, "trailers are not headers");
        assert_eq!(
            conn.stats(),
            Stats {
                exchanges: 2,
                ..Stats::default()
            }
        );
    }
}

#[test]
fn head_response_has_no_body_and_the_next_exchange_parses() {
    let mut conn = Connection::new(Limits::default());
    conn.feed(
        REQ,
        b"HEAD /file HTTP/1.1\r\nHost: x\r\n\r\nGET /file HTTP/1.1\r\nHost: x\r\n\r\n",
        1,
    );
    // The HEAD response announces the length of the body a GET would get, and sends none.
    conn.feed(
        RESP,
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Encoding: gzip\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndata",
        2,
    );
    let exchanges = drain(&mut conn);
    let got: Vec<_> = exchanges.iter().map(summary).collect();
    assert_eq!(
        got,
        [
            ("HEAD", "/file", 200, &b""[..], &b""[..]),
            ("GET", "/file", 200, b"", b"data"),
        ]
    );
    assert_eq!(exchanges[0].response.body_wire_size, 0);
    assert_eq!(
        header(&exchanges[0].response.headers, "content-length"),
        Some(&b"4"[..])
    );
    assert_eq!(
        conn.stats().decode_errors,
        0,
        "an empty body is not decoded"
    );
    conn.close(3);
    assert_eq!(
        conn.stats(),
        Stats {
            exchanges: 2,
            ..Stats::default()
        }
    );
}

#[test]
fn expect_100_continue_skips_the_interim_response() {
    let mut conn = Connection::new(Limits::default());
    conn.feed(
        REQ,
        b"PUT /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        1,
    );
    conn.feed(RESP, b"HTTP/1.1 100 Continue\r\n\r\n", 2);
    assert!(conn.next_exchange().is_none());
    conn.feed(REQ, b"hello", 3);
    assert!(
        conn.next_exchange().is_none(),
        "the interim response is not paired"
    );
    conn.feed(
        RESP,
        b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
        4,
    );
    let exchanges = drain(&mut conn);
    let got: Vec<_> = exchanges.iter().map(summary).collect();
    assert_eq!(got, [("PUT", "/up", 201, &b"hello"[..], &b"ok"[..])]);
    assert_eq!(
        exchanges[0].response.timestamp_ns, 4,
        "the final response's time"
    );
    assert_eq!(exchanges[0].request.timestamp_ns, 1);

    // Several interim responses (and their headers) before one final response.
    conn.feed(REQ, b"GET /page HTTP/1.1\r\nHost: x\r\n\r\n", 5);
    conn.feed(
        RESP,
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n\
HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npage",
        6,
    );
    assert_eq!(
        drain(&mut conn).iter().map(summary).collect::<Vec<_>>(),
        [("GET", "/page", 200, &b""[..], &b"page"[..])]
    );
    conn.close(7);
    assert_eq!(
        conn.stats(),
        Stats {
            exchanges: 2,
            informational_responses: 3,
            ..Stats::default()
        }
    );
}

#[test]
fn no_content_and_not_modified_responses_have_no_body() {
    let mut conn = Connection::new(Limits::default());
    conn.feed(
        REQ,
        b"DELETE /a HTTP/1.1\r\nHost: x\r\n\r\n\
GET /b HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"v1\"\r\n\r\n\
GET /c HTTP/1.1\r\nHost: x\r\n\r\n",
        1,
    );
    // 304 may carry the Content-Length of the representation; no body follows either way.
    conn.feed(
        RESP,
        b"HTTP/1.1 204 No Content\r\n\r\n\
HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 10\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
        2,
    );
    let exchanges = drain(&mut conn);
    let got: Vec<_> = exchanges.iter().map(summary).collect();
    assert_eq!(
        got,
        [
            ("DELETE", "/a", 204, &b""[..], &b""[..]),
            ("GET", "/b", 304, b"", b""),
            ("GET", "/c", 200, b"", b"abc"),
        ]
    );
    conn.close(3);
    assert_eq!(
        conn.stats(),
        Stats {
            exchanges: 3,
            ..Stats::default()
        }
    );
}

#[test]
fn gzip_and_deflate_bodies_are_stored_decoded_with_headers_as_sent() {
    let plain = text(3000);
    let gz = gzip(&plain);
    let z = zlib(&plain);
    let raw = raw_deflate(&plain);
    let requests = [
        &b"GET /gz HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n"[..],
        b"GET /zlib HTTP/1.1\r\n\r\n",
        b"GET /raw HTTP/1.1\r\n\r\n",
        format!(
            "POST /gz-upload HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            gz.len()
        )
        .as_bytes(),
        &gz,
    ]
    .concat();
    let responses = [
        format!(
            "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            gz.len()
        )
        .as_bytes(),
        &gz,
        b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nTransfer-Encoding: chunked\r\n\r\n",
        &one_chunk(&z),
        format!(
            "HTTP/1.1 200 OK\r\nContent-Encoding: Deflate\r\nContent-Length: {}\r\n\r\n",
            raw.len()
        )
        .as_bytes(),
        &raw,
        b"HTTP/1.1 204 No Content\r\n\r\n",
    ]
    .concat();
    let mut conn = Connection::new(Limits::default());
    conn.feed(REQ, &requests, 1);
    for piece in responses.chunks(100) {
        conn.feed(RESP, piece, 2);
    }
    let exchanges = drain(&mut conn);
    assert_eq!(exchanges.len(), 4);
    for exchange in &exchanges[..3] {
        let target = &exchange.request.target;
        assert_eq!(exchange.response.body, plain, "{target}");
        assert!(!exchange.response.body_truncated, "{target}");
    }
    assert_eq!(
        exchanges[3].request.body, plain,
        "request bodies are decoded too"
    );
    let gz_response = &exchanges[0].response;
    assert_eq!(gz_response.body_wire_size, gz.len() as u64);
    assert_eq!(
        header(&gz_response.headers, "content-encoding"),
        Some(&b"gzip"[..])
    );
    assert_eq!(
        header(&gz_response.headers, "content-length"),
        Some(gz.len().to_string().as_bytes()),
        "the header still gives the wire length"
    );
    assert_eq!(
        header(&exchanges[1].response.headers, "content-encoding"),
        Some(&b"deflate"[..])
    );
    assert_eq!(
        conn.stats(),
        Stats {
            exchanges: 4,
            ..Stats::default()
        }
    );
}

#[test]
fn corrupt_gzip_body_is_kept_as_framed_and_counted() {
    let mut broken = gzip(&text(500));
    let crc = broken.len() - 5;
    broken[crc] ^= 0xff;
    let truncated = gzip(&text(500))[..40].to_vec();
    let mut conn = Connection::new(Limits::default());
    conn.feed(
        REQ,
        b"GET /crc HTTP/1.1\r\n\r\nGET /cut HTTP/1.1\r\n\r\nGET /ok HTTP/1.1\r\n\r\n",
        1,
    );
    let responses = [
        format!(
            "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            broken.len()
        )
        .as_bytes(),
        &broken,
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
        &one_chunk(&truncated),
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ]
    .concat();
    conn.feed(RESP, &responses, 2);
    let exchanges = drain(&mut conn);
    assert_eq!(
        exchanges.len(),
        3,
        "a decode failure does not lose the exchange"
    );
    assert_eq!(exchanges[0].response.body, broken);
    assert!(!exchanges[0].response.body_truncated);
    assert_eq!(exchanges[1].response.body, truncated);
    assert_eq!(
        header(&exchanges[1].response.headers, "content-encoding"),
        Some(&b"gzip"[..])
    );
    assert_eq!(exchanges[2].response.body, b"ok");
    assert_eq!(
        conn.stats(),
        Stats {
            exchanges: 3,
            decode_errors: 2,
            ..Stats::default()
        }
    );
}

#[test]
fn bodies_over_the_limit_are_truncated_and_the_connection_goes_on() {
    let limits = Limits {
        max_body_size: 16,
        ..Limits::default()
    };
    let big = text(100);
    let mut conn = Connection::new(limits);
    let requests = [
        &b"POST /big HTTP/1.1\r\nContent-Length: 100\r\n\r\n"[..],
        &big,
        b"GET /chunked HTTP/1.1\r\n\r\nGET /gz HTTP/1.1\r\n\r\nGET /small HTTP/1.1\r\n\r\n",
    ]
    .concat();
    let gz = gzip(&big);
    let responses = [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"[..],
        &big,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"a\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n",
        format!(
            "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            gz.len()
        )
        .as_bytes(),
        &gz,
        b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n0123456789abcdef",
    ]
    .concat();
    conn.feed(REQ, &requests, 1);
    conn.feed(RESP, &responses, 2);
    let exchanges = drain(&mut conn);
    let got: Vec<_> = exchanges.iter().map(summary).collect();
    assert_eq!(
        got,
        [
            ("POST", "/big", 200, &big[..16], &big[..16]),
            ("GET", "/chunked", 200, b"", b"0123456789012345"),
            ("GET", "/gz", 200, b"", &big[..16]),
            ("GET", "/small", 200, b"", b"0123456789abcdef"),
        ]
    );
    let flags: Vec<_> = exchanges
        .iter()
        .map(|e| (e.request.body_truncated, e.response.body_truncated))
        .collect();
    assert_eq!(
        flags,
        [(true, true), (false, true), (false, true), (false, false)],
        "a body of exactly the limit is whole"
    );
    assert_eq!(exchanges[0].request.body_wire_size, 100);
    assert_eq!(exchanges[0].response.body_wire_size, 100);
    assert_eq!(exchanges[2].response.body_wire_size, gz.len() as u64);
    assert_eq!(
        conn.stats(),
        Stats {
            exchanges: 4,
            truncated_bodies: 4,
            ..Stats::default()
        }
    );
}

#[test]
fn a_response_delimited_by_the_close_completes_on_close() {
    let mut conn = Connection::new(Limits::default());
    conn.feed(REQ, b"GET /old HTTP/1.0\r\nUser-Agent: ancient\r\n\r\n", 1);
    conn.feed(
        RESP,
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst part, ",
        2,
    );
    conn.feed(RESP, b"second part", 3);
    assert!(
        conn.next_exchange().is_none(),
        "the body may go on until the close"
    );
    conn.close(4);
    let exchanges = drain(&mut conn);
    let got: Vec<_> = exchanges.iter().map(summary).collect();
    assert_eq!(
        got,
        [(
            "GET",
            "/old",
            200,
            &b""[..],
            &b"first part, second part"[..]
        )]
    );
    assert_eq!(exchanges[0].request.version_minor, 0);
    assert_eq!(exchanges[0].response.version_minor, 0);
    assert_eq!(exchanges[0].response.body_wire_size, 23);
    assert!(!exchanges[0].response.body_truncated);
    assert_eq!(exchanges[0].response.timestamp_ns, 2);
    assert_eq!(
        conn.stats(),
        Stats {
            exchanges: 1,
            ..Stats::default()
        }
    );
    // Closed is final.
    conn.feed(REQ, b"GET /again HTTP/1.0\r\n\r\n", 5);
    conn.feed(RESP, b"HTTP/1.0 200 OK\r\n\r\nx", 6);
    conn.close(7);
    assert!(conn.next_exchange().is_none());
    assert_eq!(conn.stats().exchanges, 1);
}

#[test]
fn a_cut_short_response_at_close_is_counted_not_paired() {
    let mut conn = Connection::new(Limits::default());
    conn.feed(REQ, b"GET /a HTTP/1.1\r\n\r\n", 1);
    conn.feed(RESP, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 2);
    conn.close(3);
    assert!(conn.next_exchange().is_none());
    assert_eq!(
        conn.stats(),
        Stats {
            unpaired_requests: 1,
            incomplete_messages: 1,
            ..Stats::default()
        }
    );
}

#[test]
fn a_response_fed_before_its_request_still_pairs() {
    let mut conn = Connection::new(Limits::default());
    // The capture may deliver the answer first when the two directions come from different
    // CPUs' buffers.
    conn.feed(
        RESP,
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        20,
    );
    assert!(conn.next_exchange().is_none());
    conn.feed(REQ, b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n", 10);
    let got: Vec<_> = drain(&mut conn);
    assert_eq!(
        got.iter().map(summary).collect::<Vec<_>>(),
        [("GET", "/first", 200, &b""[..], &b"hello"[..])]
    );
    assert_eq!(got[0].request.timestamp_ns, 10);
    assert_eq!(got[0].response.timestamp_ns, 20);

    // Two responses ahead of two requests, the second without a body.
    conn.feed(
        RESP,
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nAHTTP/1.1 204 No Content\r\n\r\n",
        40,
    );
    conn.feed(
        REQ,
        b"GET /a HTTP/1.1\r\n\r\nDELETE /b HTTP/1.1\r\n\r\n",
        30,
    );
    assert_eq!(
        drain(&mut conn).iter().map(summary).collect::<Vec<_>>(),
        [
            ("GET", "/a", 200, &b""[..], &b"A"[..]),
            ("DELETE", "/b", 204, b"", b""),
        ]
    );

    // A body-less response is the last thing seen before its request: nothing is held back
    // for it, yet it must complete when the request arrives.
    conn.feed(RESP, b"HTTP/1.1 304 Not Modified\r\n\r\n", 60);
    conn.feed(REQ, b"GET /c HTTP/1.1\r\n", 50);
    assert!(
        conn.next_exchange().is_none(),
        "the request is not complete"
    );
    conn.feed(REQ, b"\r\n", 51);
    assert_eq!(
        drain(&mut conn).iter().map(summary).collect::<Vec<_>>(),
        [("GET", "/c", 304, &b""[..], &b""[..])],
        "paired before the close"
    );

    // A request body arriving after the response (a 413 sent early, say) still pairs.
    conn.feed(
        RESP,
        b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n",
        80,
    );
    conn.feed(REQ, b"POST /d HTTP/1.1\r\nContent-Length: 4\r\n\r\nda", 70);
    assert!(conn.next_exchange().is_none());
    conn.feed(REQ, b"ta", 71);
    assert_eq!(
        drain(&mut conn).iter().map(summary).collect::<Vec<_>>(),
        [("POST", "/d", 413, &b"data"[..], &b""[..])]
    );

    conn.close(90);
    assert_eq!(
        conn.stats(),
        Stats {
            exchanges: 5,
            ..Stats::default()
        }
    );
}

#[test]
fn a_response_whose_request_never_comes_is_an_error_at_close() {
    let mut conn = Connection::new(Limits::default());
    conn.feed(RESP, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", 1);
    conn.close(2);
    assert!(conn.next_exchange().is_none());
    assert_eq!(conn.last_error(), Some(ParseError::ResponseWithoutRequest));
    assert_eq!(
        conn.stats(),
        Stats {
            parse_errors: 1,
            ..Stats::default()
        }
    );
}

#[test]
fn a_gap_inside_a_known_length_body_drops_only_that_exchange() {
    let mut conn = Connection::new(Limits::default());
    conn.feed(
        REQ,
        b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n",
        1,
    );
    conn.feed(RESP, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA", 2);
    conn.feed(RESP, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 3);
    conn.gap(RESP, 4);
    conn.feed(RESP, b"hij", 4);
    conn.feed(RESP, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nC", 5);
    let got: Vec<_> = drain(&mut conn);
    assert_eq!(
        got.iter().map(summary).collect::<Vec<_>>(),
        [
            ("GET", "/1", 200, &b""[..], &b"A"[..]),
            ("GET", "/3", 200, b"", b"C"),
        ]
    );

    // On the request side, in a Content-Length body and in chunk data; a gap that ends the
    // body exactly completes it.
    conn.feed(REQ, b"POST /4 HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", 6);
    conn.gap(REQ, 7);
    conn.feed(
        REQ,
        b"POST /5 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        7,
    );
    conn.gap(REQ, 2);
    conn.feed(REQ, b"e\r\n0\r\n\r\nGET /6 HTTP/1.1\r\n\r\n", 8);
    conn.feed(
        RESP,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nF",
        9,
    );
    assert_eq!(
        drain(&mut conn).iter().map(summary).collect::<Vec<_>>(),
        [("GET", "/6", 200, &b""[..], &b"F"[..])]
    );
    conn.close(10);
    assert_eq!(
        conn.stats(),
        Stats {
            exchanges: 3,
            gaps: 3,
            damaged_exchanges: 3,
            ..Stats::default()
        }
    );
}

#[test]
fn a_gap_in_a_request_head_abandons_the_request_direction() {
    let mut conn = Connection::new(Limits::default());
    conn.feed(REQ, b"GET /ok HTTP/1.1\r\n\r\n", 1);
    conn.feed(RESP, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 2);
    conn.feed(REQ, b"GET /lost HTTP/1.1\r\nHo", 3);
    conn.gap(REQ, 5);
    // Whatever follows cannot be placed in the stream any more.
    conn.feed(REQ, b"st: x\r\n\r\nGET /later HTTP/1.1\r\n\r\n", 4);
    conn.feed(
        RESP,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        5,
    );
    let got: Vec<_> = drain(&mut conn);
    assert_eq!(
        got.iter().map(summary).collect::<Vec<_>>(),
        [("GET", "/ok", 200, &b""[..], &b""[..])]
    );
    conn.close(6);
    assert!(conn.next_exchange().is_none());
    assert_eq!(
        conn.stats(),
        Stats {
            exchanges: 1,
            gaps: 1,
            ..Stats::default()
        }
    );
}

#[test]
fn a_gap_in_a_response_head_ends_pairing_and_leaves_requests_unpaired() {
    let mut conn = Connection::new(Limits::default());
    conn.feed(
        REQ,
        b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n",
        1,
    );
    conn.feed(
        RESP,
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nAHTTP/1.1 200 O",
        2,
    );
    conn.gap(RESP, 3);
    conn.feed(
        RESP,
        b"\r\nContent-Length: 1\r\n\r\nBHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nC",
        3,
    );
    assert_eq!(
        drain(&mut conn).iter().map(summary).collect::<Vec<_>>(),
        [("GET", "/1", 200, &b""[..], &b"A"[..])]
    );
    conn.close(4);
    assert_eq!(
        conn.stats(),
        Stats {
            exchanges: 1,
            gaps: 1,
            unpaired_requests: 2,
            ..Stats::default()
        }
    );
}

#[test]
fn a_gap_between_messages_abandons_the_direction() {
    let mut conn = Connection::new(Limits::default());
    conn.feed(REQ, b"GET /1 HTTP/1.1\r\n\r\n", 1);
    conn.gap(REQ, 20);
    conn.feed(REQ, b"GET /2 HTTP/1.1\r\n\r\n", 2);
    conn.feed(
        RESP,
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA\
HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nB",
        3,
    );
    assert_eq!(
        drain(&mut conn).iter().map(summary).collect::<Vec<_>>(),
        [("GET", "/1", 200, &b""[..], &b"A"[..])],
        "the requests already known still pair"
    );
    // An empty gap loses nothing.
    conn.gap(RESP, 0);
    conn.close(4);
    assert_eq!(
        conn.stats(),
        Stats {
            exchanges: 1,
            gaps: 2,
            ..Stats::default()
        }
    );
}

#[test]
fn garbage_requests_are_parse_errors() {
    let tls_hello_with_blank_line = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\n\n";
    let cases: [&[u8]; 4] = [
        tls_hello_with_blank_line,
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
    ];
    for garbage in cases {
        let mut conn = Connection::new(Limits::default());
        conn.feed(REQ, garbage, 1);
        conn.feed(REQ, b"GET / HTTP/1.1\r\n\r\n", 2);
        conn.feed(RESP, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 3);
        conn.close(4);
        assert!(conn.next_exchange().is_none(), "{garbage:?}");
        assert!(
            matches!(conn.last_error(), Some(ParseError::InvalidHead(_))),
            "{garbage:?}: {:?}",
            conn.last_error()
        );
        assert_eq!(
            conn.stats(),
            Stats {
                parse_errors: 1,
                ..Stats::default()
            },
            "{garbage:?}"
        );
    }
}

#[test]
fn garbage_without_a_blank_line_fails_at_the_head_size_limit() {
    let limits = Limits {
        max_head_size: 256,
        ..Limits::default()
    };
    let mut conn = Connection::new(limits);
    let binary: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8 | 0x80).collect();
    for piece in binary.chunks(100) {
        conn.feed(REQ, piece, 1);
    }
    assert_eq!(
        conn.last_error(),
        Some(ParseError::HeadTooLarge { limit: 256 })
    );
    assert_eq!(conn.stats().parse_errors, 1);
}

#[test]
fn garbage_responses_and_bad_framing_are_parse_errors() {
    let cases: [(&[u8], ParseError); 4] = [
        (
            b"\x00\x01\x02 not http\r\n\r\n",
            ParseError::InvalidHead(httparse::Error::Version),
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello",
            ParseError::InvalidContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            ParseError::InvalidChunkSize,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
            ParseError::InvalidChunkEnd,
        ),
    ];
    for (response, error) in cases {
        let mut conn = Connection::new(Limits::default());
        conn.feed(REQ, b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n", 1);
        conn.feed(RESP, response, 2);
        conn.feed(RESP, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 3);
        conn.close(4);
        assert!(conn.next_exchange().is_none(), "{response:?}");
        assert_eq!(conn.last_error(), Some(error), "{response:?}");
        assert_eq!(
            conn.stats(),
            Stats {
                parse_errors: 1,
                unpaired_requests: 2,
                ..Stats::default()
            },
            "{response:?}"
        );
    }
}

#[test]
fn arbitrary_bytes_in_any_split_never_panic() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet = b"GET HTTP/1.1 200\r\n:;0aF\x00\xff Content-Length: chunked";
    for _ in 0..300 {
        let mut conn = Connection::new(Limits {
            max_body_size: 32,
            max_head_size: 128,
            max_headers: 4,
            max_pending_requests: 3,
            max_reorder_bytes: 64,
        });
        for _ in 0..20 {
            let len = (next() % 40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            match next() % 5 {
                0 | 1 => conn.feed(REQ, &bytes, next()),
                2 | 3 => conn.feed(RESP, &bytes, next()),
                _ => conn.gap(if next() % 2 == 0 { REQ } else { RESP }, next() % 50),
            }
            drain(&mut conn);
        }
        conn.close(0);
        drain(&mut conn);
    }
}

#[test]
fn exchanges_keep_the_time_of_the_first_byte_of_each_message() {
    let mut conn = Connection::new(Limits::default());
    conn.feed(REQ, b"GET /t HTTP/1.1\r\n", 100);
    conn.feed(REQ, b"Host: x\r\n\r\n", 101);
    conn.feed(RESP, b"HTTP/1.1 200 OK\r\nConte", 200);
    conn.feed(RESP, b"nt-Length: 4\r\n\r\nab", 201);
    conn.feed(RESP, b"cd", 202);
    // A message that starts in the feed that ends the previous one.
    conn.feed(
        REQ,
        b"POST /u HTTP/1.1\r\nContent-Length: 2\r\n\r\nokG",
        300,
    );
    conn.feed(REQ, b"ET /v HTTP/1.1\r\n\r\n", 301);
    conn.feed(RESP, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nH", 400);
    conn.feed(RESP, b"TTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 401);
    // Blank lines between messages are not part of the next one.
    conn.feed(REQ, b"\r\n", 500);
    conn.feed(REQ, b"GET /w HTTP/1.1\r\n\r\n", 501);
    conn.feed(RESP, b"HTTP/1.1 100 Continue\r\n\r\n", 600);
    conn.feed(RESP, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 601);
    let times: Vec<_> = drain(&mut conn)
        .iter()
        .map(|e| {
            (
                e.request.target.clone(),
                e.request.timestamp_ns,
                e.response.timestamp_ns,
            )
        })
        .collect();
    assert_eq!(
        times,
        [
            ("/t".to_owned(), 100, 200),
            ("/u".to_owned(), 300, 400),
            ("/v".to_owned(), 300, 400),
            ("/w".to_owned(), 501, 601),
        ]
    );
}

#[test]
fn any_interleaving_of_the_two_directions_gives_the_same_exchanges() {
    let requests: &[u8] = b"GET /1 HTTP/1.1\r\n\r\n\
POST /2 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
HEAD /3 HTTP/1.1\r\n\r\n\
DELETE /4 HTTP/1.1\r\n\r\n\
PUT /5 HTTP/1.1\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n\
GET /6 HTTP/1.1\r\n\r\n";
    let responses: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA\
HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nBB\r\n0\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n\
HTTP/1.1 204 No Content\r\n\r\n\
HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n\
HTTP/1.1 304 Not Modified\r\n\r\n";
    let mut in_order = Connection::new(Limits::default());
    in_order.feed(REQ, requests, 1);
    in_order.feed(RESP, responses, 1);
    let expected = drain(&mut in_order);
    assert_eq!(
        expected.iter().map(summary).collect::<Vec<_>>(),
        [
            ("GET", "/1", 200, &b""[..], &b"A"[..]),
            ("POST", "/2", 201, b"abc", b"BB"),
            ("HEAD", "/3", 200, b"", b""),
            ("DELETE", "/4", 204, b"", b""),
            ("PUT", "/5", 200, b"hi", b""),
            ("GET", "/6", 304, b"", b""),
        ]
    );

    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound as u64) as usize
    };
    for round in 0..500 {
        let mut conn = Connection::new(Limits::default());
        let (mut req_at, mut resp_at) = (0, 0);
        // Responses first in a third of the rounds, so whole answers wait for their requests.
        if round % 3 == 0 {
            conn.feed(RESP, responses, 1);
            resp_at = responses.len();
        }
        while req_at < requests.len() || resp_at < responses.len() {
            let take = 1 + next(30);
            if resp_at == responses.len() || (req_at < requests.len() && next(2) == 0) {
                let end = (req_at + take).min(requests.len());
                conn.feed(REQ, &requests[req_at..end], 1);
                req_at = end;
            } else {
                let end = (resp_at + take).min(responses.len());
                conn.feed(RESP, &responses[resp_at..end], 1);
                resp_at = end;
            }
        }
        assert_eq!(drain(&mut conn), expected, "round {round}");
        conn.close(2);
        assert_eq!(conn.stats(), in_order.stats(), "round {round}");
    }
}

#[test]
fn an_early_answer_to_an_unfinished_request_is_recorded_at_close() {
    let mut conn = Connection::new(Limits::default());
    conn.feed(
        REQ,
        b"POST /huge HTTP/1.1\r\nContent-Length: 1000\r\n\r\nabc",
        1,
    );
    conn.feed(
        RESP,
        b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        2,
    );
    assert!(conn.next_exchange().is_none());
    conn.close(3);
    let exchanges = drain(&mut conn);
    assert_eq!(
        exchanges.iter().map(summary).collect::<Vec<_>>(),
        [("POST", "/huge", 413, &b"abc"[..], &b""[..])]
    );
    assert!(
        exchanges[0].request.body_truncated,
        "the body was cut short"
    );
    assert_eq!(exchanges[0].request.body_wire_size, 3);
    assert_eq!(
        conn.stats(),
        Stats {
            exchanges: 1,
            incomplete_messages: 1,
            ..Stats::default()
        }
    );
}
