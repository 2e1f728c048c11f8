//! Fuzzes the `.npy` reader: it must never panic, and whatever it accepts must survive a
//! write/read round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_core::npy::{read_npy, write_npy};

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = read_npy(data) {
        let again = read_npy(&write_npy(&t)).expect("ward's own .npy output must read back");
        assert_eq!(again, t);
    }
});
