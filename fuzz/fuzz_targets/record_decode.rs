//! The segment frame and transaction record decoders on arbitrary bytes: no panic, no
//! allocation beyond the input, and a decoded record re-encodes to the same bytes.
#![no_main]

use db::store::record::{TransactionRecord, decode_frame, decode_segment_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = decode_frame(data, 1 << 20) {
        let len = frame.encoded_len() as usize;
        let _ = decode_segment_header(&frame);
        if let Ok(record) = TransactionRecord::decode(&frame) {
            let mut out = Vec::new();
            record.encode(&mut out);
            assert_eq!(out, data[..len]);
        }
    }
});
