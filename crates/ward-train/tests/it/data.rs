//! The data readers against MXNet 1.9.1's own iterators (`tools/make_data_fixtures.py`:
//! MNISTIter, CSVIter, ImageRecordIter on the fixtures of `tests/fixtures/{mnist, csv,
//! recordio}`), against hostile files, and the batching's determinism.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::Value;
use ward_core::npy::read_npy;
use ward_core::random::{ChaCha20Rng, RunSeed};
use ward_mxnet::limits::RecordIoLimits;
use ward_mxnet::recordio::{write_record, RecordIoError};
use ward_train::data::csv::{parse_csv, CsvDataset};
use ward_train::data::idx::{read_idx, read_idx_file, MnistDataset, MnistOptions};
use ward_train::data::image::{ImageError, ImageParams};
use ward_train::data::npy::NpyDataset;
use ward_train::data::recordio::ImageRecordDataset;
use ward_train::data::{
    Batch, DataError, DataLimits, Dataset, Example, LastBatch, Loader, LoaderConfig,
};

use crate::support::fixtures;

fn json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn config(batch_size: usize, shuffle: bool, last_batch: LastBatch, threads: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size,
        shuffle,
        last_batch,
        threads,
        prefetch: 2,
    }
}

fn all_batches(loader: &Loader, epoch: u64) -> Vec<Batch> {
    loader
        .epoch(epoch)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn mnist(split: &str, flat: bool) -> MnistDataset {
    let dir = fixtures("mnist");
    MnistDataset::open(
        &dir.join(format!("{split}-images-idx3-ubyte.gz")),
        &dir.join(format!("{split}-labels-idx1-ubyte.gz")),
        &MnistOptions {
            flat,
            num_classes: 10,
        },
        &DataLimits::default(),
    )
    .unwrap()
}

fn sha256_hex(batches: &[Batch]) -> String {
    use std::fmt::Write;
    let mut bytes = Vec::new();
    for b in batches {
        for v in &b.data {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    // The digest Python's hashlib took of MXNet's batches, as float32 little-endian.
    let digest = sha2_digest(&bytes);
    digest.iter().fold(String::new(), |mut s, b| {
        write!(s, "{b:02x}").unwrap();
        s
    })
}

fn sha2_digest(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}

#[test]
fn mnist_equals_mnistiter() {
    let expected = json(&fixtures("mnist").join("expected.json"));
    let train = mnist("train", false);
    assert_eq!(train.len(), 4000);
    for run in expected["runs"].as_array().unwrap() {
        let flat = run["flat"].as_bool().unwrap();
        let batch_size = run["batch_size"].as_u64().unwrap() as usize;
        let test = mnist("t10k", flat);
        assert_eq!(test.len(), 1000);
        // MNISTIter drops the incomplete last batch.
        let loader = Loader::new(
            Arc::new(test),
            config(batch_size, false, LastBatch::Discard, 2),
            RunSeed::from_u64(0),
        )
        .unwrap();
        let batches = all_batches(&loader, 0);
        assert_eq!(batches.len() as u64, run["batches"].as_u64().unwrap());
        assert_eq!(batches[0].data_shape, usizes(&run["batch_shape"]));
        let labels: Vec<f32> = batches.iter().flat_map(|b| b.label.clone()).collect();
        assert_eq!(labels, floats(&run["labels"]));
        assert_eq!(sha256_hex(&batches), run["data_sha256"].as_str().unwrap());
        if let Some(first) = run["first_batch"].as_str() {
            let want = read_npy(&fs::read(fixtures("mnist").join(first)).unwrap()).unwrap();
            assert_eq!(want.shape(), batches[0].data_shape.as_slice());
            assert_eq!(want.to_f32_vec(), batches[0].data);
        }
    }
}

#[test]
fn csv_equals_csviter() {
    let dir = fixtures("csv");
    let expected = json(&dir.join("expected.json"));
    let limits = DataLimits::default();
    let data = CsvDataset::open(
        &dir.join("data.csv"),
        &[2, 3],
        Some(&dir.join("label.csv")),
        &[2],
        &limits,
    )
    .unwrap();
    let loader = Loader::new(
        Arc::new(data),
        config(4, false, LastBatch::Pad, 0),
        RunSeed::from_u64(0),
    )
    .unwrap();
    let batches = all_batches(&loader, 0);
    let want = expected["batches"].as_array().unwrap();
    assert_eq!(batches.len(), want.len());
    for (got, want) in batches.iter().zip(want) {
        assert_eq!(got.data, floats(&want["data"]));
        assert_eq!(got.data_shape, usizes(&want["data_shape"]));
        assert_eq!(got.label, floats(&want["label"]));
        assert_eq!(got.label_shape, usizes(&want["label_shape"]));
        assert_eq!(got.pad as u64, want["pad"].as_u64().unwrap());
    }
    // Without labels: zeros of label_shape (1,).
    let data = CsvDataset::open(&dir.join("data.csv"), &[6], None, &[1], &limits).unwrap();
    let loader = Loader::new(
        Arc::new(data),
        config(5, false, LastBatch::Pad, 1),
        RunSeed::from_u64(0),
    )
    .unwrap();
    let batches = all_batches(&loader, 0);
    let want = expected["no_label"]["batches"].as_array().unwrap();
    assert_eq!(batches.len(), want.len());
    for (got, want) in batches.iter().zip(want) {
        assert_eq!(got.data, floats(&want["data"]));
        assert_eq!(got.label, floats(&want["label"]));
        assert_eq!(got.pad as u64, want["pad"].as_u64().unwrap());
    }
}

fn image_params(p: &Value) -> ImageParams {
    let f = |k: &str, d: f32| p.get(k).map_or(d, |v| v.as_f64().unwrap() as f32);
    let shape = usizes(&p["data_shape"]);
    ImageParams {
        data_shape: [shape[0], shape[1], shape[2]],
        resize: p.get("resize").map(|v| v.as_u64().unwrap() as usize),
        rand_crop: false,
        rand_mirror: false,
        mirror: p.get("mirror").is_some_and(|v| v.as_bool().unwrap()),
        mean: [f("mean_r", 0.0), f("mean_g", 0.0), f("mean_b", 0.0)],
        std: [f("std_r", 1.0), f("std_g", 1.0), f("std_b", 1.0)],
        scale: f("scale", 1.0),
        label_width: p
            .get("label_width")
            .map_or(1, |v| v.as_u64().unwrap() as usize),
    }
}

fn record_dataset(rec: &str, idx: bool, params: ImageParams) -> ImageRecordDataset {
    let dir = fixtures("recordio");
    let idx_path = dir.join(rec.replace(".rec", ".idx"));
    ImageRecordDataset::open(
        &dir.join(rec),
        idx.then_some(idx_path.as_path()),
        params,
        &DataLimits::default(),
        &RecordIoLimits::default(),
    )
    .unwrap()
}

/// Records of `images.rec` stored as JPEG (the fixture script's list).
const JPEG_RECORDS: [usize; 4] = [5, 6, 7, 9];

/// The largest difference, in 8-bit pixel levels, between ward's JPEG pixels (zune-jpeg)
/// and MXNet's (libjpeg-turbo): their IDCT and chroma upsampling round differently.
/// Measured on the fixtures: 3 levels (4:2:0 and 4:4:4 JPEGs, qualities 80–95).
const JPEG_TOLERANCE_LEVELS: f32 = 4.0;

#[test]
fn imagerecorditer_matches() {
    let dir = fixtures("recordio");
    let expected = json(&dir.join("expected.json"));
    let mut worst_jpeg = 0.0f32;
    for run in expected["runs"].as_array().unwrap() {
        let name = run["name"].as_str().unwrap();
        let params = image_params(&run["params"]);
        let batch_size = run["params"]["batch_size"].as_u64().unwrap() as usize;
        let rec = run["rec"].as_str().unwrap();
        for use_index in [true, false] {
            let dataset = record_dataset(rec, use_index, params.clone());
            let loader = Loader::new(
                Arc::new(dataset),
                config(batch_size, false, LastBatch::Pad, 2),
                RunSeed::from_u64(1),
            )
            .unwrap();
            let batches = all_batches(&loader, 0);
            let want = run["batches"].as_array().unwrap();
            assert_eq!(batches.len(), want.len(), "{name}");
            for (got, want) in batches.iter().zip(want) {
                assert_eq!(got.label, floats(&want["label"]), "{name}");
                assert_eq!(got.label_shape, usizes(&want["label_shape"]), "{name}");
                assert_eq!(got.pad as u64, want["pad"].as_u64().unwrap(), "{name}");
                let data =
                    read_npy(&fs::read(dir.join(want["data"].as_str().unwrap())).unwrap()).unwrap();
                assert_eq!(data.shape(), got.data_shape.as_slice(), "{name}");
                let want = data.to_f32_vec();
                let per = want.len() / batch_size;
                let [c, h, w] = params.data_shape;
                for (row, &example) in got.examples.iter().enumerate() {
                    let jpeg = rec == "images.rec" && JPEG_RECORDS.contains(&example);
                    for (i, (a, b)) in got.data[row * per..(row + 1) * per]
                        .iter()
                        .zip(&want[row * per..(row + 1) * per])
                        .enumerate()
                    {
                        let channel = i / (h * w);
                        assert!(channel < c);
                        // Back to pixel levels: the values are (p − mean) · scale / std.
                        let levels = (a - b).abs() * params.std[channel] / params.scale;
                        if jpeg {
                            worst_jpeg = worst_jpeg.max(levels);
                            assert!(
                                levels <= JPEG_TOLERANCE_LEVELS,
                                "{name}: JPEG record {example} value {i}: {a} vs {b}"
                            );
                        } else {
                            assert_eq!(a, b, "{name}: PNG record {example} value {i}");
                        }
                    }
                }
            }
        }
    }
    eprintln!("largest JPEG difference from libjpeg-turbo: {worst_jpeg} levels");
}

#[test]
fn npy_dataset_reads_examples_along_the_first_axis() {
    let dir = tempfile::tempdir().unwrap();
    let data = ward_core::Tensor::from_f32(vec![3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let labels = ward_core::Tensor::from_f32(vec![3], &[7.0, 8.0, 9.0]).unwrap();
    fs::write(dir.path().join("x.npy"), ward_core::npy::write_npy(&data)).unwrap();
    fs::write(dir.path().join("y.npy"), ward_core::npy::write_npy(&labels)).unwrap();
    let ds = NpyDataset::open(
        &dir.path().join("x.npy"),
        Some(&dir.path().join("y.npy")),
        &DataLimits::default(),
    )
    .unwrap();
    let mut rng = RunSeed::from_u64(0)
        .stream(ward_core::random::Purpose::Augment, 0)
        .unwrap();
    assert_eq!(
        ds.get(1, &mut rng).unwrap(),
        Example {
            data: vec![3.0, 4.0],
            label: vec![8.0]
        }
    );
    assert!(matches!(
        ds.get(3, &mut rng),
        Err(DataError::IndexOutOfRange { index: 3, len: 3 })
    ));
    fs::write(dir.path().join("bad.npy"), b"\x93NUMPY garbage").unwrap();
    let err =
        NpyDataset::open(&dir.path().join("bad.npy"), None, &DataLimits::default()).unwrap_err();
    assert!(matches!(err, DataError::Npy { .. }), "{err}");
    assert!(err.to_string().contains("bad.npy"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Hostile input.

fn idx_header(dtype: u8, dims: &[u32]) -> Vec<u8> {
    let mut b = vec![0, 0, dtype, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b
}

#[test]
fn idx_dims_that_overflow_or_exceed_the_bytes_are_refused() {
    let limits = DataLimits::default();
    let err = read_idx("big.idx", &idx_header(8, &[u32::MAX; 3]), &limits).unwrap_err();
    assert!(
        matches!(err, DataError::TooManyElements { elements: None, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("big.idx"), "{err}");
    let err = read_idx("big.idx", &idx_header(8, &[1 << 16, 1 << 16]), &limits).unwrap_err();
    assert!(
        matches!(err, DataError::TooManyElements { elements: Some(n), .. } if n == 1 << 32),
        "{err}"
    );
    let mut short = idx_header(8, &[10, 28, 28]);
    short.extend_from_slice(&[0; 100]);
    let err = read_idx("short.idx", &short, &limits).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Truncated {
                field: "values",
                offset: 16,
                needed: 7840,
                available: 100,
                ..
            }
        ),
        "{err}"
    );
    let mut long = idx_header(8, &[2]);
    long.extend_from_slice(&[1, 2, 3]);
    assert!(matches!(
        read_idx("long.idx", &long, &limits),
        Err(DataError::Malformed {
            field: "values",
            offset: 10,
            ..
        })
    ));
    for (bytes, field) in [
        (vec![1, 0, 8, 1], "magic"),
        (vec![0, 0, 7, 1], "type byte"),
        (vec![0, 0, 8, 0], "rank"),
        (vec![0, 0, 8, 200], "rank"),
        (
            idx_header(0x0d, &[1]).into_iter().chain([0; 4]).collect(),
            "type byte",
        ),
    ] {
        let err = read_idx("x.idx", &bytes, &limits).unwrap_err();
        assert!(
            matches!(&err, DataError::Malformed { field: f, .. } if *f == field),
            "{err}"
        );
    }
    assert!(matches!(
        read_idx("x.idx", &[0, 0, 8], &limits),
        Err(DataError::Truncated {
            field: "rank",
            offset: 3,
            ..
        })
    ));
}

#[test]
fn labels_out_of_range_and_counts_that_differ_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut images = idx_header(8, &[3, 2, 2]);
    images.extend_from_slice(&[0; 12]);
    let mut labels = idx_header(8, &[3]);
    labels.extend_from_slice(&[1, 10, 2]);
    fs::write(dir.path().join("img"), &images).unwrap();
    fs::write(dir.path().join("lab"), &labels).unwrap();
    let open = |labels: &str| {
        MnistDataset::open(
            &dir.path().join("img"),
            &dir.path().join(labels),
            &MnistOptions::default(),
            &DataLimits::default(),
        )
    };
    let err = open("lab").unwrap_err();
    assert!(
        matches!(
            err,
            DataError::LabelOutOfRange {
                index: 1,
                classes: 10,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("lab"), "{err}");
    let mut two = idx_header(8, &[2]);
    two.extend_from_slice(&[1, 2]);
    fs::write(dir.path().join("two"), &two).unwrap();
    assert!(matches!(
        open("two"),
        Err(DataError::CountMismatch {
            first_count: 3,
            second_count: 2,
            ..
        })
    ));
}

#[test]
fn gzip_bombs_and_corrupt_gzip_are_refused() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut payload = idx_header(8, &[1 << 12, 1 << 10]);
    payload.resize(payload.len() + (1 << 22), 0);
    gz.write_all(&payload).unwrap();
    let bomb = gz.finish().unwrap();
    fs::write(dir.path().join("bomb.gz"), &bomb).unwrap();
    let limits = DataLimits {
        max_decompressed_bytes: 1 << 20,
        ..DataLimits::default()
    };
    let err = read_idx_file(&dir.path().join("bomb.gz"), &limits).unwrap_err();
    assert!(
        matches!(err, DataError::DecompressedTooLarge { limit: 1048576, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("bomb.gz"));
    fs::write(dir.path().join("bad.gz"), [0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap();
    let err = read_idx_file(&dir.path().join("bad.gz"), &limits).unwrap_err();
    assert!(matches!(err, DataError::Gzip { .. }), "{err}");
}

#[test]
fn malformed_csv_names_line_and_column() {
    let limits = DataLimits::default();
    let cases: [(&[u8], u64, u64); 8] = [
        (b"1,2,3\n4,x,6\n", 2, 2),
        (b"a,b,c\n1,2,3\n", 1, 1),
        (b"1,2,3\n4,5\n", 2, 2),
        (b"1,2,3,4\n", 1, 4),
        (b"1,,3\n", 1, 2),
        (b"1,2,nan\n", 1, 3),
        (b"1,2,inf\n", 1, 3),
        (b"1,2,1e39\n", 1, 3),
    ];
    for (text, line, column) in cases {
        let err = parse_csv("d.csv", text, 3, &limits).unwrap_err();
        assert!(
            matches!(&err, DataError::Csv { line: l, column: c, .. } if *l == line && *c == column),
            "{:?}: {err}",
            String::from_utf8_lossy(text)
        );
        assert!(err.to_string().starts_with("d.csv: line"), "{err}");
    }
    let ok = parse_csv("d.csv", b" 1, -2.5e1 ,+3\r\n\n4,5,6", 3, &limits).unwrap();
    assert_eq!(ok.rows, 2);
    assert_eq!(ok.values, [1.0, -25.0, 3.0, 4.0, 5.0, 6.0]);
    let err = parse_csv("d.csv", b"1,2,\xff\n", 3, &limits).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Csv {
                line: 1,
                column: 3,
                ..
            }
        ),
        "{err}"
    );
    // Unequal data and label files.
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("d.csv"), "1,2\n3,4\n").unwrap();
    fs::write(dir.path().join("l.csv"), "1\n").unwrap();
    let err = CsvDataset::open(
        &dir.path().join("d.csv"),
        &[2],
        Some(&dir.path().join("l.csv")),
        &[1],
        &limits,
    )
    .unwrap_err();
    assert!(matches!(err, DataError::CountMismatch { .. }), "{err}");
}

#[cfg(unix)]
#[test]
fn fifo_and_huge_sparse_data_files_are_refused_without_reading() {
    let dir = tempfile::tempdir().unwrap();
    let limits = DataLimits::default();
    let fifo = dir.path().join("images.idx");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let err = read_idx_file(&fifo, &limits).unwrap_err();
    assert!(matches!(err, DataError::File { .. }), "{err}");
    assert!(err.to_string().contains("images.idx") && err.to_string().contains("FIFO"));
    let err = CsvDataset::open(&fifo, &[1], None, &[1], &limits).unwrap_err();
    assert!(err.to_string().contains("FIFO"), "{err}");
    let err = NpyDataset::open(&fifo, None, &limits).unwrap_err();
    assert!(err.to_string().contains("FIFO"), "{err}");
    let err = ImageRecordDataset::open(
        &fifo,
        None,
        ImageParams::default(),
        &limits,
        &RecordIoLimits::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("FIFO"), "{err}");

    // 10 GB, sparse: refused from its size before a byte is read (files read whole), or
    // read by parts (RecordIO: the scan reads one chunk header and stops).
    let huge = dir.path().join("huge");
    fs::File::create(&huge).unwrap().set_len(10 << 30).unwrap();
    for err in [
        read_idx_file(&huge, &limits).unwrap_err(),
        CsvDataset::open(&huge, &[1], None, &[1], &limits).unwrap_err(),
        NpyDataset::open(&huge, None, &limits).unwrap_err(),
    ] {
        assert!(
            matches!(
                &err,
                DataError::File {
                    reason: ward_core::files::FileError::TooLarge { .. },
                    ..
                }
            ),
            "{err}"
        );
    }
    let err = ImageRecordDataset::open(
        &huge,
        None,
        ImageParams::default(),
        &limits,
        &RecordIoLimits::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            DataError::RecordIo(RecordIoError::BadMagic { offset: 0, .. })
        ),
        "{err}"
    );
}

/// An image record's payload: `IRHeader` with a scalar label, then the image bytes.
fn image_payload(label: f32, image: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&0u32.to_le_bytes());
    p.extend_from_slice(&label.to_le_bytes());
    p.extend_from_slice(&[0; 16]);
    p.extend_from_slice(image);
    p
}

/// A PNG chunk: length, kind, body, CRC.
fn png_chunk(kind: &[u8], body: &[u8]) -> Vec<u8> {
    let mut c = (body.len() as u32).to_be_bytes().to_vec();
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(body);
    c.extend_from_slice(kind);
    c.extend_from_slice(body);
    c.extend_from_slice(&crc.sum().to_be_bytes());
    c
}

/// A PNG whose IHDR claims `w × h` RGB pixels, followed by a few bytes of image data.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(b"IDAT", &[0x78, 0x9c, 0x63, 0x00]));
    png.extend(png_chunk(b"IEND", &[]));
    png
}

fn rec_with(dir: &Path, name: &str, payloads: &[Vec<u8>]) -> PathBuf {
    let mut bytes = Vec::new();
    for p in payloads {
        write_record(&mut bytes, p).unwrap();
    }
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

/// What a hostile image must be refused as.
type ExpectImage = fn(&ImageError) -> bool;

#[test]
fn corrupt_or_oversized_images_are_refused_naming_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let good = fs::read(fixtures("recordio").join("images.rec")).unwrap();
    let jpeg_start = good.windows(2).position(|w| w == [0xff, 0xd8]).unwrap();
    let mut corrupt_jpeg = vec![0xff, 0xd8, 0xff, 0xc0, 0x00, 0x11];
    corrupt_jpeg.extend_from_slice(&[0x55; 40]);
    let cases: Vec<(Vec<u8>, ExpectImage)> = vec![
        (corrupt_jpeg, |e| {
            matches!(e, ImageError::Corrupt { format: "JPEG", .. })
        }),
        // A JPEG cut short after its headers.
        (good[jpeg_start..jpeg_start + 700].to_vec(), |e| {
            matches!(e, ImageError::Corrupt { .. })
        }),
        (png_header(100_000, 100_000), |e| {
            matches!(e, ImageError::TooManyPixels { width: 100000, .. })
        }),
        (png_header(40, 40), |e| {
            matches!(e, ImageError::Corrupt { format: "PNG", .. })
        }),
        (b"GIF89a".to_vec(), |e| {
            matches!(e, ImageError::UnknownFormat(_))
        }),
    ];
    let params = ImageParams {
        data_shape: [3, 8, 8],
        ..ImageParams::default()
    };
    for (i, (image, check)) in cases.into_iter().enumerate() {
        let path = rec_with(
            dir.path(),
            &format!("bad{i}.rec"),
            &[image_payload(0.0, &image)],
        );
        let ds = ImageRecordDataset::open(
            &path,
            None,
            params.clone(),
            &DataLimits::default(),
            &RecordIoLimits::default(),
        )
        .unwrap();
        let mut rng = RunSeed::from_u64(0)
            .stream(ward_core::random::Purpose::Augment, 0)
            .unwrap();
        match ds.get(0, &mut rng) {
            Err(DataError::Image {
                file,
                offset: 0,
                reason,
            }) => {
                assert!(file.ends_with(&format!("bad{i}.rec")));
                // A truncated JPEG may also decode with gray filler, as libjpeg does; it
                // must not panic. The other cases must be refused as stated.
                assert!(check(&reason) || i == 1, "case {i}: {reason}");
            }
            Ok(_) if i == 1 => {}
            other => panic!("case {i}: {other:?}"),
        }
    }
    // An image smaller than the crop; a label count other than label_width.
    let small = rec_with(dir.path(), "small.rec", &[image_payload(0.0, &tiny_png())]);
    let ds = ImageRecordDataset::open(
        &small,
        None,
        params.clone(),
        &DataLimits::default(),
        &RecordIoLimits::default(),
    )
    .unwrap();
    let mut rng = RunSeed::from_u64(0)
        .stream(ward_core::random::Purpose::Augment, 0)
        .unwrap();
    assert!(matches!(
        ds.get(0, &mut rng),
        Err(DataError::Image {
            reason: ImageError::TooSmall {
                width: 2,
                height: 2,
                ..
            },
            ..
        })
    ));
    let ds = ImageRecordDataset::open(
        &small,
        None,
        ImageParams {
            label_width: 3,
            data_shape: [3, 1, 1],
            ..params
        },
        &DataLimits::default(),
        &RecordIoLimits::default(),
    )
    .unwrap();
    assert!(matches!(
        ds.get(0, &mut rng),
        Err(DataError::Malformed {
            field: "IRHeader.flag (label count)",
            ..
        })
    ));
}

/// A valid 2×2 RGB PNG, assembled by hand (zlib-compressed rows, chunks with CRCs).
fn tiny_png() -> Vec<u8> {
    let mut raw = Vec::new();
    for _ in 0..2 {
        raw.push(0u8); // filter: none
        raw.extend_from_slice(&[10, 20, 30, 40, 50, 60]);
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut z, &raw).unwrap();
    let idat = z.finish().unwrap();
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&2u32.to_be_bytes());
    ihdr.extend_from_slice(&2u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(b"IDAT", &idat));
    png.extend(png_chunk(b"IEND", &[]));
    png
}

// ---------------------------------------------------------------------------------------
// Determinism.

fn augmented_loader(seed: u64, threads: usize) -> Loader {
    let params = ImageParams {
        data_shape: [3, 24, 24],
        resize: Some(30),
        rand_crop: true,
        rand_mirror: true,
        mean: [100.0, 110.0, 120.0],
        std: [50.0, 55.0, 60.0],
        ..ImageParams::default()
    };
    Loader::new(
        Arc::new(record_dataset("images.rec", true, params)),
        LoaderConfig {
            batch_size: 3,
            shuffle: true,
            last_batch: LastBatch::Pad,
            threads,
            prefetch: 2,
        },
        RunSeed::from_u64(seed),
    )
    .unwrap()
}

#[test]
fn same_seed_same_batches_whatever_the_threads() {
    let reference: Vec<Vec<Batch>> = (0..2)
        .map(|e| all_batches(&augmented_loader(42, 1), e))
        .collect();
    for threads in [0, 4] {
        for (epoch, want) in reference.iter().enumerate() {
            let got = all_batches(&augmented_loader(42, threads), epoch as u64);
            assert_eq!(&got, want, "threads {threads}, epoch {epoch}");
        }
    }
    // Epochs differ in order; another seed differs in order and augmentation.
    assert_ne!(reference[0][0].examples, reference[1][0].examples);
    let other = all_batches(&augmented_loader(43, 4), 0);
    assert_ne!(other, reference[0]);
    // The same example in two epochs gets different crops.
    let find = |batches: &[Batch], example: usize| {
        batches.iter().find_map(|b| {
            let row = b.examples.iter().position(|&e| e == example)?;
            let per = b.data.len() / b.examples.len();
            Some(b.data[row * per..(row + 1) * per].to_vec())
        })
    };
    assert_ne!(find(&reference[0], 0), find(&reference[1], 0));
    // Every example appears once per epoch, plus the padding from the front.
    let mut seen: Vec<usize> = reference[0]
        .iter()
        .flat_map(|b| b.examples.clone())
        .collect();
    let pad = reference[0].last().unwrap().pad;
    assert_eq!(pad, 2);
    seen.truncate(seen.len() - pad);
    seen.sort_unstable();
    assert_eq!(seen, (0..10).collect::<Vec<_>>());
}

/// A dataset that panics on one example: the epoch reports an error, nothing hangs.
struct Panicky;

impl Dataset for Panicky {
    fn len(&self) -> usize {
        20
    }
    fn data_shape(&self) -> &[usize] {
        &[1]
    }
    fn label_shape(&self) -> &[usize] {
        &[]
    }
    fn get(&self, index: usize, _rng: &mut ChaCha20Rng) -> Result<Example, DataError> {
        assert!(index != 13, "example 13 is cursed");
        Ok(Example {
            data: vec![index as f32],
            label: vec![0.0],
        })
    }
}

#[test]
fn a_failing_worker_ends_the_epoch_with_an_error_and_early_drops_do_not_hang() {
    let loader = Loader::new(
        Arc::new(Panicky),
        config(2, false, LastBatch::Pad, 4),
        RunSeed::from_u64(0),
    )
    .unwrap();
    let results: Vec<_> = loader.epoch(0).unwrap().collect();
    assert_eq!(results.len(), 7);
    assert!(results[..6].iter().all(Result::is_ok));
    assert!(matches!(results[6], Err(DataError::Worker(_))));
    // Take one batch and drop the rest: the workers stop.
    let mut epoch = loader.epoch(1).unwrap();
    assert!(epoch.next().unwrap().is_ok());
    drop(epoch);
    // Configuration limits.
    for bad in [
        config(0, false, LastBatch::Pad, 1),
        config(1 << 20, false, LastBatch::Pad, 1),
        LoaderConfig {
            prefetch: 0,
            ..config(2, false, LastBatch::Pad, 1)
        },
    ] {
        assert!(matches!(
            Loader::new(Arc::new(Panicky), bad, RunSeed::from_u64(0)),
            Err(DataError::Config(_))
        ));
    }
    assert!(matches!(loader.epoch(1 << 24), Err(DataError::Config(_))));
}

#[test]
fn images_of_zero_pixels_are_refused() {
    // Found by the `idx` fuzz target: 0xff000000 images of 0 × N pixels take no bytes.
    let images = read_idx(
        "z.idx",
        &[0, 0, 8, 3, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0x81, 0xc9, 0xd9],
        &DataLimits::default(),
    )
    .unwrap();
    assert_eq!(images.dims, [0xff00_0000, 0, 0x81c9d9]);
    let labels = read_idx("l.idx", &idx_header(8, &[0]), &DataLimits::default()).unwrap();
    let err = MnistDataset::from_arrays("z.idx", images, "l.idx", labels, &MnistOptions::default())
        .unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Malformed {
                field: "dimensions",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn an_epoch_from_a_batch_on_gives_the_same_batches_as_the_whole_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let examples = 37;
    let values: Vec<f32> = (0..examples * 3).map(|i| i as f32).collect();
    let labels: Vec<f32> = (0..examples).map(|i| (i % 5) as f32).collect();
    let data = ward_core::Tensor::from_f32(vec![examples, 3], &values).unwrap();
    let labels = ward_core::Tensor::from_f32(vec![examples], &labels).unwrap();
    fs::write(dir.path().join("x.npy"), ward_core::npy::write_npy(&data)).unwrap();
    fs::write(dir.path().join("y.npy"), ward_core::npy::write_npy(&labels)).unwrap();
    let dataset: Arc<dyn Dataset> = Arc::new(
        NpyDataset::open(
            &dir.path().join("x.npy"),
            Some(&dir.path().join("y.npy")),
            &DataLimits::default(),
        )
        .unwrap(),
    );
    for threads in [0, 2] {
        let loader = Loader::new(
            dataset.clone(),
            LoaderConfig {
                batch_size: 8,
                shuffle: true,
                last_batch: LastBatch::Pad,
                threads,
                prefetch: 2,
            },
            RunSeed::from_u64(9),
        )
        .unwrap();
        let whole: Vec<_> = loader.epoch(3).unwrap().map(|b| b.unwrap()).collect();
        assert_eq!(whole.len(), 5);
        for first in 0..=whole.len() {
            let mut tail = loader.epoch_from(3, first).unwrap();
            assert_eq!(tail.position(), first);
            let rest: Vec<_> = tail.by_ref().map(|b| b.unwrap()).collect();
            assert_eq!(
                rest.len(),
                whole.len() - first,
                "threads {threads}, from {first}"
            );
            for (a, b) in rest.iter().zip(&whole[first..]) {
                assert_eq!((&a.data, &a.label, a.pad), (&b.data, &b.label, b.pad));
            }
            assert_eq!(tail.position(), whole.len());
        }
    }
}
