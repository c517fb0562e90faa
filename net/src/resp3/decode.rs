//! Decoding: bytes in, [`Frame`]s out.
//!
//! [`decode`] works in two passes over the buffer:
//!
//! 1. [`frame_len`] walks the frame one *token* (a header line, a scalar or a blob) at a
//!    time, without allocating frames or copying data. It answers "is a whole frame
//!    buffered, and how long is it?" and enforces every [`Limits`] bound the moment the
//!    relevant header is read. Nesting is tracked in a small explicit stack, not by
//!    recursion, so hostile nesting cannot overflow the thread's stack. Blob contents are
//!    skipped by length, so a large blob arriving in many reads costs one length check per
//!    read, not a rescan of its bytes.
//! 2. Only when the frame is complete is it split off the buffer (zero-copy) and [`build`]
//!    turns its tokens into a [`Frame`], slicing blobs out of the split bytes. The build
//!    recurses, but only as deep as pass 1 allowed.
//!
//! Both passes read tokens with the same [`read_token`], so validation lives in one place.
//!
//! A frame whose first byte is not a RESP type byte is an inline command (see
//! [`inline`](super::inline)).

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use super::frame::{Frame, FrameKind};
use super::inline;

/// Bounds on what one frame may claim or contain, so a peer cannot make the decoder allocate
/// or scan without limit. Each bound is checked as soon as the header that would break it is
/// read, before waiting for (or allocating) the data it announces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest whole frame, headers and nested frames included.
    pub max_frame_bytes: usize,
    /// Largest blob string, blob error or verbatim string.
    pub max_bulk_bytes: usize,
    /// Largest announced aggregate length (pairs, for maps and attributes), and the most
    /// arguments an inline command may have.
    pub max_elements: usize,
    /// Deepest nesting of aggregates (attributes count as a level). Values above
    /// [`MAX_DEPTH_CEILING`] act as the ceiling, because building a frame recurses once per
    /// level.
    pub max_depth: usize,
    /// Longest line the decoder will look through for its CRLF: an inline command, and also
    /// the text of any line-terminated item (simple string or error, integer, double, big
    /// number, header). A peer that never sends a line ending fails here, not at
    /// `max_frame_bytes`.
    pub max_inline_bytes: usize,
}

/// The deepest nesting [`decode`] will ever build, whatever [`Limits::max_depth`] says.
pub const MAX_DEPTH_CEILING: usize = 512;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_frame_bytes: 64 << 20,
            max_bulk_bytes: 64 << 20,
            max_elements: 1 << 20,
            max_depth: 32,
            max_inline_bytes: 64 << 10,
        }
    }
}

/// Why a frame could not be decoded.
///
/// Every variant is the peer's fault, and the bytes after the bad frame cannot be trusted to
/// start a new one, so the caller should reply `-ERR Protocol error: {error}` and close the
/// connection. The messages are written for that reply. The limit variants ([`is_limit`])
/// name the [`Limits`] field that was exceeded.
///
/// [`is_limit`]: DecodeError::is_limit
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid type byte 0x{byte:02x}")]
    InvalidTypeByte { byte: u8 },
    #[error("expected CRLF after {kind}")]
    MissingCrlf { kind: FrameKind },
    #[error("{kind} line holds a CR that does not end it")]
    BareCr { kind: FrameKind },
    #[error("invalid {kind} length")]
    InvalidLength { kind: FrameKind },
    #[error("invalid integer")]
    InvalidInteger,
    #[error("invalid double")]
    InvalidDouble,
    #[error("invalid boolean: expected 't' or 'f'")]
    InvalidBoolean,
    #[error("invalid big number: expected an optional sign and decimal digits")]
    InvalidBigNumber,
    #[error("invalid null: expected nothing between '_' and CRLF")]
    InvalidNull,
    #[error("invalid verbatim string: expected a three-byte format and ':'")]
    InvalidVerbatim,
    #[error("streamed {kind}s are not supported")]
    Streamed { kind: FrameKind },
    #[error("unbalanced quotes in inline request")]
    UnbalancedQuotes,

    #[error("{kind} length {len} exceeds max_bulk_bytes ({max})")]
    BulkTooLarge {
        kind: FrameKind,
        len: u64,
        max: usize,
    },
    #[error("{kind} length {len} exceeds max_elements ({max})")]
    TooManyElements {
        kind: FrameKind,
        len: u64,
        max: usize,
    },
    #[error("nesting exceeds max_depth ({max})")]
    TooDeep { max: usize },
    #[error("frame exceeds max_frame_bytes ({max})")]
    FrameTooLarge { max: usize },
    #[error("line exceeds max_inline_bytes ({max})")]
    LineTooLong { max: usize },
}

