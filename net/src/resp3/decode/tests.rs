use bytes::{Bytes, BytesMut};

use super::*;
use crate::resp3::{Protocol, encode};

fn blob(text: &str) -> Frame {
    Frame::BlobString(Bytes::copy_from_slice(text.as_bytes()))
}

fn simple(text: &str) -> Frame {
    Frame::SimpleString(Bytes::copy_from_slice(text.as_bytes()))
}

/// Decodes one frame from `input` with default limits and checks it used every byte.
fn decode_all(input: &[u8]) -> Result<Frame, DecodeError> {
    decode_all_with(input, &Limits::default())
}

fn decode_all_with(input: &[u8], limits: &Limits) -> Result<Frame, DecodeError> {
    let mut buf = BytesMut::from(input);
    let frame = decode(&mut buf, limits)?.expect("a whole frame");
    assert!(buf.is_empty(), "left over: {:?}", &buf[..]);
    Ok(frame)
}

/// Decodes from `input`, expecting an error.
fn decode_err(input: &[u8], limits: &Limits) -> DecodeError {
    let mut buf = BytesMut::from(input);
    decode(&mut buf, limits).expect_err("an error")
}

/// A sample of every kind of frame, with its RESP3 bytes.
fn samples() -> Vec<(&'static [u8], Frame)> {
    vec![
        (b"+OK\r\n", simple("OK")),
        (b"+\r\n", simple("")),
        (
            b"-NOTFOUND subscription not found\r\n",
            Frame::error("NOTFOUND", "subscription not found"),
        ),
        (b":0\r\n", Frame::int(0)),
        (b":-42\r\n", Frame::int(-42)),
        (b":9223372036854775807\r\n", Frame::int(i64::MAX)),
        (b":-9223372036854775808\r\n", Frame::int(i64::MIN)),
        (b"$5\r\nhello\r\n", blob("hello")),
        (b"$0\r\n\r\n", blob("")),
        (b"$4\r\na\r\nb\r\n", blob("a\r\nb")),
        (
            b"!21\r\nSYNTAX invalid syntax\r\n",
            Frame::BlobError(Bytes::from_static(b"SYNTAX invalid syntax")),
        ),
        (
            b"=15\r\ntxt:Some string\r\n",
            Frame::verbatim(*b"txt", "Some string"),
        ),
        (b"=4\r\nmkd:\r\n", Frame::verbatim(*b"mkd", "")),
        (b"_\r\n", Frame::Null),
        (b",1.5\r\n", Frame::double(1.5)),
        (b",-2e-3\r\n", Frame::double(-0.002)),
        (b",inf\r\n", Frame::double(f64::INFINITY)),
        (b",-inf\r\n", Frame::double(f64::NEG_INFINITY)),
        (b"#t\r\n", Frame::boolean(true)),
        (b"#f\r\n", Frame::boolean(false)),
        (
            b"(3492890328409238509324850943850943825024385\r\n",
            Frame::BigNumber("3492890328409238509324850943850943825024385".into()),
        ),
        (b"(-12\r\n", Frame::BigNumber("-12".into())),
        (b"*0\r\n", Frame::array(vec![])),
        (
            b"*3\r\n:1\r\n$3\r\nfoo\r\n*1\r\n_\r\n",
            Frame::array(vec![
                Frame::int(1),
                blob("foo"),
                Frame::array(vec![Frame::Null]),
            ]),
        ),
        (
            b"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n",
            Frame::map(vec![
                (simple("first"), Frame::int(1)),
                (simple("second"), Frame::int(2)),
            ]),
        ),
        (
            b"~2\r\n+a\r\n#t\r\n",
            Frame::set(vec![simple("a"), Frame::boolean(true)]),
        ),
        (
            b">3\r\n+message\r\n+sub\r\n:7\r\n",
            Frame::push(vec![simple("message"), simple("sub"), Frame::int(7)]),
        ),
        (
            b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.1923\r\n*2\r\n:2039123\r\n:9543892\r\n",
            Frame::Attribute {
                attributes: vec![(
                    simple("key-popularity"),
                    Frame::map(vec![(blob("a"), Frame::double(0.1923))]),
                )],
                frame: Box::new(Frame::array(vec![Frame::int(2039123), Frame::int(9543892)])),
            },
        ),
    ]
}

