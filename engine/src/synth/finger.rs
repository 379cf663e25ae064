//! Synthetic fingers: a master minutiae set per finger, laid on a ridge-orientation field with
//! the singular points of its pattern class, and impressions of it as a plain live-scan
//! capture would give them.
//!
//! The model, in the order it is applied:
//! - **Pattern class** drawn with the natural frequencies (arch 3.7 %, tented arch 2.9 %, left
//!   loop 33.8 %, right loop 31.7 %, whorl 27.9 %; the right/left mirror is swapped on the left
//!   hand). Singular points are placed per class: a loop has a core above a delta on the side
//!   opposite the loop's opening, a whorl two cores and two deltas, a tented arch a core just
//!   above a delta, a plain arch none.
//! - **Orientation field**: the zero-pole model (Sherlock & Monro 1993),
//!   `θ(z) = θ∞ + ½ Σ arg(z − delta) − ½ Σ arg(z − core)`, plus a weak random low-frequency
//!   term so that two fingers of one class do not flow identically; arches use a bent-ridge field.
//! - **Master minutiae**: 70-110 points per pad (thumbs 25 % more area) by dart throwing with a
//!   minimum spacing, each pointing along the local ridge flow, either way, ending or
//!   bifurcation at equal odds.
//! - **An impression**: the finger touches the sensor off-centre and rotated (partial overlap),
//!   over an elliptic contact area whose size depends on pressure; the skin is distorted
//!   non-linearly (a smooth random displacement field of a few Gaussian bumps plus a small
//!   shear/scale), the print is moved rigidly onto a 400 x 480 px sensor window at 500 ppi,
//!   minutiae jitter in position and direction, some are missed, some change type, and spurious
//!   ones appear along the ridge flow.
//!
//! The constants are set so that the engine's matcher scores synthetic genuine and impostor
//! pairs in the ranges it scores FVC2002 pairs (`abis-bench dist` draws both); they are not fitted
//! to any one data set.

use std::f32::consts::{PI, TAU};

use crate::template::{FingerPosition, FingerTemplate, Impression, Minutia, MinutiaKind};

use super::rng::Rng;

/// Henry pattern class of a finger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PatternClass {
    Arch,
    TentedArch,
    LeftLoop,
    RightLoop,
    Whorl,
}

impl PatternClass {
    /// Drawn with the frequencies of the NIST SD4 / FBI population statistics.
    fn draw(rng: &mut Rng) -> PatternClass {
        let u = rng.unit();
        match u {
            u if u < 0.037 => PatternClass::Arch,
            u if u < 0.066 => PatternClass::TentedArch,
            u if u < 0.404 => PatternClass::LeftLoop,
            u if u < 0.721 => PatternClass::RightLoop,
            _ => PatternClass::Whorl,
        }
    }

    fn mirrored(self) -> PatternClass {
        match self {
            PatternClass::LeftLoop => PatternClass::RightLoop,
            PatternClass::RightLoop => PatternClass::LeftLoop,
            c => c,
        }
    }
}

/// One minutia of a master finger, in pad coordinates (pixels at 500 ppi, y down).
#[derive(Debug, Clone, Copy, PartialEq)]
struct MasterMinutia {
    x: f32,
    y: f32,
    dir: f32,
    kind: MinutiaKind,
}

/// Pad size (pixels at 500 ppi): the whole fingertip a rolled print would show.
const PAD_W: f32 = 600.0;
const PAD_H: f32 = 700.0;
/// Sensor window of a plain 500 ppi live-scan capture.
pub const SENSOR_W: u16 = 400;
pub const SENSOR_H: u16 = 480;

/// The ridge-orientation field of a finger.
#[derive(Debug, Clone, PartialEq)]
struct OrientationField {
    class: PatternClass,
    cores: Vec<(f32, f32)>,
    deltas: Vec<(f32, f32)>,
    /// Random low-frequency term: amplitude, wave vector, phase (two waves).
    waves: [(f32, f32, f32, f32); 2],
    /// Arch: centre and bend.
    arch: (f32, f32, f32),
}

