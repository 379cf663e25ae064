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
//! - **The finger's skin**: a ridge period (about 9.3 px at 500 ppi, 0.47 mm), a skin condition
//!   (most fingers supple and clean, a minority dry, worn or scarred) that every capture of the
//!   finger inherits, how much of the pad a normal press flattens, and creases or scars (more
//!   on poor skin): narrow bands that cut the ridges crossing them.
//! - **Master minutiae** by dart throwing over the pad with a minimum spacing of 1.35 ridge
//!   periods, about 5.4 per 10,000 px² (fewer on coarse ridges), each pointing along the local
//!   ridge flow, ending or bifurcation at equal odds. Two regularities of real prints decide
//!   where they sit and which way they point, because they are what makes the minutiae of two
//!   *different* fingers look alike as often as they do in FVC2002: where neighbouring flow lines
//!   spread apart (the divergence of the flow, high near singular points and in the periphery)
//!   ridges must be inserted to keep the period, so minutiae are up to 6 times denser there and
//!   mostly point back toward where the lines converge; and a minutia with another one in line
//!   with it along the flow within 25 px mostly points at it (a ridge gap with two facing
//!   endings is commoner than a short ridge fragment). Both show in the LEADER templates of
//!   FVC2002 DB1-3: of the neighbours within 25 px, those in line are nearly three times as
//!   often facing as back to back, and those side by side more often same-way than opposite.
//! - **An impression**: the capture's quality is the skin condition give or take the moisture
//!   and cleanliness of the moment. The finger touches the sensor off-centre and rotated, over an
//!   elliptic contact area: mostly a firm press, sometimes a light one (a much smaller area), and
//!   smaller on dry skin. The skin is distorted plastically (Cappelli, Maio & Maltoni 2001: the
//!   middle of the contact holds, the periphery is dragged by a small rotation and translation,
//!   strong for a minority of captures) plus two smooth bumps and a small shear/scale; the print
//!   is moved rigidly onto a 400 x 480 px sensor window at 500 ppi. Minutiae jitter in position
//!   and direction (little on good captures, where LEADER is very repeatable, more on poor ones),
//!   some are missed, some change type. Poor captures have noisy patches (smudges, dry spots)
//!   where true minutiae are lost, ridges seem to end at the rim and some spurious minutiae
//!   appear; creases show as facing endings on both sides of every ridge they cut; dry skin
//!   breaks ridges into pairs of facing endings; a few spurious minutiae are scattered along the
//!   flow.
//!
//! Calibration: the engine's matcher scores synthetic fingers with the FVC protocol
//! (`abis-bench dist`: 8 impressions a finger, all genuine pairs, first impressions of different
//! fingers as impostors) against its scores of the LEADER templates of the FVC2002 B sets. The
//! constants are physical orders of magnitude set by hand against summary statistics of those
//! templates (minutiae per impression 9 / 17 / 33 / 55 / 74 at the 1 / 10 / 50 / 90 / 99 %
//! quantiles, real 8 / 17 / 36 / 57 / 75; print area; the neighbour geometry above) and against
//! quantiles of the score distributions; no histogram is fitted bin by bin. With 200 or 400
//! fingers, seeds 1 and 2: Kolmogorov-Smirnov distance at most 0.045 (genuine) and 0.025
//! (impostor) to the real-finger sets DB1-3 pooled, 0.061 and 0.068 to DB1-4 pooled; 99.9 %
//! impostor quantile 28.5-30.8 (DB1-3 29.7; DB1-4 36.6, heavier because DB4 is itself synthetic);
//! impostor scores of 20 / 30 / 40 or more at 1.0 / 0.09 / 0.01 % (DB1-3 1.4 / 0.10 / 0.01 %).
//! Known differences: side-by-side neighbours point the same way more often than in real prints
//! (70:30 against 57:43), and every impression is of one kind of sensor.
//!
//! Cost (one core): about 35 µs a master finger and 8 µs an impression. The dart throwing
//! asks a bucket grid for neighbours, the flow divergence is analytic, and `atan2` is a
//! polynomial, so a million people's ten fingers take minutes.

