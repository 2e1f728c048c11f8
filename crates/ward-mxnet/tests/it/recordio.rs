//! RecordIO against files MXNet 1.9.1 wrote (`tools/make_data_fixtures.py`:
//! `MXIndexedRecordIO` + `pack_img`), and against hostile files: each refused with an
//! error naming the file, the field and the offset, without reading a large file whole.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use ward_mxnet::limits::RecordIoLimits;
use ward_mxnet::recordio::{
    parse_image_record, parse_index, read_all_records, write_record, RecordFile, RecordIoError,
    RECORD_MAGIC,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/recordio")
        .join(name)
}

fn limits() -> RecordIoLimits {
    RecordIoLimits::default()
}

#[test]
fn mxnet_written_records_read_by_index_and_by_scan() {
    let file = RecordFile::open(&fixture("images.rec"), &limits()).unwrap();
    let index = file.read_index(&fixture("images.idx")).unwrap();
    assert_eq!(index.len(), 10);
    let scanned = file.scan().unwrap();
    assert_eq!(scanned, index.iter().map(|e| e.offset).collect::<Vec<_>>());
    let bytes = fs::read(fixture("images.rec")).unwrap();
    let all = read_all_records("images.rec", &bytes, &limits()).unwrap();
    assert_eq!(all.len(), 10);
    for (i, entry) in index.iter().enumerate() {
        assert_eq!(entry.key, i as u64);
        let payload = file.record_at(entry.offset).unwrap();
        assert_eq!(payload, all[i]);
        let record = parse_image_record(file.name(), entry.offset, &payload, &limits()).unwrap();
        assert_eq!(record.flag, 0);
        assert_eq!(record.label_values(), [i as f32]);
        let png = record.image.starts_with(b"\x89PNG\r\n\x1a\n");
        let jpeg = record.image.starts_with(&[0xff, 0xd8]);
        assert!(png || jpeg, "record {i}");
        // Record 2 was split by the writer (its id holds the magic): joined again here.
        if i == 2 {
            assert_eq!(record.id, u64::from(RECORD_MAGIC));
        } else {
            assert_eq!(record.id, i as u64);
        }
    }
}

#[test]
fn multi_value_labels() {
    let file = RecordFile::open(&fixture("multi.rec"), &limits()).unwrap();
    let index = file.read_index(&fixture("multi.idx")).unwrap();
    for (i, entry) in index.iter().enumerate() {
        let payload = file.record_at(entry.offset).unwrap();
        let record = parse_image_record("multi.rec", entry.offset, &payload, &limits()).unwrap();
        let i = i as f32;
        assert_eq!(record.flag, 3);
        assert_eq!(record.labels, [i, 10.0 + i, 0.5 * i]);
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn truncated_rec_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = fs::read(fixture("images.rec")).unwrap();
    for cut in [3, 8, 100, bytes.len() - 4] {
        let path = write(dir.path(), "cut.rec", &bytes[..cut]);
        let file = RecordFile::open(&path, &limits()).unwrap();
        let err = file.scan().unwrap_err();
        assert!(
            matches!(
                err,
                RecordIoError::PastEnd { .. } | RecordIoError::Truncated { .. }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("cut.rec"), "{err}");
    }
}

#[test]
fn length_past_the_end_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    write_record(&mut bytes, b"hello world").unwrap();
    bytes[4..8].copy_from_slice(&((1u32 << 29) - 1).to_le_bytes());
    let path = write(dir.path(), "long.rec", &bytes);
    let file = RecordFile::open(&path, &limits()).unwrap();
    let err = file.record_at(0).unwrap_err();
    assert!(
        matches!(err, RecordIoError::PastEnd { offset: 0, length, .. } if length == (1 << 29) - 1),
        "{err}"
    );
    assert!(err.to_string().contains("long.rec"));
}

#[test]
fn index_offset_past_the_end_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rec_len = fs::metadata(fixture("images.rec")).unwrap().len();
    let file = RecordFile::open(&fixture("images.rec"), &limits()).unwrap();
    let idx = write(
        dir.path(),
        "bad.idx",
        format!("0\t0\n1\t{rec_len}\n").as_bytes(),
    );
    let err = file.read_index(&idx).unwrap_err();
    assert!(
        matches!(err, RecordIoError::IndexPastEnd { line: 2, offset, .. } if offset == rec_len),
        "{err}"
    );
    assert!(err.to_string().contains("bad.idx"), "{err}");
    let idx = write(dir.path(), "odd.idx", b"0\t2\n");
    assert!(matches!(
        file.read_index(&idx),
        Err(RecordIoError::BadIndexLine { line: 1, .. })
    ));
    // An aligned offset inside a record is no record start: the magic check refuses it.
    let err = file.record_at(12).unwrap_err();
    assert!(
        matches!(err, RecordIoError::BadMagic { offset: 12, .. }),
        "{err}"
    );
    let err = parse_index("x.idx", b"0\t0\nzero\t4\n", &limits()).unwrap_err();
    assert!(err.to_string().contains("x.idx: line 2"), "{err}");
}

