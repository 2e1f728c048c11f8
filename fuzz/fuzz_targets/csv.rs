//! Fuzzes the CSV reader: the first byte sets the values per line (1 to 16), the rest is
//! the file. It must never panic; what it accepts must be whole lines of finite numbers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_train::data::csv::parse_csv;
use ward_train::data::DataLimits;

fuzz_target!(|data: &[u8]| {
    let Some((&first, text)) = data.split_first() else {
        return;
    };
    let width = usize::from(first % 16) + 1;
    let limits = DataLimits {
        max_elements: 1 << 16,
        ..DataLimits::default()
    };
    if let Ok(table) = parse_csv("fuzz.csv", text, width, &limits) {
        assert_eq!(table.width, width);
        assert_eq!(table.values.len(), table.rows * width);
        assert!(table.values.iter().all(|v| v.is_finite()));
    }
});