use std::f32::consts::{FRAC_PI_2, PI, TAU};

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

/// Mean ridge period, pixels at 500 ppi (adult fingertips: 0.43-0.5 mm ridge to ridge).
const RIDGE_PERIOD: f32 = 9.3;
/// Master minutiae per px² at the mean ridge period (scales with 1/period²: ridge length per
/// area). With misses and spurious ones an impression shows about 8.5 per 10,000 px² of its
/// area, as the FVC2002 LEADER templates do.
const MINUTIA_DENSITY: f32 = 0.00054;
/// No two master minutiae closer than this many ridge periods (LEADER reports almost none
/// closer than 10 px).
const MIN_SPACING: f32 = 1.35;
/// How strongly the flow must spread for ridge insertion to show: `spread = k|div| / (1 + k|div|)`
/// with this `k`, half its strongest where the flow lines fan out by 1/2000 rad per pixel (most
/// of a pad away from parallel flow; the zero-pole field's divergence falls as 1/distance from
/// the singular points).
const SPREAD_SCALE: f32 = 2000.0;
/// Where flow lines spread fully, minutiae are `1 + SPREAD_DENSITY` times denser than where the
/// ridges run parallel (and point back toward the convergent side with odds `(1 + spread) / 2`).
const SPREAD_DENSITY: f32 = 5.0;
/// Odds that a minutia with a neighbour in line along the flow points at it.
const FACING_ODDS: f32 = 0.75;

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
            self.arch_angle(x, y)
        } else {
            let arg = |p: &(f32, f32)| atan2(y - p.1, x - p.0);
            0.5 * (self.deltas.iter().map(arg).sum::<f32>()
                - self.cores.iter().map(arg).sum::<f32>())
        };
        for &(a, kx, ky, ph) in &self.waves {
            t += a * (kx * x + ky * y + ph).sin();
        }
        t.rem_euclid(PI)
    }

    /// Ridges y = c − b·exp(−((x − x0)/w)²): a bump whose height fades downwards.
    fn arch_angle(&self, x: f32, y: f32) -> f32 {
        let (x0, y0, bend) = self.arch;
        let w = 160.0;
        let fade = 1.0 / (1.0 + ((y - y0) / 200.0).max(0.0));
        let u = (x - x0) / w;
        let slope = bend * 2.0 * u * (-u * u).exp() * fade;
        atan2(slope, 1.0)
    }

    /// The orientation at `(x, y)` and the rate at which neighbouring flow lines spread apart
    /// there (the divergence of the unit flow field, `n·∇θ` with `n` the ridge normal; its
    /// sign is relative to the direction `θ`). Analytic for the zero-pole model, since the
    /// gradient of `arg(z − p)` is `(−(y − p_y), x − p_x) / |z − p|²` (no extra `atan2`: this
    /// runs for every candidate minutia); by central differences for the rare arches.
    fn at_with_spread(&self, x: f32, y: f32) -> (f32, f32) {
        let t = self.at(x, y);
        let (mut gx, mut gy) = if self.class == PatternClass::Arch {
            let h = 2.0;
            let d = |a: f32, b: f32| {
                let mut d = (a - b).rem_euclid(PI);
                if d > PI / 2.0 {
                    d -= PI;
                }
                d / (2.0 * h)
            };
            (
                d(self.arch_angle(x + h, y), self.arch_angle(x - h, y)),
                d(self.arch_angle(x, y + h), self.arch_angle(x, y - h)),
            )
        } else {
            let grad = |p: &(f32, f32)| {
                let (dx, dy) = (x - p.0, y - p.1);
                let r2 = (dx * dx + dy * dy).max(1.0);
                (-dy / r2, dx / r2)
            };
            let (mut gx, mut gy) = (0.0, 0.0);
            for p in &self.deltas {
                let g = grad(p);
                gx += 0.5 * g.0;
                gy += 0.5 * g.1;
            }
            for p in &self.cores {
                let g = grad(p);
                gx -= 0.5 * g.0;
                gy -= 0.5 * g.1;
            }
            (gx, gy)
        };
        for &(a, kx, ky, ph) in &self.waves {
            let c = a * (kx * x + ky * y + ph).cos();
            gx += c * kx;
            gy += c * ky;
        }
        (t, -t.sin() * gx + t.cos() * gy)
    }
}

