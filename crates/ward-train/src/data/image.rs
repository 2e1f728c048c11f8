//! Image records decoded and augmented as MXNet's `ImageRecordIter` does
//! (src/io/image_aug_default.cc and iter_image_recordio_2.cc, 1.9.1), by pure-Rust
//! decoders: JPEG by `zune-jpeg`, PNG by `png`.
//!
//! The pipeline for one record, in MXNet's order:
//! 1. decode to 8-bit RGB (or gray for `data_shape[0] == 1`); the pixel count is checked
//!    against [`super::DataLimits::max_image_pixels`] from the header, before the pixels
//!    are allocated;
//! 2. `resize`: the shorter side to `resize`, the other to `resize × long / short`
//!    (integer division, as MXNet), bilinear;
//! 3. crop `data_shape`'s height × width: centred (`(H − h) / 2`, `(W − w) / 2`), or at a
//!    uniformly random position with `rand_crop`; an image smaller than the crop is
//!    refused (MXNet aborts the process on its `CHECK`);
//! 4. mirror left–right with `mirror`, or with probability ½ with `rand_mirror`;
//! 5. `(pixel − mean_c) × (scale / std_c)` in `f32`, written CHW in RGB order.
//!
//! Where ward differs from MXNet:
//! * **JPEG decoding.** MXNet decodes with libjpeg-turbo (or OpenCV's libjpeg); ward with
//!   zune-jpeg. Both follow the JPEG standard but round the inverse DCT and chroma
//!   upsampling differently, so pixels may differ by a few levels; the fixture test states
//!   and checks its tolerance. PNG is lossless: ward's pixels equal OpenCV's.
//! * **Resize.** `ImageRecordIter`'s default `inter_method` 1 is OpenCV's `INTER_LINEAR`.
//!   Ward computes the same half-pixel-centre coefficients in OpenCV's 11-bit fixed point
//!   (its SSE2 row combination), which matched MXNet exactly on the fixtures; OpenCV's
//!   other methods (`inter_method` 0, 2–4, 9, 10), its 2× shortcut through `INTER_AREA`
//!   and its affine augmenters (`max_rotate_angle`, `max_aspect_ratio`, `max_shear_ratio`,
//!   `max_random_scale`, `pad`, `random_h/s/l`, …) are not implemented.
//! * **Gray output.** For `data_shape[0] == 1` a colour PNG is converted with OpenCV's
//!   BGR→gray weights (0.299, 0.587, 0.114 in 14-bit fixed point); libpng's own
//!   conversion, which OpenCV's PNG reader asks for, may round differently. A JPEG gives
//!   its luma channel, as libjpeg-turbo's gray output does.
//! * **Randomness.** MXNet draws crops and mirrors from a per-thread `mt19937`, so its
//!   augmentation depends on which thread decodes which record; ward draws them from the
//!   run's stream for (epoch, record), so they do not.
//! * An alpha channel is dropped (as OpenCV's colour decode drops it); 16-bit PNGs keep
//!   their high byte (as OpenCV's 8-bit decode does).

use std::io::Cursor;

use ward_core::random::rand_core::Rng;
use ward_core::random::ChaCha20Rng;
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

/// Why an encoded image was refused.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image format not recognised (first bytes {0:02x?}); JPEG and PNG are read")]
    UnknownFormat(Vec<u8>),
    #[error("{width}×{height} pixels, over the limit of {limit} pixels")]
    TooManyPixels { width: u64, height: u64, limit: u64 },
    #[error("corrupt {format}: {reason}")]
    Corrupt {
        format: &'static str,
        reason: String,
    },
    #[error(
        "{width}×{height} image is smaller than the {crop_width}×{crop_height} crop (data_shape)"
    )]
    TooSmall {
        width: usize,
        height: usize,
        crop_width: usize,
        crop_height: usize,
    },
    #[error("{0} values cannot be reserved for the image")]
    OutOfMemory(u64),
}

/// Decoded pixels: `height × width × channels` bytes, rows top to bottom, RGB order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pixels {
    pub width: usize,
    pub height: usize,
    /// 1 (gray) or 3 (RGB).
    pub channels: usize,
    pub data: Vec<u8>,
}

fn zeroed_bytes(n: usize) -> Result<Vec<u8>, ImageError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| ImageError::OutOfMemory(n as u64))?;
    v.resize(n, 0);
    Ok(v)
}

