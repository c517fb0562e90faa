//! Encoding: [`Frame`]s out, in the protocol the connection speaks.

use bytes::{BufMut, BytesMut};

use super::frame::{Frame, FrameKind};

/// The protocol a connection speaks, chosen by the client with `HELLO`.
///
/// A Redis connection speaks RESP2 until the client sends `HELLO 3`, hence the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

/// Appends the encoding of `frame` to `out`.
///
/// RESP3 encodes every frame natively. RESP2 has no types beyond simple strings and errors,
/// integers, bulk strings and arrays, so the other types are downgraded as Redis does:
///
/// | frame | RESP2 |
/// |---|---|
/// | null | `$-1\r\n` (the null bulk string; Redis sends `*-1` only for a null array) |
/// | boolean | integer `1` or `0` |
/// | double, big number | bulk string of its text |
/// | verbatim string | bulk string of its data, without the format |
/// | blob error | simple error `-...` |
/// | map | flat array `k1, v1, k2, v2, ...` |
/// | set, push | array |
/// | attribute | dropped: only the frame it is attached to is sent |
///
/// Line-terminated items (simple strings and errors, big numbers) cannot carry CR or LF: one
/// would end the line early and desync the peer. The encoder writes each such byte as a
/// space, as Redis does for error replies, so no frame can produce a broken stream.
pub fn encode(frame: &Frame, proto: Protocol, out: &mut BytesMut) {
    use Protocol::{Resp2, Resp3};
    match frame {
        Frame::SimpleString(text) => put_line(out, b'+', text),
        Frame::SimpleError(text) => put_line(out, b'-', text),
        Frame::Integer(n) => put_header(out, b':', *n),
        Frame::BlobString(data) => put_blob(out, b'$', data),
        Frame::BlobError(data) => match proto {
            Resp3 => put_blob(out, b'!', data),
            Resp2 => put_line(out, b'-', data),
        },
        Frame::VerbatimString { format, data } => match proto {
            Resp3 => {
                put_header(out, b'=', (data.len() + 4) as u64);
                out.put_slice(format);
                out.put_u8(b':');
                out.put_slice(data);
                out.put_slice(b"\r\n");
            }
            Resp2 => put_blob(out, b'$', data),
        },
        Frame::Null => match proto {
            Resp3 => out.put_slice(b"_\r\n"),
            Resp2 => out.put_slice(b"$-1\r\n"),
        },
        Frame::Double(x) => {
            let text = format_double(*x);
            match proto {
                Resp3 => put_line(out, b',', text.as_bytes()),
                Resp2 => put_blob(out, b'$', text.as_bytes()),
            }
        }
        Frame::Boolean(b) => out.put_slice(match (proto, b) {
            (Resp3, true) => b"#t\r\n",
            (Resp3, false) => b"#f\r\n",
            (Resp2, true) => b":1\r\n",
            (Resp2, false) => b":0\r\n",
        }),
        Frame::BigNumber(text) => match proto {
            Resp3 => put_line(out, b'(', text.as_bytes()),
            Resp2 => put_blob(out, b'$', text.as_bytes()),
        },
        Frame::Array(items) => put_items(out, b'*', items, proto),
        Frame::Set(items) => put_items(out, aggregate_byte(FrameKind::Set, proto), items, proto),
        Frame::Push(items) => put_items(out, aggregate_byte(FrameKind::Push, proto), items, proto),
        Frame::Map(pairs) => {
            match proto {
                Resp3 => put_header(out, b'%', pairs.len() as u64),
                Resp2 => put_header(out, b'*', (pairs.len() * 2) as u64),
            }
            put_pairs(out, pairs, proto);
        }
        Frame::Attribute { attributes, frame } => {
            if proto == Resp3 {
                put_header(out, b'|', attributes.len() as u64);
                put_pairs(out, attributes, proto);
            }
            encode(frame, proto, out);
        }
    }
}

/// The text of a double: `inf`, `-inf` and `nan` as RESP3 spells them, and for finite values
/// the shortest text that parses back to exactly the same value.
fn format_double(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    // Both forms print the shortest digits that round-trip, but `{}` spells out every zero of
    // a large or small exponent (1e300 takes 301 characters), so take whichever is shorter.
    let plain = format!("{x}");
    let exponent = format!("{x:e}");
    if exponent.len() < plain.len() {
        exponent
    } else {
        plain
    }
}

/// The type byte of a set or push: its own in RESP3, an array's in RESP2.
fn aggregate_byte(kind: FrameKind, proto: Protocol) -> u8 {
    match proto {
        Protocol::Resp3 => kind.type_byte(),
        Protocol::Resp2 => FrameKind::Array.type_byte(),
    }
}

/// Writes `type_byte`, `value` in decimal, CRLF: integers and length headers.
fn put_header(out: &mut BytesMut, type_byte: u8, value: impl Into<i128>) {
    out.put_u8(type_byte);
    put_decimal(out, value.into());
    out.put_slice(b"\r\n");
}

/// Writes an integer in decimal without going through `fmt`: headers and integers are most of
/// what a reply with many small fields costs to encode.
fn put_decimal(out: &mut BytesMut, value: i128) {
    let mut digits = [0u8; 40];
    let mut i = digits.len();
    let mut n = value.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if value < 0 {
        i -= 1;
        digits[i] = b'-';
    }
    out.put_slice(&digits[i..]);
}

/// Writes `type_byte`, `text` with each CR and LF made a space (see [`encode`]), CRLF.
fn put_line(out: &mut BytesMut, type_byte: u8, text: &[u8]) {
    out.put_u8(type_byte);
    let start = out.len();
    out.put_slice(text);
    for byte in &mut out[start..] {
        if matches!(*byte, b'\r' | b'\n') {
            *byte = b' ';
        }
    }
    out.put_slice(b"\r\n");
}

/// Writes a length-prefixed blob: `type_byte`, length, CRLF, data, CRLF.
fn put_blob(out: &mut BytesMut, type_byte: u8, data: &[u8]) {
    put_header(out, type_byte, data.len() as u64);
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

fn put_items(out: &mut BytesMut, type_byte: u8, items: &[Frame], proto: Protocol) {
    put_header(out, type_byte, items.len() as u64);
    for item in items {
        encode(item, proto, out);
    }
}

fn put_pairs(out: &mut BytesMut, pairs: &[(Frame, Frame)], proto: Protocol) {
    for (key, value) in pairs {
        encode(key, proto, out);
        encode(value, proto, out);
    }
}

#[cfg(test)]
mod tests;
