//! The RESP3 decoder on arbitrary bytes, under small limits: no panic, no unbounded
//! allocation, no infinite loop; whatever decodes re-encodes and decodes to the same frame.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use net::{Limits, Protocol};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_frame_bytes: 1 << 20,
        max_bulk_bytes: 1 << 16,
        max_elements: 1024,
        max_depth: 16,
        max_inline_bytes: 4096,
    };
    let mut buf = BytesMut::from(data);
    // Each successful decode consumes at least one byte, so this loop ends.
    while let Ok(Some(frame)) = net::decode(&mut buf, &limits) {
        let mut out = BytesMut::new();
        net::encode(&frame, Protocol::Resp3, &mut out);
        let again = net::decode(&mut out, &Limits::default())
            .expect("our own encoding decodes")
            .expect("our own encoding is complete");
        // NaN is the one value that is not equal to itself.
        if !format!("{frame:?}").contains("NaN") {
            assert_eq!(again, frame);
        }
    }
});
