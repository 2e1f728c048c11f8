//! An RGB canvas: rectangles, thick and dashed polylines, markers and bitmap text.
//! Every write goes through [`Canvas::set`], which ignores what falls outside, so callers
//! may draw with coordinates that run off the edge.

use super::font;

pub type Rgb = [u8; 3];

pub const WHITE: Rgb = [255, 255, 255];
pub const BLACK: Rgb = [0, 0, 0];

/// Why a canvas could not be made or encoded.
#[derive(Debug, thiserror::Error)]
pub enum RasterError {
    #[error("cannot reserve {0} bytes for the image")]
    OutOfMemory(usize),
    #[error("PNG encoding: {0}")]
    Png(#[from] png::EncodingError),
}

pub struct Canvas {
    width: usize,
    height: usize,
    /// Row-major RGB.
    pixels: Vec<u8>,
}

/// How a line is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pen {
    pub color: Rgb,
    /// The side of the square stamped at each point, in pixels.
    pub width: usize,
    /// Dashes: `(on, off)` lengths in pixels along the line.
    pub dash: Option<(f64, f64)>,
}

impl Canvas {
    /// A canvas filled with `background`. The caller bounds the size.
    pub fn new(width: usize, height: usize, background: Rgb) -> Result<Canvas, RasterError> {
        let bytes = width.saturating_mul(height).saturating_mul(3);
        let mut pixels = Vec::new();
        pixels
            .try_reserve_exact(bytes)
            .map_err(|_| RasterError::OutOfMemory(bytes))?;
        for _ in 0..width.saturating_mul(height) {
            pixels.extend_from_slice(&background);
        }
        Ok(Canvas {
            width,
            height,
            pixels,
        })
    }

    /// Paints one pixel; outside the canvas, nothing.
    pub fn set(&mut self, x: i64, y: i64, color: Rgb) {
        let (Ok(x), Ok(y)) = (usize::try_from(x), usize::try_from(y)) else {
            return;
        };
        if x >= self.width || y >= self.height {
            return;
        }
        let at = (y * self.width + x) * 3;
        if let Some(px) = self.pixels.get_mut(at..at + 3) {
            px.copy_from_slice(&color);
        }
    }

    /// The colour at a pixel.
    #[cfg(test)]
    pub fn get(&self, x: usize, y: usize) -> Option<Rgb> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let at = (y * self.width + x) * 3;
        let px = self.pixels.get(at..at + 3)?;
        Some([*px.first()?, *px.get(1)?, *px.get(2)?])
    }

    /// Fills the rectangle [x0, x1) × [y0, y1), clipped to the canvas.
    pub fn fill(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, color: Rgb) {
        let (x0, x1) = (x0.max(0), x1.min(self.width as i64));
        let (y0, y1) = (y0.max(0), y1.min(self.height as i64));
        for y in y0..y1 {
            for x in x0..x1 {
                self.set(x, y, color);
            }
        }
    }

    /// A one-pixel rectangle outline with corners (x0, y0) and (x1, y1) inclusive.
    pub fn outline(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, color: Rgb) {
        self.fill(x0, y0, x1 + 1, y0 + 1, color);
        self.fill(x0, y1, x1 + 1, y1 + 1, color);
        self.fill(x0, y0, x0 + 1, y1 + 1, color);
        self.fill(x1, y0, x1 + 1, y1 + 1, color);
    }

    /// A square of side `size` centred on (x, y).
    fn stamp(&mut self, x: f64, y: f64, size: usize, color: Rgb) {
        let size = size.max(1) as i64;
        let x0 = x.round() as i64 - (size - 1) / 2;
        let y0 = y.round() as i64 - (size - 1) / 2;
        self.fill(x0, y0, x0 + size, y0 + size, color);
    }

    /// A marker: a filled square of side `size` centred on (x, y).
    pub fn marker(&mut self, x: f64, y: f64, size: usize, color: Rgb) {
        self.stamp(x, y, size, color);
    }

    /// A polyline through `points`; dashes continue across its corners. Coordinates are
    /// clamped to a margin around the canvas, so a wild point costs no more than the
    /// canvas's size to draw.
    pub fn polyline(&mut self, points: &[(f64, f64)], pen: Pen) {
        let limit = |v: f64, max: usize| {
            if v.is_nan() {
                -10.0
            } else {
                v.clamp(-10.0, max as f64 + 10.0)
            }
        };
        let (width, height) = (self.width, self.height);
        let clamp = |(x, y): (f64, f64)| (limit(x, width), limit(y, height));
        let mut travelled = 0.0f64;
        let stamp = |canvas: &mut Canvas, x: f64, y: f64, along: f64| {
            let on = match pen.dash {
                Some((on, off)) if on + off > 0.0 => along.rem_euclid(on + off) < on,
                _ => true,
            };
            if on {
                canvas.stamp(x, y, pen.width, pen.color);
            }
        };
        if let [only] = points {
            let (x, y) = clamp(*only);
            stamp(self, x, y, 0.0);
            return;
        }
        for pair in points.windows(2) {
            let [a, b] = pair else { continue };
            let ((x0, y0), (x1, y1)) = (clamp(*a), clamp(*b));
            let (dx, dy) = (x1 - x0, y1 - y0);
            let length = dx.hypot(dy);
            // One stamp per pixel along the longer axis.
            let steps = dx.abs().max(dy.abs()).ceil().max(1.0) as usize;
            for i in 0..=steps {
                let t = i as f64 / steps as f64;
                stamp(self, x0 + dx * t, y0 + dy * t, travelled + length * t);
            }
            travelled += length;
        }
    }

    /// Draws `text` with its top-left corner at (x, y), each font pixel `scale` pixels
    /// square; returns the width drawn.
    pub fn text(&mut self, x: i64, y: i64, text: &str, scale: usize, color: Rgb) -> i64 {
        let s = scale.max(1) as i64;
        let mut pen = x;
        for c in text.chars() {
            for (row, bits) in font::glyph(c).iter().enumerate() {
                for col in 0..font::WIDTH {
                    if bits >> (font::WIDTH - 1 - col) & 1 == 1 {
                        let px = pen + col as i64 * s;
                        let py = y + row as i64 * s;
                        self.fill(px, py, px + s, py + s, color);
                    }
                }
            }
            pen += advance(scale);
        }
        pen - x
    }

    /// The PNG of the canvas (8-bit RGB).
    pub fn to_png(&self) -> Result<Vec<u8>, RasterError> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&self.pixels)?;
        writer.finish()?;
        Ok(out)
    }
}

