//! [`Frame`]: one RESP3 value, and [`FrameKind`], the name of its type.

use std::fmt;

use bytes::Bytes;

/// One RESP3 value, as decoded from or encoded to the wire.
///
/// Strings are [`Bytes`] because RESP strings are binary and because decoding slices them out
/// of the read buffer without copying. Maps and attributes are ordered `Vec`s of pairs, never
/// hash maps: the wire order is part of the reply (an event map's fields come in a fixed order)
/// and iteration must be deterministic.
///
/// The decoder produces only frames that encode back to equivalent bytes. A hand-built frame
/// can hold values the wire cannot carry (a CR or LF inside a simple string); the encoder makes
/// those safe rather than emit bytes that would desync the peer (see [`encode`](super::encode)).
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// `+OK\r\n`: a short, line-safe string (no CR or LF).
    SimpleString(Bytes),
    /// `-CODE message\r\n`: an error reply. By convention the first word is an upper-case code.
    SimpleError(Bytes),
    /// `:42\r\n`: a signed 64-bit integer.
    Integer(i64),
    /// `$5\r\nhello\r\n`: a length-prefixed binary string.
    BlobString(Bytes),
    /// `!21\r\nSYNTAX invalid syntax\r\n`: a length-prefixed error.
    BlobError(Bytes),
    /// `=15\r\ntxt:Some string\r\n`: a string with a three-byte format hint (`txt`, `mkd`).
    VerbatimString { format: [u8; 3], data: Bytes },
    /// `_\r\n` in RESP3; `$-1\r\n` and `*-1\r\n` in RESP2.
    Null,
    /// `,1.23\r\n`, `,inf\r\n`, `,-inf\r\n`, `,nan\r\n`.
    Double(f64),
    /// `#t\r\n` or `#f\r\n`.
    Boolean(bool),
    /// `(3492890328409238509324850943850943825024385\r\n`: an integer of any size, kept as its
    /// decimal text (an optional sign, then digits) because nothing here needs its value.
    BigNumber(String),
    /// `*2\r\n...`: an ordered list of frames.
    Array(Vec<Frame>),
    /// `%1\r\n<key><value>`: key/value pairs in wire order.
    Map(Vec<(Frame, Frame)>),
    /// `~2\r\n...`: an unordered collection, kept in wire order.
    Set(Vec<Frame>),
    /// `|1\r\n<key><value><frame>`: auxiliary key/value pairs attached to the frame after them.
    ///
    /// RESP3 sends attributes *before* the value they describe, and an attribute inside an
    /// aggregate does not count as one of its elements. Attaching the pairs to the following
    /// frame keeps both facts true without a special case: `*2\r\n|1\r\n...:1\r\n:2\r\n` is an
    /// array of two elements, the first of which is an `Attribute`. Consumers that do not care
    /// can call [`Frame::without_attributes`].
    Attribute {
        attributes: Vec<(Frame, Frame)>,
        frame: Box<Frame>,
    },
    /// `>2\r\n...`: out-of-band data (subscription messages), not a reply to a request.
    Push(Vec<Frame>),
}

/// The type of a [`Frame`], without its contents: for error messages ("expected a blob
/// string, got an integer") and for naming the item a decode error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameKind {
    SimpleString,
    SimpleError,
    Integer,
    BlobString,
    BlobError,
    VerbatimString,
    Null,
    Double,
    Boolean,
    BigNumber,
    Array,
    Map,
    Set,
    Attribute,
    Push,
}

impl FrameKind {
    /// Every kind, in the order of the RESP3 specification.
    pub const ALL: [FrameKind; 15] = [
        FrameKind::SimpleString,
        FrameKind::SimpleError,
        FrameKind::Integer,
        FrameKind::BlobString,
        FrameKind::BlobError,
        FrameKind::VerbatimString,
        FrameKind::Null,
        FrameKind::Double,
        FrameKind::Boolean,
        FrameKind::BigNumber,
        FrameKind::Array,
        FrameKind::Map,
        FrameKind::Set,
        FrameKind::Attribute,
        FrameKind::Push,
    ];

    /// The byte that starts a frame of this kind in RESP3.
    pub fn type_byte(self) -> u8 {
        match self {
            FrameKind::SimpleString => b'+',
            FrameKind::SimpleError => b'-',
            FrameKind::Integer => b':',
            FrameKind::BlobString => b'$',
            FrameKind::BlobError => b'!',
            FrameKind::VerbatimString => b'=',
            FrameKind::Null => b'_',
            FrameKind::Double => b',',
            FrameKind::Boolean => b'#',
            FrameKind::BigNumber => b'(',
            FrameKind::Array => b'*',
            FrameKind::Map => b'%',
            FrameKind::Set => b'~',
            FrameKind::Attribute => b'|',
            FrameKind::Push => b'>',
        }
    }

