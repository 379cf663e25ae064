//! A fingerprint image quality score, 0..=100, in the spirit of NIST's NFIQ 2 (not NFIQ 2
//! itself): it combines the measures NFIQ 2 found most predictive of matching performance —
//! how much usable ridge area there is, how coherent the ridge orientation is, how clear the
//! ridge/valley contrast is, and how many confident minutiae the extractor found.
//!
//! Computed on the 500 ppi image, in 16x16 blocks (about two ridge periods).

use super::RawMinutia;
use crate::image::GrayImage;

const BLOCK: usize = 16;
/// Pixels per millimetre at 500 ppi.
const PX_PER_MM: f32 = 500.0 / 25.4;
/// Ridge area at which the area term saturates: a plain impression of a fingertip.
const FULL_AREA_MM2: f32 = 120.0;
/// Confident minutiae at which the minutiae term saturates.
const FULL_MINUTIAE: f32 = 30.0;

/// The score and the measures it was made from.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct FingerQuality {
    /// 0 (unusable) ..= 100 (excellent).
    pub score: u8,
    /// Area of ridge-bearing blocks in square millimetres.
    pub foreground_mm2: f32,
    /// Mean orientation coherence of ridge-bearing blocks, 0..1.
    pub coherence: f32,
    /// Mean gray-level standard deviation of ridge-bearing blocks, 0..1 of the full range.
    pub contrast: f32,
    /// Minutiae with extractor quality >= 0.7.
    pub confident_minutiae: u32,
}

/// Scores a 500 ppi image and the minutiae found in it.
pub fn assess(img: &GrayImage, minutiae: &[RawMinutia]) -> FingerQuality {
    let (w, h) = (img.width as usize, img.height as usize);
    let (bw, bh) = (w / BLOCK, h / BLOCK);
    let mut stats = Vec::with_capacity(bw * bh);
    for by in 0..bh {
        for bx in 0..bw {
            stats.push(block_stats(img, bx * BLOCK, by * BLOCK));
        }
    }
    let confident_minutiae = minutiae.iter().filter(|m| m.quality >= 0.7).count() as u32;
    if stats.is_empty() {
        return FingerQuality {
            score: 0,
            foreground_mm2: 0.0,
            coherence: 0.0,
            contrast: 0.0,
            confident_minutiae,
        };
    }
    // Foreground: blocks whose contrast is a fair share of the image's strongest blocks, and
    // not negligible in absolute terms (a blank capture has no foreground at all).
    let mut stds: Vec<f32> = stats.iter().map(|s| s.std).collect();
    stds.sort_by(f32::total_cmp);
    let strong = stds[(stds.len() * 9) / 10];
    let threshold = (0.35 * strong).max(6.0);
    let fg: Vec<&BlockStats> = stats.iter().filter(|s| s.std >= threshold).collect();
    let foreground_mm2 = fg.len() as f32 * (BLOCK * BLOCK) as f32 / (PX_PER_MM * PX_PER_MM);
    let (coherence, contrast) = if fg.is_empty() {
        (0.0, 0.0)
    } else {
        let n = fg.len() as f32;
        (
            fg.iter().map(|s| s.coherence).sum::<f32>() / n,
            fg.iter().map(|s| s.std).sum::<f32>() / n / 255.0,
        )
    };
    let area = (foreground_mm2 / FULL_AREA_MM2).min(1.0);
    // A gray-level standard deviation of ~50 is a well-inked, well-pressed capture.
    let clarity = (contrast * 255.0 / 50.0).min(1.0);
    let detail = (confident_minutiae as f32 / FULL_MINUTIAE).min(1.0);
    let structure = 0.45 * coherence.min(1.0) + 0.2 * clarity + 0.35 * detail;
    let score = (100.0 * area.sqrt() * structure).round().clamp(0.0, 100.0) as u8;
    FingerQuality {
        score,
        foreground_mm2,
        coherence,
        contrast,
        confident_minutiae,
    }
}

struct BlockStats {
    std: f32,
    coherence: f32,
}

/// Standard deviation and gradient-tensor orientation coherence of one block.
fn block_stats(img: &GrayImage, x0: usize, y0: usize) -> BlockStats {
    let w = img.width as usize;
    let h = img.height as usize;
    let px = |x: usize, y: usize| img.pixels[y * w + x] as f32;
    let (mut sum, mut sum2) = (0.0f32, 0.0f32);
    let (mut gxx, mut gyy, mut gxy) = (0.0f32, 0.0f32, 0.0f32);
    for y in y0..y0 + BLOCK {
        for x in x0..x0 + BLOCK {
            let v = px(x, y);
            sum += v;
            sum2 += v * v;
            let gx = px((x + 1).min(w - 1), y) - px(x.saturating_sub(1), y);
            let gy = px(x, (y + 1).min(h - 1)) - px(x, y.saturating_sub(1));
            gxx += gx * gx;
            gyy += gy * gy;
            gxy += gx * gy;
        }
    }
    let n = (BLOCK * BLOCK) as f32;
    let mean = sum / n;
    let std = (sum2 / n - mean * mean).max(0.0).sqrt();
    let energy = gxx + gyy;
    let coherence = if energy > 1e-3 {
        ((gxx - gyy).powi(2) + 4.0 * gxy * gxy).sqrt() / energy
    } else {
        0.0
    };
    BlockStats { std, coherence }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: u32, h: u32, mut f: impl FnMut(f32, f32) -> f32) -> GrayImage {
        let mut p = Vec::with_capacity((w * h) as usize);
        for y in 0..h {
            for x in 0..w {
                p.push(f(x as f32, y as f32).clamp(0.0, 255.0) as u8);
            }
        }
        GrayImage::new(w, h, p).unwrap()
    }

    fn minutiae(n: usize) -> Vec<RawMinutia> {
        (0..n)
            .map(|i| RawMinutia {
                x: i as u32,
                y: 0,
                direction: 0.0,
                ending: true,
                quality: 0.9,
            })
            .collect()
    }

    #[test]
    fn blank_capture_scores_zero() {
        let q = assess(&image(320, 400, |_, _| 200.0), &[]);
        assert_eq!(q.score, 0);
        assert_eq!(q.foreground_mm2, 0.0);
    }

    #[test]
    fn clear_ridges_beat_noise() {
        // Parallel ridges with a 9-pixel period (typical at 500 ppi) versus white noise of the
        // same contrast: both have foreground, only the ridges are coherent.
        let ridges = image(320, 400, |x, y| {
            128.0 + 70.0 * ((x + 0.3 * y) * std::f32::consts::TAU / 9.0).sin()
        });
        let mut seed = 0x2545F491u32;
        let noise = image(320, 400, |_, _| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed % 256) as f32
        });
        let good = assess(&ridges, &minutiae(30));
        let bad = assess(&noise, &[]);
        assert!(good.coherence > 0.8, "{good:?}");
        assert!(bad.coherence < 0.3, "{bad:?}");
        assert!(
            good.score >= 70 && bad.score <= 25,
            "good {good:?} bad {bad:?}"
        );
    }

    #[test]
    fn tiny_images_do_not_panic() {
        let q = assess(&image(8, 8, |x, _| x * 30.0), &[]);
        assert_eq!(q.score, 0);
    }
}
