//! Message heads: where a header block ends, what it says, and how the body that follows is
//! framed (RFC 9112 section 6).

use super::{Header, ParseError};

/// The first line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartLine {
    Request { method: String, target: String },
    Response { status_code: u16, reason: String },
}

/// A parsed, owned header block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub start: StartLine,
    pub version_minor: u8,
    pub headers: Vec<Header>,
}

/// How the body after a head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body at all.
    Empty,
    Length(u64),
    Chunked,
    /// Everything until the connection closes (responses only).
    UntilClose,
}

/// Content codings this crate decodes; anything else is stored as framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Identity,
    Gzip,
    /// zlib-wrapped or raw deflate; told apart by the first two bytes.
    Deflate,
}

/// What a response's framing depends on in the request it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct RequestKind {
    pub head: bool,
    pub connect: bool,
}

/// The end of the header block in `buf` (the index after its blank line), looking only at line
/// feeds at or after `from` so that feeding a head byte by byte stays linear.
///
/// The block ends at an empty line: LF LF or LF CR LF. `buf` never starts with a line end
/// because the parser skips blank lines between messages.
pub(crate) fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        let offset = buf.get(at..)?.iter().position(|&b| b == b'\n')?;
        let lf = at + offset;
        let before = |back: usize| lf.checked_sub(back).and_then(|i| buf.get(i)).copied();
        if before(1) == Some(b'\n') || (before(1) == Some(b'\r') && before(2) == Some(b'\n')) {
            return Some(lf + 1);
        }
        at = lf + 1;
    }
}

/// Lenient where real peers deviate harmlessly; the framing headers are still checked
/// strictly by the callers.
fn parser_config() -> httparse::ParserConfig {
    let mut config = httparse::ParserConfig::default();
    config
        .allow_multiple_spaces_in_request_line_delimiters(true)
        .allow_multiple_spaces_in_response_status_delimiters(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .allow_spaces_after_header_name_in_responses(true);
    config
}

/// httparse needs header slots up front; the number of line feeds bounds the fields.
fn header_slots(buf: &[u8], max_headers: usize) -> Vec<httparse::Header<'static>> {
    let lines = buf.iter().filter(|&&b| b == b'\n').count();
    vec![httparse::EMPTY_HEADER; lines.clamp(1, max_headers.max(1))]
}

fn trim_ows(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    value.get(start..end).unwrap_or_default()
}