/// Side of a cell of [`Grid`], pixels: the largest radius a neighbour query needs.
const GRID_CELL: f32 = 25.0;
const GRID_W: usize = (PAD_W / GRID_CELL) as usize + 1;
const GRID_H: usize = (PAD_H / GRID_CELL) as usize + 1;

/// A bucket grid over the pad, so that placing a minutia looks at its neighbours only
/// (linked lists of minutia indices per cell).
struct Grid {
    head: Vec<u16>,
    next: Vec<u16>,
}

impl Grid {
    fn new() -> Grid {
        Grid {
            head: vec![u16::MAX; GRID_W * GRID_H],
            next: Vec::new(),
        }
    }

    fn cell(x: f32, y: f32) -> (usize, usize) {
        (
            ((x / GRID_CELL).max(0.0) as usize).min(GRID_W - 1),
            ((y / GRID_CELL).max(0.0) as usize).min(GRID_H - 1),
        )
    }

    /// Records minutia `i` (indices must come in order 0, 1, 2, ...).
    fn insert(&mut self, i: usize, x: f32, y: f32) {
        let (gx, gy) = Grid::cell(x, y);
        self.next.push(self.head[gy * GRID_W + gx]);
        self.head[gy * GRID_W + gx] = i as u16;
    }

    /// Calls `f` with every minutia in the 3 x 3 cells around `(x, y)`: all those within
    /// `GRID_CELL` of it, and some farther.
    fn visit(&self, x: f32, y: f32, mut f: impl FnMut(usize)) {
        let (gx, gy) = Grid::cell(x, y);
        for cy in gy.saturating_sub(1)..=(gy + 1).min(GRID_H - 1) {
            for cx in gx.saturating_sub(1)..=(gx + 1).min(GRID_W - 1) {
                let mut i = self.head[cy * GRID_W + cx];
                while i != u16::MAX {
                    f(usize::from(i));
                    i = self.next[usize::from(i)];
                }
            }
        }
    }
}

/// A crease or scar: a narrow band across which the ridges are interrupted.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Crease {
    x: f32,
    y: f32,
    /// Unit vector along the crease.
    ux: f32,
    uy: f32,
    half_len: f32,
    half_width: f32,
}

