//! The scenario-file parser on arbitrary text: a scenario or a typed error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = sim::scenario::Scenario::parse(text, std::path::Path::new("fuzz.toml"));
    }
});
