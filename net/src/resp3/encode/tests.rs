use bytes::{Bytes, BytesMut};

use super::*;
use crate::resp3::{Limits, decode};

fn encoded(frame: &Frame, proto: Protocol) -> BytesMut {
    let mut out = BytesMut::new();
    encode(frame, proto, &mut out);
    out
}

fn assert_encodes(frame: Frame, resp3: &[u8], resp2: &[u8]) {
    assert_eq!(encoded(&frame, Protocol::Resp3), resp3, "RESP3 {frame:?}");
    assert_eq!(encoded(&frame, Protocol::Resp2), resp2, "RESP2 {frame:?}");
}

#[test]
fn strings_and_integers_are_the_same_in_both_protocols() {
    assert_encodes(Frame::simple("OK"), b"+OK\r\n", b"+OK\r\n");
    assert_encodes(
        Frame::error("WRONGVER", "msg"),
        b"-WRONGVER msg\r\n",
        b"-WRONGVER msg\r\n",
    );
    assert_encodes(Frame::int(-3), b":-3\r\n", b":-3\r\n");
    assert_encodes(Frame::bulk("hi"), b"$2\r\nhi\r\n", b"$2\r\nhi\r\n");
    assert_encodes(Frame::bulk(""), b"$0\r\n\r\n", b"$0\r\n\r\n");
    assert_encodes(
        Frame::array(vec![Frame::int(1), Frame::bulk("a")]),
        b"*2\r\n:1\r\n$1\r\na\r\n",
        b"*2\r\n:1\r\n$1\r\na\r\n",
    );
}

#[test]
fn resp3_types_downgrade_for_resp2() {
    assert_encodes(Frame::Null, b"_\r\n", b"$-1\r\n");
    assert_encodes(Frame::boolean(true), b"#t\r\n", b":1\r\n");
    assert_encodes(Frame::boolean(false), b"#f\r\n", b":0\r\n");
    assert_encodes(Frame::double(1.5), b",1.5\r\n", b"$3\r\n1.5\r\n");
    assert_encodes(Frame::double(f64::INFINITY), b",inf\r\n", b"$3\r\ninf\r\n");
    assert_encodes(
        Frame::BigNumber("-123456789012345678901234567890".into()),
        b"(-123456789012345678901234567890\r\n",
        b"$31\r\n-123456789012345678901234567890\r\n",
    );
    assert_encodes(
        Frame::verbatim(*b"txt", "hello"),
        b"=9\r\ntxt:hello\r\n",
        b"$5\r\nhello\r\n",
    );
    assert_encodes(
        Frame::BlobError(Bytes::from_static(b"SYNTAX bad")),
        b"!10\r\nSYNTAX bad\r\n",
        b"-SYNTAX bad\r\n",
    );
    assert_encodes(
        Frame::map(vec![
            (Frame::simple("a"), Frame::int(1)),
            (Frame::simple("b"), Frame::Null),
        ]),
        b"%2\r\n+a\r\n:1\r\n+b\r\n_\r\n",
        b"*4\r\n+a\r\n:1\r\n+b\r\n$-1\r\n",
    );
    assert_encodes(
        Frame::set(vec![Frame::int(1)]),
        b"~1\r\n:1\r\n",
        b"*1\r\n:1\r\n",
    );
    assert_encodes(
        Frame::push(vec![Frame::simple("message"), Frame::boolean(true)]),
        b">2\r\n+message\r\n#t\r\n",
        b"*2\r\n+message\r\n:1\r\n",
    );
    assert_encodes(
        Frame::Attribute {
            attributes: vec![(Frame::simple("ttl"), Frame::int(5))],
            frame: Box::new(Frame::simple("v")),
        },
        b"|1\r\n+ttl\r\n:5\r\n+v\r\n",
        b"+v\r\n",
    );
}

#[test]
fn nested_downgrades_apply_at_every_level() {
    let frame = Frame::array(vec![Frame::map(vec![(
        Frame::bulk("k"),
        Frame::set(vec![Frame::Null, Frame::double(0.5)]),
    )])]);
    assert_encodes(
        frame,
        b"*1\r\n%1\r\n$1\r\nk\r\n~2\r\n_\r\n,0.5\r\n",
        b"*1\r\n*2\r\n$1\r\nk\r\n*2\r\n$-1\r\n$3\r\n0.5\r\n",
    );
}

