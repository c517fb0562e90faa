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
    Writer::new(out, proto).frame(frame);
}

/// A simple string fixed when the program is built, held as its whole encoding
/// (`+text\r\n`) and checked then to hold no other CR or LF, so that [`Writer::line`] writes it
/// with one copy and no check. Make one with [`simple_line!`](crate::simple_line):
/// `simple_line!("event_id")`; a CR or LF in the text is then a compile error.
#[derive(Clone, Copy, Debug)]
pub struct Line(&'static str);

impl Line {
    /// `encoded` must be `+`, the text, CRLF (as [`simple_line!`](crate::simple_line) makes
    /// it); anything else panics, at compile time when called in a `const` block.
    pub const fn encoded(encoded: &'static str) -> Line {
        let bytes = encoded.as_bytes();
        let len = bytes.len();
        assert!(
            len >= 3 && bytes[0] == b'+' && bytes[len - 2] == b'\r' && bytes[len - 1] == b'\n',
            "a simple string line is +, its text, CRLF"
        );
        let mut i = 1;
        while i < len - 2 {
            assert!(
                bytes[i] != b'\r' && bytes[i] != b'\n',
                "a simple string cannot hold CR or LF"
            );
            i += 1;
        }
        Line(encoded)
    }
}

/// A [`Line`] for a string literal, checked at compile time: `simple_line!("event_id")`.
#[macro_export]
macro_rules! simple_line {
    ($text:literal) => {
        const { $crate::Line::encoded(concat!("+", $text, "\r\n")) }
    };
}

/// Writes frames straight into a buffer in one protocol, without building [`Frame`]s first.
///
/// A reply with many small fields is mostly allocation when built as a tree (an `ESCAN` of
/// 100 events is some 2,300 frames); a writer puts the same bytes in place. It follows the
/// rules of [`encode`], which is built on it: aggregates announce their length first (a map's
/// in pairs), then that many items follow, and RESP2 peers get the downgrades listed there.
pub struct Writer<'a> {
    out: &'a mut BytesMut,
    proto: Protocol,
}

impl<'a> Writer<'a> {
    pub fn new(out: &'a mut BytesMut, proto: Protocol) -> Self {
        Writer { out, proto }
    }

    pub fn protocol(&self) -> Protocol {
        self.proto
    }

    /// A simple string (CR and LF become spaces).
    pub fn simple(&mut self, text: &[u8]) {
        put_line(self.out, b'+', text);
    }

    /// A simple string known when the program is built, such as a map key: no check needed.
    pub fn line(&mut self, line: Line) {
        self.out.put_slice(line.0.as_bytes());
    }

    /// A UUID, given as its 16 bytes, as a simple string in its lower-case hyphenated form
    /// (`+67e55044-10b1-426f-9247-bb680e5fe0c8\r\n`), which never holds CR or LF.
    pub fn uuid(&mut self, id: [u8; 16]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        /// Where each byte's two digits go in `+xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx\r\n`.
        const AT: [usize; 16] = [1, 3, 5, 7, 10, 12, 15, 17, 20, 22, 25, 27, 29, 31, 33, 35];
        let mut line = *b"+00000000-0000-0000-0000-000000000000\r\n";
        for (byte, at) in id.into_iter().zip(AT) {
            line[at] = HEX[usize::from(byte >> 4)];
            line[at + 1] = HEX[usize::from(byte & 0xf)];
        }
        self.out.put_slice(&line);
    }

    /// A simple error (CR and LF become spaces).
    pub fn error(&mut self, text: &[u8]) {
        put_line(self.out, b'-', text);
    }

    pub fn int(&mut self, n: i64) {
        put_header(self.out, b':', n);
    }

    pub fn blob(&mut self, data: &[u8]) {
        put_blob(self.out, b'$', data);
    }

    pub fn null(&mut self) {
        self.out.put_slice(match self.proto {
            Protocol::Resp3 => b"_\r\n",
            Protocol::Resp2 => b"$-1\r\n",
        });
    }

    pub fn boolean(&mut self, b: bool) {
        self.out.put_slice(match (self.proto, b) {
            (Protocol::Resp3, true) => b"#t\r\n",
            (Protocol::Resp3, false) => b"#f\r\n",
            (Protocol::Resp2, true) => b":1\r\n",
            (Protocol::Resp2, false) => b":0\r\n",
        });
    }