fn check_pixels(width: u64, height: u64, limit: u64) -> Result<(), ImageError> {
    if width == 0 || height == 0 || width.saturating_mul(height) > limit {
        return Err(ImageError::TooManyPixels {
            width,
            height,
            limit,
        });
    }
    Ok(())
}

/// Decodes a JPEG or PNG (told apart by their signatures) to `channels` (1 or 3) 8-bit
/// channels, refusing more than `max_pixels` pixels before decoding them.
pub fn decode(bytes: &[u8], channels: usize, max_pixels: u64) -> Result<Pixels, ImageError> {
    if bytes.starts_with(&[0xff, 0xd8]) {
        decode_jpeg(bytes, channels, max_pixels)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        decode_png(bytes, channels, max_pixels)
    } else {
        Err(ImageError::UnknownFormat(
            bytes.iter().take(8).copied().collect(),
        ))
    }
}

fn decode_jpeg(bytes: &[u8], channels: usize, max_pixels: u64) -> Result<Pixels, ImageError> {
    let corrupt = |e: zune_jpeg::errors::DecodeErrors| ImageError::Corrupt {
        format: "JPEG",
        reason: e.to_string(),
    };
    let colorspace = if channels == 1 {
        ColorSpace::Luma
    } else {
        ColorSpace::RGB
    };
    // The decoder's own size limits, as a second line behind the pixel count below.
    let side = usize::try_from(max_pixels)
        .unwrap_or(usize::MAX)
        .min(65_535);
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(colorspace)
        .set_max_width(side)
        .set_max_height(side);
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(corrupt)?;
    let info = decoder.info().ok_or_else(|| ImageError::Corrupt {
        format: "JPEG",
        reason: "no frame header".to_owned(),
    })?;
    let (width, height) = (usize::from(info.width), usize::from(info.height));
    check_pixels(width as u64, height as u64, max_pixels)?;
    let size = decoder
        .output_buffer_size()
        .filter(|&n| n == width * height * channels)
        .ok_or_else(|| ImageError::Corrupt {
            format: "JPEG",
            reason: "output size disagrees with the frame header".to_owned(),
        })?;
    let mut data = zeroed_bytes(size)?;
    decoder.decode_into(&mut data).map_err(corrupt)?;
    Ok(Pixels {
        width,
        height,
        channels,
        data,
    })
}

fn decode_png(bytes: &[u8], channels: usize, max_pixels: u64) -> Result<Pixels, ImageError> {
    let corrupt = |e: png::DecodingError| ImageError::Corrupt {
        format: "PNG",
        reason: e.to_string(),
    };
    // The decoder's allocation limit: the largest allowed image at 8 bytes a pixel (RGBA,
    // 16 bits) plus its working rows.
    let budget =
        usize::try_from(max_pixels.saturating_mul(8).saturating_add(1 << 20)).unwrap_or(usize::MAX);
    let mut decoder =
        png::Decoder::new_with_limits(Cursor::new(bytes), png::Limits { bytes: budget });
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(corrupt)?;
    let (width, height) = {
        let info = reader.info();
        (u64::from(info.width), u64::from(info.height))
    };
    check_pixels(width, height, max_pixels)?;
    let size = reader.output_buffer_size().ok_or(ImageError::Corrupt {
        format: "PNG",
        reason: "image size overflows".to_owned(),
    })?;
    let mut buf = zeroed_bytes(size)?;
    let frame = reader.next_frame(&mut buf).map_err(corrupt)?;
    let (width, height) = (width as usize, height as usize);
    let source_channels = match (frame.color_type, frame.bit_depth) {
        (png::ColorType::Grayscale, png::BitDepth::Eight) => 1,
        (png::ColorType::GrayscaleAlpha, png::BitDepth::Eight) => 2,
        (png::ColorType::Rgb, png::BitDepth::Eight) => 3,
        (png::ColorType::Rgba, png::BitDepth::Eight) => 4,
        (color, depth) => {
            return Err(ImageError::Corrupt {
                format: "PNG",
                reason: format!("{color:?} at {depth:?} after expansion to 8 bits"),
            })
        }
    };
    let pixels = width * height;
    let src = buf
        .get(..pixels * source_channels)
        .ok_or(ImageError::Corrupt {
            format: "PNG",
            reason: "frame shorter than its header".to_owned(),
        })?;
    let mut data = zeroed_bytes(pixels * channels)?;
    for (out, px) in data
        .chunks_exact_mut(channels)
        .zip(src.chunks_exact(source_channels))
    {
        match (channels, px) {
            (1, [g] | [g, _]) => out.fill(*g),
            (1, [r, g, b] | [r, g, b, _]) => out.fill(kernel::gray(*r, *g, *b)),
            (_, [g] | [g, _]) => out.fill(*g),
            (_, [r, g, b] | [r, g, b, _]) => out.copy_from_slice(&[*r, *g, *b]),
            _ => {}
        }
    }
    Ok(Pixels {
        width,
        height,
        channels,
        data,
    })
}

