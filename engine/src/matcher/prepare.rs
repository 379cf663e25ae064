//! Template preparation: physical units, bit cylinders, and the pairwise geometry tables.

use std::f32::consts::{PI, TAU};

use super::params::*;
use super::MatchError;
use crate::template::{FingerTemplate, MinutiaKind};

/// A minutia in matcher units: 500 ppi-equivalent pixels, direction in 1/256 turns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct PMinutia {
    pub x: f32,
    pub y: f32,
    /// Direction in radians `[0, 2π)` (engine convention, y down).
    pub dir: f32,
    /// Direction in 1/256 of a turn (the unit of every angle difference in the hot loops).
    pub dir8: u8,
    /// 0 ending, 1 bifurcation, 2 unknown.
    pub kind: u8,
    pub quality: u8,
    /// Index of this minutia in the template it came from (duplicates are dropped, so the
    /// prepared index can differ): what mated pairs are reported in.
    pub source: u8,
}

/// One Minutia Cylinder-Code descriptor, bit version: `ND` layers of `NS x NS` cells, plus the
/// mask of valid cells (inside the cylinder's disc and inside the print's area).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(64))]
pub(super) struct Cylinder {
    pub bits: [u64; BIT_WORDS],
    pub mask: [u64; MASK_WORDS],
    /// Number of set bits.
    pub ones: u16,
    /// Number of valid cells.
    pub valid: u16,
}

/// A template ready for fast comparison: computed once per template (probe or gallery side),
/// then compared against any number of others with no allocation.
///
/// Memory: 256 bytes per minutia for its cylinder, 4·n² bytes of pairwise geometry (about 14 KiB
/// for 60 minutiae).
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedTemplate {
    pub(super) minutiae: Vec<PMinutia>,
    /// Cylinders of the minutiae whose cylinder is valid, aligned with `cyl_index`.
    pub(super) cylinders: Vec<Cylinder>,
    /// Minutia index of each valid cylinder.
    pub(super) cyl_index: Vec<u8>,
    /// Direction (1/256 turn) of each valid cylinder's minutia, for the angle pre-check.
    pub(super) cyl_dir: Vec<u8>,
    /// `n x n`: bits 0..16 distance in 1/8 px (saturating), bits 16..24 the angle (1/256 turn)
    /// from minutia i's direction to the segment i→j.
    pub(super) geometry: Vec<u32>,
    /// The print's area: convex hull of the minutiae (counter-clockwise, y down), in matcher units.
    pub(super) hull: Vec<(f32, f32)>,
    /// Order key making comparisons exactly symmetric (see `compare`).
    pub(super) key: u64,
}

impl PreparedTemplate {
    /// Number of minutiae kept.
    pub fn minutiae_count(&self) -> usize {
        self.minutiae.len()
    }

    /// The template index of prepared minutia `k`.
    pub(super) fn source_of(&self, k: u8) -> u16 {
        u16::from(self.minutiae[usize::from(k)].source)
    }

    #[inline(always)]
    pub(super) fn geo(&self, i: usize, j: usize) -> u32 {
        self.geometry[i * self.minutiae.len() + j]
    }
}

/// Angle difference `a − b` wrapped to `[-π, π)`.
#[inline]
pub(crate) fn dphi(a: f32, b: f32) -> f32 {
    let d = (a - b).rem_euclid(TAU);
    if d >= PI {
        d - TAU
    } else {
        d
    }
}

/// Radians to 1/256 turns (rounded, wrapping).
#[inline]
pub(super) fn to_dir8(a: f32) -> u8 {
    ((a / TAU * 256.0).round() as i64 & 0xFF) as u8
}

/// Error function, Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7).
pub(crate) fn erf(x: f32) -> f32 {
    let x = f64::from(x);
    let s = x.signum();
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t
            + 0.254_829_592)
            * t
            * (-x * x).exp();
    (s * y) as f32
}