#[test]
fn decodes_every_type() {
    for (input, expected) in samples() {
        assert_eq!(
            decode_all(input),
            Ok(expected),
            "{:?}",
            input.escape_ascii()
        );
    }
}

#[test]
fn encode_resp3_writes_the_sample_bytes() {
    for (expected, frame) in samples() {
        let mut out = BytesMut::new();
        encode(&frame, Protocol::Resp3, &mut out);
        assert_eq!(out, expected, "{frame:?}");
    }
}

#[test]
fn decodes_nan() {
    let frame = decode_all(b",nan\r\n").unwrap();
    assert!(matches!(frame, Frame::Double(x) if x.is_nan()));
}

#[test]
fn accepts_integers_with_plus_sign() {
    assert_eq!(decode_all(b":+7\r\n"), Ok(Frame::int(7)));
}

#[test]
fn integers_and_lengths_parse_as_the_standard_parsers_do() {
    let texts = [
        "0",
        "7",
        "+7",
        "-7",
        "-0",
        "+",
        "-",
        "",
        "12a",
        "a12",
        " 1",
        "1 ",
        "+-1",
        "--1",
        "007",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999999",
        "\u{663}",
    ];
    for text in texts {
        let int = text.parse::<i64>().map_err(|_| DecodeError::InvalidInteger);
        let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
        let kind = FrameKind::BlobString;
        let len = match text.parse::<u64>() {
            Ok(n) if digits => Ok(Some(n)),
            _ => Err(DecodeError::InvalidLength { kind }),
        };
        assert_eq!(parse_integer(text.as_bytes()), int, "{text:?}");
        assert_eq!(parse_header_len(text.as_bytes(), kind), len, "{text:?}");
    }
}

#[test]
fn accepts_resp2_nulls() {
    assert_eq!(decode_all(b"$-1\r\n"), Ok(Frame::Null));
    assert_eq!(decode_all(b"*-1\r\n"), Ok(Frame::Null));
    assert_eq!(
        decode_all(b"*2\r\n$-1\r\n*-1\r\n"),
        Ok(Frame::array(vec![Frame::Null, Frame::Null]))
    );
}

#[test]
fn rejects_null_lengths_where_resp2_has_none() {
    for input in [
        &b"%-1\r\n"[..],
        b"!-1\r\n",
        b"=-1\r\n",
        b"~-1\r\n",
        b">-1\r\n",
    ] {
        let err = decode_err(input, &Limits::default());
        assert!(matches!(err, DecodeError::InvalidLength { .. }), "{err:?}");
    }
}

#[test]
fn attribute_inside_an_aggregate_is_not_an_element() {
    let frame = decode_all(b"*2\r\n|1\r\n+ttl\r\n:5\r\n+a\r\n+b\r\n").unwrap();
    let items = frame.into_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].clone().without_attributes(), simple("a"));
    assert_eq!(items[1], simple("b"));
}

#[test]
fn attribute_alone_is_incomplete() {
    let mut buf = BytesMut::from(&b"|1\r\n+ttl\r\n:5\r\n"[..]);
    assert_eq!(decode(&mut buf, &Limits::default()), Ok(None));
    assert_eq!(buf.len(), 14);
}

#[test]
fn inline_commands_decode_to_blob_arrays() {
    let ping = Frame::array(vec![blob("PING")]);
    assert_eq!(decode_all(b"PING\r\n"), Ok(ping.clone()));
    assert_eq!(decode_all(b"PING\n"), Ok(ping));
    assert_eq!(
        decode_all(b"EAPPEND s1 created PAYLOAD \"{\\\"a\\\": 1}\"\r\n"),
        Ok(Frame::array(vec![
            blob("EAPPEND"),
            blob("s1"),
            blob("created"),
            blob("PAYLOAD"),
            blob("{\"a\": 1}"),
        ]))
    );
    assert_eq!(decode_all(b"\r\n"), Ok(Frame::array(vec![])));
    assert_eq!(decode_all(b"  \t \n"), Ok(Frame::array(vec![])));
}

#[test]
fn inline_command_waits_for_its_line_end() {
    let mut buf = BytesMut::from(&b"PING"[..]);
    assert_eq!(decode(&mut buf, &Limits::default()), Ok(None));
    assert_eq!(&buf[..], b"PING");
}