/// `ImageRecordIter`'s image parameters that ward implements.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageParams {
    /// `(channels, height, width)` of the output: channels 1 or 3.
    pub data_shape: [usize; 3],
    /// Resize the shorter side to this before cropping (`resize`; MXNet's −1 is `None`).
    pub resize: Option<usize>,
    pub rand_crop: bool,
    pub rand_mirror: bool,
    /// Mirror every image (`mirror`).
    pub mirror: bool,
    /// `mean_r`, `mean_g`, `mean_b` (only the first for gray).
    pub mean: [f32; 3],
    /// `std_r`, `std_g`, `std_b`.
    pub std: [f32; 3],
    pub scale: f32,
    /// Labels per record (`label_width`): 1 for the header's scalar label, or the record's
    /// label count.
    pub label_width: usize,
}

impl Default for ImageParams {
    fn default() -> Self {
        ImageParams {
            data_shape: [3, 224, 224],
            resize: None,
            rand_crop: false,
            rand_mirror: false,
            mirror: false,
            mean: [0.0; 3],
            std: [1.0; 3],
            scale: 1.0,
            label_width: 1,
        }
    }
}

impl ImageParams {
    /// Checks the parameters before any record is read.
    pub fn validate(&self, max_pixels: u64) -> Result<(), String> {
        let [c, h, w] = self.data_shape;
        if c != 1 && c != 3 {
            return Err(format!("data_shape channels must be 1 or 3, not {c}"));
        }
        if h == 0 || w == 0 || (h as u64).saturating_mul(w as u64) > max_pixels {
            return Err(format!(
                "data_shape {h}×{w} must be non-empty and within {max_pixels} pixels"
            ));
        }
        if let Some(r) = self.resize {
            if r == 0 || r as u64 > max_pixels {
                return Err(format!("resize {r} must be in 1..={max_pixels}"));
            }
        }
        if self.std.iter().any(|s| !s.is_finite() || *s == 0.0)
            || self.mean.iter().any(|m| !m.is_finite())
            || !self.scale.is_finite()
        {
            return Err("mean, std and scale must be finite, std non-zero".to_owned());
        }
        if self.label_width == 0 {
            return Err("label_width must be at least 1".to_owned());
        }
        Ok(())
    }
}

/// A uniform integer in `0..=max`, by rejection (no modulo bias).
pub(crate) fn uniform_inclusive(rng: &mut ChaCha20Rng, max: u64) -> u64 {
    if max == u64::MAX {
        return rng.next_u64();
    }
    let n = max + 1;
    let zone = u64::MAX - (u64::MAX % n) - 1;
    loop {
        let v = rng.next_u64();
        if v <= zone {
            return v % n;
        }
    }
}

/// Steps 2–5 of the pipeline on decoded pixels: CHW `f32` of `data_shape`.
pub fn augment(
    pixels: &Pixels,
    params: &ImageParams,
    rng: &mut ChaCha20Rng,
) -> Result<Vec<f32>, ImageError> {
    let resized;
    let img = match params.resize {
        Some(size) => {
            let (w, h) = (pixels.width, pixels.height);
            // MXNet: new_height = resize * rows / cols when rows > cols (integer division).
            let (nw, nh) = if h > w {
                (size, size.saturating_mul(h) / w.max(1))
            } else {
                (size.saturating_mul(w) / h.max(1), size)
            };
            check_pixels(nw as u64, nh as u64, super::MAX_IMAGE_PIXELS)?;
            resized = kernel::resize_bilinear(pixels, nw, nh)?;
            &resized
        }
        None => pixels,
    };
    let [c, ch, cw] = params.data_shape;
    if img.width < cw || img.height < ch {
        return Err(ImageError::TooSmall {
            width: img.width,
            height: img.height,
            crop_width: cw,
            crop_height: ch,
        });
    }
    let (mut y0, mut x0) = ((img.height - ch) as u64, (img.width - cw) as u64);
    if params.rand_crop {
        y0 = uniform_inclusive(rng, y0);
        x0 = uniform_inclusive(rng, x0);
    } else {
        y0 /= 2;
        x0 /= 2;
    }
    let mirrored = (params.rand_mirror && rng.next_u32() & 1 == 1) || params.mirror;
    let mult = params.std.map(|s| params.scale / s);
    kernel::crop_normalize(
        img,
        (y0 as usize, x0 as usize),
        (c, ch, cw),
        mirrored,
        &params.mean,
        &mult,
    )
}

