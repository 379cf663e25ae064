#![no_main]
//! Any byte string given as a MOSIP ABIS request yields a request or an error whose failure
//! answer can be written; a parsed request written back keeps its operation and requestId. STOMP frame
//! decoding of the same bytes never panics.
use abis_mosip::message::Request;
use abis_mosip::stomp::frame::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Request::parse(data) {
        Ok(request) => {
            let again =
                Request::parse(request.to_json().as_bytes()).expect("written request parses");
            assert_eq!(
                (again.operation, again.request_id),
                (request.operation, request.request_id)
            );
        }
        Err(e) => {
            let _ = e.answer().to_json();
        }
    }
    let mut buf = data.to_vec();
    while let Ok(Some(_)) = decode(&mut buf, 1 << 16) {}
});
