//! Requests alone, without their responses: what a mock server reads from a client. The same
//! per-direction parser as capture, so a replayed request is decoded exactly like the recorded
//! one (de-chunked, decompressed).

use super::{
    Direction, Limits, ParseError, Request,
    connection::into_request,
    head,
    parser::{Event, Parser},
};

/// Complete requests from one client byte stream.
#[derive(Debug)]
pub struct RequestReader {
    parser: Parser,
    error: Option<ParseError>,
}

impl RequestReader {
    pub fn new(limits: Limits) -> Self {
        Self {
            parser: Parser::new(Direction::Request, limits),
            error: None,
        }
    }

    /// Feeds client bytes; returns the requests they completed, in order.
    pub fn feed(&mut self, mut input: &[u8], ts_ns: u64) -> Vec<Request> {
        let mut out = Vec::new();
        while self.error.is_none() {
            let (taken, event) = self.parser.advance(input, ts_ns);
            input = input.get(taken..).unwrap_or_default();
            match event {
                Event::NeedMore => break,
                Event::Head(h) => match head::request_framing(&h) {
                    Ok(framing) => {
                        let coding = h.coding();
                        self.parser.start_body(h, framing, coding);
                    }
                    Err(e) => self.fail(e),
                },
                Event::Done(message) => out.push(into_request(message)),
                Event::Error(e) => self.fail(e),
            }
        }
        out
    }

    fn fail(&mut self, error: ParseError) {
        self.parser.die();
        self.error = Some(error);
    }

    /// Why reading stopped, if it did.
    pub fn error(&self) -> Option<ParseError> {
        self.error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_pipelined_requests_with_bodies() {
        let mut reader = RequestReader::new(Limits::default());
        let wire = b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcPUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n";
        let mut requests = Vec::new();
        for byte in wire.iter() {
            requests.extend(reader.feed(std::slice::from_ref(byte), 1));
        }
        let seen: Vec<(&str, &str, &[u8])> = requests
            .iter()
            .map(|r| (r.method.as_str(), r.target.as_str(), r.body.as_slice()))
            .collect();
        assert_eq!(
            seen,
            [
                ("GET", "/a?x=1", &b""[..]),
                ("POST", "/b", b"abc"),
                ("PUT", "/c", b"hi")
            ]
        );
        assert!(reader.error().is_none());
    }

    #[test]
    fn garbage_stops_reading() {
        let mut reader = RequestReader::new(Limits::default());
        assert!(reader.feed(b"\x16\x03\x01 not http\r\n\r\n", 1).is_empty());
        assert!(reader.error().is_some());
    }
}