impl OrientationField {
    fn draw(class: PatternClass, cx: f32, cy: f32, rng: &mut Rng) -> OrientationField {
        let j = |rng: &mut Rng, s: f32| rng.normal() * s;
        let (mut cores, mut deltas) = (Vec::new(), Vec::new());
        let core = (cx + j(rng, 25.0), cy - 40.0 + j(rng, 30.0));
        match class {
            PatternClass::Arch => {}
            PatternClass::TentedArch => {
                cores.push(core);
                deltas.push((core.0 + j(rng, 8.0), core.1 + rng.range(45.0, 80.0)));
            }
            PatternClass::LeftLoop | PatternClass::RightLoop => {
                // A left loop opens to the left: its delta lies lower right.
                let side = if class == PatternClass::LeftLoop {
                    1.0
                } else {
                    -1.0
                };
                cores.push(core);
                deltas.push((
                    core.0 + side * rng.range(90.0, 170.0),
                    core.1 + rng.range(120.0, 200.0),
                ));
            }
            PatternClass::Whorl => {
                let tilt = j(rng, 0.4);
                let half = rng.range(12.0, 35.0);
                cores.push((core.0 - half * tilt.sin(), core.1 - half * tilt.cos()));
                cores.push((core.0 + half * tilt.sin(), core.1 + half * tilt.cos()));
                let low = core.1 + rng.range(110.0, 170.0);
                deltas.push((core.0 - rng.range(110.0, 170.0), low + j(rng, 20.0)));
                deltas.push((core.0 + rng.range(110.0, 170.0), low + j(rng, 20.0)));
            }
        }
        let wave = |rng: &mut Rng| {
            let a = rng.range(0.0, 0.12);
            let ang = rng.range(0.0, TAU);
            let len = rng.range(250.0, 600.0);
            (
                a,
                ang.cos() * TAU / len,
                ang.sin() * TAU / len,
                rng.range(0.0, TAU),
            )
        };
        let waves = [wave(rng), wave(rng)];
        OrientationField {
            class,
            cores,
            deltas,
            waves,
            arch: (cx + j(rng, 30.0), cy + j(rng, 40.0), rng.range(0.5, 1.3)),
        }
    }

    /// Ridge orientation at `(x, y)`, radians modulo π.
    fn at(&self, x: f32, y: f32) -> f32 {
        let mut t = if self.class == PatternClass::Arch {
            // Ridges y = c − b·exp(−((x − x0)/w)²): a bump whose height fades downwards.
            let (x0, y0, bend) = self.arch;
            let w = 160.0;
            let fade = 1.0 / (1.0 + ((y - y0) / 200.0).max(0.0));
            let u = (x - x0) / w;
            let slope = bend * 2.0 * u * (-u * u).exp() * fade;
            slope.atan()
        } else {
            let arg = |p: &(f32, f32)| (y - p.1).atan2(x - p.0);
            0.5 * (self.deltas.iter().map(arg).sum::<f32>()
                - self.cores.iter().map(arg).sum::<f32>())
        };
        for &(a, kx, ky, ph) in &self.waves {
            t += a * (kx * x + ky * y + ph).sin();
        }
        t.rem_euclid(PI)
    }
}

/// A synthetic finger: everything that stays the same between its impressions.
#[derive(Debug, Clone, PartialEq)]
pub struct MasterFinger {
    pub class: PatternClass,
    position: FingerPosition,
    field: OrientationField,
    minutiae: Vec<MasterMinutia>,
    /// Pad ellipse: centre and radii.
    pad: (f32, f32, f32, f32),
}

impl MasterFinger {
    /// The finger at ISO `position` (1..=10; 0 is treated as a right index) of the person
    /// drawn from `seed`.
    pub fn generate(seed: u64, position: u8) -> MasterFinger {
        let position = FingerPosition::new(position.min(10)).unwrap_or_default();
        let mut rng = Rng::fork(seed, u64::from(position.code()) + 0xF1);
        let thumb = matches!(position.code(), 1 | 6);
        let left_hand = position.code() >= 6;
        let mut class = PatternClass::draw(&mut rng);
        if left_hand {
            class = class.mirrored();
        }
        let grow = if thumb { 1.12 } else { 1.0 };
        let (cx, cy) = (PAD_W / 2.0, PAD_H / 2.0);
        let (rx, ry) = (
            rng.range(165.0, 200.0) * grow,
            rng.range(215.0, 255.0) * grow,
        );
        let field = OrientationField::draw(class, cx, cy, &mut rng);
        let target = (rng.range(70.0, 110.0) * grow * grow) as usize;
        let spacing = 14.0f32;
        let mut minutiae: Vec<MasterMinutia> = Vec::with_capacity(target);
        let mut tries = 0;
        while minutiae.len() < target && tries < target * 60 {
            tries += 1;
            let (x, y) = (rng.range(cx - rx, cx + rx), rng.range(cy - ry, cy + ry));
            if ((x - cx) / rx).powi(2) + ((y - cy) / ry).powi(2) > 1.0 {
                continue;
            }
            if minutiae
                .iter()
                .any(|m| (m.x - x).powi(2) + (m.y - y).powi(2) < spacing * spacing)
            {
                continue;
            }
            let flow = field.at(x, y);
            let dir = if rng.chance(0.5) { flow } else { flow + PI };
            let kind = if rng.chance(0.5) {
                MinutiaKind::Ending
            } else {
                MinutiaKind::Bifurcation
            };
            minutiae.push(MasterMinutia { x, y, dir, kind });
        }
        MasterFinger {
            class,
            position,
            field,
            minutiae,
            pad: (cx, cy, rx, ry),
        }
    }

