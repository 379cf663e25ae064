//! Five-point alignment: the similarity transform (rotation, uniform scale, translation; 4
//! degrees of freedom) that maps the detected landmarks onto the embedder's template in the
//! least-squares sense (Umeyama 1991, no reflection), then bilinear sampling of the output
//! square through its inverse, border 0. This is what the ArcFace family was trained on
//! (`skimage.transform.SimilarityTransform` + `cv2.warpAffine` in InsightFace); a plain crop or
//! an affine (6-DoF) fit costs several LFW points.

use super::geometry::RgbF32;
use super::FaceError;

/// `[x', y'] = [a, -b; b, a] [x, y] + [tx, ty]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    pub a: f64,
    pub b: f64,
    pub tx: f64,
    pub ty: f64,
}

impl Similarity {
    pub fn apply(&self, p: [f32; 2]) -> [f32; 2] {
        let (x, y) = (p[0] as f64, p[1] as f64);
        [
            (self.a * x - self.b * y + self.tx) as f32,
            (self.b * x + self.a * y + self.ty) as f32,
        ]
    }

    pub fn scale(&self) -> f64 {
        self.a.hypot(self.b)
    }

    pub fn inverse(&self) -> Option<Similarity> {
        let d = self.a * self.a + self.b * self.b;
        if !(d.is_finite() && d > 1e-12) {
            return None;
        }
        let (a, b) = (self.a / d, -self.b / d);
        Some(Similarity {
            a,
            b,
            tx: -(a * self.tx - b * self.ty),
            ty: -(b * self.tx + a * self.ty),
        })
    }
}

/// Least-squares similarity from `src` to `dst` (Umeyama, 2-D closed form).
pub fn umeyama(src: &[[f32; 2]], dst: &[[f32; 2]]) -> Result<Similarity, FaceError> {
    let n = src.len();
    if n < 2 || n != dst.len() {
        return Err(FaceError::Degenerate);
    }
    let mean = |p: &[[f32; 2]]| {
        let (sx, sy) = p
            .iter()
            .fold((0f64, 0f64), |(x, y), q| (x + q[0] as f64, y + q[1] as f64));
        (sx / n as f64, sy / n as f64)
    };
    let (msx, msy) = mean(src);
    let (mdx, mdy) = mean(dst);
    // Covariance terms: for 2-D the optimum rotation/scale is closed form.
    let (mut sxx, mut sxy_cross, mut var) = (0f64, 0f64, 0f64);
    for (s, d) in src.iter().zip(dst) {
        let (x, y) = (s[0] as f64 - msx, s[1] as f64 - msy);
        let (u, v) = (d[0] as f64 - mdx, d[1] as f64 - mdy);
        sxx += x * u + y * v;
        sxy_cross += x * v - y * u;
        var += x * x + y * y;
    }
    if !(var.is_finite() && var > 1e-9) {
        return Err(FaceError::Degenerate);
    }
    let a = sxx / var;
    let b = sxy_cross / var;
    if !(a.is_finite() && b.is_finite()) || a.hypot(b) < 1e-9 {
        return Err(FaceError::Degenerate);
    }
    Ok(Similarity {
        a,
        b,
        tx: mdx - (a * msx - b * msy),
        ty: mdy - (b * msx + a * msy),
    })
}

/// The `size` x `size` aligned face: output pixel (u, v) samples the image at
/// `inverse(u, v)`, bilinearly, 0 outside.
pub fn warp(img: &RgbF32, t: &Similarity, size: usize) -> Result<RgbF32, FaceError> {
    let inv = t.inverse().ok_or(FaceError::Degenerate)?;
    let mut data = Vec::with_capacity(size * size * 3);
    for v in 0..size {
        for u in 0..size {
            let p = inv.apply([u as f32, v as f32]);
            data.extend_from_slice(&img.bilinear(p[0], p[1], 0.0));
        }
    }
    Ok(RgbF32 {
        width: size,
        height: size,
        data,
    })
}

/// Aligns `landmarks` to `template` (for an output of `size`; a template given for 112 is
/// scaled to other sizes) and warps.
pub fn align(
    img: &RgbF32,
    landmarks: &[[f32; 2]; 5],
    template: &[[f32; 2]; 5],
    size: usize,
) -> Result<(RgbF32, Similarity), FaceError> {
    let k = size as f32 / 112.0;
    let dst: Vec<[f32; 2]> = template.iter().map(|p| [p[0] * k, p[1] * k]).collect();
    let t = umeyama(landmarks, &dst)?;
    Ok((warp(img, &t, size)?, t))
}

/// The ArcFace 112x112 five-point template (as in the manifest), for the face module's tests.
#[cfg(test)]
pub(crate) const TEST_TEMPLATE: [[f32; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: [[f32; 2]; 5] = TEST_TEMPLATE;

    #[test]
    fn recovers_a_known_similarity() {
        let t = Similarity {
            a: 0.8 * 0.3f64.cos(),
            b: 0.8 * 0.3f64.sin(),
            tx: 12.0,
            ty: -7.0,
        };
        let src: Vec<[f32; 2]> = TEMPLATE.to_vec();
        let dst: Vec<[f32; 2]> = src.iter().map(|&p| t.apply(p)).collect();
        let fit = umeyama(&src, &dst).unwrap();
        assert!((fit.a - t.a).abs() < 1e-5 && (fit.b - t.b).abs() < 1e-5);
        assert!((fit.tx - t.tx).abs() < 1e-3 && (fit.ty - t.ty).abs() < 1e-3);
        let back = fit.inverse().unwrap().apply(dst[2]);
        assert!((back[0] - src[2][0]).abs() < 1e-3);
    }

    #[test]
    fn degenerate_landmarks_are_refused() {
        let same = [[5.0, 5.0]; 5];
        assert!(matches!(
            umeyama(&same, &TEMPLATE),
            Err(FaceError::Degenerate)
        ));
        let nan = [[f32::NAN, 1.0]; 5];
        assert!(umeyama(&nan, &TEMPLATE).is_err());
    }
}
