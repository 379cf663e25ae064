//! NIST NBIS `.xyt` minutiae text, as written by `mindtct` and read by `bozorth3`; the common
//! currency of fingerprint research data sets.
//!
//! One minutia per line: `x y theta quality`, integers separated by blanks. NBIS puts the origin
//! at the **bottom-left** (`mindtct` writes `y_xyt = ih − y`) and measures `theta` in degrees
//! **counter-clockwise**; quality is 0..=100. So, from the engine's conventions (origin top-left,
//! `direction` = `atan2` in y-down coordinates):
//!
//! - `y_xyt = height − y` and back `y = height − y_xyt`;
//! - `theta = round(360 − degrees(direction)) mod 360`, back `direction = radians(360 − theta)`.
//!
//! The text carries no header, so the image geometry comes from an [`XytGeometry`]:
//! - `height > 0`: the y axis is flipped about it, and a `y_xyt` above it is refused (it would
//!   put the minutia above the image);
//! - `height == 0` (unknown, the default): the y axis is flipped about `max(y_xyt) + 1`, which
//!   becomes the template's height; encoding that template gives back the same text;
//! - `width == 0`: the template's width is `max(x) + 1` (saturating); x is not checked against a
//!   given width (ISO/ANSI do not check either);
//! - `ppi` must be positive (default 500, the NBIS assumption).
//!
//! Decoder tolerance and limits: blank lines, CRLF line ends and any run of spaces or tabs are
//! accepted; a line has 3 to 5 columns: a 3-column line (no quality, as `bozorth3` also accepts)
//! gets quality 0 ("not reported", as in ISO), a 5th column (some tools write a type) is
//! ignored and every minutia is of kind [`MinutiaKind::Other`], since `.xyt` has no type. Values
//! that are not integers or out of range (`x` 0..=65535, `y` 0..=65534 or 0..=height, `theta`
//! 0..=360 with 360 meaning 0, quality 0..=100) are refused with the 1-based line number. More
//! than [`MAX_MINUTIAE`] lines are **refused** with [`TemplateError::TooManyMinutiae`] rather than
//! silently cut: `bozorth3` keeps the best 150 by quality, but which ones to drop is the caller's
//! decision, not the parser's. Input above [`MAX_XYT_BYTES`] is refused before parsing.
//!
//! The encoder writes the 4 standard columns with `\n` line ends, and needs every `y <= height`.

use std::f64::consts::TAU;
use std::fmt::Write as _;

use super::{FingerTemplate, Minutia, MinutiaKind, TemplateError, XytGeometry, MAX_MINUTIAE};

/// Largest `.xyt` input accepted: 255 lines of a few dozen characters fit many times over.
pub const MAX_XYT_BYTES: usize = 64 * 1024;

fn bad_line(line: usize, field: &'static str, detail: impl Into<String>) -> TemplateError {
    TemplateError::BadLine {
        line,
        field,
        detail: detail.into(),
    }
}

/// Parses an integer column and checks it against `0..=max`.
fn column(token: &str, line: usize, field: &'static str, max: u32) -> Result<u32, TemplateError> {
    let value: i64 = token.parse().map_err(|_| {
        let shown: String = token.chars().take(24).collect();
        bad_line(
            line,
            field,
            format!("`{}` is not an integer", shown.escape_debug()),
        )
    })?;
    u32::try_from(value)
        .ok()
        .filter(|&v| v <= max)
        .ok_or_else(|| bad_line(line, field, format!("{value} is outside 0..={max}")))
}

/// Engine direction to `.xyt` degrees counter-clockwise, 0..=359.
fn direction_to_theta(direction: f32) -> u16 {
    ((360.0 - f64::from(direction).to_degrees()).round() as i64).rem_euclid(360) as u16
}

fn theta_to_direction(theta: u32) -> f32 {
    Minutia::normalized_direction(((360.0 - f64::from(theta)) / 360.0 * TAU) as f32)
}

