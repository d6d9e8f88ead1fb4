//! Complete client requests: their bytes, the fields they are matched by, a one-line summary,
//! their lifetime, and how far the server's answer will run.

use super::messages::{Frontend, Untyped, Value, b64, lossy};
use crate::dependency::Lifetime;

/// How the server's answer to a request ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    /// One byte answering SSLRequest (`N`/`S`) or GSSENCRequest (`N`/`G`).
    Negotiation,
    /// Start-up and authentication: until the server waits for the client again,
    /// ReadyForQuery, or an ErrorResponse.
    Auth,
    /// Until ReadyForQuery.
    Ready,
    /// After Flush: until this many messages got their final answer, or an ErrorResponse.
    Answers(usize),
    /// No answer at all.
    Nothing,
}

/// A request the client finished sending.
#[derive(Debug)]
pub(super) struct Request {
    pub(super) bytes: Vec<u8>,
    pub(super) fields: Vec<(String, String)>,
    pub(super) summary: String,
    pub(super) lifetime: Lifetime,
    pub(super) expect: Expect,
    /// An extended-query batch: a COPY it starts ends with an extra Sync (see [`super`]).
    pub(super) extended: bool,
    pub(super) first_ts: u64,
    pub(super) last_ts: u64,
}

impl Request {
    fn new(bytes: Vec<u8>, first_ts: u64, last_ts: u64) -> Self {
        Self {
            bytes,
            fields: Vec::new(),
            summary: String::new(),
            lifetime: Lifetime::Session,
            expect: Expect::Nothing,
            extended: false,
            first_ts,
            last_ts,
        }
    }
}

fn field(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_string(), value.into())
}

/// Longest summary, in characters; the rest is elided.
const SUMMARY_CHARS: usize = 200;