    /// The kind a RESP3 type byte starts, if it starts one.
    pub fn from_type_byte(byte: u8) -> Option<FrameKind> {
        // The inverse of `type_byte`, as a jump table: the decoder asks once per item.
        Some(match byte {
            b'+' => FrameKind::SimpleString,
            b'-' => FrameKind::SimpleError,
            b':' => FrameKind::Integer,
            b'$' => FrameKind::BlobString,
            b'!' => FrameKind::BlobError,
            b'=' => FrameKind::VerbatimString,
            b'_' => FrameKind::Null,
            b',' => FrameKind::Double,
            b'#' => FrameKind::Boolean,
            b'(' => FrameKind::BigNumber,
            b'*' => FrameKind::Array,
            b'%' => FrameKind::Map,
            b'~' => FrameKind::Set,
            b'|' => FrameKind::Attribute,
            b'>' => FrameKind::Push,
            _ => return None,
        })
    }

    /// Whether frames of this kind contain other frames.
    pub fn is_aggregate(self) -> bool {
        matches!(
            self,
            FrameKind::Array
                | FrameKind::Map
                | FrameKind::Set
                | FrameKind::Attribute
                | FrameKind::Push
        )
    }
}

impl fmt::Display for FrameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameKind::SimpleString => "simple string",
            FrameKind::SimpleError => "simple error",
            FrameKind::Integer => "integer",
            FrameKind::BlobString => "blob string",
            FrameKind::BlobError => "blob error",
            FrameKind::VerbatimString => "verbatim string",
            FrameKind::Null => "null",
            FrameKind::Double => "double",
            FrameKind::Boolean => "boolean",
            FrameKind::BigNumber => "big number",
            FrameKind::Array => "array",
            FrameKind::Map => "map",
            FrameKind::Set => "set",
            FrameKind::Attribute => "attribute",
            FrameKind::Push => "push",
        })
    }
}

/// Constructors, named for how replies are written: `Frame::simple("OK")`,
/// `Frame::error("NOTFOUND", "subscription not found")`, `Frame::map(vec![...])`.
impl Frame {
    /// `+text\r\n`.
    pub fn simple(text: impl Into<Bytes>) -> Frame {
        Frame::SimpleString(text.into())
    }

    /// `-CODE message\r\n`, the form every error reply takes (`-WRONGVER current stream
    /// version is 3 but expected 2 ...`).
    pub fn error(code: &str, message: impl fmt::Display) -> Frame {
        Frame::SimpleError(Bytes::from(format!("{code} {message}")))
    }

    /// `$len\r\nbytes\r\n`. Takes ownership without copying when given `Bytes` or a `Vec`.
    pub fn bulk(bytes: impl Into<Bytes>) -> Frame {
        Frame::BlobString(bytes.into())
    }

    /// `:n\r\n`.
    pub fn int(n: i64) -> Frame {
        Frame::Integer(n)
    }

    /// `,x\r\n`.
    pub fn double(x: f64) -> Frame {
        Frame::Double(x)
    }

    /// `#t\r\n` or `#f\r\n`.
    pub fn boolean(b: bool) -> Frame {
        Frame::Boolean(b)
    }

    /// `=len\r\nfmt:data\r\n`, for example `Frame::verbatim(*b"txt", "text for humans")`.
    pub fn verbatim(format: [u8; 3], data: impl Into<Bytes>) -> Frame {
        Frame::VerbatimString {
            format,
            data: data.into(),
        }
    }

    /// `*n\r\n` followed by the items.
    pub fn array(items: Vec<Frame>) -> Frame {
        Frame::Array(items)
    }

    /// `%n\r\n` followed by each key and value, in the order given.
    pub fn map(pairs: Vec<(Frame, Frame)>) -> Frame {
        Frame::Map(pairs)
    }

    /// `~n\r\n` followed by the items.
    pub fn set(items: Vec<Frame>) -> Frame {
        Frame::Set(items)
    }

    /// `>n\r\n` followed by the items.
    pub fn push(items: Vec<Frame>) -> Frame {
        Frame::Push(items)
    }
}

