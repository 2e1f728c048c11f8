//! Fuzzes RecordIO: the input as a `.rec` (every record joined, and the offsets found by a
//! header-only scan), each record's payload as an image record (`IRHeader`, labels), and
//! the input as an `.idx` checked against its own length. Nothing may panic; what is
//! accepted must agree between the two ways of walking the file and survive being framed
//! again by the writer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_mxnet::limits::RecordIoLimits;
use ward_mxnet::recordio::{
    check_index, parse_image_record, parse_index, read_all_records, read_record, scan_offsets,
    write_record, RecordBytes,
};

fuzz_target!(|data: &[u8]| {
    let limits = RecordIoLimits {
        max_record_bytes: 1 << 20,
        max_labels: 1024,
        max_index_entries: 1 << 16,
        max_index_bytes: 1 << 20,
    };
    let source = RecordBytes::new("fuzz.rec", data);
    let scanned = scan_offsets(&source, &limits);
    match read_all_records("fuzz.rec", data, &limits) {
        Ok(records) => {
            let offsets = scanned.expect("a file whose records all read scans too");
            assert_eq!(offsets.len(), records.len());
            for (offset, record) in offsets.iter().zip(&records) {
                let (again, _) = read_record(&source, *offset, &limits).expect("scanned offset");
                assert_eq!(&again, record);
                let mut framed = Vec::new();
                write_record(&mut framed, record).expect("a record within 1 MiB frames");
                let back = read_all_records("framed", &framed, &limits).expect("own framing");
                assert_eq!(back.len(), 1);
                assert_eq!(&back[0], record);
                if let Ok(image) = parse_image_record("fuzz.rec", *offset, record, &limits) {
                    assert_eq!(image.labels.len(), image.flag as usize);
                    assert!(image.image.len() <= record.len());
                }
            }
        }
        // Both walks check the same framing and limits.
        Err(_) => assert!(
            scanned.is_err(),
            "records failed to read but the scan passed"
        ),
    }
    if let Ok(entries) = parse_index("fuzz.idx", data, &limits) {
        let _ = check_index("fuzz.idx", &entries, data.len() as u64);
    }
});