impl DecodeError {
    /// Whether a [`Limits`] bound was exceeded, as opposed to the bytes being malformed.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            DecodeError::BulkTooLarge { .. }
                | DecodeError::TooManyElements { .. }
                | DecodeError::TooDeep { .. }
                | DecodeError::FrameTooLarge { .. }
                | DecodeError::LineTooLong { .. }
        )
    }
}

/// Decodes the frame at the start of `buf`.
///
/// - `Ok(Some(frame))`: exactly that frame's bytes were removed from `buf`; pipelined frames
///   behind it are left for the next call.
/// - `Ok(None)`: `buf` holds only part of a frame (or nothing). Nothing was consumed; read
///   more bytes onto the end of `buf` and call again.
/// - `Err(_)`: the bytes are malformed or break `limits`; close the connection (see
///   [`DecodeError`]). What `buf` holds afterwards is unspecified.
///
/// Each call rescans the buffered part of the frame (headers only: blob data is skipped by
/// length), so read in large chunks rather than byte by byte.
pub fn decode(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Frame>, DecodeError> {
    if let Some(answer) = decode_short_cuts(buf, limits) {
        return answer;
    }
    decode_any(buf, limits)
}

/// What [`decode`] and [`decode_flat`](super::decode_flat) answer alike: an empty buffer, an
/// inline command, and a request (an array of bulk strings, the usual client frame). `None`
/// for anything else.
#[inline]
pub(super) fn decode_short_cuts(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Option<Result<Option<Frame>, DecodeError>> {
    let Some(&first) = buf.first() else {
        return Some(Ok(None));
    };
    if FrameKind::from_type_byte(first).is_none() {
        return Some(inline::decode(buf, limits));
    }
    let request = request_len(buf, limits)?;
    Some(Ok(Some(build_request(buf, request))))
}

/// [`decode`] without the fast path for requests: any frame, in two passes (measure, then
/// build).
fn decode_any(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Frame>, DecodeError> {
    let Some(len) = frame_len(buf, limits, None)? else {
        return Ok(None);
    };
    let bytes = buf.split_to(len).freeze();
    let mut tokens = Reread {
        bytes: &bytes,
        pos: 0,
        limits,
    };
    let frame = build(&bytes, &mut tokens);
    debug_assert_eq!(
        tokens.pos, len,
        "build and frame_len disagree on the frame's end"
    );
    Ok(Some(frame))
}

/// The size of a request frame, and how many arguments it has.
#[derive(Clone, Copy, Debug)]
struct RequestLen {
    bytes: usize,
    args: usize,
}

/// The length of the frame at the start of `buf` if it is whole and has the shape of every
/// client request, a non-empty array of blob strings, within `limits`. `None` means "not
/// certainly": anything else (another shape, a part frame, a header that is not plain digits,
/// a broken limit) goes to the general decoder, which gives the exact answer or error. This
/// one quick pass replaces the general decoder's two on nearly every request.
fn request_len(buf: &[u8], limits: &Limits) -> Option<RequestLen> {
    if limits.max_depth == 0 {
        return None;
    }
    let (args, mut pos) = digits_line(buf, 0, b'*', limits)?;
    if args == 0 || args > limits.max_elements {
        return None;
    }
    for _ in 0..args {
        let (len, data) = digits_line(buf, pos, b'$', limits)?;
        if len > limits.max_bulk_bytes {
            return None;
        }
        let end = data.checked_add(len)?.checked_add(2)?;
        if buf.get(end - 2..end)? != b"\r\n" {
            return None;
        }
        pos = end;
    }
    (pos <= limits.max_frame_bytes).then_some(RequestLen { bytes: pos, args })
}

/// Reads `type_byte`, decimal digits, CRLF at `pos`: the number and the position after it.
fn digits_line(buf: &[u8], pos: usize, type_byte: u8, limits: &Limits) -> Option<(usize, usize)> {
    if *buf.get(pos)? != type_byte {
        return None;
    }
    let start = pos + 1;
    let mut n: usize = 0;
    let mut i = start;
    while let Some(&b) = buf.get(i) {
        if b == b'\r' {
            break;
        }
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(usize::from(b - b'0'))?;
        i += 1;
    }
    let digits = i - start;
    if digits == 0 || digits > limits.max_inline_bytes || *buf.get(i + 1)? != b'\n' {
        return None;
    }
    Some((n, i + 2))
}

/// Takes the request [`request_len`] measured off `buf` as an array of blob strings that
/// share its bytes.
fn build_request(buf: &mut BytesMut, request: RequestLen) -> Frame {
    let bytes = buf.split_to(request.bytes).freeze();
    let mut args = Vec::with_capacity(request.args);
    let (_, mut pos) = header_number(&bytes, 0);
    for _ in 0..request.args {
        let (len, data) = header_number(&bytes, pos);
        args.push(Frame::BlobString(bytes.slice(data..data + len)));
        pos = data + len + 2;
    }
    Frame::Array(args)
}

/// The number of a header line already checked by [`digits_line`], and the position after it.
fn header_number(bytes: &[u8], pos: usize) -> (usize, usize) {
    let mut n = 0;
    let mut i = pos + 1;
    while bytes[i] != b'\r' {
        n = n * 10 + usize::from(bytes[i] - b'0');
        i += 1;
    }
    (n, i + 2)
}

/// One item read from the buffer: a whole scalar frame, or the header of an aggregate whose
/// children follow. Slices borrow the buffer, so reading a token never copies.
#[derive(Debug)]
enum Token<'a> {
    SimpleString(&'a [u8]),
    SimpleError(&'a [u8]),
    Integer(i64),
    BlobString(&'a [u8]),
    BlobError(&'a [u8]),
    Verbatim {
        format: [u8; 3],
        data: &'a [u8],
    },
    Null,
    Double(f64),
    Boolean(bool),
    BigNumber(&'a str),
    /// `len` is the announced length, already checked against `max_elements`.
    Aggregate {
        kind: FrameKind,
        len: usize,
    },
}

/// A [`Token`] with its text or data as a range of the frame's bytes: what [`build`] makes a
/// frame from, and what a [`FlatFrame`](super::FlatFrame) holds: [`decode_flat`] has
/// [`frame_len`] keep them, so that the bytes are read once. 24 bytes (a test checks), which
/// bounds what [`decode_flat`] holds.
///
/// [`decode_flat`]: super::decode_flat
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Kept {
    SimpleString(Range<usize>),
    SimpleError(Range<usize>),
    Integer(i64),
    BlobString(Range<usize>),
    BlobError(Range<usize>),
    Verbatim {
        format: [u8; 3],
        data: Range<usize>,
    },
    Null,
    Double(f64),
    Boolean(bool),
    BigNumber(Range<usize>),
    /// `span`: how many tokens the aggregate's subtree holds, its own included (so its next
    /// sibling is `span` tokens on), set by [`frame_len`] once the aggregate closes.
    Aggregate {
        kind: FrameKind,
        len: usize,
        span: usize,
    },
}

impl Kept {
    /// `token`, read from `buf`, with its slices as ranges of `buf`.
    fn of(token: &Token<'_>, buf: &[u8]) -> Kept {
        // Every slice a token holds is a part of `buf`.
        let range = |part: &[u8]| {
            let start = part.as_ptr() as usize - buf.as_ptr() as usize;
            start..start + part.len()
        };
        match *token {
            Token::SimpleString(text) => Kept::SimpleString(range(text)),
            Token::SimpleError(text) => Kept::SimpleError(range(text)),
            Token::Integer(n) => Kept::Integer(n),
            Token::BlobString(data) => Kept::BlobString(range(data)),
            Token::BlobError(data) => Kept::BlobError(range(data)),
            Token::Verbatim { format, data } => Kept::Verbatim {
                format,
                data: range(data),
            },
            Token::Null => Kept::Null,
            Token::Double(x) => Kept::Double(x),
            Token::Boolean(b) => Kept::Boolean(b),
            Token::BigNumber(text) => Kept::BigNumber(range(text.as_bytes())),
            Token::Aggregate { kind, len } => Kept::Aggregate { kind, len, span: 1 },
        }
    }
}

/// How many frames follow an aggregate header of `kind` announcing `len`.
fn child_count(kind: FrameKind, len: usize) -> usize {
    match kind {
        FrameKind::Map => len.saturating_mul(2),
        // The pairs, then the frame they are attached to.
        FrameKind::Attribute => len.saturating_mul(2).saturating_add(1),
        _ => len,
    }
}

/// The length of the whole frame at the start of `buf`, or `None` if it is not all buffered.
/// Checks everything: once this returns `Some`, [`build`] cannot fail. With `kept`, every
/// token read is added to it, in order, for [`build`].
pub(super) fn frame_len(
    buf: &[u8],
    limits: &Limits,
    kept: Option<&mut Vec<Kept>>,
) -> Result<Option<usize>, DecodeError> {
    frame_len_from(buf, limits, kept, &mut Scan::default())
}

/// Where [`frame_len_from`] stopped in a frame that was not all buffered: the start of the
/// first token it could not read whole, and the aggregates still open. Given back with the
/// same bytes and more after them (and the tokens it kept so far), it goes on from there.
#[derive(Debug, Default)]
pub(super) struct Scan {
    pos: usize,
    /// How many children each open aggregate still expects, and where its token is kept (if
    /// tokens are kept), innermost last. It holds at most `max_depth` entries, so its size
    /// does not depend on the input.
    open: Vec<(usize, usize)>,
}

impl Scan {
    /// Whether nothing has been read yet.
    pub(super) fn is_fresh(&self) -> bool {
        self.pos == 0
    }
}

/// [`frame_len`], going on from `scan`: the tokens before `scan.pos` were read (and kept) by
/// an earlier call over the same first bytes. On `None`, `scan` says where to go on.
pub(super) fn frame_len_from(
    buf: &[u8],
    limits: &Limits,
    mut kept: Option<&mut Vec<Kept>>,
    scan: &mut Scan,
) -> Result<Option<usize>, DecodeError> {
    let max_depth = limits.max_depth.min(MAX_DEPTH_CEILING);
    let Scan { pos, open } = scan;
    loop {
        let Some((token, next)) = read_token(buf, *pos, limits)? else {
            // The frame runs past the end of the buffer, so it is longer than the buffer.
            if buf.len() > limits.max_frame_bytes {
                return Err(DecodeError::FrameTooLarge {
                    max: limits.max_frame_bytes,
                });
            }
            return Ok(None);
        };
        *pos = next;
        let at = match kept.as_deref_mut() {
            Some(kept) => {
                kept.push(Kept::of(&token, buf));
                kept.len() - 1
            }
            None => 0,
        };
        if let Token::Aggregate { kind, len } = token {
            if open.len() >= max_depth {
                return Err(DecodeError::TooDeep { max: max_depth });
            }
            let children = child_count(kind, len);
            if children > 0 {
                open.push((children, at));
                continue;
            }
        }
        // The token was a whole frame: count it against its parents, closing each one it
        // completes, until one still expects more or the outermost frame is done.
        loop {
            let Some((remaining, _)) = open.last_mut() else {
                return Ok(Some(*pos));
            };
            *remaining -= 1;
            if *remaining > 0 {
                break;
            }
            let (_, at) = open.pop().expect("looked at just above");
            if let Some(kept) = kept.as_deref_mut() {
                let closed = kept.len() - at;
                if let Kept::Aggregate { span, .. } = &mut kept[at] {
                    *span = closed;
                }
            }
        }
    }
}

/// Where [`build`] takes a frame's tokens from, in order: read again from the frame's bytes,
/// or as [`frame_len`] kept them.
pub(super) trait Tokens {
    fn next_token(&mut self) -> Kept;
}

/// Reads each token from the frame's bytes again.
struct Reread<'a> {
    bytes: &'a Bytes,
    pos: usize,
    limits: &'a Limits,
}

impl Tokens for Reread<'_> {
    fn next_token(&mut self) -> Kept {
        let (token, next) = read_token(self.bytes, self.pos, self.limits)
            .expect("frame_len validated this frame")
            .expect("frame_len saw this frame complete");
        self.pos = next;
        Kept::of(&token, self.bytes)
    }
}

/// Builds the frame whose tokens `tokens` gives; `bytes` is the frame they come from.
///
/// The tokens must be those of a frame that [`frame_len`] accepted; anything else is a bug in
/// this module, hence the panics.
pub(super) fn build(bytes: &Bytes, tokens: &mut impl Tokens) -> Frame {
    match tokens.next_token() {
        Kept::SimpleString(text) => Frame::SimpleString(bytes.slice(text)),
        Kept::SimpleError(text) => Frame::SimpleError(bytes.slice(text)),
        Kept::Integer(n) => Frame::Integer(n),
        Kept::BlobString(data) => Frame::BlobString(bytes.slice(data)),
        Kept::BlobError(data) => Frame::BlobError(bytes.slice(data)),
        Kept::Verbatim { format, data } => Frame::VerbatimString {
            format,
            data: bytes.slice(data),
        },
        Kept::Null => Frame::Null,
        Kept::Double(x) => Frame::Double(x),
        Kept::Boolean(b) => Frame::Boolean(b),
        Kept::BigNumber(text) => Frame::BigNumber(
            std::str::from_utf8(&bytes[text])
                .expect("frame_len checked the digits")
                .to_owned(),
        ),
        Kept::Aggregate { kind, len, .. } => match kind {
            FrameKind::Array => Frame::Array(build_items(bytes, tokens, len)),
            FrameKind::Set => Frame::Set(build_items(bytes, tokens, len)),
            FrameKind::Push => Frame::Push(build_items(bytes, tokens, len)),
            FrameKind::Map => Frame::Map(build_pairs(bytes, tokens, len)),
            FrameKind::Attribute => Frame::Attribute {
                attributes: build_pairs(bytes, tokens, len),
                frame: Box::new(build(bytes, tokens)),
            },
            _ => unreachable!("{kind} is not an aggregate"),
        },
    }
}

// In the two functions below `len` is trusted: frame_len found all `len` children in the
// buffer, so the allocations they make are bounded by bytes actually received.

fn build_items(bytes: &Bytes, tokens: &mut impl Tokens, len: usize) -> Vec<Frame> {
    (0..len).map(|_| build(bytes, tokens)).collect()
}

fn build_pairs(bytes: &Bytes, tokens: &mut impl Tokens, len: usize) -> Vec<(Frame, Frame)> {
    (0..len)
        .map(|_| (build(bytes, tokens), build(bytes, tokens)))
        .collect()
}

/// Reads the token starting at `pos`, returning it and the position just after it, or `None`
/// if it is not all buffered. Positions are relative to the start of the frame, which is the
/// start of `buf`, so they double as the frame's size so far.
fn read_token<'a>(
    buf: &'a [u8],
    pos: usize,
    limits: &Limits,
) -> Result<Option<(Token<'a>, usize)>, DecodeError> {
    let Some(&byte) = buf.get(pos) else {
        return Ok(None);
    };
    let kind = FrameKind::from_type_byte(byte).ok_or(DecodeError::InvalidTypeByte { byte })?;
    let Some((line, after_line)) = read_line(buf, pos + 1, kind, limits)? else {
        return Ok(None);
    };
    check_frame_size(after_line, limits)?;
    let token = match kind {
        FrameKind::SimpleString => Token::SimpleString(line),
        FrameKind::SimpleError => Token::SimpleError(line),
        FrameKind::Integer => Token::Integer(parse_integer(line)?),
        FrameKind::Null if line.is_empty() => Token::Null,
        FrameKind::Null => return Err(DecodeError::InvalidNull),
        FrameKind::Double => Token::Double(parse_double(line)?),
        FrameKind::Boolean => match line {
            b"t" => Token::Boolean(true),
            b"f" => Token::Boolean(false),
            _ => return Err(DecodeError::InvalidBoolean),
        },
        FrameKind::BigNumber => Token::BigNumber(parse_big_number(line)?),
        FrameKind::BlobString | FrameKind::BlobError | FrameKind::VerbatimString => {
            return match parse_header_len(line, kind)? {
                None => Ok(Some((Token::Null, after_line))),
                Some(len) => read_blob(buf, after_line, kind, len, limits),
            };
        }
        FrameKind::Array
        | FrameKind::Map
        | FrameKind::Set
        | FrameKind::Attribute
        | FrameKind::Push => match parse_header_len(line, kind)? {
            None => Token::Null,
            Some(len) => {
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&len| len <= limits.max_elements)
                    .ok_or(DecodeError::TooManyElements {
                        kind,
                        len,
                        max: limits.max_elements,
                    })?;
                Token::Aggregate { kind, len }
            }
        },
    };
    Ok(Some((token, after_line)))
}

/// Reads the line starting at `start` up to its CRLF: its content and the position after
/// the CRLF, or `None` if the CRLF has not arrived yet.
fn read_line<'a>(
    buf: &'a [u8],
    start: usize,
    kind: FrameKind,
    limits: &Limits,
) -> Result<Option<(&'a [u8], usize)>, DecodeError> {
    let max = limits.max_inline_bytes;
    // Only look as far as the longest allowed line plus its CRLF, so a line that never ends
    // costs at most that much scanning per call.
    let window = &buf[start..buf.len().min(start.saturating_add(max).saturating_add(2))];
    // Nearly every line ends at its first CR, followed by LF: one pass finds that. Anything
    // else (a bare CR, a lone LF, no line end yet) takes the careful path below, which
    // decides between incomplete and which error.
    if let Some(cr) = memchr::memchr2(b'\r', b'\n', window)
        && window[cr] == b'\r'
        && window.get(cr + 1) == Some(&b'\n')
    {
        return Ok(Some((&window[..cr], start + cr + 2)));
    }
    match window.iter().position(|&b| b == b'\n') {
        Some(lf) if lf > 0 && window[lf - 1] == b'\r' => {
            let line = &window[..lf - 1];
            // A line ends at its CRLF and holds neither CR nor LF (a simple string with a CR
            // would not survive re-encoding: found by fuzzing).
            if line.contains(&b'\r') {
                return Err(DecodeError::BareCr { kind });
            }
            Ok(Some((line, start + lf + 1)))
        }
        Some(_) => Err(DecodeError::MissingCrlf { kind }),
        None if window.len() >= max.saturating_add(2) => Err(DecodeError::LineTooLong { max }),
        None => Ok(None),
    }
}

/// Reads `len` bytes of blob data starting at `start`, and the CRLF after them.
fn read_blob<'a>(
    buf: &'a [u8],
    start: usize,
    kind: FrameKind,
    len: u64,
    limits: &Limits,
) -> Result<Option<(Token<'a>, usize)>, DecodeError> {
    let max = limits.max_bulk_bytes;
    let len = usize::try_from(len)
        .ok()
        .filter(|&len| len <= max)
        .ok_or(DecodeError::BulkTooLarge { kind, len, max })?;
    let data_end = start.saturating_add(len);
    let end = data_end.saturating_add(2);
    // Checked before waiting for the data, so a frame cannot announce more than it may send.
    check_frame_size(end, limits)?;
    if buf.len() < end {
        return Ok(None);
    }
    if &buf[data_end..end] != b"\r\n" {
        return Err(DecodeError::MissingCrlf { kind });
    }
    let data = &buf[start..data_end];
    let token = match kind {
        FrameKind::BlobString => Token::BlobString(data),
        FrameKind::BlobError => Token::BlobError(data),
        FrameKind::VerbatimString => match data {
            [a, b, c, b':', rest @ ..] => Token::Verbatim {
                format: [*a, *b, *c],
                data: rest,
            },
            _ => return Err(DecodeError::InvalidVerbatim),
        },
        _ => unreachable!("{kind} is not a blob"),
    };
    Ok(Some((token, end)))
}

/// Fails if a frame reaching `end` bytes would exceed `max_frame_bytes`.
fn check_frame_size(end: usize, limits: &Limits) -> Result<(), DecodeError> {
    if end > limits.max_frame_bytes {
        return Err(DecodeError::FrameTooLarge {
            max: limits.max_frame_bytes,
        });
    }
    Ok(())
}

/// Parses the length in a blob or aggregate header. `None` is the RESP2 null (`$-1`, `*-1`),
/// accepted only where RESP2 defines it.
fn parse_header_len(text: &[u8], kind: FrameKind) -> Result<Option<u64>, DecodeError> {
    match text {
        b"-1" if matches!(kind, FrameKind::BlobString | FrameKind::Array) => Ok(None),
        // `$?` and `*?` start RESP3 streamed strings and aggregates, which no Redis client
        // sends as a request.
        b"?" => Err(DecodeError::Streamed { kind }),
        _ => decimal(text)
            .map(Some)
            .ok_or(DecodeError::InvalidLength { kind }),
    }
}

/// `text` as a decimal number: one or more ASCII digits, and no overflow. What
/// `str::parse::<u64>` accepts without a sign, in one pass.
fn decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u64, |n, &b| {
        let digit = b.wrapping_sub(b'0');
        (digit < 10).then_some(())?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// An optional sign, then [`decimal`] digits within `i64`: what `str::parse::<i64>` accepts.
fn parse_integer(text: &[u8]) -> Result<i64, DecodeError> {
    let (negative, digits) = match text {
        [b'-', digits @ ..] => (true, digits),
        [b'+', digits @ ..] => (false, digits),
        digits => (false, digits),
    };
    let magnitude = decimal(digits).ok_or(DecodeError::InvalidInteger)?;
    let value = if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    };
    value.ok_or(DecodeError::InvalidInteger)
}

/// Accepts what RESP3 sends (`1.5`, `-2e-3`, `inf`, `-inf`, `nan`) and whatever else Rust's
/// float parser takes (`Infinity`, `.5`), since being lenient here costs nothing.
fn parse_double(text: &[u8]) -> Result<f64, DecodeError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or(DecodeError::InvalidDouble)
}

fn parse_big_number(text: &[u8]) -> Result<&str, DecodeError> {
    let digits = match text {
        [b'+' | b'-', digits @ ..] => digits,
        digits => digits,
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(DecodeError::InvalidBigNumber);
    }
    Ok(ascii(text))
}

/// `text` as a `&str`; the caller has checked it is ASCII.
fn ascii(text: &[u8]) -> &str {
    std::str::from_utf8(text).expect("caller checked the text is ASCII")
}

#[cfg(test)]
mod tests;