#[test]
fn inline_and_resp_frames_pipeline() {
    let mut buf = BytesMut::from(&b"PING\r\n*1\r\n$4\r\nPING\r\nECHO hi\r\n"[..]);
    let limits = Limits::default();
    let mut frames = Vec::new();
    while let Some(frame) = decode(&mut buf, &limits).unwrap() {
        frames.push(frame);
    }
    assert_eq!(
        frames,
        [
            Frame::array(vec![blob("PING")]),
            Frame::array(vec![blob("PING")]),
            Frame::array(vec![blob("ECHO"), blob("hi")]),
        ]
    );
    assert!(buf.is_empty());
}

#[test]
fn inline_unbalanced_quotes_are_a_protocol_error() {
    let err = decode_err(b"SET k \"v\r\n", &Limits::default());
    assert_eq!(err, DecodeError::UnbalancedQuotes);
}

#[test]
fn every_prefix_is_incomplete_and_consumes_nothing() {
    let limits = Limits::default();
    for (input, expected) in samples() {
        let mut buf = BytesMut::new();
        for (i, &byte) in input.iter().enumerate() {
            buf.extend_from_slice(&[byte]);
            let result = decode(&mut buf, &limits).unwrap();
            if i + 1 < input.len() {
                assert_eq!(
                    result,
                    None,
                    "{:?} after {} bytes",
                    input.escape_ascii(),
                    i + 1
                );
                assert_eq!(buf.len(), i + 1, "consumed part of a frame");
            } else {
                assert_eq!(result, Some(expected.clone()));
                assert!(buf.is_empty());
            }
        }
    }
}

#[test]
fn pipelined_frames_decode_in_order() {
    let limits = Limits::default();
    let frames: Vec<Frame> = (0..1000)
        .map(|i| match i % 4 {
            0 => Frame::int(i),
            1 => Frame::bulk(format!("value-{i}")),
            2 => Frame::array(vec![Frame::simple("item"), Frame::int(i)]),
            _ => Frame::map(vec![(Frame::bulk("n"), Frame::int(i))]),
        })
        .collect();
    let mut buf = BytesMut::new();
    for frame in &frames {
        encode(frame, Protocol::Resp3, &mut buf);
    }
    let mut decoded = Vec::new();
    while let Some(frame) = decode(&mut buf, &limits).unwrap() {
        decoded.push(frame);
    }
    assert_eq!(decoded, frames);
    assert!(buf.is_empty());
}

#[test]
fn decoded_blobs_share_the_read_buffer() {
    let mut buf = BytesMut::from(&b"$5\r\nhello\r\n"[..]);
    let start = buf.as_ptr() as usize;
    let frame = decode(&mut buf, &Limits::default()).unwrap().unwrap();
    let data = frame.as_bytes().unwrap();
    assert_eq!(data.as_ptr() as usize, start + 4, "blob was copied");
}

#[test]
fn large_blob_arriving_in_pieces_is_checked_by_length() {
    // 8 MiB in 1 KiB reads: 8192 calls. Each must check the length and return, not rescan
    // the data, or this test takes minutes instead of milliseconds.
    let data = vec![b'x'; 8 << 20];
    let mut input = format!("${}\r\n", data.len()).into_bytes();
    input.extend_from_slice(&data);
    input.extend_from_slice(b"\r\n");
    let limits = Limits::default();
    let mut buf = BytesMut::with_capacity(input.len());
    let mut chunks = input.chunks(1024).peekable();
    while let Some(chunk) = chunks.next() {
        buf.extend_from_slice(chunk);
        let result = decode(&mut buf, &limits).unwrap();
        if chunks.peek().is_some() {
            assert_eq!(result, None);
        } else {
            assert_eq!(
                result.unwrap().as_bytes().map(|b| b.len()),
                Some(data.len())
            );
        }
    }
}

// Limits.

#[test]
fn huge_bulk_header_fails_before_its_data() {
    let err = decode_err(b"$4294967296\r\n", &Limits::default());
    assert_eq!(
        err,
        DecodeError::BulkTooLarge {
            kind: FrameKind::BlobString,
            len: 4294967296,
            max: 64 << 20,
        }
    );
    assert!(err.is_limit());
    assert_eq!(
        err.to_string(),
        "blob string length 4294967296 exceeds max_bulk_bytes (67108864)"
    );
}