/// The pixel kernels: indices are in range by construction (each checked against the
/// image's dimensions before the loops run).
#[allow(
    clippy::indexing_slicing,
    reason = "loops over dimensions validated before they run"
)]
mod kernel {
    use super::{zeroed_bytes, ImageError, Pixels};

    /// OpenCV's `INTER_RESIZE_COEF_BITS`: weights in 11-bit fixed point.
    const COEF_SCALE: f32 = 2048.0;

    /// OpenCV's 8-bit BGR→gray: 0.299 R + 0.587 G + 0.114 B in 14-bit fixed point.
    pub(super) fn gray(r: u8, g: u8, b: u8) -> u8 {
        let v = (u32::from(r) * 4899 + u32::from(g) * 9617 + u32::from(b) * 1868 + 8192) >> 14;
        v.min(255) as u8
    }

    /// cvRound: to nearest, ties to even (what `saturate_cast<short>(float)` does).
    fn round_short(v: f32) -> i32 {
        v.round_ties_even().clamp(-32768.0, 32767.0) as i32
    }

    /// Per output coordinate: the two source indices and their fixed-point weights, as
    /// OpenCV's `resizeGeneric_` computes them for `INTER_LINEAR`.
    fn axis(src: usize, dst: usize, clamp_low: bool) -> Vec<(usize, usize, i32, i32)> {
        // OpenCV: scale_x = 1 / inv_scale_x, inv_scale_x = dst / src (not src / dst).
        let scale = 1.0 / (dst as f64 / src as f64);
        let last = src as i64 - 1;
        (0..dst)
            .map(|d| {
                let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
                let mut s = f.floor() as i64;
                let mut f = f - s as f32;
                if clamp_low && s < 0 {
                    s = 0;
                    f = 0.0;
                }
                if clamp_low && s >= last {
                    s = last;
                    f = 0.0;
                }
                let i0 = s.clamp(0, last) as usize;
                let i1 = (s + 1).clamp(0, last) as usize;
                (
                    i0,
                    i1,
                    round_short((1.0 - f) * COEF_SCALE),
                    round_short(f * COEF_SCALE),
                )
            })
            .collect()
    }

    /// Bilinear resize to `nw × nh` in OpenCV's fixed point: a horizontal pass into 32-bit
    /// sums (weights × 2048), then the vertical combination of two rows as OpenCV's SSE2
    /// path computes it, `((S0 >> 4) · b0 >> 16) + ((S1 >> 4) · b1 >> 16) + 2 >> 2`, with
    /// its scalar rounding `(S0 · b0 + S1 · b1 + 2^21) >> 22` for the last few values of a
    /// row.
    pub(super) fn resize_bilinear(
        src: &Pixels,
        nw: usize,
        nh: usize,
    ) -> Result<Pixels, ImageError> {
        let c = src.channels;
        if src.data.len() != src.width * src.height * c || nw == 0 || nh == 0 {
            return Err(ImageError::Corrupt {
                format: "image",
                reason: "pixel buffer disagrees with its size".to_owned(),
            });
        }
        let xs = axis(src.width, nw, true);
        // OpenCV leaves the row index unclamped and clamps the rows it reads.
        let ys = axis(src.height, nh, false);
        let row_len = nw * c;
        let hrow = |y: usize| -> Vec<i32> {
            let row = &src.data[y * src.width * c..(y + 1) * src.width * c];
            let mut out = Vec::with_capacity(row_len);
            for &(i0, i1, a0, a1) in &xs {
                for k in 0..c {
                    out.push(i32::from(row[i0 * c + k]) * a0 + i32::from(row[i1 * c + k]) * a1);
                }
            }
            out
        };
        let mut data = zeroed_bytes(nh * row_len)?;
        // Where OpenCV's vector loops stop: 16 at a time, then 4 while x < width − 4.
        let mut vec_end = 0usize;
        while vec_end + 16 <= row_len {
            vec_end += 16;
        }
        while (vec_end as i64) < row_len as i64 - 4 {
            vec_end += 4;
        }
        for (dy, &(r0, r1, b0, b1)) in ys.iter().enumerate() {
            let s0 = hrow(r0);
            let s1 = hrow(r1);
            let out = &mut data[dy * row_len..(dy + 1) * row_len];
            for x in 0..row_len {
                let v = if x < vec_end {
                    let mulhi = |s: i32, b: i32| {
                        let s16 = (s >> 4).clamp(-32768, 32767);
                        (s16 * b) >> 16
                    };
                    let sum = (mulhi(s0[x], b0) + mulhi(s1[x], b1)).clamp(-32768, 32767);
                    ((sum + 2).clamp(-32768, 32767)) >> 2
                } else {
                    (s0[x] * b0 + s1[x] * b1 + (1 << 21)) >> 22
                };
                out[x] = v.clamp(0, 255) as u8;
            }
        }
        Ok(Pixels {
            width: nw,
            height: nh,
            channels: c,
            data,
        })
    }