/// Andrew's monotone chain; counter-clockwise in a y-up frame (clockwise on screen), no
/// collinear points. Fewer than 3 distinct points give those points.
pub(crate) fn convex_hull(points: &[(f32, f32)]) -> Vec<(f32, f32)> {
    let mut p: Vec<(f32, f32)> = points.to_vec();
    p.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    p.dedup();
    if p.len() < 3 {
        return p;
    }
    let cross = |o: (f32, f32), a: (f32, f32), b: (f32, f32)| {
        (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0)
    };
    let mut hull: Vec<(f32, f32)> = Vec::with_capacity(2 * p.len());
    for &q in &p {
        while hull.len() >= 2 && cross(hull[hull.len() - 2], hull[hull.len() - 1], q) <= 0.0 {
            hull.pop();
        }
        hull.push(q);
    }
    let lower = hull.len() + 1;
    for &q in p.iter().rev().skip(1) {
        while hull.len() >= lower && cross(hull[hull.len() - 2], hull[hull.len() - 1], q) <= 0.0 {
            hull.pop();
        }
        hull.push(q);
    }
    hull.pop();
    hull
}

fn dist_to_segment(p: (f32, f32), a: (f32, f32), b: (f32, f32)) -> f32 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (ex, ey) = (p.0 - a.0 - t * dx, p.1 - a.1 - t * dy);
    (ex * ex + ey * ey).sqrt()
}

/// Whether `p` lies inside the hull or within `margin` of it.
pub(crate) fn in_hull(hull: &[(f32, f32)], p: (f32, f32), margin: f32) -> bool {
    match hull.len() {
        0 => false,
        1 => {
            let (dx, dy) = (p.0 - hull[0].0, p.1 - hull[0].1);
            dx * dx + dy * dy <= margin * margin
        }
        _ => {
            let mut inside = hull.len() >= 3;
            for k in 0..hull.len() {
                let a = hull[k];
                let b = hull[(k + 1) % hull.len()];
                let cross = (b.0 - a.0) * (p.1 - a.1) - (b.1 - a.1) * (p.0 - a.0);
                if cross < 0.0 {
                    inside = false;
                }
            }
            inside
                || (0..hull.len())
                    .any(|k| dist_to_segment(p, hull[k], hull[(k + 1) % hull.len()]) <= margin)
        }
    }
}

/// Converts, cleans and describes a template, in four stages: matcher units, the pairwise
/// geometry, one cylinder per usable minutia, and the symmetry key.
pub(super) fn prepare(t: &FingerTemplate) -> Result<PreparedTemplate, MatchError> {
    t.validate()?;
    let minutiae = to_matcher_units(t);
    let points: Vec<(f32, f32)> = minutiae.iter().map(|m| (m.x, m.y)).collect();
    let hull = convex_hull(&points);
    let geometry = pairwise_geometry(&minutiae);
    let mut cylinders = Vec::new();
    let mut cyl_index = Vec::new();
    let mut cyl_dir = Vec::new();
    let disc = disc();
    let mut values = [0f32; NS * NS * ND];
    for (mi, m) in minutiae.iter().enumerate() {
        if let Some(c) = cylinder(mi, &minutiae, &hull, disc, &mut values) {
            cylinders.push(c);
            cyl_index.push(mi as u8);
            cyl_dir.push(m.dir8);
        }
    }
    Ok(PreparedTemplate {
        key: order_key(&minutiae),
        minutiae,
        cylinders,
        cyl_index,
        cyl_dir,
        geometry,
        hull,
    })
}

