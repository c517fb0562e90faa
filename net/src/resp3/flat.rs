//! Frames kept flat: the bytes of a frame and its tokens in order, read in place instead of
//! built into a tree of [`Frame`]s.
//!
//! [`decode_flat`] answers what [`decode`](super::decode) answers, with the frame as a
//! [`FlatFrame`]: one vector of tokens (24 bytes each) instead of an allocation per aggregate
//! and a shared-count increment per string. A reader that walks a reply once, picking the
//! fields it needs, pays for nothing else; [`FlatFrame::to_frame`] builds the tree when one is
//! wanted after all.

use bytes::{Bytes, BytesMut};

use super::decode::{
    DecodeError, Kept, Limits, MAX_DEPTH_CEILING, Scan, Tokens, build, decode_short_cuts,
    frame_len, frame_len_from,
};
use super::frame::{Frame, FrameKind};
use super::{Protocol, encode};

/// A whole frame: its bytes and its tokens, the first one the frame's own.
#[derive(Clone, Debug, PartialEq)]
pub struct FlatFrame {
    bytes: Bytes,
    tokens: Vec<Kept>,
}

/// [`decode`](super::decode), keeping the frame flat: the same answers (`to_frame` of the
/// frame given is the frame `decode` gives), the same errors, the same bytes left in `buf`.
///
/// It keeps the tokens of its measuring pass, so the frame's bytes are read once. The price is
/// memory for the tokens read, also when the frame turns out incomplete or malformed (at most
/// eight times the bytes buffered: a token takes three bytes or more and is kept in 24; freed
/// before returning), so a server, which decodes whatever its peers send as it arrives, uses
/// [`decode`](super::decode); and since tokens of an incomplete frame are thrown away, a
/// caller that gets large frames in many pieces uses a [`FlatDecoder`], which keeps them.
pub fn decode_flat(buf: &mut BytesMut, limits: &Limits) -> Result<Option<FlatFrame>, DecodeError> {
    // A decoder used once: nothing is kept past an incomplete frame.
    FlatDecoder::default().decode(buf, limits)
}

/// [`decode_flat`] for frames that arrive in pieces: what a call measured of an incomplete
/// frame is kept, and the next call goes on from there instead of reading the frame again
/// from its start, so a large reply costs one pass however many reads bring it. Between calls
/// the buffer may only grow at its end, as reads append to it (call
/// [`FlatDecoder::reset`] if it is emptied or replaced); after a frame or an error the
/// decoder starts afresh with the next frame. It holds the tokens of the incomplete frame
/// meanwhile (see [`decode_flat`] on their size): it is for clients, which read the replies
/// they asked for.
#[derive(Debug, Default)]
pub struct FlatDecoder {
    kept: Vec<Kept>,
    scan: Scan,
}

impl FlatDecoder {
    /// The next frame in `buf`, as [`decode_flat`] answers it.
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
    ) -> Result<Option<FlatFrame>, DecodeError> {
        if self.scan.is_fresh() {
            if let Some(answer) = decode_short_cuts(buf, limits) {
                // An inline command or a request: what a server reads, rare in a reply.
                return answer.map(|frame| frame.map(|frame| FlatFrame::from_frame(&frame)));
            }
            if self.kept.capacity() == 0 {
                self.kept.reserve(buf.len() / 16);
            }
        }
        match frame_len_from(buf, limits, Some(&mut self.kept), &mut self.scan) {
            Ok(Some(len)) => {
                self.scan = Scan::default();
                Ok(Some(FlatFrame {
                    bytes: buf.split_to(len).freeze(),
                    tokens: std::mem::take(&mut self.kept),
                }))
            }
            Ok(None) => Ok(None),
            Err(err) => {
                self.reset();
                Err(err)
            }
        }
    }

    /// Forgets the frame measured so far.
    pub fn reset(&mut self) {
        self.kept.clear();
        self.scan = Scan::default();
    }
}

impl FlatFrame {
    /// `frame`, flat: encoded as RESP3 and read back.
    pub fn from_frame(frame: &Frame) -> FlatFrame {
        let mut buf = BytesMut::new();
        encode(frame, Protocol::Resp3, &mut buf);
        let unlimited = Limits {
            max_frame_bytes: usize::MAX,
            max_bulk_bytes: usize::MAX,
            max_inline_bytes: usize::MAX,
            max_elements: usize::MAX,
            max_depth: MAX_DEPTH_CEILING,
        };
        let mut tokens = Vec::new();
        let len = frame_len(&buf, &unlimited, Some(&mut tokens))
            .expect("an encoded frame decodes")
            .expect("an encoded frame is whole");
        debug_assert_eq!(len, buf.len(), "one frame encodes to one frame");
        FlatFrame {
            bytes: buf.freeze(),
            tokens,
        }
    }

