//! Inline commands: a request typed as a plain line, `PING\r\n` or `EGET 0191...\n`, as
//! telnet and `redis-cli` in some modes send it.
//!
//! A frame is inline when its first byte is not a RESP type byte. The line ends at LF, with an
//! optional CR before it, and is split into arguments the way Redis splits it
//! (`sdssplitargs`), so what works against Redis works here:
//!
//! - arguments are separated by runs of ASCII whitespace;
//! - `"..."` quotes an argument and understands `\n`, `\r`, `\t`, `\b`, `\a`, `\\`, `\"`
//!   and `\xHH`; any other escaped byte stands for itself;
//! - `'...'` quotes an argument and understands only `\'`;
//! - a closing quote must be followed by whitespace or the end of the line.
//!
//! The result is an array of blob strings. A blank line gives an empty array, which the
//! command layer answers like any other empty command.
//!
//! Only printable ASCII and whitespace may start an inline command. Binary garbage (a TLS
//! handshake, a wrong protocol) therefore fails at once with an invalid type byte instead of
//! stalling until `max_inline_bytes` arrive.

use bytes::{Bytes, BytesMut};

use super::decode::{DecodeError, Limits};
use super::frame::{Frame, FrameKind};

/// Decodes the inline command at the start of `buf`, with the contract of
/// [`decode`](super::decode).
pub(super) fn decode(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Frame>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if !(first.is_ascii_graphic() || first.is_ascii_whitespace()) {
        return Err(DecodeError::InvalidTypeByte { byte: first });
    }
    let max = limits.max_inline_bytes;
    // The longest allowed line, plus the CR and LF that may end it.
    let window = &buf[..buf.len().min(max.saturating_add(2))];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        if window.len() >= max.saturating_add(2) {
            return Err(DecodeError::LineTooLong { max });
        }
        return Ok(None);
    };
    let line = window[..lf].strip_suffix(b"\r").unwrap_or(&window[..lf]);
    if line.len() > max {
        return Err(DecodeError::LineTooLong { max });
    }
    if lf + 1 > limits.max_frame_bytes {
        return Err(DecodeError::FrameTooLarge {
            max: limits.max_frame_bytes,
        });
    }
    let args = split_args(line)?;
    if args.len() > limits.max_elements {
        return Err(DecodeError::TooManyElements {
            kind: FrameKind::Array,
            len: args.len() as u64,
            max: limits.max_elements,
        });
    }
    let _ = buf.split_to(lf + 1);
    Ok(Some(Frame::Array(
        args.into_iter()
            .map(|arg| Frame::BlobString(Bytes::from(arg)))
            .collect(),
    )))
}

/// Splits `line` into arguments, as the module doc describes.
fn split_args(line: &[u8]) -> Result<Vec<Vec<u8>>, DecodeError> {
    let mut args = Vec::new();
    let mut rest = line;
    loop {
        rest = rest.trim_ascii_start();
        if rest.is_empty() {
            return Ok(args);
        }
        let (arg, after) = split_arg(rest)?;
        args.push(arg);
        rest = after;
    }
}

#[derive(Clone, Copy)]
enum Quote {
    None,
    Double,
    Single,
}

/// Reads one argument from the start of `input` (which starts with a non-space), returning
/// it and the input after it.
fn split_arg(input: &[u8]) -> Result<(Vec<u8>, &[u8]), DecodeError> {
    let mut arg = Vec::new();
    let mut quote = Quote::None;
    let mut i = 0;
    while let Some(&byte) = input.get(i) {
        let next = input.get(i + 1).copied();
        match quote {
            Quote::None => match byte {
                _ if byte.is_ascii_whitespace() => return Ok((arg, &input[i..])),
                b'"' => quote = Quote::Double,
                b'\'' => quote = Quote::Single,
                _ => arg.push(byte),
            },
            Quote::Double => match (byte, next) {
                (b'\\', Some(b'x')) if hex_byte(input.get(i + 2..i + 4)).is_some() => {
                    arg.extend(hex_byte(input.get(i + 2..i + 4)));
                    i += 3;
                }
                (b'\\', Some(escaped)) => {
                    arg.push(match escaped {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                    i += 1;
                }
                (b'"', _) => return close_quote(arg, &input[i + 1..]),
                _ => arg.push(byte),
            },
            Quote::Single => match (byte, next) {
                (b'\\', Some(b'\'')) => {
                    arg.push(b'\'');
                    i += 1;
                }
                (b'\'', _) => return close_quote(arg, &input[i + 1..]),
                _ => arg.push(byte),
            },
        }
        i += 1;
    }
    match quote {
        Quote::None => Ok((arg, &[])),
        Quote::Double | Quote::Single => Err(DecodeError::UnbalancedQuotes),
    }
}

/// Ends a quoted argument; Redis rejects `"a"b`, so the quote must end the argument.
fn close_quote(arg: Vec<u8>, rest: &[u8]) -> Result<(Vec<u8>, &[u8]), DecodeError> {
    match rest.first() {
        Some(byte) if !byte.is_ascii_whitespace() => Err(DecodeError::UnbalancedQuotes),
        _ => Ok((arg, rest)),
    }
}

/// The byte two hex digits spell, if `digits` is two hex digits.
fn hex_byte(digits: Option<&[u8]>) -> Option<u8> {
    let digits = std::str::from_utf8(digits?).ok()?;
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> Result<Vec<String>, DecodeError> {
        let args = split_args(line.as_bytes())?;
        Ok(args
            .into_iter()
            .map(|arg| String::from_utf8(arg).unwrap())
            .collect())
    }

    #[test]
    fn splits_on_whitespace_runs() {
        assert_eq!(split("  EGET\t abc  ").unwrap(), ["EGET", "abc"]);
        assert_eq!(split("").unwrap(), Vec::<String>::new());
        assert_eq!(split("   ").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn double_quotes_group_and_unescape() {
        assert_eq!(
            split(r#"EAPPEND s e PAYLOAD "{\"a\": 1}\n""#).unwrap(),
            ["EAPPEND", "s", "e", "PAYLOAD", "{\"a\": 1}\n"]
        );
        assert_eq!(split(r#""\x41\x7a" "\xZZ""#).unwrap(), ["Az", "xZZ"]);
        assert_eq!(split(r#""""#).unwrap(), [""]);
        assert_eq!(split(r#"ab"c d""#).unwrap(), ["abc d"]);
    }

    #[test]
    fn single_quotes_only_unescape_quote() {
        assert_eq!(split(r"'it\'s \n'").unwrap(), [r"it's \n"]);
    }

    #[test]
    fn unbalanced_or_glued_quotes_are_rejected() {
        for line in [r#""abc"#, r#"'abc"#, r#""a"b"#, r#"'a'b"#, r#""abc\"#] {
            assert_eq!(split(line), Err(DecodeError::UnbalancedQuotes), "{line}");
        }
    }
}