/// Minutiae in 500 ppi-equivalent pixels; exact duplicates (same place and direction) kept once.
#[inline]
fn to_matcher_units(t: &FingerTemplate) -> Vec<PMinutia> {
    let scale = REFERENCE_PPI / f32::from(t.ppi);
    let mut minutiae: Vec<PMinutia> = Vec::with_capacity(t.minutiae.len());
    for (source, m) in t.minutiae.iter().enumerate() {
        let p = PMinutia {
            x: f32::from(m.x) * scale,
            y: f32::from(m.y) * scale,
            dir: m.direction,
            dir8: to_dir8(m.direction),
            kind: match m.kind {
                MinutiaKind::Ending => 0,
                MinutiaKind::Bifurcation => 1,
                MinutiaKind::Other => 2,
            },
            quality: m.quality,
            // `validate` bounds the count by MAX_MINUTIAE (255).
            source: source as u8,
        };
        let duplicate = minutiae
            .iter()
            .any(|q| (q.x - p.x).abs() < 0.5 && (q.y - p.y).abs() < 0.5 && q.dir8 == p.dir8);
        if !duplicate {
            minutiae.push(p);
        }
    }
    minutiae
}

/// `n x n` distances (1/8 px) and radial angles (1/256 turn) between every two minutiae.
#[inline]
fn pairwise_geometry(minutiae: &[PMinutia]) -> Vec<u32> {
    let n = minutiae.len();
    let mut geometry = vec![0u32; n * n];
    for (i, a) in minutiae.iter().enumerate() {
        for (j, b) in minutiae.iter().enumerate() {
            if i == j {
                continue;
            }
            let (dx, dy) = (b.x - a.x, b.y - a.y);
            let d = (dx.hypot(dy) * 8.0).round().min(65535.0) as u32;
            let radial = to_dir8(dphi(dy.atan2(dx), a.dir)) as u32;
            geometry[i * n + j] = d | (radial << 16);
        }
    }
    geometry
}

/// The cells inside a cylinder's disc, with their centres in the minutia's local frame
/// (`u` along its direction): the same for every minutia, computed once per process.
fn disc() -> &'static [(usize, f32, f32)] {
    static DISC: std::sync::OnceLock<Vec<(usize, f32, f32)>> = std::sync::OnceLock::new();
    DISC.get_or_init(|| {
        let delta_s = 2.0 * RADIUS / NS as f32;
        (0..NS * NS)
            .map(|c| {
                let (i, j) = (c % NS, c / NS);
                let u = (i as f32 - (NS as f32 - 1.0) / 2.0) * delta_s;
                let v = (j as f32 - (NS as f32 - 1.0) / 2.0) * delta_s;
                (c, u, v)
            })
            .filter(|&(_, u, v)| u * u + v * v <= RADIUS * RADIUS)
            .collect()
    })
}

/// The bit cylinder of minutia `mi`: each cell's valid bit (in the disc and within the print's
/// area) and, per direction layer, whether the neighbours' Gaussian contributions exceed
/// `MU_PSI`. `None` when too few cells are valid or too few neighbours are near (an unreliable
/// descriptor). `values` is scratch space.
#[inline]
fn cylinder(
    mi: usize,
    minutiae: &[PMinutia],
    hull: &[(f32, f32)],
    disc: &[(usize, f32, f32)],
    values: &mut [f32; NS * NS * ND],
) -> Option<Cylinder> {
    let m = &minutiae[mi];
    let (cos, sin) = (m.dir.cos(), m.dir.sin());
    // Valid cells: in the disc and within the print's area.
    let mut mask = [0u64; MASK_WORDS];
    let mut valid_cells = 0usize;
    for &(c, u, v) in disc {
        // Local frame: u along the minutia direction.
        let p = (m.x + u * cos - v * sin, m.y + u * sin + v * cos);
        if in_hull(hull, p, HULL_MARGIN) {
            mask[c / 64] |= 1 << (c % 64);
            valid_cells += 1;
        }
    }
    let neighbours = contributions(mi, minutiae, disc, values);
    if (valid_cells as f32) < MIN_VALID_CELLS * disc.len() as f32 || neighbours < MIN_NEIGHBOURS {
        return None;
    }
    let mut bits = [0u64; BIT_WORDS];
    for (e, &v) in values.iter().enumerate() {
        let c = e % (NS * NS);
        if v > MU_PSI && mask[c / 64] & (1 << (c % 64)) != 0 {
            bits[e / 64] |= 1 << (e % 64);
        }
    }
    Some(Cylinder {
        bits,
        mask,
        ones: bits.iter().map(|w| w.count_ones()).sum::<u32>() as u16,
        valid: valid_cells as u16,
    })
}