    /// Crops `(ch, cw)` at `(y0, x0)`, mirrors, normalises, and writes CHW `f32`.
    pub(super) fn crop_normalize(
        img: &Pixels,
        (y0, x0): (usize, usize),
        (c, ch, cw): (usize, usize, usize),
        mirrored: bool,
        mean: &[f32; 3],
        mult: &[f32; 3],
    ) -> Result<Vec<f32>, ImageError> {
        let ic = img.channels;
        if ic != c
            || y0 + ch > img.height
            || x0 + cw > img.width
            || img.data.len() != img.width * img.height * ic
        {
            return Err(ImageError::Corrupt {
                format: "image",
                reason: "crop outside the image".to_owned(),
            });
        }
        let n = c * ch * cw;
        let mut out = Vec::new();
        out.try_reserve_exact(n)
            .map_err(|_| ImageError::OutOfMemory(n as u64))?;
        out.resize(n, 0.0f32);
        for y in 0..ch {
            let row = &img.data[((y0 + y) * img.width + x0) * ic..];
            for x in 0..cw {
                let ox = if mirrored { cw - 1 - x } else { x };
                for k in 0..c {
                    let v = f32::from(row[x * ic + k]);
                    out[(k * ch + y) * cw + ox] = (v - mean[k]) * mult[k];
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use ward_core::random::{Purpose, RunSeed};

    fn image(width: usize, height: usize) -> Pixels {
        Pixels {
            width,
            height,
            channels: 3,
            data: (0..width * height * 3)
                .map(|i| (i * 37 % 256) as u8)
                .collect(),
        }
    }

    #[test]
    fn resize_to_the_same_size_is_the_identity() {
        let src = image(7, 5);
        assert_eq!(kernel::resize_bilinear(&src, 7, 5).unwrap(), src);
    }

    #[test]
    fn uniform_draws_stay_in_range_and_cover_it() {
        let mut rng = RunSeed::from_u64(3).stream(Purpose::Augment, 0).unwrap();
        assert_eq!(uniform_inclusive(&mut rng, 0), 0);
        let mut seen = [false; 5];
        for _ in 0..200 {
            seen[uniform_inclusive(&mut rng, 4) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn center_crop_mirror_and_normalisation() {
        let src = image(4, 3);
        let params = ImageParams {
            data_shape: [3, 1, 2],
            mirror: true,
            mean: [1.0, 2.0, 3.0],
            std: [2.0, 2.0, 2.0],
            scale: 0.5,
            ..ImageParams::default()
        };
        let mut rng = RunSeed::from_u64(0).stream(Purpose::Augment, 0).unwrap();
        let out = augment(&src, &params, &mut rng).unwrap();
        // Crop at y = 1, x = 1; mirrored: output x 0 is source x 2.
        let px = |x: usize, k: usize| f32::from(src.data[(4 + x) * 3 + k]);
        for k in 0..3 {
            let mean = params.mean[k];
            assert_eq!(out[k * 2], (px(2, k) - mean) * 0.25);
            assert_eq!(out[k * 2 + 1], (px(1, k) - mean) * 0.25);
        }
    }
}
