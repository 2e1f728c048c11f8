//! Fuzzes image decoding and augmentation (`ward_train::data::image`): the bytes of a
//! RecordIO image record after its header, decoded as JPEG or PNG within a small pixel
//! limit, then resized, cropped, mirrored and normalised. Nothing may panic; a decoded
//! image must have the size its header gave, and the output exactly `data_shape` values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_core::random::{Purpose, RunSeed};
use ward_train::data::image::{augment, decode, ImageParams};

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, image)) = data.split_first() else {
        return;
    };
    let channels = if knobs & 1 == 0 { 3 } else { 1 };
    let Ok(pixels) = decode(image, channels, 1 << 16) else {
        return;
    };
    assert_eq!(pixels.channels, channels);
    assert_eq!(pixels.data.len(), pixels.width * pixels.height * channels);
    let params = ImageParams {
        data_shape: [channels, 8, 8],
        resize: (knobs & 2 != 0).then_some(usize::from(knobs >> 4) + 8),
        rand_crop: knobs & 4 != 0,
        rand_mirror: knobs & 8 != 0,
        mean: [1.0, 2.0, 3.0],
        std: [2.0, 3.0, 4.0],
        ..ImageParams::default()
    };
    let mut rng = RunSeed::from_u64(0).stream(Purpose::Augment, 0).unwrap();
    if let Ok(out) = augment(&pixels, &params, &mut rng) {
        assert_eq!(out.len(), channels * 64);
        assert!(out.iter().all(|v| v.is_finite()));
    }
});