/// Accumulates into `values` (layer-major cells) the spatial × directional contribution of
/// every neighbour of minutia `mi`; returns the number of neighbours inside the disc.
#[inline]
fn contributions(
    mi: usize,
    minutiae: &[PMinutia],
    disc: &[(usize, f32, f32)],
    values: &mut [f32; NS * NS * ND],
) -> usize {
    let m = &minutiae[mi];
    let (cos, sin) = (m.dir.cos(), m.dir.sin());
    let delta_d = TAU / ND as f32;
    let reach = RADIUS + 3.0 * SIGMA_S;
    let gs_norm = 1.0 / (SIGMA_S * (TAU).sqrt());
    let sqrt2_sd = std::f32::consts::SQRT_2 * SIGMA_D;
    values.fill(0.0);
    let mut neighbours = 0usize;
    for (ti, t) in minutiae.iter().enumerate() {
        if ti == mi {
            continue;
        }
        let (dx, dy) = (t.x - m.x, t.y - m.y);
        if dx * dx + dy * dy > reach * reach {
            continue;
        }
        if dx * dx + dy * dy <= RADIUS * RADIUS {
            neighbours += 1;
        }
        let lu = dx * cos + dy * sin;
        let lv = -dx * sin + dy * cos;
        let dd = dphi(m.dir, t.dir);
        let mut gd = [0f32; ND];
        for (k, g) in gd.iter_mut().enumerate() {
            let phi_k = -PI + (k as f32 + 0.5) * delta_d;
            let alpha = dphi(phi_k, dd);
            *g = 0.5
                * (erf((alpha + delta_d / 2.0) / sqrt2_sd)
                    - erf((alpha - delta_d / 2.0) / sqrt2_sd));
        }
        for &(c, u, v) in disc {
            let d2 = (u - lu) * (u - lu) + (v - lv) * (v - lv);
            if d2 > 9.0 * SIGMA_S * SIGMA_S {
                continue;
            }
            let gs = gs_norm * (-d2 / (2.0 * SIGMA_S * SIGMA_S)).exp();
            for (k, g) in gd.iter().enumerate() {
                values[k * NS * NS + c] += gs * g;
            }
        }
    }
    neighbours
}

/// FNV-1a over the kept minutiae: the order key that makes comparisons exactly symmetric.
#[inline]
fn order_key(minutiae: &[PMinutia]) -> u64 {
    let mut key: u64 = 0xcbf2_9ce4_8422_2325;
    for m in minutiae {
        for v in [m.x.to_bits(), m.y.to_bits(), u32::from(m.dir8)] {
            key ^= u64::from(v);
            key = key.wrapping_mul(0x0100_0000_01b3);
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_values() {
        assert!((erf(0.0)).abs() < 1e-6);
        assert!((erf(1.0) - 0.842_700_8).abs() < 1e-5);
        assert!((erf(-1.0) + 0.842_700_8).abs() < 1e-5);
    }

    #[test]
    fn hull_and_inside() {
        let pts = [
            (0.0, 0.0),
            (10.0, 0.0),
            (10.0, 10.0),
            (0.0, 10.0),
            (5.0, 5.0),
        ];
        let h = convex_hull(&pts);
        assert_eq!(h.len(), 4);
        assert!(in_hull(&h, (5.0, 5.0), 0.0));
        assert!(!in_hull(&h, (15.0, 5.0), 0.0));
        assert!(in_hull(&h, (15.0, 5.0), 6.0));
    }

    #[test]
    fn angles() {
        assert_eq!(to_dir8(0.0), 0);
        assert_eq!(to_dir8(PI), 128);
        assert_eq!(to_dir8(TAU - 0.001), 0);
        assert!((dphi(0.1, TAU - 0.1) - 0.2).abs() < 1e-5);
    }
}
