#![no_main]
//! The subject common name reader of client certificates (mutual TLS → roles) returns a name or
//! nothing for any bytes, never panics, and never returns an empty name or control characters.
use abis_server::auth::common_name;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|der: &[u8]| {
    if let Some(name) = common_name(der) {
        assert!(!name.is_empty());
        assert!(!name.chars().any(char::is_control));
    }
});