#[test]
fn bulk_header_beyond_frame_limit_fails_before_its_data() {
    let limits = Limits {
        max_frame_bytes: 100,
        ..Limits::default()
    };
    let err = decode_err(b"$1000\r\n", &limits);
    assert_eq!(err, DecodeError::FrameTooLarge { max: 100 });
}

#[test]
fn overflowing_length_is_invalid() {
    let err = decode_err(b"$99999999999999999999999\r\n", &Limits::default());
    assert_eq!(
        err,
        DecodeError::InvalidLength {
            kind: FrameKind::BlobString
        }
    );
}

#[test]
fn huge_aggregate_header_fails_on_max_elements() {
    let err = decode_err(b"*2000000\r\n", &Limits::default());
    assert_eq!(
        err,
        DecodeError::TooManyElements {
            kind: FrameKind::Array,
            len: 2_000_000,
            max: 1 << 20,
        }
    );
    let err = decode_err(b"%2000000\r\n", &Limits::default());
    assert!(matches!(
        err,
        DecodeError::TooManyElements {
            kind: FrameKind::Map,
            ..
        }
    ));
}

#[test]
fn deep_nesting_fails_on_depth_without_overflowing_the_stack() {
    let input = b"*1\r\n".repeat(10_000);
    let err = decode_err(&input, &Limits::default());
    assert_eq!(err, DecodeError::TooDeep { max: 32 });
    assert_eq!(err.to_string(), "nesting exceeds max_depth (32)");

    // Attributes count as a level too, since each one wraps the frame after it.
    let err = decode_err(&b"|0\r\n".repeat(10_000), &Limits::default());
    assert_eq!(err, DecodeError::TooDeep { max: 32 });
}

#[test]
fn nesting_up_to_max_depth_decodes() {
    let limits = Limits {
        max_depth: 3,
        ..Limits::default()
    };
    let nested = Frame::array(vec![Frame::array(vec![Frame::array(vec![])])]);
    assert_eq!(decode_all_with(b"*1\r\n*1\r\n*0\r\n", &limits), Ok(nested));
    let err = decode_err(b"*1\r\n*1\r\n*1\r\n*0\r\n", &limits);
    assert_eq!(err, DecodeError::TooDeep { max: 3 });
}

#[test]
fn max_depth_is_capped_so_building_cannot_overflow_the_stack() {
    let limits = Limits {
        max_depth: usize::MAX,
        ..Limits::default()
    };
    let mut input = b"*1\r\n".repeat(MAX_DEPTH_CEILING - 1);
    input.extend_from_slice(b"*0\r\n");
    assert!(decode_all_with(&input, &limits).is_ok());

    let err = decode_err(&b"*1\r\n".repeat(MAX_DEPTH_CEILING + 1), &limits);
    assert_eq!(
        err,
        DecodeError::TooDeep {
            max: MAX_DEPTH_CEILING
        }
    );
}

#[test]
fn oversize_inline_line_fails() {
    let limits = Limits {
        max_inline_bytes: 16,
        ..Limits::default()
    };
    // Fails without a line end as soon as more than the limit is buffered...
    let err = decode_err(&[b'A'; 18], &limits);
    assert_eq!(err, DecodeError::LineTooLong { max: 16 });
    // ...and with one.
    let err = decode_err(b"PING aaaaaaaaaaaaaaaaaaaaaa\r\n", &limits);
    assert_eq!(err, DecodeError::LineTooLong { max: 16 });
    // A line of exactly the limit is fine, with or without CR.
    assert!(decode_all_with(b"PING aaaaaaaaaaa\r\n", &limits).is_ok());
    assert!(decode_all_with(b"PING aaaaaaaaaaa\n", &limits).is_ok());
    // Below the limit and unterminated: wait for more.
    let mut buf = BytesMut::from(&[b'A'; 17][..]);
    assert_eq!(decode(&mut buf, &limits), Ok(None));
}

#[test]
fn oversize_simple_line_fails() {
    let limits = Limits {
        max_inline_bytes: 16,
        ..Limits::default()
    };
    let mut input = b"+".to_vec();
    input.extend_from_slice(&[b'a'; 20]);
    let err = decode_err(&input, &limits);
    assert_eq!(err, DecodeError::LineTooLong { max: 16 });
}

