//! Fuzzes the decoding of an inference request (JSON and the binary extension): it must
//! never panic, never accept leftover binary bytes, and every tensor it accepts must hold
//! exactly its shape's bytes within the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_serve::limits::Limits;
use ward_serve::protocol::decode_request;

fuzz_target!(|data: &[u8]| {
    // The first two bytes choose the Inference-Header-Content-Length (or none).
    let (choice, body) = match data {
        [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]), rest),
        _ => return,
    };
    let header = (choice != u16::MAX).then(|| (usize::from(choice) % (body.len() + 2)).to_string());
    let limits = Limits {
        max_elements: 1 << 16,
        ..Limits::default()
    };
    if let Ok(request) = decode_request(body, header.as_deref(), &limits) {
        for (_, t) in &request.inputs {
            let elements: usize = t.shape().iter().product();
            assert!(elements as u64 <= limits.max_elements);
            assert_eq!(t.bytes().len(), elements * t.dtype().size());
        }
    }
});
