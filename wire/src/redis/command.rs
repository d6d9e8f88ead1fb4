//! Client commands: their arguments (from a multibulk array or an inline line), and what the
//! mock store needs from them: match fields, a summary line and a lifetime.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::malformed;
use crate::dependency::{DependencyError, Lifetime};

/// Longest inline command line (Redis `PROTO_INLINE_MAX_SIZE`).
pub(super) const MAX_INLINE: usize = 64 * 1024;
/// Summaries are cut to this many characters.
const SUMMARY_CHARS: usize = 120;

/// The arguments of a complete multibulk frame (already checked by the scanner to be an array
/// of bulk strings); empty for `*0` and `*-1`, which Redis ignores without answering.
pub(super) fn multibulk_args(frame: &[u8]) -> Result<Vec<Vec<u8>>, DependencyError> {
    let truncated = || malformed("truncated command".into());
    let mut args = Vec::new();
    let (count, mut pos) = length_line(frame, 0).ok_or_else(truncated)?;
    for _ in 0..count.max(0) {
        let (len, data) = length_line(frame, pos).ok_or_else(truncated)?;
        let len = usize::try_from(len).map_err(|_| truncated())?;
        let arg = frame.get(data..data + len).ok_or_else(truncated)?;
        args.push(arg.to_vec());
        pos = data + len + 2;
    }
    Ok(args)
}

/// The number on the `*`/`$` line at `pos` and the offset after the line.
fn length_line(frame: &[u8], pos: usize) -> Option<(i64, usize)> {
    let rest = frame.get(pos + 1..)?;
    let end = rest.windows(2).position(|pair| pair == b"\r\n")?;
    let number = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
    Some((number, pos + 1 + end + 2))
}

/// Splits an inline command line the way Redis does: words separated by whitespace, with
/// "double quotes" (C escapes, `\xHH`) and 'single quotes' (only `\'`) allowed anywhere in a
/// word. An empty result means a blank line, which Redis ignores.
pub(super) fn inline_args(line: &[u8]) -> Result<Vec<Vec<u8>>, DependencyError> {
    let unbalanced = || malformed("unbalanced quotes in inline command".into());
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while line.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
            i += 1;
        }
        if i >= line.len() {
            return Ok(args);
        }
        let mut word = Vec::new();
        loop {
            match line.get(i) {
                None => break,
                Some(b) if b.is_ascii_whitespace() => break,
                Some(b'"') => {
                    i += 1;
                    loop {
                        match *line.get(i).ok_or_else(unbalanced)? {
                            b'"' => break,
                            b'\\' => {
                                let escaped = *line.get(i + 1).ok_or_else(unbalanced)?;
                                let hex = line.get(i + 2..i + 4).and_then(hex_byte);
                                match (escaped, hex) {
                                    (b'x', Some(byte)) => {
                                        word.push(byte);
                                        i += 2;
                                    }
                                    (b'n', _) => word.push(b'\n'),
                                    (b'r', _) => word.push(b'\r'),
                                    (b't', _) => word.push(b'\t'),
                                    (b'b', _) => word.push(0x08),
                                    (b'a', _) => word.push(0x07),
                                    (other, _) => word.push(other),
                                }
                                i += 1;
                            }
                            other => word.push(other),
                        }
                        i += 1;
                    }
                    i += 1;
                    // A closing quote must end the word.
                    if line.get(i).is_some_and(|b| !b.is_ascii_whitespace()) {
                        return Err(unbalanced());
                    }
                }
                Some(b'\'') => {
                    i += 1;
                    loop {
                        match *line.get(i).ok_or_else(unbalanced)? {
                            b'\'' => break,
                            b'\\' if line.get(i + 1) == Some(&b'\'') => {
                                word.push(b'\'');
                                i += 1;
                            }
                            other => word.push(other),
                        }
                        i += 1;
                    }
                    i += 1;
                    if line.get(i).is_some_and(|b| !b.is_ascii_whitespace()) {
                        return Err(unbalanced());
                    }
                }
                Some(&other) => {
                    word.push(other);
                    i += 1;
                }
            }
        }
        args.push(word);
    }
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    std::str::from_utf8(pair)
        .ok()
        .and_then(|text| u8::from_str_radix(text, 16).ok())
}

/// The command name, upper-cased (Redis commands are case-insensitive).
pub(super) fn name(args: &[Vec<u8>]) -> Vec<u8> {
    args.first()
        .map(|name| name.to_ascii_uppercase())
        .unwrap_or_default()
}

/// Whether `args[index]` is `word`, ignoring case.
pub(super) fn arg_is(args: &[Vec<u8>], index: usize, word: &str) -> bool {
    args.get(index)
        .is_some_and(|arg| arg.eq_ignore_ascii_case(word.as_bytes()))
}

