//! Property tests of the RESP3 codec: every frame round-trips, every truncation waits for
//! more, and no input makes the decoder panic.

use bytes::{Bytes, BytesMut};
use net::resp3::{
    DecodeError, FlatDecoder, FlatFrame, Frame, Limits, Protocol, decode, decode_flat, encode,
};
use proptest::collection::vec;
use proptest::prelude::*;

/// Bytes that may appear in a simple string or error: anything but CR and LF.
fn line_bytes() -> impl Strategy<Value = Bytes> {
    vec(
        any::<u8>().prop_filter("no line breaks", |b| *b != b'\r' && *b != b'\n'),
        0..12,
    )
    .prop_map(Bytes::from)
}

fn blob_bytes() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

/// Doubles that compare equal to themselves, so a round trip can use `==`; NaN has its own
/// unit test.
fn comparable_double() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("not NaN", |x| !x.is_nan()),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-0.0),
    ]
}

fn scalar() -> impl Strategy<Value = Frame> {
    prop_oneof![
        line_bytes().prop_map(Frame::SimpleString),
        line_bytes().prop_map(Frame::SimpleError),
        any::<i64>().prop_map(Frame::Integer),
        blob_bytes().prop_map(Frame::BlobString),
        blob_bytes().prop_map(Frame::BlobError),
        (any::<[u8; 3]>(), blob_bytes())
            .prop_map(|(format, data)| Frame::VerbatimString { format, data }),
        Just(Frame::Null),
        comparable_double().prop_map(Frame::Double),
        any::<bool>().prop_map(Frame::Boolean),
        "-?[0-9]{1,40}".prop_map(Frame::BigNumber),
    ]
}

/// Any frame, nested at most four aggregates deep.
fn frame() -> impl Strategy<Value = Frame> {
    scalar().prop_recursive(4, 64, 6, |inner| {
        let pairs = vec((inner.clone(), inner.clone()), 0..4);
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Frame::Array),
            pairs.clone().prop_map(Frame::Map),
            vec(inner.clone(), 0..6).prop_map(Frame::Set),
            vec(inner.clone(), 0..6).prop_map(Frame::Push),
            (pairs, inner).prop_map(|(attributes, frame)| Frame::Attribute {
                attributes,
                frame: Box::new(frame),
            }),
        ]
    })
}

fn encoded(frame: &Frame, proto: Protocol) -> BytesMut {
    let mut out = BytesMut::new();
    encode(frame, proto, &mut out);
    out
}

/// Small limits, so random input reaches them.
fn small_limits() -> Limits {
    Limits {
        max_frame_bytes: 4096,
        max_bulk_bytes: 512,
        max_elements: 64,
        max_depth: 8,
        max_inline_bytes: 256,
    }
}

proptest! {
    #[test]
    fn resp3_round_trips(frame in frame()) {
        let mut buf = encoded(&frame, Protocol::Resp3);
        let decoded = decode(&mut buf, &Limits::default()).unwrap();
        prop_assert_eq!(decoded, Some(frame));
        prop_assert!(buf.is_empty());
    }

    /// A flat frame walked child by child (each aggregate's span skipping its subtree) gives
    /// the frame back, and so does building it whole.
    #[test]
    fn flat_frames_walk_as_trees(frame in frame()) {
        let flat = FlatFrame::from_frame(&frame);
        prop_assert_eq!(&flat.to_frame(), &frame);
        prop_assert_eq!(&walked(flat.root()), &frame);
    }

    #[test]
    fn resp2_encoding_always_decodes(frame in frame()) {
        let mut buf = encoded(&frame, Protocol::Resp2);
        prop_assert!(decode(&mut buf, &Limits::default()).unwrap().is_some());
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn every_truncation_is_incomplete(frame in frame()) {
        let bytes = encoded(&frame, Protocol::Resp3);
        for len in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..len]);
            prop_assert_eq!(decode(&mut buf, &Limits::default()), Ok(None));
            prop_assert_eq!(buf.len(), len);
        }
    }

    #[test]
    fn frames_followed_by_more_decode_alone(first in frame(), second in frame()) {
        let mut buf = encoded(&first, Protocol::Resp3);
        encode(&second, Protocol::Resp3, &mut buf);
        let limits = Limits::default();
        prop_assert_eq!(decode(&mut buf, &limits).unwrap(), Some(first));
        prop_assert_eq!(decode(&mut buf, &limits).unwrap(), Some(second));
        prop_assert!(buf.is_empty());
    }

    /// Whole frames, their truncations and frames followed by more, with the default limits
    /// and small ones: `decode_flat` gives `decode`'s answer and leaves the same bytes.
    #[test]
    fn decode_flat_answers_as_decode(
        first in frame(),
        second in frame(),
        cut in any::<prop::sample::Index>(),
        small in any::<bool>(),
    ) {
        let limits = if small { small_limits() } else { Limits::default() };
        let mut bytes = encoded(&first, Protocol::Resp3);
        encode(&second, Protocol::Resp3, &mut bytes);
        for len in [bytes.len(), cut.index(bytes.len() + 1)] {
            let mut buf = BytesMut::from(&bytes[..len]);
            loop {
                let mut flat = buf.clone();
                let flat_result = decode_flat(&mut flat, &limits);
                let result = decode(&mut buf, &limits);
                prop_assert_eq!(&flat_result.map(|f| f.map(|f| f.to_frame())), &result);
                if result.is_ok() {
                    prop_assert_eq!(&flat, &buf);
                }
                if !matches!(result, Ok(Some(_))) {
                    break;
                }
            }
        }
    }

    /// Frames arriving in pieces: after each piece, a `FlatDecoder` that goes on from where it
    /// stopped answers every call as `decode_flat` reading the buffer from its start.
    #[test]
    fn a_flat_decoder_fed_in_pieces_answers_as_decode_flat(
        first in frame(),
        second in frame(),
        garbage in vec(any::<u8>(), 0..64),
        cuts in vec(any::<prop::sample::Index>(), 0..12),
        small in any::<bool>(),
    ) {
        let limits = if small { small_limits() } else { Limits::default() };
        let mut bytes = encoded(&first, Protocol::Resp3);
        encode(&second, Protocol::Resp3, &mut bytes);
        bytes.extend_from_slice(&garbage);
        check_pieces(&bytes, &cuts, &limits);
    }

    #[test]
    fn a_flat_decoder_fed_arbitrary_pieces_answers_as_decode_flat(
        input in vec(any::<u8>(), 0..512),
        cuts in vec(any::<prop::sample::Index>(), 0..12),
    ) {
        check_pieces(&input, &cuts, &small_limits());
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in vec(any::<u8>(), 0..512)) {
        check_decode_never_misbehaves(&input);
    }

    /// Random bytes mostly fail on the first byte; starting from a real frame with a few
    /// bytes changed reaches deeper into the decoder.
    #[test]
    fn corrupted_frames_never_panic(
        frame in frame(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut input = encoded(&frame, Protocol::Resp3).to_vec();
        if !input.is_empty() {
            for (index, byte) in flips {
                let i = index.index(input.len());
                input[i] = byte;
            }
        }
        check_decode_never_misbehaves(&input);
    }
}