#[test]
fn inline_arguments_count_against_max_elements() {
    let limits = Limits {
        max_elements: 2,
        ..Limits::default()
    };
    let err = decode_err(b"A B C\r\n", &limits);
    assert!(matches!(
        err,
        DecodeError::TooManyElements { len: 3, max: 2, .. }
    ));
}

#[test]
fn incomplete_frame_larger_than_max_frame_bytes_fails() {
    let limits = Limits {
        max_frame_bytes: 64,
        ..Limits::default()
    };
    // Each element is small, but together they pass the frame limit before the frame ends.
    let mut input = b"*100\r\n".to_vec();
    for _ in 0..20 {
        input.extend_from_slice(b":1\r\n");
    }
    let err = decode_err(&input, &limits);
    assert_eq!(err, DecodeError::FrameTooLarge { max: 64 });
}

#[test]
fn frame_limit_counts_only_the_current_frame() {
    let limits = Limits {
        max_frame_bytes: 8,
        ..Limits::default()
    };
    // Many small frames pipelined behind one another exceed the limit together, not alone.
    let mut buf = BytesMut::from(&b":1\r\n".repeat(10)[..]);
    for _ in 0..10 {
        assert_eq!(decode(&mut buf, &limits), Ok(Some(Frame::int(1))));
    }
    // An incomplete frame behind a complete one does not count against it either.
    let mut buf = BytesMut::from(&b":1\r\n:2"[..]);
    assert_eq!(decode(&mut buf, &limits), Ok(Some(Frame::int(1))));
}

// Protocol errors.

#[test]
fn garbage_is_a_protocol_error() {
    let limits = Limits::default();
    let cases: &[(&[u8], DecodeError)] = &[
        (
            b"\x16\x03\x01\x02\x00",
            DecodeError::InvalidTypeByte { byte: 0x16 },
        ),
        (b"\xff\xfe", DecodeError::InvalidTypeByte { byte: 0xff }),
        (b"*1\r\n\x00", DecodeError::InvalidTypeByte { byte: 0x00 }),
        (
            b"*1\r\nPING\r\n",
            DecodeError::InvalidTypeByte { byte: b'P' },
        ),
        (
            b"+OK\n",
            DecodeError::MissingCrlf {
                kind: FrameKind::SimpleString,
            },
        ),
        (
            b":1\rx\n",
            DecodeError::MissingCrlf {
                kind: FrameKind::Integer,
            },
        ),
        // Found by fuzzing: a CR inside a simple string decoded, then re-encoded differently.
        (
            b">2\r\n+me\r\n+message\rssage\r\n_\r\n",
            DecodeError::BareCr {
                kind: FrameKind::SimpleString,
            },
        ),
        (
            b"-ERR a\rb\r\n",
            DecodeError::BareCr {
                kind: FrameKind::SimpleError,
            },
        ),
        (
            b"$3\r\nabcde",
            DecodeError::MissingCrlf {
                kind: FrameKind::BlobString,
            },
        ),
        (
            b"$abc\r\n",
            DecodeError::InvalidLength {
                kind: FrameKind::BlobString,
            },
        ),
        (
            b"$\r\n",
            DecodeError::InvalidLength {
                kind: FrameKind::BlobString,
            },
        ),
        (
            b"$-2\r\n",
            DecodeError::InvalidLength {
                kind: FrameKind::BlobString,
            },
        ),
        (
            b"*+1\r\n",
            DecodeError::InvalidLength {
                kind: FrameKind::Array,
            },
        ),
        (b":12x\r\n", DecodeError::InvalidInteger),
        (b":\r\n", DecodeError::InvalidInteger),
        (b":-\r\n", DecodeError::InvalidInteger),
        (b":9223372036854775808\r\n", DecodeError::InvalidInteger),
        (b",abc\r\n", DecodeError::InvalidDouble),
        (b",\r\n", DecodeError::InvalidDouble),
        (b"#x\r\n", DecodeError::InvalidBoolean),
        (b"#\r\n", DecodeError::InvalidBoolean),
        (b"(12a\r\n", DecodeError::InvalidBigNumber),
        (b"(\r\n", DecodeError::InvalidBigNumber),
        (b"_x\r\n", DecodeError::InvalidNull),
        (b"=3\r\ntxt\r\n", DecodeError::InvalidVerbatim),
        (b"=5\r\ntxt-a\r\n", DecodeError::InvalidVerbatim),
        (
            b"$?\r\n",
            DecodeError::Streamed {
                kind: FrameKind::BlobString,
            },
        ),
        (
            b"*?\r\n",
            DecodeError::Streamed {
                kind: FrameKind::Array,
            },
        ),
    ];
    for (input, expected) in cases {
        let err = decode_err(input, &limits);
        assert_eq!(&err, expected, "{:?}", input.escape_ascii());
        assert!(!err.is_limit());
    }
}