/// How far one character moves the pen.
pub fn advance(scale: usize) -> i64 {
    ((font::WIDTH + 1) * scale.max(1)) as i64
}

/// The width `text` takes.
pub fn text_width(text: &str, scale: usize) -> i64 {
    text.chars().count() as i64 * advance(scale)
}

/// The height of a line of text.
pub fn text_height(scale: usize) -> i64 {
    (font::HEIGHT * scale.max(1)) as i64
}

/// `color` mixed with white: `amount` 0 is the colour, 1 white.
pub fn lighten(color: Rgb, amount: f64) -> Rgb {
    color.map(|c| (f64::from(c) + (255.0 - f64::from(c)) * amount).round() as u8)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn drawing_off_the_canvas_is_clipped() {
        let mut c = Canvas::new(20, 10, WHITE).unwrap();
        c.set(-1, 0, BLACK);
        c.set(20, 0, BLACK);
        c.fill(-100, -100, 1000, 1000, BLACK);
        assert!((0..20).all(|x| (0..10).all(|y| c.get(x, y) == Some(BLACK))));
        let pen = Pen {
            color: WHITE,
            width: 3,
            dash: None,
        };
        c.polyline(&[(-1e300, f64::NAN), (1e300, 5.0)], pen);
        c.text(-5, -5, "x?", 3, WHITE);
    }

    #[test]
    fn a_dashed_line_has_gaps() {
        let mut c = Canvas::new(100, 3, WHITE).unwrap();
        let pen = Pen {
            color: BLACK,
            width: 1,
            dash: Some((4.0, 4.0)),
        };
        c.polyline(&[(0.0, 1.0), (99.0, 1.0)], pen);
        let on = (0..100).filter(|&x| c.get(x, 1) == Some(BLACK)).count();
        assert!((45..=55).contains(&on), "{on}");
    }

    #[test]
    fn the_png_decodes_to_the_canvas() {
        let mut c = Canvas::new(7, 5, WHITE).unwrap();
        c.set(3, 2, [10, 20, 30]);
        let png = c.to_png().unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (7, 5));
        assert_eq!(&buf[(2 * 7 + 3) * 3..(2 * 7 + 3) * 3 + 3], &[10, 20, 30]);
    }
}