/// Accessors for a command parser, which must accept an argument whether the client sent it
/// as a blob, simple or verbatim string.
impl Frame {
    /// The type of this frame.
    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::SimpleString(_) => FrameKind::SimpleString,
            Frame::SimpleError(_) => FrameKind::SimpleError,
            Frame::Integer(_) => FrameKind::Integer,
            Frame::BlobString(_) => FrameKind::BlobString,
            Frame::BlobError(_) => FrameKind::BlobError,
            Frame::VerbatimString { .. } => FrameKind::VerbatimString,
            Frame::Null => FrameKind::Null,
            Frame::Double(_) => FrameKind::Double,
            Frame::Boolean(_) => FrameKind::Boolean,
            Frame::BigNumber(_) => FrameKind::BigNumber,
            Frame::Array(_) => FrameKind::Array,
            Frame::Map(_) => FrameKind::Map,
            Frame::Set(_) => FrameKind::Set,
            Frame::Attribute { .. } => FrameKind::Attribute,
            Frame::Push(_) => FrameKind::Push,
        }
    }

    /// The bytes of a string frame: a blob string, a simple string, or a verbatim string's
    /// data (without its format). `None` for every other kind, errors included.
    ///
    /// Returns `&Bytes` so a caller can keep a payload with a cheap `clone` instead of a copy.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Frame::BlobString(bytes)
            | Frame::SimpleString(bytes)
            | Frame::VerbatimString { data: bytes, .. } => Some(bytes),
            _ => None,
        }
    }

    /// [`as_bytes`](Self::as_bytes) as UTF-8 text; `None` if it is not valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes()
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
    }

    /// The value of an integer frame, or of a big number that fits in an `i64`.
    ///
    /// Strings holding digits are not converted: clients send every argument as a blob
    /// string, and which arguments are numbers is the command grammar's business.
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Frame::Integer(n) => Some(*n),
            Frame::BigNumber(text) => text.parse().ok(),
            _ => None,
        }
    }

    /// The items of an array.
    pub fn as_array(&self) -> Option<&[Frame]> {
        match self {
            Frame::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The items of an array, by value, so a command parser can take its arguments without
    /// cloning; any other frame is handed back unchanged.
    pub fn into_array(self) -> Result<Vec<Frame>, Frame> {
        match self {
            Frame::Array(items) => Ok(items),
            other => Err(other),
        }
    }

    /// The pairs of a map.
    pub fn as_map(&self) -> Option<&[(Frame, Frame)]> {
        match self {
            Frame::Map(pairs) => Some(pairs),
            _ => None,
        }
    }

    /// Whether this is [`Frame::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Frame::Null)
    }

    /// The frame with any attributes in front of it removed (outermost only: attributes
    /// nested inside an aggregate stay).
    pub fn without_attributes(self) -> Frame {
        let mut frame = self;
        while let Frame::Attribute { frame: inner, .. } = frame {
            frame = *inner;
        }
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_type_bytes() {
        for kind in FrameKind::ALL {
            assert_eq!(FrameKind::from_type_byte(kind.type_byte()), Some(kind));
        }
        assert_eq!(FrameKind::from_type_byte(b'P'), None);
        for byte in 0..=u8::MAX {
            let kind = FrameKind::ALL.into_iter().find(|k| k.type_byte() == byte);
            assert_eq!(FrameKind::from_type_byte(byte), kind, "byte {byte}");
        }
    }

    #[test]
    fn error_joins_code_and_message() {
        let frame = Frame::error("WRONGVER", format_args!("expected {}", 3));
        assert_eq!(
            frame,
            Frame::SimpleError(Bytes::from_static(b"WRONGVER expected 3"))
        );
    }

    #[test]
    fn as_bytes_accepts_every_string_form() {
        for frame in [
            Frame::bulk("EAPPEND"),
            Frame::simple("EAPPEND"),
            Frame::verbatim(*b"txt", "EAPPEND"),
        ] {
            assert_eq!(frame.as_bytes().map(|b| &b[..]), Some(&b"EAPPEND"[..]));
            assert_eq!(frame.as_str(), Some("EAPPEND"));
        }
        assert_eq!(Frame::error("ERR", "x").as_bytes(), None);
        assert_eq!(Frame::int(1).as_bytes(), None);
        assert_eq!(Frame::bulk(vec![0xff]).as_str(), None);
    }

    #[test]
    fn as_integer_accepts_integers_and_small_big_numbers() {
        assert_eq!(Frame::int(-7).as_integer(), Some(-7));
        assert_eq!(Frame::BigNumber("12".into()).as_integer(), Some(12));
        assert_eq!(
            Frame::BigNumber("99999999999999999999".into()).as_integer(),
            None
        );
        assert_eq!(Frame::bulk("12").as_integer(), None);
    }

    #[test]
    fn aggregate_accessors() {
        let array = Frame::array(vec![Frame::int(1)]);
        assert_eq!(array.as_array(), Some(&[Frame::int(1)][..]));
        assert_eq!(array.clone().into_array(), Ok(vec![Frame::int(1)]));
        assert_eq!(Frame::Null.into_array(), Err(Frame::Null));
        let map = Frame::map(vec![(Frame::simple("k"), Frame::int(1))]);
        assert_eq!(map.as_map().map(<[_]>::len), Some(1));
        assert!(Frame::Null.is_null());
        assert_eq!(array.kind(), FrameKind::Array);
    }

    #[test]
    fn without_attributes_strips_outer_attributes() {
        let attributed = Frame::Attribute {
            attributes: vec![(Frame::simple("a"), Frame::int(1))],
            frame: Box::new(Frame::Attribute {
                attributes: vec![],
                frame: Box::new(Frame::int(5)),
            }),
        };
        assert_eq!(attributed.without_attributes(), Frame::int(5));
    }
}