    /// The frame, to read in place.
    pub fn root(&self) -> FrameRef<'_> {
        FrameRef {
            bytes: &self.bytes,
            tokens: &self.tokens,
        }
    }

    /// The frame as a tree, its strings sharing this frame's bytes.
    pub fn to_frame(&self) -> Frame {
        self.root().to_frame()
    }
}

/// A frame inside a [`FlatFrame`]: its token and those of everything it holds.
#[derive(Clone, Copy, Debug)]
pub struct FrameRef<'a> {
    bytes: &'a Bytes,
    /// This frame's subtree, exactly.
    tokens: &'a [Kept],
}

impl<'a> FrameRef<'a> {
    fn token(&self) -> &'a Kept {
        &self.tokens[0]
    }

    /// The type of this frame.
    pub fn kind(&self) -> FrameKind {
        match self.token() {
            Kept::SimpleString(_) => FrameKind::SimpleString,
            Kept::SimpleError(_) => FrameKind::SimpleError,
            Kept::Integer(_) => FrameKind::Integer,
            Kept::BlobString(_) => FrameKind::BlobString,
            Kept::BlobError(_) => FrameKind::BlobError,
            Kept::Verbatim { .. } => FrameKind::VerbatimString,
            Kept::Null => FrameKind::Null,
            Kept::Double(_) => FrameKind::Double,
            Kept::Boolean(_) => FrameKind::Boolean,
            Kept::BigNumber(_) => FrameKind::BigNumber,
            Kept::Aggregate { kind, .. } => *kind,
        }
    }

    /// As [`Frame::as_bytes`]: a blob string's, simple string's or verbatim string's data.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self.token() {
            Kept::BlobString(range) | Kept::SimpleString(range) => Some(&self.bytes[range.clone()]),
            Kept::Verbatim { data, .. } => Some(&self.bytes[data.clone()]),
            _ => None,
        }
    }

    /// As [`Frame::as_str`].
    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes()
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
    }

    /// As [`Frame::as_integer`]: an integer, or a big number that fits in an `i64`.
    pub fn as_integer(&self) -> Option<i64> {
        match self.token() {
            Kept::Integer(n) => Some(*n),
            Kept::BigNumber(range) => std::str::from_utf8(&self.bytes[range.clone()])
                .ok()?
                .parse()
                .ok(),
            _ => None,
        }
    }

    /// The value of a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self.token() {
            Kept::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The text of a simple error.
    pub fn as_simple_error(&self) -> Option<&'a [u8]> {
        match self.token() {
            Kept::SimpleError(range) => Some(&self.bytes[range.clone()]),
            _ => None,
        }
    }

    /// Whether this is a null.
    pub fn is_null(&self) -> bool {
        matches!(self.token(), Kept::Null)
    }

    /// The items of an array, a set or a push (see [`FrameRef::kind`] for which).
    pub fn items(&self) -> Option<Children<'a>> {
        match self.token() {
            Kept::Aggregate {
                kind: FrameKind::Array | FrameKind::Set | FrameKind::Push,
                len,
                ..
            } => Some(Children {
                bytes: self.bytes,
                rest: &self.tokens[1..],
                left: *len,
            }),
            _ => None,
        }
    }

    /// The pairs of a map.
    pub fn pairs(&self) -> Option<Pairs<'a>> {
        match self.token() {
            Kept::Aggregate {
                kind: FrameKind::Map,
                len,
                ..
            } => Some(Pairs(Children {
                bytes: self.bytes,
                rest: &self.tokens[1..],
                left: len * 2,
            })),
            _ => None,
        }
    }

    /// The value of the first pair of a map whose key is the string `name`.
    pub fn field(&self, name: &str) -> Option<FrameRef<'a>> {
        self.pairs()?
            .find(|(key, _)| key.as_bytes() == Some(name.as_bytes()))
            .map(|(_, value)| value)
    }

    /// This frame as a tree, its strings sharing the frame's bytes.
    pub fn to_frame(&self) -> Frame {
        let mut tokens = self.tokens.iter().cloned();
        build(self.bytes, &mut tokens)
    }
}

impl Tokens for std::iter::Cloned<std::slice::Iter<'_, Kept>> {
    fn next_token(&mut self) -> Kept {
        self.next()
            .expect("frame_len kept every token of the frame")
    }
}

/// The frames an aggregate holds, in order.
#[derive(Clone, Debug)]
pub struct Children<'a> {
    bytes: &'a Bytes,
    rest: &'a [Kept],
    left: usize,
}

impl<'a> Iterator for Children<'a> {
    type Item = FrameRef<'a>;