    /// One plain capture of this finger, drawn from `seed` (different seeds, different
    /// placements, pressure, distortion and noise).
    pub fn impression(&self, seed: u64) -> FingerTemplate {
        let mut rng = Rng::fork(seed, 0x1A9E);
        let (cx, cy, rx, ry) = self.pad;
        // Where the pad touches the sensor centre, and how hard (contact ellipse).
        let touch = (cx + rng.normal() * 35.0, cy + 20.0 + rng.normal() * 40.0);
        let contact = (
            touch.0,
            touch.1,
            rx * rng.range(0.70, 0.95),
            ry * rng.range(0.65, 0.90),
        );
        let rot = (rng.normal() * 0.2).clamp(-0.6, 0.6);
        let shift = (rng.normal() * 12.0, rng.normal() * 12.0);
        // Non-linear skin distortion: a few smooth bumps + a small shear and scale.
        let bumps: Vec<(f32, f32, f32, f32, f32)> = (0..3)
            .map(|_| {
                (
                    touch.0 + rng.normal() * 120.0,
                    touch.1 + rng.normal() * 150.0,
                    rng.normal() * 2.5,
                    rng.normal() * 2.5,
                    rng.range(70.0, 150.0),
                )
            })
            .collect();
        let shear = rng.normal() * 0.015;
        let scale = 1.0 + rng.normal() * 0.02;
        let (cos, sin) = (rot.cos(), rot.sin());
        let sensor_c = (f32::from(SENSOR_W) / 2.0, f32::from(SENSOR_H) / 2.0);
        let warp = |x: f32, y: f32| -> (f32, f32) {
            let (mut dx, mut dy) = (x - touch.0, y - touch.1);
            for &(bx, by, ax, ay, s) in &bumps {
                let g = (-((x - bx).powi(2) + (y - by).powi(2)) / (2.0 * s * s)).exp();
                dx += ax * g;
                dy += ay * g;
            }
            let (dx, dy) = (scale * (dx + shear * dy), scale * dy);
            (
                sensor_c.0 + shift.0 + cos * dx - sin * dy,
                sensor_c.1 + shift.1 + sin * dx + cos * dy,
            )
        };
        let inside_contact = |x: f32, y: f32| {
            ((x - contact.0) / contact.2).powi(2) + ((y - contact.1) / contact.3).powi(2) <= 1.0
        };
        let inside_pad = |x: f32, y: f32| ((x - cx) / rx).powi(2) + ((y - cy) / ry).powi(2) <= 1.0;
        let margin = 10.0;
        let on_sensor = |(u, v): (f32, f32)| {
            u >= margin
                && v >= margin
                && u < f32::from(SENSOR_W) - margin
                && v < f32::from(SENSOR_H) - margin
        };
        // Mostly good captures, a few poor ones (dry skin, smudges).
        let miss = 0.01 + 0.4 * rng.unit().powi(3);
        let pos_sd = rng.range(0.7, 1.6);
        let dir_sd = rng.range(0.03, 0.07);
        let mut out: Vec<Minutia> = Vec::with_capacity(self.minutiae.len());
        for m in &self.minutiae {
            if !inside_contact(m.x, m.y) || rng.chance(miss) {
                continue;
            }
            let p = warp(m.x, m.y);
            if !on_sensor(p) {
                continue;
            }
            // The direction turns with the local warp: measure it on a short step.
            let q = warp(m.x + 4.0 * m.dir.cos(), m.y + 4.0 * m.dir.sin());
            let dir = (q.1 - p.1).atan2(q.0 - p.0) + rng.normal() * dir_sd;
            let kind = if rng.chance(0.1) {
                match m.kind {
                    MinutiaKind::Ending => MinutiaKind::Bifurcation,
                    _ => MinutiaKind::Ending,
                }
            } else {
                m.kind
            };
            let (u, v) = (p.0 + rng.normal() * pos_sd, p.1 + rng.normal() * pos_sd);
            out.push(sensor_minutia(u, v, dir, kind, &mut rng));
        }
        // Spurious minutiae (ridge breaks, scars, noise) follow the ridge flow.
        let rate = rng.range(0.02, 0.08);
        let spurious = rng.poisson(out.len() as f32 * rate);
        let mut placed = 0;
        let mut tries = 0;
        while placed < spurious && tries < 200 {
            tries += 1;
            let x = contact.0 + rng.range(-1.0, 1.0) * contact.2;
            let y = contact.1 + rng.range(-1.0, 1.0) * contact.3;
            if !inside_contact(x, y) || !inside_pad(x, y) {
                continue;
            }
            let p = warp(x, y);
            if !on_sensor(p) {
                continue;
            }
            let flow = self.field.at(x, y) + rot + if rng.chance(0.5) { 0.0 } else { PI };
            let kind = if rng.chance(0.5) {
                MinutiaKind::Ending
            } else {
                MinutiaKind::Bifurcation
            };
            let dir = flow + rng.normal() * 0.2;
            out.push(sensor_minutia(p.0, p.1, dir, kind, &mut rng));
            placed += 1;
        }
        out.truncate(crate::template::MAX_MINUTIAE);
        FingerTemplate {
            width: SENSOR_W,
            height: SENSOR_H,
            ppi: 500,
            position: self.position,
            impression: Impression::LivePlain,
            quality: rng.range(40.0, 95.0) as u8,
            minutiae: out,
        }
    }
}