fn owned_headers(parsed: &[httparse::Header<'_>]) -> Vec<Header> {
    parsed
        .iter()
        .map(|h| Header {
            name: h.name.as_bytes().to_vec(),
            value: trim_ows(h.value).to_vec(),
        })
        .collect()
}

/// Parses a complete request head (as delimited by [`find_head_end`]).
pub(crate) fn parse_request(buf: &[u8], max_headers: usize) -> Result<Head, ParseError> {
    let mut slots = header_slots(buf, max_headers);
    let mut request = httparse::Request::new(&mut slots);
    let status = parser_config()
        .parse_request(&mut request, buf)
        .map_err(ParseError::InvalidHead)?;
    if status.is_partial() {
        // The blank line was found, so httparse disagreeing means the head is malformed.
        return Err(ParseError::InvalidHead(httparse::Error::NewLine));
    }
    Ok(Head {
        start: StartLine::Request {
            method: request.method.unwrap_or_default().to_owned(),
            target: request.path.unwrap_or_default().to_owned(),
        },
        version_minor: request.version.unwrap_or(1),
        headers: owned_headers(request.headers),
    })
}

/// Parses a complete response head (as delimited by [`find_head_end`]).
pub(crate) fn parse_response(buf: &[u8], max_headers: usize) -> Result<Head, ParseError> {
    let mut slots = header_slots(buf, max_headers);
    let mut response = httparse::Response::new(&mut slots);
    let status = parser_config()
        .parse_response(&mut response, buf)
        .map_err(ParseError::InvalidHead)?;
    if status.is_partial() {
        return Err(ParseError::InvalidHead(httparse::Error::NewLine));
    }
    Ok(Head {
        start: StartLine::Response {
            status_code: response.code.unwrap_or_default(),
            reason: reason_phrase(buf),
        },
        version_minor: response.version.unwrap_or(1),
        headers: owned_headers(response.headers),
    })
}

/// The reason phrase taken from the status line itself: httparse replaces one with non-ASCII
/// bytes by an empty string, while a recording should keep what was sent.
fn reason_phrase(buf: &[u8]) -> String {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let skip_spaces = |s: &[u8]| -> usize { s.iter().take_while(|&&b| b == b' ').count() };
    // "HTTP/1.x" SP+ 3DIGIT [SP+ reason]
    let after_version = line.get(8..).unwrap_or_default();
    let at_code = after_version
        .get(skip_spaces(after_version)..)
        .unwrap_or_default();
    let after_code = at_code.get(3..).unwrap_or_default();
    let reason = after_code
        .get(skip_spaces(after_code)..)
        .unwrap_or_default();
    String::from_utf8_lossy(reason).into_owned()
}

impl Head {
    pub fn status_code(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { status_code, .. } => Some(status_code),
            StartLine::Request { .. } => None,
        }
    }

    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| h.value.as_slice())
    }

    /// Whether any field of that name is present.
    pub fn has(&self, name: &str) -> bool {
        self.values(name).next().is_some()
    }

    /// The comma-separated list elements of every field of that name, lowercased, parameters
    /// (after ';') dropped, empty elements skipped.
    fn tokens(&self, name: &str) -> Vec<Vec<u8>> {
        self.values(name)
            .flat_map(|value| value.split(|&b| b == b','))
            .map(|element| {
                let element = element.split(|&b| b == b';').next().unwrap_or_default();
                trim_ows(element).to_ascii_lowercase()
            })
            .filter(|token| !token.is_empty())
            .collect()
    }

    /// Content-Length, if any: every value (fields and list elements) must be the same
    /// decimal number, or the framing is ambiguous.
    fn content_length(&self) -> Result<Option<u64>, ParseError> {
        let mut length = None;
        for element in self
            .values("content-length")
            .flat_map(|v| v.split(|&b| b == b','))
        {
            let digits = trim_ows(element);
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return Err(ParseError::InvalidContentLength);
            }
            let value = std::str::from_utf8(digits)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(ParseError::InvalidContentLength)?;
            if length.is_some_and(|seen| seen != value) {
                return Err(ParseError::InvalidContentLength);
            }
            length = Some(value);
        }
        Ok(length)
    }

    /// `None` without a Transfer-Encoding, else whether chunked is the final coding.
    fn chunked(&self) -> Option<bool> {
        let codings = self.tokens("transfer-encoding");
        codings.last().map(|last| last == b"chunked")
    }

    /// The content coding to undo, when it is a single one this crate knows.
    pub fn coding(&self) -> Coding {
        let codings: Vec<Vec<u8>> = self
            .tokens("content-encoding")
            .into_iter()
            .filter(|c| c != b"identity")
            .collect();
        match codings.as_slice() {
            [only] if only == b"gzip" || only == b"x-gzip" => Coding::Gzip,
            [only] if only == b"deflate" => Coding::Deflate,
            _ => Coding::Identity,
        }
    }

    /// Whether the request asks to switch protocols (the answer decides whether the bytes
    /// after it are still HTTP/1).
    pub fn wants_upgrade(&self) -> bool {
        self.has("upgrade")
    }
}

/// Body framing of a request: chunked wins over Content-Length; no length means no body.
pub(crate) fn request_framing(head: &Head) -> Result<Framing, ParseError> {
    match head.chunked() {
        Some(true) => Ok(Framing::Chunked),
        // The server cannot know where such a body ends either (RFC 9112 6.3 point 4).
        Some(false) => Err(ParseError::UnframedRequestBody),
        None => Ok(match head.content_length()? {
            None | Some(0) => Framing::Empty,
            Some(length) => Framing::Length(length),
        }),
    }
}

