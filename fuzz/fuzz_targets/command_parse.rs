//! The command parser on arbitrary RESP requests: whatever the codec decodes, the parser
//! answers with a command or a typed error, never a panic.
#![no_main]

use bytes::BytesMut;
use db::server::command::{ParseContext, parse, request_args};
use libfuzzer_sys::fuzz_target;
use net::Limits;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_frame_bytes: 1 << 20,
        max_bulk_bytes: 1 << 16,
        max_elements: 1024,
        max_depth: 8,
        max_inline_bytes: 4096,
    };
    let ctx = ParseContext { partition_count: 32 };
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = net::decode(&mut buf, &limits) {
        if let Ok(args) = request_args(frame) {
            if !args.is_empty() {
                let _ = parse(&args, &ctx);
            }
        }
    }
});