#[test]
fn line_breaks_in_line_items_become_spaces() {
    assert_encodes(
        Frame::error("ERR", "two\r\nlines"),
        b"-ERR two  lines\r\n",
        b"-ERR two  lines\r\n",
    );
    assert_encodes(Frame::simple("a\nb"), b"+a b\r\n", b"+a b\r\n");
    assert_encodes(
        Frame::BlobError(Bytes::from_static(b"ERR x\ny")),
        b"!7\r\nERR x\ny\r\n",
        b"-ERR x y\r\n",
    );
}

#[test]
fn doubles_use_resp3_spellings_for_special_values() {
    assert_eq!(format_double(f64::INFINITY), "inf");
    assert_eq!(format_double(f64::NEG_INFINITY), "-inf");
    assert_eq!(format_double(f64::NAN), "nan");
    assert_eq!(format_double(1.0), "1");
    assert_eq!(format_double(-0.0), "-0");
    assert_eq!(format_double(0.1), "0.1");
    assert_eq!(format_double(1e300), "1e300");
    assert_eq!(format_double(-2.5e-300), "-2.5e-300");
    assert_eq!(format_double(123456.75), "123456.75");
}

#[test]
fn doubles_round_trip_exactly() {
    let values = [
        0.1,
        1.0 / 3.0,
        -0.0,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        f64::EPSILON,
        5e-324,
        1e21,
        2.0_f64.sqrt(),
    ];
    for x in values {
        let text = format_double(x);
        let back: f64 = text.parse().unwrap();
        assert_eq!(back.to_bits(), x.to_bits(), "{x} printed as {text}");

        let mut buf = encoded(&Frame::double(x), Protocol::Resp3);
        let frame = decode(&mut buf, &Limits::default()).unwrap().unwrap();
        assert!(matches!(frame, Frame::Double(y) if y.to_bits() == x.to_bits()));
    }
}

#[test]
fn integers_at_the_edges_of_i64() {
    assert_encodes(Frame::int(0), b":0\r\n", b":0\r\n");
    assert_encodes(
        Frame::int(i64::MAX),
        b":9223372036854775807\r\n",
        b":9223372036854775807\r\n",
    );
    assert_encodes(
        Frame::int(i64::MIN),
        b":-9223372036854775808\r\n",
        b":-9223372036854775808\r\n",
    );
}

/// The writer puts, item by item, exactly the bytes `encode` writes for the same frame tree.
#[test]
fn writer_matches_encode_item_by_item() {
    let tree = Frame::push(vec![
        Frame::simple("message"),
        Frame::map(vec![
            (Frame::simple("id"), Frame::int(-7)),
            (Frame::simple("ok"), Frame::boolean(true)),
            (Frame::simple("none"), Frame::Null),
            (Frame::simple("data"), Frame::bulk("a\r\nb")),
            (Frame::simple("line"), Frame::simple("c\rd")),
        ]),
        Frame::array(vec![]),
    ]);
    for proto in [Protocol::Resp3, Protocol::Resp2] {
        let mut out = BytesMut::new();
        let mut w = Writer::new(&mut out, proto);
        w.push(3);
        w.line(crate::simple_line!("message"));
        w.map(5);
        w.simple(b"id");
        w.int(-7);
        w.simple(b"ok");
        w.boolean(true);
        w.simple(b"none");
        w.null();
        w.simple(b"data");
        w.blob(b"a\r\nb");
        w.simple(b"line");
        w.simple(b"c\rd");
        w.array(0);
        assert_eq!(out, encoded(&tree, proto), "{proto:?}");
    }
}

#[test]
fn uuids_are_written_hyphenated_in_lower_case() {
    let mut out = BytesMut::new();
    let mut w = Writer::new(&mut out, Protocol::Resp3);
    w.uuid([
        0x67, 0xe5, 0x50, 0x44, 0x10, 0xb1, 0x42, 0x6f, 0x92, 0x47, 0xbb, 0x68, 0x0e, 0x5f, 0xe0,
        0xc8,
    ]);
    w.uuid([0; 16]);
    w.uuid([0xff; 16]);
    assert_eq!(
        &out[..],
        b"+67e55044-10b1-426f-9247-bb680e5fe0c8\r\n\
          +00000000-0000-0000-0000-000000000000\r\n\
          +ffffffff-ffff-ffff-ffff-ffffffffffff\r\n"
    );
}