/// Body framing of a response, which depends on the request method and the status.
pub(crate) fn response_framing(head: &Head, request: RequestKind) -> Result<Framing, ParseError> {
    let status = head.status_code().unwrap_or_default();
    let no_body = request.head
        || (100..200).contains(&status)
        || status == 204
        || status == 304
        || (request.connect && (200..300).contains(&status));
    if no_body {
        return Ok(Framing::Empty);
    }
    match head.chunked() {
        Some(true) => Ok(Framing::Chunked),
        Some(false) => Ok(Framing::UntilClose),
        None => Ok(match head.content_length()? {
            None => Framing::UntilClose,
            Some(0) => Framing::Empty,
            Some(length) => Framing::Length(length),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> Head {
        parse_request(text.as_bytes(), 64).expect("valid head")
    }

    fn response(text: &str) -> Head {
        parse_response(text.as_bytes(), 64).expect("valid head")
    }

    #[test]
    fn head_end_is_found_with_crlf_bare_lf_and_mixed_endings() {
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody", 0),
            Some(24)
        );
        assert_eq!(find_head_end(b"GET / HTTP/1.1\nA: b\n\nbody", 0), Some(21));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\nA: b\r\n\n", 0), Some(22));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nA: b\n\r\n", 0), Some(23));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nA: b\r\n", 0), None);
        // Scanning from the middle still sees the line feed before `from`.
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\n", 17), Some(18));
        assert_eq!(find_head_end(b"", 5), None);
    }

    #[test]
    fn headers_keep_case_order_and_duplicates_and_lose_ows() {
        let head = request("GET /x HTTP/1.1\r\nHost: a\r\nX-Dup:  1 \t\r\nx-dup:2\r\n\r\n");
        let names: Vec<&[u8]> = head.headers.iter().map(|h| h.name.as_slice()).collect();
        assert_eq!(names, [&b"Host"[..], b"X-Dup", b"x-dup"]);
        assert_eq!(head.headers[1].value, b"1");
        assert_eq!(head.headers[2].value, b"2");
        assert_eq!(head.method(), Some("GET"));
    }

    #[test]
    fn reason_phrase_keeps_non_ascii_bytes() {
        let head = response("HTTP/1.1 404 Nicht gefunden \u{e4}\r\n\r\n");
        assert_eq!(
            head.start,
            StartLine::Response {
                status_code: 404,
                reason: "Nicht gefunden \u{e4}".into()
            }
        );
        let head = response("HTTP/1.0 200\r\n\r\n");
        assert_eq!(
            head.start,
            StartLine::Response {
                status_code: 200,
                reason: String::new()
            }
        );
        assert_eq!(head.version_minor, 0);
    }

    #[test]
    fn too_many_headers_is_an_error() {
        let mut text = String::from("GET / HTTP/1.1\r\n");
        for i in 0..10 {
            text.push_str(&format!("H{i}: v\r\n"));
        }
        text.push_str("\r\n");
        assert_eq!(
            parse_request(text.as_bytes(), 5),
            Err(ParseError::InvalidHead(httparse::Error::TooManyHeaders))
        );
        assert!(parse_request(text.as_bytes(), 10).is_ok());
    }

    #[test]
    fn request_framing_rules() {
        let framing = |text: &str| request_framing(&request(text));
        assert_eq!(framing("GET / HTTP/1.1\r\n\r\n"), Ok(Framing::Empty));
        assert_eq!(
            framing("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            Ok(Framing::Empty)
        );
        assert_eq!(
            framing("POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n"),
            Ok(Framing::Length(12))
        );
        assert_eq!(
            framing("POST / HTTP/1.1\r\nContent-Length: 7, 7\r\ncontent-length: 7\r\n\r\n"),
            Ok(Framing::Length(7))
        );
        assert_eq!(
            framing("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            framing(
                "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: Chunked\r\n\r\n"
            ),
            Ok(Framing::Chunked)
        );
        for bad in ["5, 6", "-1", "+5", "0x10", "", "99999999999999999999999"] {
            let text = format!("POST / HTTP/1.1\r\nContent-Length: {bad}\r\n\r\n");
            assert_eq!(
                framing(&text),
                Err(ParseError::InvalidContentLength),
                "{bad}"
            );
        }
        assert_eq!(
            framing("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Err(ParseError::UnframedRequestBody)
        );
    }

    #[test]
    fn response_framing_rules() {
        let get = RequestKind::default();
        let framing = |text: &str, kind| response_framing(&response(text), kind);
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\n\r\n", get),
            Ok(Framing::UntilClose)
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", get),
            Ok(Framing::Length(3))
        );
        let head_request = RequestKind {
            head: true,
            connect: false,
        };
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", head_request),
            Ok(Framing::Empty)
        );
        for status in [
            "204 No Content",
            "304 Not Modified",
            "100 Continue",
            "101 Switching",
        ] {
            let text = format!("HTTP/1.1 {status}\r\nContent-Length: 3\r\n\r\n");
            assert_eq!(framing(&text, get), Ok(Framing::Empty), "{status}");
        }
        let connect = RequestKind {
            head: false,
            connect: true,
        };
        assert_eq!(
            framing("HTTP/1.1 200 Connection established\r\n\r\n", connect),
            Ok(Framing::Empty)
        );
        assert_eq!(
            framing("HTTP/1.1 407 Auth\r\nContent-Length: 2\r\n\r\n", connect),
            Ok(Framing::Length(2))
        );
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                get
            ),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", get),
            Ok(Framing::UntilClose)
        );
    }

    #[test]
    fn content_codings() {
        let coding = |value: &str| {
            response(&format!(
                "HTTP/1.1 200 OK\r\nContent-Encoding: {value}\r\n\r\n"
            ))
            .coding()
        };
        assert_eq!(coding("gzip"), Coding::Gzip);
        assert_eq!(coding("X-GZIP"), Coding::Gzip);
        assert_eq!(coding("deflate"), Coding::Deflate);
        assert_eq!(coding("identity, gzip"), Coding::Gzip);
        assert_eq!(coding("br"), Coding::Identity);
        assert_eq!(coding("deflate, gzip"), Coding::Identity);
        assert_eq!(
            response("HTTP/1.1 200 OK\r\n\r\n").coding(),
            Coding::Identity
        );
    }
}