    fn next(&mut self) -> Option<FrameRef<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let span = match self.rest[0] {
            Kept::Aggregate { span, .. } => span,
            _ => 1,
        };
        let (tokens, rest) = self.rest.split_at(span);
        self.rest = rest;
        Some(FrameRef {
            bytes: self.bytes,
            tokens,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Children<'_> {}

/// The pairs of a map, in order.
#[derive(Clone, Debug)]
pub struct Pairs<'a>(Children<'a>);

impl<'a> Iterator for Pairs<'a> {
    type Item = (FrameRef<'a>, FrameRef<'a>);

    fn next(&mut self) -> Option<(FrameRef<'a>, FrameRef<'a>)> {
        Some((self.0.next()?, self.0.next()?))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let pairs = self.0.left / 2;
        (pairs, Some(pairs))
    }
}

impl ExactSizeIterator for Pairs<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(frame: &Frame) -> FlatFrame {
        FlatFrame::from_frame(frame)
    }

    #[test]
    fn reads_a_reply_in_place() {
        let event = |n: i64| {
            Frame::map(vec![
                (Frame::simple("event_id"), Frame::simple(format!("id{n}"))),
                (Frame::simple("stream_version"), Frame::int(n)),
                (Frame::simple("payload"), Frame::bulk(vec![n as u8; 3])),
                (Frame::simple("meta"), Frame::array(vec![])),
            ])
        };
        let reply = Frame::map(vec![
            (Frame::simple("has_more"), Frame::boolean(true)),
            (
                Frame::simple("events"),
                Frame::array((0..3).map(event).collect()),
            ),
            (Frame::simple("last"), Frame::Null),
        ]);
        let flat = flat(&reply);
        let root = flat.root();
        assert_eq!(root.kind(), FrameKind::Map);
        assert_eq!(root.pairs().unwrap().len(), 3);
        assert_eq!(root.field("has_more").unwrap().as_bool(), Some(true));
        assert!(root.field("last").unwrap().is_null());
        assert!(root.field("absent").is_none());
        let events: Vec<_> = root.field("events").unwrap().items().unwrap().collect();
        assert_eq!(events.len(), 3);
        for (n, e) in events.iter().enumerate() {
            assert_eq!(
                e.field("event_id").unwrap().as_str(),
                Some(&*format!("id{n}"))
            );
            assert_eq!(
                e.field("stream_version").unwrap().as_integer(),
                Some(n as i64)
            );
            assert_eq!(
                e.field("payload").unwrap().as_bytes(),
                Some(&[n as u8; 3][..])
            );
            assert_eq!(e.field("meta").unwrap().items().unwrap().len(), 0);
            assert_eq!(e.to_frame(), event(n as i64));
        }
        assert_eq!(flat.to_frame(), reply);
    }

    #[test]
    fn accessors_answer_as_the_tree_does() {
        let frames = [
            Frame::simple("ok"),
            Frame::error("ERR", "no"),
            Frame::int(-7),
            Frame::bulk("blob"),
            Frame::BlobError(Bytes::from_static(b"SYNTAX x")),
            Frame::verbatim(*b"txt", "words"),
            Frame::Null,
            Frame::double(1.5),
            Frame::boolean(false),
            Frame::BigNumber("123456789".into()),
            Frame::BigNumber("123456789012345678901234567890".into()),
            Frame::set(vec![Frame::int(1)]),
            Frame::push(vec![Frame::simple("message")]),
            Frame::Attribute {
                attributes: vec![(Frame::simple("ttl"), Frame::int(3))],
                frame: Box::new(Frame::int(4)),
            },
        ];
        for frame in frames {
            let flat = flat(&frame);
            let root = flat.root();
            assert_eq!(root.kind(), frame.kind(), "{frame:?}");
            assert_eq!(
                root.as_bytes(),
                frame.as_bytes().map(|b| &b[..]),
                "{frame:?}"
            );
            assert_eq!(root.as_str(), frame.as_str(), "{frame:?}");
            assert_eq!(root.as_integer(), frame.as_integer(), "{frame:?}");
            assert_eq!(root.is_null(), frame.is_null(), "{frame:?}");
            assert_eq!(
                root.pairs().is_some(),
                frame.as_map().is_some(),
                "{frame:?}"
            );
            assert_eq!(
                root.as_simple_error(),
                match &frame {
                    Frame::SimpleError(text) => Some(&text[..]),
                    _ => None,
                }
            );
            assert_eq!(root.to_frame(), frame);
        }
    }

    #[test]
    fn spans_skip_nested_aggregates() {
        let nested = Frame::array(vec![
            Frame::array(vec![Frame::array(vec![Frame::int(1)]), Frame::int(2)]),
            Frame::map(vec![(Frame::int(3), Frame::array(vec![]))]),
            Frame::int(4),
        ]);
        let flat = flat(&nested);
        let items: Vec<_> = flat.root().items().unwrap().collect();
        assert_eq!(items.len(), 3);
        assert_eq!(items[2].as_integer(), Some(4));
        let Frame::Array(expected) = &nested else {
            unreachable!()
        };
        for (item, frame) in items.iter().zip(expected) {
            assert_eq!(&item.to_frame(), frame);
        }
    }
}
