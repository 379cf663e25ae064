//! Boxes, non-maximum suppression and resampling shared by the detectors.

use crate::image::RgbImage;

/// A candidate face: box corners, score, box regression and landmarks (image pixels).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub score: f32,
    pub reg: [f32; 4],
    pub landmarks: [[f32; 2]; 5],
}

impl Candidate {
    pub fn new(x1: f32, y1: f32, x2: f32, y2: f32, score: f32) -> Candidate {
        Candidate {
            x1,
            y1,
            x2,
            y2,
            score,
            reg: [0.0; 4],
            landmarks: [[0.0; 2]; 5],
        }
    }
}

/// How overlap is measured: over the union (IoU) or over the smaller box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    Union,
    Min,
}

/// Greedy NMS, best score first. `inclusive` counts boxes as inclusive pixel ranges (+1 in
/// widths; MTCNN's 1-based convention), otherwise as continuous extents (SCRFD).
pub fn nms(
    mut boxes: Vec<Candidate>,
    threshold: f32,
    method: Overlap,
    inclusive: bool,
) -> Vec<Candidate> {
    boxes.sort_by(|a, b| b.score.total_cmp(&a.score));
    let one = if inclusive { 1.0 } else { 0.0 };
    let area = |c: &Candidate| (c.x2 - c.x1 + one).max(0.0) * (c.y2 - c.y1 + one).max(0.0);
    let mut keep: Vec<Candidate> = Vec::with_capacity(boxes.len());
    'next: for b in boxes {
        for k in &keep {
            let w = (b.x2.min(k.x2) - b.x1.max(k.x1) + one).max(0.0);
            let h = (b.y2.min(k.y2) - b.y1.max(k.y1) + one).max(0.0);
            let inter = w * h;
            let denom = match method {
                Overlap::Union => area(&b) + area(k) - inter,
                Overlap::Min => area(&b).min(area(k)),
            };
            if denom > 0.0 && inter / denom > threshold {
                continue 'next;
            }
        }
        keep.push(b);
    }
    keep
}

/// A float RGB raster (values 0..255), row-major, 3 channels.
#[derive(Debug, Clone)]
pub struct RgbF32 {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl RgbF32 {
    pub fn from_image(img: &RgbImage) -> RgbF32 {
        RgbF32 {
            width: img.width as usize,
            height: img.height as usize,
            data: img.pixels.iter().map(|&v| v as f32).collect(),
        }
    }