/// A minutia at sensor position `(u, v)` (clamped to the window), quality above LEADER's cut.
fn sensor_minutia(u: f32, v: f32, dir: f32, kind: MinutiaKind, rng: &mut Rng) -> Minutia {
    Minutia {
        x: u.round().clamp(0.0, f32::from(SENSOR_W - 1)) as u16,
        y: v.round().clamp(0.0, f32::from(SENSOR_H - 1)) as u16,
        direction: Minutia::normalized_direction(dir),
        kind,
        quality: rng.range(55.0, 100.0) as u8,
    }
}

/// Angle between two ridge orientations (mod π), in `[0, π/2]`.
#[cfg(test)]
fn orientation_gap(a: f32, b: f32) -> f32 {
    let d = (a - b).rem_euclid(PI);
    d.min(PI - d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::Matcher;

    #[test]
    fn fingers_are_reproducible_and_people_differ() {
        let a = MasterFinger::generate(11, 2);
        assert_eq!(a, MasterFinger::generate(11, 2));
        assert_ne!(a, MasterFinger::generate(12, 2));
        assert_ne!(a, MasterFinger::generate(11, 3));
        assert_eq!(a.impression(5), a.impression(5));
        assert_ne!(a.impression(5), a.impression(6));
        let t = a.impression(5);
        assert_eq!(t.position.code(), 2);
        assert!(t.minutiae.iter().all(|m| m.x < SENSOR_W && m.y < SENSOR_H));
    }

    #[test]
    fn class_mix_follows_population_frequencies() {
        let mut counts = std::collections::HashMap::new();
        for s in 0..4000 {
            *counts
                .entry(MasterFinger::generate(s, 2).class)
                .or_insert(0usize) += 1;
        }
        let share = |c| counts.get(&c).copied().unwrap_or(0) as f32 / 4000.0;
        assert!((share(PatternClass::Whorl) - 0.279).abs() < 0.03);
        assert!((share(PatternClass::LeftLoop) - 0.338).abs() < 0.03);
        assert!(share(PatternClass::Arch) > 0.02 && share(PatternClass::Arch) < 0.06);
    }

    #[test]
    fn orientation_field_is_smooth_away_from_singular_points() {
        let f = MasterFinger::generate(3, 7);
        let near_singular = |x: f32, y: f32| {
            f.field
                .cores
                .iter()
                .chain(&f.field.deltas)
                .any(|p| (p.0 - x).hypot(p.1 - y) < 40.0)
        };
        for gy in (100..600).step_by(25) {
            for gx in (100..500).step_by(25) {
                let (x, y) = (gx as f32, gy as f32);
                if near_singular(x, y) || near_singular(x + 5.0, y) {
                    continue;
                }
                let gap = orientation_gap(f.field.at(x, y), f.field.at(x + 5.0, y));
                assert!(gap < 0.35, "orientation jumps {gap} at ({x},{y})");
            }
        }
    }

    #[test]
    fn matcher_tells_synthetic_mates_from_strangers() {
        let m = Matcher::new();
        let mut genuine = Vec::new();
        let mut impostor = Vec::new();
        for p in 0..30u64 {
            let f = MasterFinger::generate(p, 2);
            let a = f.impression(1);
            let b = f.impression(2);
            genuine.push(m.match_templates(&a, &b).unwrap().score);
            let other = MasterFinger::generate(p + 1000, 2).impression(3);
            impostor.push(m.match_templates(&a, &other).unwrap().score);
        }
        let accepted = genuine.iter().filter(|&&s| s >= 30.0).count();
        let false_accepts = impostor.iter().filter(|&&s| s >= 30.0).count();
        assert!(accepted >= 25, "genuine scores {genuine:?}");
        assert!(false_accepts <= 1, "impostor scores {impostor:?}");
    }
}