/// A field value: the text when it is UTF-8, else `b64:` and the base64. Text that itself
/// starts with `b64:` is encoded too, so decoding is never ambiguous.
pub(super) fn field_value(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.starts_with("b64:") => text.to_owned(),
        _ => format!("b64:{}", STANDARD.encode(bytes)),
    }
}

/// `("command", NAME)` then `("arg.1", …)`, `("arg.2", …)` … Authentication arguments are kept:
/// replay sends the same password, and matching needs it.
pub(super) fn fields(args: &[Vec<u8>]) -> Vec<(String, String)> {
    let mut fields = Vec::with_capacity(args.len());
    fields.push(("command".to_owned(), field_value(&name(args))));
    for (index, arg) in args.iter().enumerate().skip(1) {
        fields.push((format!("arg.{index}"), field_value(arg)));
    }
    fields
}

/// `SET k v EX 60`: the name and the arguments, quoted when they hold spaces or control
/// characters, binary ones as their size, passwords masked (the summary ends up in reports),
/// cut to about 120 characters.
pub(super) fn summary(args: &[Vec<u8>]) -> String {
    let name = name(args);
    let secret = secret_index(&name, args);
    let mut words = vec![String::from_utf8_lossy(&name).into_owned()];
    for (index, arg) in args.iter().enumerate().skip(1) {
        words.push(if Some(index) == secret {
            "***".to_owned()
        } else {
            display_word(arg)
        });
    }
    truncate(&words.join(" "))
}

/// The argument holding a password: `AUTH [user] pass`, `HELLO … AUTH user pass …`.
fn secret_index(name: &[u8], args: &[Vec<u8>]) -> Option<usize> {
    match name {
        b"AUTH" if args.len() > 1 => Some(args.len() - 1),
        b"HELLO" => (1..args.len())
            .find(|&index| arg_is(args, index, "AUTH"))
            .map(|index| index + 2),
        _ => None,
    }
}

/// One word of a summary.
pub(super) fn display_word(arg: &[u8]) -> String {
    match std::str::from_utf8(arg) {
        Ok(text)
            if !text.is_empty()
                && !text
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '"') =>
        {
            text.to_owned()
        }
        Ok(text) => format!("\"{}\"", text.escape_debug()),
        Err(_) => format!("<{} bytes>", arg.len()),
    }
}

/// Cuts `text` to [`SUMMARY_CHARS`] characters, marking the cut with `…`.
pub(super) fn truncate(text: &str) -> String {
    if text.chars().count() <= SUMMARY_CHARS {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(SUMMARY_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// Connection set-up and introspection are [`Lifetime::Session`] (every connection sends them
/// and their answers do not depend on a test); everything else is [`Lifetime::PerTest`].
///
/// Beyond the handshake commands, cluster-aware clients' start-up queries (`READONLY`,
/// `READWRITE`, `CLUSTER SLOTS|SHARDS|NODES|INFO|MYID`) and `QUIT` are session-wide too.
pub(super) fn lifetime(args: &[Vec<u8>]) -> Lifetime {
    let name = name(args);
    let session = match name.as_slice() {
        b"HELLO" | b"AUTH" | b"SELECT" | b"CLIENT" | b"PING" | b"INFO" | b"COMMAND"
        | b"READONLY" | b"READWRITE" | b"QUIT" => true,
        b"CONFIG" => arg_is(args, 1, "GET"),
        b"CLUSTER" => ["SLOTS", "SHARDS", "NODES", "INFO", "MYID"]
            .iter()
            .any(|sub| arg_is(args, 1, sub)),
        _ => false,
    };
    if session {
        Lifetime::Session
    } else {
        Lifetime::PerTest
    }
}

/// The three kinds of subscription: channels, patterns, shard channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    Channel = 0,
    Pattern = 1,
    Shard = 2,
}

/// A subscription command or confirmation label: its family and whether it subscribes.
pub(super) fn pubsub(label: &[u8]) -> Option<(Family, bool)> {
    let upper = label.to_ascii_uppercase();
    Some(match upper.as_slice() {
        b"SUBSCRIBE" => (Family::Channel, true),
        b"UNSUBSCRIBE" => (Family::Channel, false),
        b"PSUBSCRIBE" => (Family::Pattern, true),
        b"PUNSUBSCRIBE" => (Family::Pattern, false),
        b"SSUBSCRIBE" => (Family::Shard, true),
        b"SUNSUBSCRIBE" => (Family::Shard, false),
        _ => return None,
    })
}

/// Labels of pub/sub traffic a RESP2 server sends as plain arrays.
pub(super) fn is_pubsub_label(label: &[u8]) -> bool {
    pubsub(label).is_some()
        || [&b"message"[..], b"pmessage", b"smessage"]
            .iter()
            .any(|known| label.eq_ignore_ascii_case(known))
}