/// `frame` rebuilt through [`net::FrameRef`]'s accessors: aggregates by walking their
/// children, anything else with `to_frame`.
fn walked(frame: net::FrameRef<'_>) -> Frame {
    use net::FrameKind;
    let items = || {
        frame
            .items()
            .expect("an aggregate has items")
            .map(walked)
            .collect()
    };
    match frame.kind() {
        FrameKind::Array => Frame::Array(items()),
        FrameKind::Set => Frame::Set(items()),
        FrameKind::Push => Frame::Push(items()),
        FrameKind::Map => Frame::Map(
            frame
                .pairs()
                .expect("a map has pairs")
                .map(|(k, v)| (walked(k), walked(v)))
                .collect(),
        ),
        _ => frame.to_frame(),
    }
}

/// Feeds `bytes` in pieces cut at `cuts` to a [`FlatDecoder`] and, beside it, to
/// [`decode_flat`] over the same growing buffer: after each piece both are called until they
/// answer `None` or an error, and must agree on every answer and on the bytes left.
fn check_pieces(bytes: &[u8], cuts: &[prop::sample::Index], limits: &Limits) {
    let mut ends: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    ends.push(bytes.len());
    ends.sort_unstable();
    let mut decoder = FlatDecoder::default();
    let (mut fed, mut stateless) = (BytesMut::new(), BytesMut::new());
    let mut start = 0;
    for end in ends {
        fed.extend_from_slice(&bytes[start..end]);
        stateless.extend_from_slice(&bytes[start..end]);
        start = end;
        loop {
            let expected = decode_flat(&mut stateless, limits);
            let got = decoder.decode(&mut fed, limits);
            assert_eq!(got, expected, "after {end} of {} bytes", bytes.len());
            assert_eq!(fed, stateless, "different bytes left");
            match expected {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// Decodes `input` to the end with small limits, checking the `decode` contract on every
/// call: `Ok(None)` consumes nothing and `Ok(Some)` consumes something. `decode_flat` must
/// answer every call exactly as `decode` does, and leave the same bytes.
fn check_decode_never_misbehaves(input: &[u8]) {
    let limits = small_limits();
    let mut buf = BytesMut::from(input);
    loop {
        let before = buf.len();
        let mut flat = buf.clone();
        let flat_result = decode_flat(&mut flat, &limits);
        let result = decode(&mut buf, &limits);
        assert_eq!(
            flat_result.map(|f| f.map(|f| f.to_frame())),
            result,
            "decode_flat and decode disagree"
        );
        if result.is_ok() {
            assert_eq!(flat, buf, "decode_flat and decode leave different bytes");
        }
        match result {
            Ok(Some(_)) => assert!(buf.len() < before, "a frame consumed nothing"),
            Ok(None) => {
                assert_eq!(buf.len(), before, "incomplete frame consumed bytes");
                break;
            }
            Err(err) => {
                assert!(!err.to_string().is_empty());
                break;
            }
        }
    }
}

#[test]
fn limit_errors_are_distinguished_from_protocol_errors() {
    let limits = small_limits();
    let err = decode(&mut BytesMut::from(&b"$513\r\n"[..]), &limits).unwrap_err();
    assert!(err.is_limit());
    assert!(matches!(err, DecodeError::BulkTooLarge { .. }));
    let err = decode(&mut BytesMut::from(&b"$x\r\n"[..]), &limits).unwrap_err();
    assert!(!err.is_limit());
}
