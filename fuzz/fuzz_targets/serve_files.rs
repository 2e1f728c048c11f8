//! Fuzzes the server's configuration and tokens file parsers: they must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ward_serve::ServeConfig::parse(text);
        let _ = ward_net::tokens::Tokens::parse(text, ward_serve::scopes::ALL);
    }
});