    #[inline]
    pub fn px(&self, x: usize, y: usize) -> [f32; 3] {
        let i = (y * self.width + x) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    /// Bilinear sample at (x, y) (pixel centres at integers); outside the image: `border`.
    #[inline]
    pub fn bilinear(&self, x: f32, y: f32, border: f32) -> [f32; 3] {
        let (w, h) = (self.width as isize, self.height as isize);
        let (fx, fy) = (x.floor(), y.floor());
        let (ax, ay) = (x - fx, y - fy);
        let (x0, y0) = (fx as isize, fy as isize);
        let get = |xx: isize, yy: isize| -> [f32; 3] {
            if xx < 0 || yy < 0 || xx >= w || yy >= h {
                [border; 3]
            } else {
                self.px(xx as usize, yy as usize)
            }
        };
        let (p00, p10, p01, p11) = (
            get(x0, y0),
            get(x0 + 1, y0),
            get(x0, y0 + 1),
            get(x0 + 1, y0 + 1),
        );
        let mut out = [0f32; 3];
        for c in 0..3 {
            let top = p00[c] + (p10[c] - p00[c]) * ax;
            let bottom = p01[c] + (p11[c] - p01[c]) * ax;
            out[c] = top + (bottom - top) * ay;
        }
        out
    }

    /// Resizes to `nw` x `nh`: area averaging where an axis shrinks (OpenCV's INTER_AREA, which
    /// the MTCNN reference uses), bilinear where it grows.
    pub fn resize(&self, nw: usize, nh: usize) -> RgbF32 {
        let wx = axis_weights(self.width, nw);
        let wy = axis_weights(self.height, nh);
        // Horizontal pass.
        let mut tmp = vec![0f32; nw * self.height * 3];
        for y in 0..self.height {
            let row = &self.data[y * self.width * 3..(y + 1) * self.width * 3];
            for (x, taps) in wx.iter().enumerate() {
                let mut acc = [0f32; 3];
                for &(sx, w) in taps {
                    for c in 0..3 {
                        acc[c] += row[sx * 3 + c] * w;
                    }
                }
                tmp[(y * nw + x) * 3..(y * nw + x) * 3 + 3].copy_from_slice(&acc);
            }
        }
        let mut out = vec![0f32; nw * nh * 3];
        for (y, taps) in wy.iter().enumerate() {
            for x in 0..nw {
                let mut acc = [0f32; 3];
                for &(sy, w) in taps {
                    let i = (sy * nw + x) * 3;
                    for c in 0..3 {
                        acc[c] += tmp[i + c] * w;
                    }
                }
                out[(y * nw + x) * 3..(y * nw + x) * 3 + 3].copy_from_slice(&acc);
            }
        }
        RgbF32 {
            width: nw,
            height: nh,
            data: out,
        }
    }

    /// The region [x1, x2) x [y1, y2) (integer pixels, may reach outside: zero there), resized
    /// to `size` x `size`.
    pub fn crop_resize(&self, x1: i64, y1: i64, x2: i64, y2: i64, size: usize) -> RgbF32 {
        let (cw, ch) = ((x2 - x1).max(1) as usize, (y2 - y1).max(1) as usize);
        let mut crop = vec![0f32; cw * ch * 3];
        for yy in 0..ch {
            let sy = y1 + yy as i64;
            if sy < 0 || sy >= self.height as i64 {
                continue;
            }
            for xx in 0..cw {
                let sx = x1 + xx as i64;
                if sx < 0 || sx >= self.width as i64 {
                    continue;
                }
                let s = (sy as usize * self.width + sx as usize) * 3;
                let d = (yy * cw + xx) * 3;
                crop[d..d + 3].copy_from_slice(&self.data[s..s + 3]);
            }
        }
        RgbF32 {
            width: cw,
            height: ch,
            data: crop,
        }
        .resize(size, size)
    }
}

/// Per output index, the source indices and weights along one axis.
fn axis_weights(src: usize, dst: usize) -> Vec<Vec<(usize, f32)>> {
    let scale = src as f64 / dst as f64;
    (0..dst)
        .map(|o| {
            if scale > 1.0 {
                // Area: the output pixel covers [o*scale, (o+1)*scale) of the source.
                let (start, end) = (o as f64 * scale, (o as f64 + 1.0) * scale);
                let mut taps = Vec::new();
                let mut s = start.floor() as usize;
                while (s as f64) < end && s < src {
                    let cover = (end.min(s as f64 + 1.0) - start.max(s as f64)).max(0.0);
                    if cover > 0.0 {
                        taps.push((s, (cover / scale) as f32));
                    }
                    s += 1;
                }
                taps
            } else {
                // Bilinear with half-pixel centres.
                let pos = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (pos.floor() as usize).min(src - 1);
                let i1 = (i0 + 1).min(src - 1);
                let a = (pos - i0 as f64) as f32;
                if i1 == i0 || a == 0.0 {
                    vec![(i0, 1.0)]
                } else {
                    vec![(i0, 1.0 - a), (i1, a)]
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let a = Candidate::new(0.0, 0.0, 10.0, 10.0, 0.9);
        let b = Candidate::new(1.0, 1.0, 11.0, 11.0, 0.8);
        let c = Candidate::new(50.0, 50.0, 60.0, 60.0, 0.7);
        let kept = nms(vec![b, c, a], 0.5, Overlap::Union, true);
        assert_eq!(kept, vec![a, c]);
        // A small box inside a big one: IoU small, "Min" overlap 1.
        let big = Candidate::new(0.0, 0.0, 100.0, 100.0, 0.9);
        let small = Candidate::new(10.0, 10.0, 20.0, 20.0, 0.8);
        assert_eq!(nms(vec![big, small], 0.7, Overlap::Union, true).len(), 2);
        assert_eq!(nms(vec![big, small], 0.7, Overlap::Min, true).len(), 1);
    }

    #[test]
    fn area_resize_averages() {
        let img = RgbF32 {
            width: 4,
            height: 2,
            data: (0..24).map(|i| (i / 3) as f32).collect(),
        };
        let r = img.resize(2, 1);
        // Pixels 0,1,4,5 average to 2.5; 2,3,6,7 to 4.5.
        assert!((r.px(0, 0)[0] - 2.5).abs() < 1e-5);
        assert!((r.px(1, 0)[1] - 4.5).abs() < 1e-5);
        let same = img.resize(4, 2);
        assert_eq!(same.data, img.data);
    }

    #[test]
    fn bilinear_interpolates_and_pads() {
        let img = RgbF32 {
            width: 2,
            height: 1,
            data: vec![0.0, 0.0, 0.0, 10.0, 10.0, 10.0],
        };
        assert!((img.bilinear(0.5, 0.0, 0.0)[0] - 5.0).abs() < 1e-6);
        assert_eq!(img.bilinear(-5.0, 0.0, 0.0), [0.0; 3]);
    }
}