/// A synthetic finger: everything that stays the same between its impressions.
#[derive(Debug, Clone, PartialEq)]
pub struct MasterFinger {
    pub class: PatternClass,
    position: FingerPosition,
    field: OrientationField,
    minutiae: Vec<MasterMinutia>,
    creases: Vec<Crease>,
    /// Pad ellipse: centre and radii.
    pad: (f32, f32, f32, f32),
    /// Skin condition in (0, 1]: 1 supple and clean, low for dry, worn or scarred skin.
    skin: f32,
    /// Share of the pad's radii a firm press of this finger brings into contact.
    contact: f32,
    /// Ridge period, pixels.
    period: f32,
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
        let period = (RIDGE_PERIOD + rng.normal() * 0.6).clamp(7.8, 11.5) * grow.sqrt();
        // Skin: mostly good; a squared uniform gives a tail of poor fingers (1 in 4 below 0.7).
        let u = rng.unit();
        let skin = 1.0 - 0.6 * u * u;
        let contact = rng.range(0.82, 0.92);
        let density = MINUTIA_DENSITY * (RIDGE_PERIOD / period).powi(2);
        let area = PI * rx * ry;
        let target = (density * area * (1.0 + rng.normal() * 0.1)).max(10.0) as usize;
        let spacing = MIN_SPACING * period;
        let inside_pad = |x: f32, y: f32| ((x - cx) / rx).powi(2) + ((y - cy) / ry).powi(2) <= 1.0;
        let mut minutiae: Vec<MasterMinutia> = Vec::with_capacity(target);
        let mut grid = Grid::new();
        let mut tries = 0;
        while minutiae.len() < target && tries < target * 60 {
            tries += 1;
            let (x, y) = (rng.range(cx - rx, cx + rx), rng.range(cy - ry, cy + ry));
            if !inside_pad(x, y) {
                continue;
            }
            let mut crowded = false;
            grid.visit(x, y, |i| {
                let m = &minutiae[i];
                crowded |= (m.x - x).powi(2) + (m.y - y).powi(2) < spacing * spacing;
            });
            if crowded {
                continue;
            }
            let (flow, div) = field.at_with_spread(x, y);
            let spread = {
                let a = div.abs() * SPREAD_SCALE;
                a / (1.0 + a)
            };
            // Ridge insertions crowd where the flow lines spread (rejection sampling).
            if rng.unit() * (1.0 + SPREAD_DENSITY) > 1.0 + SPREAD_DENSITY * spread {
                continue;
            }
            // The nearest minutia in line with this one along the flow (within 45° of it).
            let (fx, fy) = (flow.cos(), flow.sin());
            let mut in_line: Option<(f32, f32)> = None;
            grid.visit(x, y, |i| {
                let m = &minutiae[i];
                let (dx, dy) = (m.x - x, m.y - y);
                let along = dx * fx + dy * fy;
                let across = (dy * fx - dx * fy).abs();
                let d2 = dx * dx + dy * dy;
                if along.abs() > across
                    && d2 < GRID_CELL * GRID_CELL
                    && in_line.is_none_or(|(b, _)| d2 < b)
                {
                    in_line = Some((d2, along));
                }
            });
            let forward = match in_line {
                // A gap in a ridge (two endings facing) is commoner than a short fragment.
                Some((_, along)) => (along > 0.0) == rng.chance(FACING_ODDS),
                // Where flow lines spread, ridges are inserted: their endings (and the
                // valley endings of forks) point back toward where the lines converge.
                None => (div < 0.0) == rng.chance(0.5 + 0.5 * spread),
            };
            let dir = if forward { flow } else { flow + PI };
            let kind = if rng.chance(0.5) {
                MinutiaKind::Ending
            } else {
                MinutiaKind::Bifurcation
            };
            grid.insert(minutiae.len(), x, y);
            minutiae.push(MasterMinutia { x, y, dir, kind });
        }
        // Creases and scars: rare on good skin, about one in three poor fingers.
        let n_creases = rng.poisson(0.05 + 0.5 * (1.0 - skin));
        let creases = (0..n_creases)
            .map(|_| {
                let a = rng.range(0.0, PI);
                Crease {
                    x: cx + rng.range(-0.8, 0.8) * rx,
                    y: cy + rng.range(-0.8, 0.8) * ry,
                    ux: a.cos(),
                    uy: a.sin(),
                    half_len: rng.range(20.0, 80.0),
                    half_width: rng.range(4.0, 8.0),
                }
            })
            .collect();
        MasterFinger {
            class,
            position,
            field,
            minutiae,
            creases,
            pad: (cx, cy, rx, ry),
            skin,
            contact,
            period,
        }
    }

    /// One plain capture of this finger, drawn from `seed` (different seeds, different
    /// placements, pressure, distortion and noise).
    pub fn impression(&self, seed: u64) -> FingerTemplate {
        let mut rng = Rng::fork(seed, 0x1A9E);
        let (cx, cy, rx, ry) = self.pad;
        // This capture's quality: the finger's skin, give or take moisture and cleanliness.
        let q = (self.skin + rng.normal() * 0.12).clamp(0.05, 1.0);
        let bad = 1.0 - q;
        // Where the pad touches the sensor centre, and how hard: mostly a firm press, now and
        // then a light one (down to half the radii); dry skin makes less contact.
        let touch = (cx + rng.normal() * 35.0, cy + 20.0 + rng.normal() * 40.0);
        let light = rng.unit();
        let c = self.contact * (1.0 - 0.5 * light * light) * (1.0 - 0.3 * bad);
        let contact = (
            touch.0,
            touch.1,
            rx * c * rng.range(0.9, 1.1),
            ry * c * rng.range(0.9, 1.1),
        );
        let rot = (rng.normal() * 0.2).clamp(-0.6, 0.6);
        let shift = (rng.normal() * 12.0, rng.normal() * 12.0);
        // Plastic distortion: the middle of the contact holds, the periphery is dragged by a
        // small rotation and translation; `strength` is half-normal, so a minority of captures
        // are pushed or twisted hard (up to ~10 px at the rim).
        let strength = 0.7 * rng.normal().abs();
        let d_rot = rng.normal() * 0.03 * strength;
        let d_t = (rng.normal() * 3.0 * strength, rng.normal() * 3.0 * strength);
        let (d_cos, d_sin) = (d_rot.cos(), d_rot.sin());
        let r_in = 0.35 * contact.2.min(contact.3);
        let r_out = contact.2.max(contact.3).max(r_in + 1.0);
        let bumps: Vec<(f32, f32, f32, f32, f32)> = (0..2)
            .map(|_| {
                (
                    touch.0 + rng.normal() * 120.0,
                    touch.1 + rng.normal() * 150.0,
                    rng.normal(),
                    rng.normal(),
                    rng.range(70.0, 150.0),
                )
            })
            .collect();
        let shear = rng.normal() * 0.015;
        let scale = 1.0 + rng.normal() * 0.015;
        let (cos, sin) = (rot.cos(), rot.sin());
        let sensor_c = (f32::from(SENSOR_W) / 2.0, f32::from(SENSOR_H) / 2.0);
        let warp = |x: f32, y: f32| -> (f32, f32) {
            let (mut dx, mut dy) = (x - touch.0, y - touch.1);
            let r = (dx * dx + dy * dy).sqrt();
            let t = ((r - r_in) / (r_out - r_in)).clamp(0.0, 1.0);
            let w = t * t * (3.0 - 2.0 * t);
            let (px, py) = (
                d_cos * dx - d_sin * dy + d_t.0 - dx,
                d_sin * dx + d_cos * dy + d_t.1 - dy,
            );
            dx += w * px;
            dy += w * py;
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
        let readable = |x: f32, y: f32| inside_contact(x, y) && inside_pad(x, y);
        let margin = 10.0;
        let on_sensor = |(u, v): (f32, f32)| {
            u >= margin
                && v >= margin
                && u < f32::from(SENSOR_W) - margin
                && v < f32::from(SENSOR_H) - margin
        };
        // LEADER finds the same minutia again to within a pixel or so on a good capture.
        let pos_sd = 0.4 + 1.5 * bad;
        let dir_sd = 0.015 + 0.08 * bad;
        // Puts a minutia at pad point (x, y) pointing `dir` through the capture onto the sensor.
        let emit = |(x, y, dir): (f32, f32, f32),
                    kind: MinutiaKind,
                    dir_noise: f32,
                    rng: &mut Rng,
                    out: &mut Vec<Minutia>| {
            let p = warp(x, y);
            if !on_sensor(p) {
                return;
            }
            // The direction turns with the local warp: measure it on a short step.
            let s = warp(x + 4.0 * dir.cos(), y + 4.0 * dir.sin());
            let d = atan2(s.1 - p.1, s.0 - p.0) + rng.normal() * dir_noise;
            let (u, v) = (p.0 + rng.normal() * pos_sd, p.1 + rng.normal() * pos_sd);
            out.push(sensor_minutia(u, v, d, kind, rng));
        };
        // Noisy patches (smudge, dry spot) on poor captures: true minutiae there are mostly
        // lost, and the ridges seem to end where they enter the patch.
        let n_patch = rng.poisson(0.1 + 2.0 * bad * bad);
        let mut patches: Vec<(f32, f32, f32)> = Vec::with_capacity(n_patch);
        let mut tries = 0;
        while patches.len() < n_patch && tries < 50 {
            tries += 1;
            let x = contact.0 + rng.range(-1.0, 1.0) * contact.2;
            let y = contact.1 + rng.range(-1.0, 1.0) * contact.3;
            if inside_contact(x, y) {
                patches.push((x, y, rng.range(15.0, 45.0)));
            }
        }
        let in_patch = |x: f32, y: f32| {
            patches
                .iter()
                .any(|p| (p.0 - x).powi(2) + (p.1 - y).powi(2) < p.2 * p.2)
        };
        let in_crease = |x: f32, y: f32| {
            self.creases.iter().any(|c| {
                let (dx, dy) = (x - c.x, y - c.y);
                let along = dx * c.ux + dy * c.uy;
                let across = -dx * c.uy + dy * c.ux;
                along.abs() < c.half_len && across.abs() < c.half_width + 3.0
            })
        };
        let miss = 0.01 + 0.1 * bad.powf(1.5);
        let mut out: Vec<Minutia> = Vec::with_capacity(self.minutiae.len() + 16);
        for m in &self.minutiae {
            if !inside_contact(m.x, m.y) || rng.chance(miss) {
                continue;
            }
            if !patches.is_empty() && in_patch(m.x, m.y) && rng.chance(0.85) {
                continue;
            }
            if !self.creases.is_empty() && in_crease(m.x, m.y) {
                continue;
            }
            let kind = if rng.chance(0.1) {
                match m.kind {
                    MinutiaKind::Ending => MinutiaKind::Bifurcation,
                    _ => MinutiaKind::Ending,
                }
            } else {
                m.kind
            };
            emit((m.x, m.y, m.dir), kind, dir_sd, &mut rng, &mut out);
        }
        let n_true = out.len();
        let lambda = self.period;
        // Endings of interrupted ridges are located less sharply than true minutiae.
        let (end_noise, rim_noise) = (dir_sd + 0.05, dir_sd + 0.1);
        let ending = MinutiaKind::Ending;
        // Creases: every ridge crossing one ends on both sides, the endings facing each other
        // across it. They are part of the skin, so most captures show them.
        let crease_seen = 0.8 + 0.1 * bad;
        for c in &self.creases {
            let mut s = -c.half_len + rng.range(0.0, lambda);
            while s < c.half_len {
                let (px, py) = (c.x + s * c.ux, c.y + s * c.uy);
                let theta = self.field.at(px, py);
                let (fx, fy) = (theta.cos(), theta.sin());
                // Ridges meet the crease every period / sin(angle between them); a crease
                // running along the ridges cuts none.
                let sin_b = (c.ux * fy - c.uy * fx).abs();
                s += lambda / sin_b.max(0.3);
                if sin_b < 0.3 || !readable(px, py) {
                    continue;
                }
                let h = c.half_width / sin_b;
                for side in [-1.0f32, 1.0] {
                    if rng.chance(crease_seen) {
                        let (x, y) = (px + side * h * fx, py + side * h * fy);
                        let dir = if side > 0.0 { theta + PI } else { theta };
                        emit((x, y, dir), ending, end_noise, &mut rng, &mut out);
                    }
                }
            }
        }
        // Patch rims: the ridges crossing a patch seem to end where they enter it.
        for &(x0, y0, r) in &patches {
            let theta = self.field.at(x0, y0);
            let (fx, fy) = (theta.cos(), theta.sin());
            let mut o = -r + rng.range(0.0, lambda);
            while o < r {
                let a = (r * r - o * o).sqrt();
                for side in [-1.0f32, 1.0] {
                    let (x, y) = (x0 - o * fy + side * a * fx, y0 + o * fx + side * a * fy);
                    if readable(x, y) && rng.chance(0.1) {
                        let dir = if side > 0.0 { theta + PI } else { theta };
                        emit((x, y, dir), ending, rim_noise, &mut rng, &mut out);
                    }
                }
                o += lambda;
            }
        }
        // Broken ridges on dry skin: pairs of facing endings a short gap apart.
        let n_breaks = rng.poisson(n_true as f32 * 0.03 * bad);
        for _ in 0..n_breaks {
            let x = contact.0 + rng.range(-1.0, 1.0) * contact.2;
            let y = contact.1 + rng.range(-1.0, 1.0) * contact.3;
            let theta = self.field.at(x, y);
            let g = rng.range(10.0, 20.0);
            let (x2, y2) = (x + g * theta.cos(), y + g * theta.sin());
            if readable(x, y) && readable(x2, y2) {
                emit((x, y, theta), ending, end_noise, &mut rng, &mut out);
                emit((x2, y2, theta + PI), ending, end_noise, &mut rng, &mut out);
            }
        }
        // Spurious minutiae along the flow: a few scattered (noise, scars), some inside patches.
        let spurious = rng.poisson(n_true as f32 * (0.005 + 0.05 * bad));
        let density = MINUTIA_DENSITY * (RIDGE_PERIOD / self.period).powi(2);
        let mut inner = 0;
        for &(_, _, r) in &patches {
            inner += rng.poisson(PI * r * r * density * 0.2);
        }
        let mut placed = 0;
        let mut tries = 0;
        while placed < spurious + inner && tries < 400 {
            tries += 1;
            let (x, y) = if placed < spurious || patches.is_empty() {
                (
                    contact.0 + rng.range(-1.0, 1.0) * contact.2,
                    contact.1 + rng.range(-1.0, 1.0) * contact.3,
                )
            } else {
                let (px, py, r) = patches[rng.below(patches.len())];
                (px + rng.range(-r, r), py + rng.range(-r, r))
            };
            if !readable(x, y) {
                continue;
            }
            let flow = self.field.at(x, y) + if rng.chance(0.5) { 0.0 } else { PI };
            let kind = if rng.chance(0.5) {
                MinutiaKind::Ending
            } else {
                MinutiaKind::Bifurcation
            };
            emit((x, y, flow), kind, 0.25, &mut rng, &mut out);
            placed += 1;
        }
        out.truncate(crate::template::MAX_MINUTIAE);
        FingerTemplate {
            width: SENSOR_W,
            height: SENSOR_H,
            ppi: 500,
            position: self.position,
            impression: Impression::LivePlain,
            quality: (20.0 + 75.0 * q) as u8,
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

/// `atan2(y, x)` to within 2e-5 rad: a polynomial (the generator calls it for every minutia and
/// every orientation look-up, and libm's is several times slower; the exact value does not
/// matter, only that it is deterministic).
fn atan2(y: f32, x: f32) -> f32 {
    let (ax, ay) = (x.abs(), y.abs());
    let hi = ax.max(ay);
    if hi == 0.0 {
        return 0.0;
    }
    let a = ax.min(ay) / hi;
    let s = a * a;
    let mut r = (((-0.013_480_47 * s + 0.057_477_32) * s - 0.121_239_07) * s + 0.195_635_25) * s;
    r = ((r - 0.332_994_57) * s + 0.999_995_6) * a;
    if ay > ax {
        r = FRAC_PI_2 - r;
    }
    if x < 0.0 {
        r = PI - r;
    }
    if y < 0.0 {
        -r
    } else {
        r
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
