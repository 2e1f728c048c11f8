//! Fuzzes the strict safetensors reader: it must never panic; whatever it accepts, the
//! `safetensors` crate must accept too, with the same tensors (ward is at least as strict,
//! and sees the same data); what it accepts must survive a write/read round trip; and
//! the same bytes held in parts, as the package loader holds a weights file, read the
//! same (the same tensors, or the same refusal).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_package::weights::{parts_of, read_weights_parts, read_weights_with_metadata, write_weights};

fuzz_target!(|data: &[u8]| {
    let whole = read_weights_with_metadata(data);
    let in_parts = read_weights_parts(parts_of(data));
    match (&whole, &in_parts) {
        (Ok(w), Ok(p)) => assert_eq!(&w.tensors, p, "the parts read other tensors"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "another refusal in parts"),
        _ => panic!("whole {:?}, in parts {:?}", whole.is_ok(), in_parts.is_ok()),
    }
    let Ok(w) = whole else {
        return;
    };
    let st =
        safetensors::SafeTensors::deserialize(data).expect("the crate refused what ward accepted");
    assert_eq!(st.len(), w.tensors.len());
    for (name, t) in &w.tensors {
        let view = st.tensor(name).expect("the crate lost a tensor ward read");
        assert_eq!(view.shape(), t.shape(), "{name}");
        assert_eq!(view.data(), t.bytes(), "{name}");
    }
    let bytes = write_weights(&w.tensors, &w.metadata).expect("ward must write what it read");
    let back = read_weights_with_metadata(&bytes).expect("ward's own output must read back");
    assert_eq!(back.metadata, w.metadata);
    assert_eq!(back.tensors.len(), w.tensors.len());
    for (name, t) in &w.tensors {
        assert!(
            back.tensors.iter().any(|(n, b)| n == name && b == t),
            "{name}"
        );
    }
});