fn clip(text: String) -> String {
    match text.char_indices().nth(SUMMARY_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// SQL with whitespace runs collapsed to one space and the ends trimmed.
pub(super) fn normalize_sql(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Queries drivers and pools issue while setting a connection up or checking it: the same on
/// every connection, so their mocks are never consumed.
pub(super) fn is_session_query(normalized: &str) -> bool {
    let query = normalized
        .trim_end_matches(|c: char| c == ';' || c.is_whitespace())
        .to_ascii_lowercase();
    if query.contains(';') {
        // Several statements: the others may be anything.
        return false;
    }
    query.starts_with("set ")
        || query.starts_with("show ")
        || matches!(
            query.as_str(),
            "select 1"
                | "select version()"
                | "select pg_catalog.version()"
                | "discard all"
                | "reset all"
        )
}

/// Start-up parameters left out of the fields: they depend on the machine, not on the
/// service (JDBC sends the JVM's time zone), so replay on another host must still match.
const VOLATILE_STARTUP_PARAMS: [&str; 1] = ["timezone"];

pub(super) fn untyped(message: Untyped, bytes: Vec<u8>, first_ts: u64, last_ts: u64) -> Request {
    let mut request = Request::new(bytes, first_ts, last_ts);
    match message {
        Untyped::SslRequest => {
            request.fields = vec![field("type", "ssl_request")];
            request.summary = "SSLRequest".to_string();
            request.expect = Expect::Negotiation;
        }
        Untyped::GssEncRequest => {
            request.fields = vec![field("type", "gssenc_request")];
            request.summary = "GSSENCRequest".to_string();
            request.expect = Expect::Negotiation;
        }
        Untyped::CancelRequest => {
            // Process id and key are random per connection: not matched on.
            request.fields = vec![field("type", "cancel")];
            request.summary = "CancelRequest".to_string();
        }
        Untyped::Startup {
            minor_version,
            mut params,
        } => {
            let get = |name: &str| {
                params
                    .iter()
                    .find(|(key, _)| key == name)
                    .map(|(_, value)| value.clone())
            };
            let user = get("user").unwrap_or_default();
            // The server defaults the database to the user name: both spellings mean the same.
            let database = get("database").unwrap_or_else(|| user.clone());
            request.summary = format!("startup user={user} database={database}");
            request.fields = vec![
                field("type", "startup"),
                field("user", user),
                field("database", database),
            ];
            if minor_version != 0 {
                request
                    .fields
                    .push(field("protocol", format!("3.{minor_version}")));
            }
            params.retain(|(key, _)| {
                key != "user"
                    && key != "database"
                    && !VOLATILE_STARTUP_PARAMS.contains(&key.to_ascii_lowercase().as_str())
            });
            params.sort();
            request.fields.extend(params);
            request.expect = Expect::Auth;
        }
    }
    request
}

pub(super) fn simple_query(sql: &str, bytes: Vec<u8>, first_ts: u64, last_ts: u64) -> Request {
    let query = normalize_sql(sql);
    let mut request = Request::new(bytes, first_ts, last_ts);
    request.lifetime = if is_session_query(&query) {
        Lifetime::Session
    } else {
        Lifetime::PerTest
    };
    request.summary = clip(query.clone());
    request.fields = vec![field("type", "query"), field("query", query)];
    request.expect = Expect::Ready;
    request
}

pub(super) fn function_call(
    oid: i32,
    args: &[Value],
    bytes: Vec<u8>,
    first_ts: u64,
    last_ts: u64,
) -> Request {
    let mut request = Request::new(bytes, first_ts, last_ts);
    request.fields = vec![field("type", "function_call")];
    function_fields(&mut request.fields, oid, args);
    request.summary = format!("function call {oid}");
    request.lifetime = Lifetime::PerTest;
    request.expect = Expect::Ready;
    request
}

fn function_fields(fields: &mut Vec<(String, String)>, oid: i32, args: &[Value]) {
    fields.push(field("function", oid.to_string()));
    for (index, arg) in args.iter().enumerate() {
        fields.push(field(&format!("function.arg.{}", index + 1), arg.render()));
    }
}

pub(super) fn terminate(bytes: Vec<u8>, first_ts: u64, last_ts: u64) -> Request {
    let mut request = Request::new(bytes, first_ts, last_ts);
    request.fields = vec![field("type", "terminate")];
    request.summary = "Terminate".to_string();
    request
}

/// A `p` message, classified by content alone so the mock server (which never sees what the
/// server asked for) derives the same fields as the recording.
pub(super) fn password(body: &[u8], bytes: Vec<u8>, first_ts: u64, last_ts: u64) -> Request {
    let mut request = Request::new(bytes, first_ts, last_ts);
    request.fields = vec![field("type", "password")];
    request.expect = Expect::Auth;
    if let Some((mechanism, data)) = sasl_initial(body) {
        request.summary = format!("SASLInitialResponse {mechanism}");
        request.fields.push(field("sasl.mechanism", mechanism));
        if let Some(data) = data {
            request.fields.push(field("sasl.data", b64(data)));
        }
    } else if let Some(text) = body.strip_suffix(&[0]).filter(|text| !text.contains(&0)) {
        match text.strip_prefix(b"md5") {
            Some(hash) if hash.len() == 32 && hash.iter().all(u8::is_ascii_hexdigit) => {
                // Deterministic: the mock replays the recorded salt.
                request.summary = "password (md5)".to_string();
                request.fields.push(field("md5", lossy(hash)));
            }
            _ => {
                // The secret stays in the raw bytes only: fields surface in mismatch reports.
                request.summary = "password (cleartext)".to_string();
                request.fields.push(field("auth", "cleartext"));
            }
        }
    } else {
        request.summary = "SASLResponse".to_string();
        request.fields.push(field("sasl.data", b64(body)));
    }
    request
}

/// SASLInitialResponse: a mechanism name, then an int32 length (-1: no data) of the rest.
fn sasl_initial(body: &[u8]) -> Option<(String, Option<&[u8]>)> {
    let nul = body.iter().position(|&b| b == 0)?;
    let (name, rest) = (body.get(..nul)?, body.get(nul + 1..)?);
    let is_mechanism = !name.is_empty()
        && name
            .iter()
            .all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !is_mechanism {
        return None;
    }
    let len = super::messages::be_i32(rest)?;
    let data = rest.get(4..)?;
    match usize::try_from(len) {
        Ok(len) if len == data.len() => Some((lossy(name), Some(data))),
        Err(_) if len == -1 && data.is_empty() => Some((lossy(name), None)),
        _ => None,
    }
}

/// How an extended-query batch ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BatchEnd {
    Sync,
    Flush,
    /// A simple query or function call sent before any Sync: its ReadyForQuery ends all.
    Ready,
}

/// Extended-query messages collected until Sync or Flush.
#[derive(Debug)]
pub(super) struct Batch {
    pub(super) bytes: Vec<u8>,
    first_ts: u64,
    last_ts: u64,
    fields: Vec<(String, String)>,
    /// Messages the server answers with exactly one final message.
    answers: usize,
    named_parse: bool,
    parses: usize,
    session_parses: usize,
    summary: Option<String>,
    /// The summary already shows the parameters of a Bind (only the first one's are shown).
    summary_has_params: bool,
    kinds: Vec<&'static str>,
}

impl Batch {
    pub(super) fn new(first_ts: u64) -> Self {
        Self {
            bytes: Vec::new(),
            first_ts,
            last_ts: first_ts,
            fields: vec![field("type", "extended")],
            answers: 0,
            named_parse: false,
            parses: 0,
            session_parses: 0,
            summary: None,
            summary_has_params: false,
            kinds: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, raw: &[u8], message: &Frontend, last_ts: u64) {
        self.bytes.extend_from_slice(raw);
        self.last_ts = last_ts;
        match message {
            Frontend::Parse { name, query } => {
                let query = normalize_sql(query);
                self.answers += 1;
                self.parses += 1;
                self.session_parses += usize::from(is_session_query(&query));
                if self.summary.is_none() {
                    self.summary = Some(query.clone());
                }
                self.fields.push(field("parse.query", query));
                if !name.is_empty() {
                    self.named_parse = true;
                    self.fields.push(field("parse.name", name.clone()));
                }
                self.kinds.push("Parse");
            }
            Frontend::Bind {
                portal,
                statement,
                params,
                result_formats,
            } => {
                self.answers += 1;
                if !portal.is_empty() {
                    self.fields.push(field("bind.portal", portal.clone()));
                }
                if !statement.is_empty() {
                    self.fields.push(field("bind.statement", statement.clone()));
                }
                let rendered: Vec<String> = params.iter().map(Value::render).collect();
                for (index, value) in rendered.iter().enumerate() {
                    self.fields
                        .push(field(&format!("bind.param.{}", index + 1), value.clone()));
                }
                // Binary results change the answer's bytes, so they are part of the request.
                if result_formats.iter().any(|&format| format != 0) {
                    let formats: Vec<String> =
                        result_formats.iter().map(ToString::to_string).collect();
                    self.fields.push(field("bind.results", formats.join(",")));
                }
                let head = self
                    .summary
                    .take()
                    .unwrap_or_else(|| format!("execute {statement}"));
                self.summary = Some(if rendered.is_empty() || self.summary_has_params {
                    head
                } else {
                    self.summary_has_params = true;
                    format!("{head} [{}]", rendered.join(", "))
                });
                self.kinds.push("Bind");
            }
            Frontend::Describe { kind, name } => {
                self.answers += 1;
                self.fields
                    .push(field("describe", format!("{kind}:{name}")));
                self.kinds.push("Describe");
            }
            Frontend::Execute { portal, max_rows } => {
                self.answers += 1;
                self.fields.push(field("execute", portal.clone()));
                if *max_rows != 0 {
                    self.fields
                        .push(field("execute.max_rows", max_rows.to_string()));
                }
                self.kinds.push("Execute");
            }
            Frontend::Close { kind, name } => {
                self.answers += 1;
                self.fields.push(field("close", format!("{kind}:{name}")));
                self.kinds.push("Close");
            }
            Frontend::Sync => {
                self.fields.push(field("end", "sync"));
                self.kinds.push("Sync");
            }
            Frontend::Flush => {
                self.fields.push(field("end", "flush"));
                self.kinds.push("Flush");
            }
            Frontend::Query(sql) => {
                let query = normalize_sql(sql);
                if self.summary.is_none() {
                    self.summary = Some(query.clone());
                }
                self.fields.push(field("query", query));
                self.kinds.push("Query");
            }
            Frontend::FunctionCall { oid, args } => {
                function_fields(&mut self.fields, *oid, args);
                self.kinds.push("FunctionCall");
            }
            // Copy messages inside an unfinished batch: kept as bytes, not matched on.
            Frontend::CopyData
            | Frontend::CopyDone
            | Frontend::CopyFail
            | Frontend::Terminate
            | Frontend::Password(_) => {}
        }
    }

    pub(super) fn finish(self, end: BatchEnd) -> Request {
        let lifetime = if self.named_parse {
            // Creates a prepared statement the connection's later batches rely on.
            Lifetime::Connection
        } else if self.parses > 0 && self.session_parses == self.parses {
            Lifetime::Session
        } else {
            Lifetime::PerTest
        };
        let summary = self.summary.unwrap_or_else(|| self.kinds.join(" "));
        Request {
            bytes: self.bytes,
            fields: self.fields,
            summary: clip(summary),
            lifetime,
            expect: match end {
                BatchEnd::Flush => Expect::Answers(self.answers),
                BatchEnd::Sync | BatchEnd::Ready => Expect::Ready,
            },
            extended: true,
            first_ts: self.first_ts,
            last_ts: self.last_ts,
        }
    }
}

/// Client COPY messages (and the Sync/Flush the server ignores among them).
#[derive(Debug)]
pub(super) struct CopySegment {
    pub(super) bytes: Vec<u8>,
    pub(super) first_ts: u64,
    pub(super) last_ts: u64,
    /// The COPY came from an extended batch: libpq follows CopyDone with a Sync.
    pub(super) extended: bool,
    /// CopyDone or CopyFail arrived.
    pub(super) ended: bool,
    failed: bool,
}

impl CopySegment {
    pub(super) fn new(first_ts: u64, extended: bool) -> Self {
        Self {
            bytes: Vec::new(),
            first_ts,
            last_ts: first_ts,
            extended,
            ended: false,
            failed: false,
        }
    }

    pub(super) fn push(&mut self, raw: &[u8], message: &Frontend, last_ts: u64) {
        self.bytes.extend_from_slice(raw);
        self.last_ts = last_ts;
        match message {
            Frontend::CopyDone => self.ended = true,
            Frontend::CopyFail => {
                self.ended = true;
                self.failed = true;
            }
            _ => {}
        }
    }

    /// A segment with no request to join (only in [`crate::dependency::Mode::RequestsOnly`]
    /// or after a lost request) becomes a request of its own.
    pub(super) fn into_request(self) -> Request {
        let end = if self.failed { "fail" } else { "done" };
        let mut request = Request::new(self.bytes, self.first_ts, self.last_ts);
        request.summary = format!("COPY data ({} bytes, {end})", request.bytes.len());
        request.fields = vec![field("type", "copy"), field("copy.end", end)];
        request.lifetime = Lifetime::PerTest;
        request
    }
}