#[test]
fn protocol_error_messages_read_well_in_a_reply() {
    let cases = [
        (
            DecodeError::InvalidTypeByte { byte: 0x16 },
            "invalid type byte 0x16",
        ),
        (
            DecodeError::MissingCrlf {
                kind: FrameKind::BlobString,
            },
            "expected CRLF after blob string",
        ),
        (
            DecodeError::InvalidLength {
                kind: FrameKind::Array,
            },
            "invalid array length",
        ),
        (
            DecodeError::Streamed {
                kind: FrameKind::BlobString,
            },
            "streamed blob strings are not supported",
        ),
        (
            DecodeError::LineTooLong { max: 65536 },
            "line exceeds max_inline_bytes (65536)",
        ),
    ];
    for (err, message) in cases {
        assert_eq!(err.to_string(), message);
    }
}

mod request_fast_path {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    /// A request (an array of blob strings), often damaged: a header digit or CRLF changed,
    /// cut short, or with another frame after it.
    fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
        (
            vec(vec(any::<u8>(), 0..40), 0..6),
            any::<bool>(),
            prop::option::of((any::<prop::sample::Index>(), any::<u8>())),
            prop::option::of(any::<prop::sample::Index>()),
        )
            .prop_map(|(args, pipelined, damage, cut)| {
                let mut out = format!("*{}\r\n", args.len()).into_bytes();
                for arg in &args {
                    out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
                    out.extend_from_slice(arg);
                    out.extend_from_slice(b"\r\n");
                }
                if pipelined {
                    out.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
                }
                if let Some((at, byte)) = damage {
                    let at = at.index(out.len());
                    out[at] = byte;
                }
                if let Some(cut) = cut {
                    out.truncate(cut.index(out.len() + 1));
                }
                out
            })
    }

    fn limits() -> impl Strategy<Value = Limits> {
        (0usize..80, 0usize..50, 0usize..8, 0usize..3, 0usize..4).prop_map(
            |(frame, bulk, elements, depth, inline)| Limits {
                max_frame_bytes: frame * 4,
                max_bulk_bytes: bulk,
                max_elements: elements,
                max_depth: depth,
                max_inline_bytes: inline,
            },
        )
    }

    /// What `decode` answers without its fast path.
    fn general(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Frame>, DecodeError> {
        match buf.first() {
            Some(&first) if FrameKind::from_type_byte(first).is_none() => {
                inline::decode(buf, limits)
            }
            _ => decode_any(buf, limits),
        }
    }

    proptest! {
        /// The fast path for requests answers exactly as the general decoder does: the same
        /// frame or error, and the same bytes left behind.
        #[test]
        fn agrees_with_the_general_decoder(input in request_bytes(), limits in limits()) {
            let mut fast = BytesMut::from(&input[..]);
            let mut general = fast.clone();
            let fast_result = decode(&mut fast, &limits);
            let general_result = super::request_fast_path::general(&mut general, &limits);
            prop_assert_eq!(&fast_result, &general_result);
            if fast_result.is_ok() {
                prop_assert_eq!(fast, general);
            }
        }

        #[test]
        fn agrees_with_the_general_decoder_at_default_limits(input in request_bytes()) {
            let limits = Limits::default();
            let mut fast = BytesMut::from(&input[..]);
            let mut general = fast.clone();
            prop_assert_eq!(decode(&mut fast, &limits), super::request_fast_path::general(&mut general, &limits));
            prop_assert_eq!(fast, general);
        }
    }
}

#[test]
fn a_kept_token_takes_24_bytes() {
    // `decode_flat` documents its memory bound from this size.
    assert_eq!(std::mem::size_of::<Kept>(), 24);
}