/// Decodes `.xyt` text; see the module docs for the geometry rules and limits.
pub fn decode_xyt(bytes: &[u8], geometry: XytGeometry) -> Result<FingerTemplate, TemplateError> {
    if bytes.len() > MAX_XYT_BYTES {
        return Err(TemplateError::Malformed {
            field: "xyt text",
            offset: MAX_XYT_BYTES,
            detail: format!(
                "{} bytes exceed the {MAX_XYT_BYTES}-byte limit",
                bytes.len()
            ),
        });
    }
    if geometry.ppi == 0 {
        return Err(TemplateError::InvalidField {
            field: "resolution",
            detail: "xyt geometry resolution must be positive".into(),
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| TemplateError::Malformed {
        field: "xyt text",
        offset: e.valid_up_to(),
        detail: "not UTF-8 text".into(),
    })?;

    let max_y = if geometry.height > 0 {
        u32::from(geometry.height)
    } else {
        u32::from(u16::MAX) - 1
    };
    // (x, y_xyt, direction, quality) per line, y still bottom-up.
    let mut rows: Vec<(u16, u16, f32, u8)> = Vec::new();
    let mut lines = 0usize;
    for (index, line) in text.split('\n').enumerate() {
        let line_no = index + 1;
        let mut tokens = [""; 5];
        let mut n = 0;
        for token in line.split_ascii_whitespace() {
            if n == tokens.len() {
                return Err(bad_line(line_no, "minutia", "more than 5 columns"));
            }
            tokens[n] = token;
            n += 1;
        }
        if n == 0 {
            continue;
        }
        if n < 3 {
            return Err(bad_line(
                line_no,
                "minutia",
                format!("{n} columns, expected `x y theta [quality [type]]`"),
            ));
        }
        let x = column(tokens[0], line_no, "x", u32::from(u16::MAX))?;
        let y = column(tokens[1], line_no, "y", max_y)?;
        let theta = column(tokens[2], line_no, "theta", 360)?;
        let quality = if n >= 4 {
            column(tokens[3], line_no, "quality", 100)?
        } else {
            0
        };
        lines += 1;
        if rows.len() < MAX_MINUTIAE {
            // The range checks above make these conversions lossless.
            rows.push((
                u16::try_from(x).unwrap_or(u16::MAX),
                u16::try_from(y).unwrap_or(u16::MAX),
                theta_to_direction(theta),
                u8::try_from(quality).unwrap_or(100),
            ));
        }
    }
    if lines > MAX_MINUTIAE {
        return Err(TemplateError::TooManyMinutiae(lines));
    }

    let height = if geometry.height > 0 {
        geometry.height
    } else {
        rows.iter()
            .map(|r| r.1)
            .max()
            .map_or(0, |m| m.saturating_add(1))
    };
    let width = if geometry.width > 0 {
        geometry.width
    } else {
        rows.iter()
            .map(|r| r.0)
            .max()
            .map_or(0, |m| m.saturating_add(1))
    };
    let minutiae = rows
        .into_iter()
        .map(|(x, y_xyt, direction, quality)| Minutia {
            x,
            // y_xyt <= height by the range check or by construction of height.
            y: height.saturating_sub(y_xyt),
            direction,
            kind: MinutiaKind::Other,
            quality,
        })
        .collect();
    Ok(FingerTemplate {
        width,
        height,
        ppi: geometry.ppi,
        position: Default::default(),
        impression: Default::default(),
        quality: 0,
        minutiae,
    })
}

/// Encodes a template as `.xyt` text (`x y theta quality` lines, origin bottom-left, theta in
/// degrees counter-clockwise). Fails when the template is invalid or a minutia lies below
/// `height` (its flipped y would be negative).
pub fn encode_xyt(template: &FingerTemplate) -> Result<String, TemplateError> {
    template.validate()?;
    let mut out = String::with_capacity(template.minutiae.len() * 18);
    for (i, m) in template.minutiae.iter().enumerate() {
        let Some(y) = template.height.checked_sub(m.y) else {
            return Err(TemplateError::InvalidField {
                field: "minutia",
                detail: format!(
                    "minutia {i} has y = {} beyond the image height {}, which .xyt flips about",
                    m.y, template.height
                ),
            });
        };
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{} {} {} {}",
            m.x,
            y,
            direction_to_theta(m.direction),
            m.quality
        );
    }
    Ok(out)
}

/// True when `bytes` is ASCII text whose first non-blank line holds 3 to 5 columns, the first
/// three (or four) of them integers: what `mindtct` writes.
pub(super) fn looks_like_xyt(bytes: &[u8]) -> bool {
    if !bytes.is_ascii() {
        return false;
    }
    let Some(line) = bytes
        .split(|&b| b == b'\n')
        .find(|line| !line.iter().all(u8::is_ascii_whitespace))
    else {
        return false;
    };
    let tokens: Vec<&[u8]> = line
        .split(u8::is_ascii_whitespace)
        .filter(|t| !t.is_empty())
        .take(6)
        .collect();
    let is_int = |t: &&[u8]| {
        let digits = t
            .strip_prefix(b"-")
            .or_else(|| t.strip_prefix(b"+"))
            .unwrap_or(t);
        !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
    };
    (3..=5).contains(&tokens.len()) && tokens.iter().take(4).all(is_int)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{FingerPosition, Impression};
    use std::f32::consts::PI;

    fn geometry(width: u16, height: u16) -> XytGeometry {
        XytGeometry {
            width,
            height,
            ppi: 500,
        }
    }

    #[test]
    fn angle_and_axis_conventions() {
        // Up on screen (3π/2 in y-down atan2) is 90° counter-clockwise.
        assert_eq!(direction_to_theta(1.5 * PI), 90);
        assert_eq!(direction_to_theta(0.0), 0);
        assert_eq!(direction_to_theta(0.5 * PI), 270);
        assert!((theta_to_direction(90) - 1.5 * PI).abs() < 1e-6);
        assert_eq!(theta_to_direction(360), 0.0);
        for theta in 0..360 {
            assert_eq!(
                u32::from(direction_to_theta(theta_to_direction(theta))),
                theta
            );
        }
        let t = decode_xyt(b"10 390 90 55\n", geometry(300, 400)).unwrap();
        assert_eq!((t.minutiae[0].x, t.minutiae[0].y), (10, 10));
        assert_eq!(encode_xyt(&t).unwrap(), "10 390 90 55\n");
    }

    #[test]
    fn tolerant_input() {
        let text = b"\r\n  12 30\t45 60\r\n\n7 8 9\r\n1 2 3 4 E\n\n";
        let t = decode_xyt(text, XytGeometry::default()).unwrap();
        assert_eq!(t.minutiae.len(), 3);
        // Unknown height: flipped about max(y_xyt) + 1 = 31.
        assert_eq!((t.width, t.height, t.ppi), (13, 31, 500));
        assert_eq!(t.minutiae[0].y, 1);
        assert_eq!(t.minutiae[1].quality, 0);
        assert_eq!(t.position, FingerPosition::UNKNOWN);
        assert_eq!(t.impression, Impression::LivePlain);
        assert!(looks_like_xyt(text));
    }

    #[test]
    fn errors_name_lines() {
        let cases: [(&[u8], usize, &str); 6] = [
            (b"1 2 3 4\n1 x 3 4\n", 2, "y"),
            (b"1 2 3 101\n", 1, "quality"),
            (b"\n\n1 2 361 4\n", 3, "theta"),
            (b"-1 2 3 4\n", 1, "x"),
            (b"1 2\n", 1, "minutia"),
            (b"1 2 3 4 5 6\n", 1, "minutia"),
        ];
        for (text, line, field) in cases {
            match decode_xyt(text, XytGeometry::default()) {
                Err(TemplateError::BadLine {
                    line: l, field: f, ..
                }) => {
                    assert_eq!((l, f), (line, field), "{}", String::from_utf8_lossy(text))
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            decode_xyt(b"1 401 3 4\n", geometry(0, 400)),
            Err(TemplateError::BadLine {
                line: 1,
                field: "y",
                ..
            })
        ));
        let many = "1 2 3 4\n".repeat(256);
        assert_eq!(
            decode_xyt(many.as_bytes(), XytGeometry::default()),
            Err(TemplateError::TooManyMinutiae(256))
        );
        assert!(decode_xyt(&vec![b' '; MAX_XYT_BYTES + 1], XytGeometry::default()).is_err());
    }

    #[test]
    fn sniffing() {
        assert!(looks_like_xyt(b"1 2 3\n"));
        assert!(looks_like_xyt(b"\n 1 2 3 4 \n"));
        assert!(!looks_like_xyt(b""));
        assert!(!looks_like_xyt(b"\n\n"));
        assert!(!looks_like_xyt(b"1 2\n"));
        assert!(!looks_like_xyt(b"a b c d\n"));
        assert!(!looks_like_xyt(b"FMR\0 20\0"));
        assert!(!looks_like_xyt("1 2 3 \u{e9}".as_bytes()));
    }
}