#[test]
fn record_over_the_limit_is_refused_before_reading() {
    let mut bytes = Vec::new();
    write_record(&mut bytes, &vec![7u8; 4096]).unwrap();
    let small = RecordIoLimits {
        max_record_bytes: 1024,
        ..limits()
    };
    let err = read_all_records("big.rec", &bytes, &small).unwrap_err();
    assert!(
        matches!(err, RecordIoError::RecordTooLarge { limit: 1024, .. }),
        "{err}"
    );
}

#[test]
fn label_count_is_bounded() {
    let mut p = Vec::new();
    p.extend_from_slice(&u32::MAX.to_le_bytes());
    p.extend_from_slice(&[0u8; 20]);
    let err = parse_image_record("f.rec", 64, &p, &limits()).unwrap_err();
    assert!(
        matches!(err, RecordIoError::ExceedsLimit { offset: 64, .. }),
        "{err}"
    );
    p[..4].copy_from_slice(&1000u32.to_le_bytes());
    let err = parse_image_record("f.rec", 64, &p, &limits()).unwrap_err();
    assert!(
        matches!(
            err,
            RecordIoError::Truncated {
                field: "IRHeader labels",
                offset: 88,
                ..
            }
        ),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn fifo_and_link_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("data.rec");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let err = RecordFile::open(&fifo, &limits()).unwrap_err();
    assert!(err.to_string().contains("FIFO"), "{err}");
    assert!(err.to_string().contains("data.rec"), "{err}");
    let link = dir.path().join("link.rec");
    std::os::unix::fs::symlink(fixture("images.rec"), &link).unwrap();
    let err = RecordFile::open(&link, &limits()).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    // An .idx that is a FIFO is refused too, without blocking.
    let file = RecordFile::open(&fixture("images.rec"), &limits()).unwrap();
    let idx_fifo = dir.path().join("data.idx");
    assert!(Command::new("mkfifo")
        .arg(&idx_fifo)
        .status()
        .unwrap()
        .success());
    assert!(matches!(
        file.read_index(&idx_fifo),
        Err(RecordIoError::File { .. })
    ));
}

#[cfg(unix)]
#[test]
fn sparse_ten_gigabyte_file_is_read_by_parts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.rec");
    let f = fs::File::create(&path).unwrap();
    f.set_len(10 << 30).unwrap();
    drop(f);
    let file = RecordFile::open(&path, &limits()).unwrap();
    // Only the 8-byte chunk header is read: zeros are no magic.
    let err = file.scan().unwrap_err();
    assert!(
        matches!(
            err,
            RecordIoError::BadMagic {
                offset: 0,
                found: 0,
                ..
            }
        ),
        "{err}"
    );
    // A valid record at the start whose length claims the whole file is refused by the
    // record limit, before anything is reserved.
    let mut head = Vec::new();
    head.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
    head.extend_from_slice(&((1u32 << 29) - 1).to_le_bytes());
    {
        use std::os::unix::fs::FileExt;
        let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&head, 0).unwrap();
    }
    let file = RecordFile::open(&path, &limits()).unwrap();
    let err = file.record_at(0).unwrap_err();
    assert!(matches!(err, RecordIoError::RecordTooLarge { .. }), "{err}");
}

#[test]
fn a_record_of_many_empty_chunks_reads_in_linear_time() {
    // A payload of 2^18 magic words is framed as 2^18 + 1 empty chunks.
    let payload: Vec<u8> = std::iter::repeat_n(RECORD_MAGIC.to_le_bytes(), 1 << 18)
        .flatten()
        .collect();
    let mut bytes = Vec::new();
    write_record(&mut bytes, &payload).unwrap();
    assert_eq!(bytes.len(), 8 * ((1 << 18) + 1));
    let start = std::time::Instant::now();
    let back = read_all_records("magic.rec", &bytes, &limits()).unwrap();
    assert_eq!(back, [payload]);
    assert!(start.elapsed().as_secs() < 10, "{:?}", start.elapsed());
}
