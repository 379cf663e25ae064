//! Face quality measured with every extraction, so a caller can ask for a better capture
//! rather than trust a poor comparison (the measures of ISO/IEC 29794-5 in simple form):
//!
//! - **inter-eye distance** in pixels of the original image (ICAO portraits: >= 90 px;
//!   below ~40 px recognition degrades quickly);
//! - **sharpness**: variance of the 4-neighbour Laplacian over the aligned 112x112 gray face
//!   (blur lowers it; a few tens is blurred, hundreds is sharp);
//! - **pose** from the landmarks: roll = angle of the eye line; yaw from how far the nose tip
//!   sits from the eyes' midpoint, relative to half the eye distance (asin, degrees; an
//!   estimate, good to perhaps 10 degrees); pitch likewise from the nose's height between the
//!   eye line and the mouth line relative to the frontal template;
//! - **exposure**: mean brightness, contrast (standard deviation) and the shares of
//!   under- (<= 5) and over-exposed (>= 250) pixels of the aligned face.

use serde::Serialize;

use super::geometry::RgbF32;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FaceQuality {
    pub inter_eye_px: f32,
    pub sharpness: f32,
    pub yaw_deg: f32,
    pub pitch_deg: f32,
    pub roll_deg: f32,
    pub brightness: f32,
    pub contrast: f32,
    pub underexposed: f32,
    pub overexposed: f32,
}

/// Quality of a face from its landmarks (original image) and its aligned crop.
pub fn measure(landmarks: &[[f32; 2]; 5], aligned: &RgbF32) -> FaceQuality {
    let [le, re, nose, lm, rm] = *landmarks;
    let (dx, dy) = (re[0] - le[0], re[1] - le[1]);
    let eye = dx.hypot(dy);
    let roll = dy.atan2(dx).to_degrees();
    // Work in the face's own frame: rotate so the eye line is horizontal.
    let (c, s) = (dx / eye.max(1e-6), dy / eye.max(1e-6));
    let mid = [(le[0] + re[0]) / 2.0, (le[1] + re[1]) / 2.0];
    let mouth = [(lm[0] + rm[0]) / 2.0, (lm[1] + rm[1]) / 2.0];
    let local = |p: [f32; 2]| {
        let (x, y) = (p[0] - mid[0], p[1] - mid[1]);
        (x * c + y * s, -x * s + y * c)
    };
    let (nx, ny) = local(nose);
    let (_, my) = local(mouth);
    let half = (eye / 2.0).max(1e-6);
    let yaw = (nx / half).clamp(-1.0, 1.0).asin().to_degrees();
    // Frontal template: the nose sits at 0.49 of the way from the eye line to the mouth line.
    let frac = if my.abs() > 1e-6 { ny / my } else { 0.49 };
    let pitch = ((frac - 0.49) * 2.0).clamp(-1.0, 1.0).asin().to_degrees();

    let gray: Vec<f32> = aligned
        .data
        .chunks_exact(3)
        .map(|p| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2])
        .collect();
    let (w, h) = (aligned.width, aligned.height);
    let n = gray.len().max(1) as f32;
    let mean = gray.iter().sum::<f32>() / n;
    let contrast = (gray.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n).sqrt();
    let under = gray.iter().filter(|&&v| v <= 5.0).count() as f32 / n;
    let over = gray.iter().filter(|&&v| v >= 250.0).count() as f32 / n;
    FaceQuality {
        inter_eye_px: eye,
        sharpness: laplacian_variance(&gray, w, h),
        yaw_deg: yaw,
        pitch_deg: pitch,
        roll_deg: roll,
        brightness: mean,
        contrast,
        underexposed: under,
        overexposed: over,
    }
}

/// Variance of the 4-neighbour Laplacian over the interior.
pub fn laplacian_variance(gray: &[f32], w: usize, h: usize) -> f32 {
    if w < 3 || h < 3 || gray.len() < w * h {
        return 0.0;
    }
    let mut sum = 0f64;
    let mut sq = 0f64;
    let mut n = 0f64;
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let i = y * w + x;
            let l = gray[i - 1] + gray[i + 1] + gray[i - w] + gray[i + w] - 4.0 * gray[i];
            sum += l as f64;
            sq += (l as f64) * (l as f64);
            n += 1.0;
        }
    }
    let m = sum / n;
    (sq / n - m * m).max(0.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: [[f32; 2]; 5] = super::super::align::TEST_TEMPLATE;

    fn flat(v: f32) -> RgbF32 {
        RgbF32 {
            width: 112,
            height: 112,
            data: vec![v; 112 * 112 * 3],
        }
    }

    #[test]
    fn frontal_template_is_frontal() {
        let q = measure(&TEMPLATE, &flat(128.0));
        assert!(q.yaw_deg.abs() < 2.0, "{q:?}");
        assert!(q.pitch_deg.abs() < 3.0, "{q:?}");
        assert!(q.roll_deg.abs() < 1.0, "{q:?}");
        assert!((q.inter_eye_px - 35.24).abs() < 0.1);
        assert_eq!(q.sharpness, 0.0);
        assert_eq!(q.contrast, 0.0);
    }

    #[test]
    fn turned_and_tilted_faces_are_measured() {
        let mut turned = TEMPLATE;
        turned[2][0] += 12.0;
        assert!(measure(&turned, &flat(0.0)).yaw_deg > 30.0);
        let tilted: Vec<[f32; 2]> = TEMPLATE
            .iter()
            .map(|p| {
                let (s, c) = 0.3f32.sin_cos();
                [p[0] * c - p[1] * s, p[0] * s + p[1] * c]
            })
            .collect();
        let t: [[f32; 2]; 5] = tilted.try_into().unwrap();
        let q = measure(&t, &flat(0.0));
        assert!((q.roll_deg - 0.3f32.to_degrees()).abs() < 1.0, "{q:?}");
        assert!(q.yaw_deg.abs() < 2.0);
        assert_eq!(q.underexposed, 1.0);
    }

    #[test]
    fn sharp_beats_blurred() {
        let checker: Vec<f32> = (0..64 * 64)
            .map(|i| {
                if (i % 64 / 4 + i / 64 / 4) % 2 == 0 {
                    0.0
                } else {
                    255.0
                }
            })
            .collect();
        let mut blur = checker.clone();
        for _ in 0..3 {
            let src = blur.clone();
            for y in 1..63 {
                for x in 1..63 {
                    let i = y * 64 + x;
                    blur[i] = (src[i - 1] + src[i + 1] + src[i - 64] + src[i + 64] + src[i]) / 5.0;
                }
            }
        }
        assert!(laplacian_variance(&checker, 64, 64) > 4.0 * laplacian_variance(&blur, 64, 64));
    }
}