    /// The header of an array of `len` items; the items follow.
    pub fn array(&mut self, len: usize) {
        put_header(self.out, b'*', len as u64);
    }

    /// The header of a map of `pairs` key/value pairs; keys and values follow, alternating.
    pub fn map(&mut self, pairs: usize) {
        match self.proto {
            Protocol::Resp3 => put_header(self.out, b'%', pairs as u64),
            Protocol::Resp2 => put_header(self.out, b'*', (pairs * 2) as u64),
        }
    }

    /// The header of a push of `len` items; the items follow.
    pub fn push(&mut self, len: usize) {
        let byte = aggregate_byte(FrameKind::Push, self.proto);
        put_header(self.out, byte, len as u64);
    }

    /// A whole frame.
    pub fn frame(&mut self, frame: &Frame) {
        use Protocol::{Resp2, Resp3};
        let proto = self.proto;
        match frame {
            Frame::SimpleString(text) => self.simple(text),
            Frame::SimpleError(text) => self.error(text),
            Frame::Integer(n) => self.int(*n),
            Frame::BlobString(data) => self.blob(data),
            Frame::BlobError(data) => match proto {
                Resp3 => put_blob(self.out, b'!', data),
                Resp2 => self.error(data),
            },
            Frame::VerbatimString { format, data } => match proto {
                Resp3 => {
                    put_header(self.out, b'=', (data.len() + 4) as u64);
                    self.out.put_slice(format);
                    self.out.put_u8(b':');
                    self.out.put_slice(data);
                    self.out.put_slice(b"\r\n");
                }
                Resp2 => self.blob(data),
            },
            Frame::Null => self.null(),
            Frame::Double(x) => {
                let text = format_double(*x);
                match proto {
                    Resp3 => put_line(self.out, b',', text.as_bytes()),
                    Resp2 => self.blob(text.as_bytes()),
                }
            }
            Frame::Boolean(b) => self.boolean(*b),
            Frame::BigNumber(text) => match proto {
                Resp3 => put_line(self.out, b'(', text.as_bytes()),
                Resp2 => self.blob(text.as_bytes()),
            },
            Frame::Array(items) => {
                self.array(items.len());
                self.items(items);
            }
            Frame::Set(items) => {
                let byte = aggregate_byte(FrameKind::Set, proto);
                put_header(self.out, byte, items.len() as u64);
                self.items(items);
            }
            Frame::Push(items) => {
                self.push(items.len());
                self.items(items);
            }
            Frame::Map(pairs) => {
                self.map(pairs.len());
                self.pairs(pairs);
            }
            Frame::Attribute { attributes, frame } => {
                if proto == Resp3 {
                    put_header(self.out, b'|', attributes.len() as u64);
                    self.pairs(attributes);
                }
                self.frame(frame);
            }
        }
    }

    fn items(&mut self, items: &[Frame]) {
        for item in items {
            self.frame(item);
        }
    }

    fn pairs(&mut self, pairs: &[(Frame, Frame)]) {
        for (key, value) in pairs {
            self.frame(key);
            self.frame(value);
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

/// Writes `type_byte`, `value` in decimal, CRLF: integers and length headers, which are most
/// of what a reply with many small fields costs to encode.
fn put_header(out: &mut BytesMut, type_byte: u8, value: impl itoa::Integer) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(value).as_bytes();
    out.reserve(digits.len() + 3);
    out.put_u8(type_byte);
    out.put_slice(digits);
    out.put_slice(b"\r\n");
}

/// Writes `type_byte`, `text` with each CR and LF made a space (see [`encode`]), CRLF.
fn put_line(out: &mut BytesMut, type_byte: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.put_u8(type_byte);
    if memchr::memchr2(b'\r', b'\n', text).is_some() {
        out.extend(
            text.iter()
                .map(|&b| if matches!(b, b'\r' | b'\n') { b' ' } else { b }),
        );
    } else {
        out.put_slice(text);
    }
    out.put_slice(b"\r\n");
}

/// Writes a length-prefixed blob: `type_byte`, length, CRLF, data, CRLF.
fn put_blob(out: &mut BytesMut, type_byte: u8, data: &[u8]) {
    put_header(out, type_byte, data.len() as u64);
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests;
