//! The index-file decoder on arbitrary bytes: no panic, no allocation beyond the input, and a
//! decoded index re-encodes to the same bytes.
#![no_main]

use db::store::index::{decode_index_file, encode_index_file};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = decode_index_file(data) {
        assert_eq!(encode_index_file(&index), data);
    }
});
