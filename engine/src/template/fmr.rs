//! The finger minutiae record ("FMR") machinery shared by ISO/IEC 19794-2:2005 and
//! ANSI/INCITS 378-2004.
//!
//! The two standards differ in four places only (header length field, CBEFF product id, the
//! angle unit, and whether an extended data block's length counts its own 4-byte header); the
//! finger view and minutia layouts are the same. Keeping one reader and one writer, with a
//! [`Flavor`] deciding those four places, means a bounds check fixed once is fixed for both.
//!
//! Everything here reads untrusted bytes through [`Reader`], which checks every length before it
//! slices and names the field and offset in its errors. The only allocation sized by the input is
//! the minutia vector, whose length is a single byte (at most 255).

use std::f64::consts::TAU;

use super::{FingerPosition, FingerTemplate, Impression, Minutia, MinutiaKind, TemplateError};

/// Which of the two sibling standards a record follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flavor {
    /// ISO/IEC 19794-2:2005: 24-byte header with a 4-byte length, 1.40625-degree angles,
    /// extended block lengths count the data only.
    Iso,
    /// ANSI/INCITS 378-2004: 26-byte header (30 with the long length form), CBEFF product id,
    /// 2-degree angles, extended block lengths include their 4-byte header.
    Ansi,
}

impl Flavor {
    fn standard(self) -> &'static str {
        match self {
            Flavor::Iso => "ISO/IEC 19794-2",
            Flavor::Ansi => "ANSI/INCITS 378",
        }
    }

    /// The later edition that reuses the magic with version `"030\0"` and a different layout.
    fn later_edition(self) -> &'static str {
        match self {
            Flavor::Iso => "ISO/IEC 19794-2:2011",
            Flavor::Ansi => "ANSI/INCITS 378-2009",
        }
    }
}

/// Format identifier shared by both standards.
pub(super) const MAGIC: &[u8; 4] = b"FMR\0";
/// Version of the 2004/2005 editions, the only one decoded.
pub(super) const VERSION_2005: &[u8; 4] = b" 20\0";
/// Version of ISO 19794-2:2011 and ANSI 378-2009, recognised and refused.
pub(super) const VERSION_030: &[u8; 4] = b"030\0";
/// ISO header length.
pub(super) const ISO_HEADER_LEN: usize = 24;
/// ANSI header length with the 2-byte record length.
pub(super) const ANSI_HEADER_LEN: usize = 26;
/// ANSI header length with `0x0000` and a 4-byte record length (records of 64 KiB or more).
pub(super) const ANSI_LONG_HEADER_LEN: usize = 30;
/// Largest coordinate a 14-bit field can carry.
pub(super) const MAX_COORDINATE: u16 = 0x3FFF;

/// Bounds-checked big- or little-endian cursor over untrusted bytes.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Offset of the next byte to be read.
    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    pub(super) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next `n` bytes, or [`TemplateError::Truncated`] naming `field`.
    pub(super) fn take(
        &mut self,
        n: usize,
        field: &'static str,
    ) -> Result<&'a [u8], TemplateError> {
        let available = self.remaining();
        if n > available {
            return Err(TemplateError::Truncated {
                field,
                offset: self.pos,
                needed: n,
                available,
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], TemplateError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    pub(super) fn u8(&mut self, field: &'static str) -> Result<u8, TemplateError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(super) fn be_u16(&mut self, field: &'static str) -> Result<u16, TemplateError> {
        self.array(field).map(u16::from_be_bytes)
    }

    pub(super) fn be_u32(&mut self, field: &'static str) -> Result<u32, TemplateError> {
        self.array(field).map(u32::from_be_bytes)
    }

    pub(super) fn le_u16(&mut self, field: &'static str) -> Result<u16, TemplateError> {
        self.array(field).map(u16::from_le_bytes)
    }

    pub(super) fn le_u32(&mut self, field: &'static str) -> Result<u32, TemplateError> {
        self.array(field).map(u32::from_le_bytes)
    }
}

/// Big-endian u16 at `offset`, if the bytes are there.
pub(super) fn peek_be_u16(bytes: &[u8], offset: usize) -> Option<u16> {
    let b = bytes.get(offset..offset.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// The format sniffing rule of formats.md for records starting `FMR\0`: uint16 at offset 8
/// `>= 26` is ANSI, `1..=25` is ISO, `0` defers to the uint16 at offset 10 (`>= 24` ISO, else
/// ANSI with the 6-byte length form).
pub(super) fn looks_like_ansi(bytes: &[u8]) -> bool {
    match peek_be_u16(bytes, 8) {
        None => false,
        Some(26..) => true,
        Some(1..=25) => false,
        Some(0) => match peek_be_u16(bytes, 10) {
            Some(v) => v < 24,
            None => true,
        },
    }
}

/// Version bytes as readable text for an error message (trailing NUL dropped, rest escaped).
fn printable_version(v: &[u8]) -> String {
    let v = v.strip_suffix(&[0]).unwrap_or(v);
    v.escape_ascii().to_string()
}

fn malformed(field: &'static str, offset: usize, detail: impl Into<String>) -> TemplateError {
    TemplateError::Malformed {
        field,
        offset,
        detail: detail.into(),
    }
}

// ---- Angle and resolution conversions -------------------------------------------------------

/// Engine direction (radians, atan2 in y-down coordinates) to the ISO angle byte
/// (counter-clockwise, units of 360/256 degrees): `round((2π − θ) / 2π · 256) & 0xFF`.
pub(super) fn direction_to_iso_angle(direction: f32) -> u8 {
    let units = ((TAU - f64::from(direction)) / TAU * 256.0).round() as i64;
    (units & 0xFF) as u8
}

/// ISO angle byte to engine direction: `2π − b · 2π / 256`, wrapped into `[0, 2π)`.
pub(super) fn iso_angle_to_direction(angle: u8) -> f32 {
    Minutia::normalized_direction((TAU - f64::from(angle) * TAU / 256.0) as f32)
}

/// Engine direction to the ANSI angle (counter-clockwise, 2-degree units, 0..=179):
/// `round(deg_ccw / 2) % 180`.
pub(super) fn direction_to_ansi_angle(direction: f32) -> u8 {
    let ccw_degrees = 360.0 - f64::from(direction).to_degrees();
    ((ccw_degrees / 2.0).round() as i64).rem_euclid(180) as u8
}

/// ANSI angle (0..=179, checked by the caller) to engine direction.
pub(super) fn ansi_angle_to_direction(angle: u8) -> f32 {
    Minutia::normalized_direction((TAU - (f64::from(angle) * 2.0).to_radians()) as f32)
}

/// Pixels per inch to the pixels per centimetre both records store: `round(ppi / 2.54)`, at
/// least 1 so that the record stays decodable.
pub(super) fn ppi_to_ppcm(ppi: u16) -> u16 {
    ((f64::from(ppi) / 2.54).round() as u16).max(1)
}

/// Pixels per centimetre back to pixels per inch: `round(ppcm · 2.54)`, snapped to the standard
/// 500 or 1000 ppi when within 1 of it (197 px/cm is 500.38 ppi, 394 px/cm is 1000.76 ppi).
/// `None` when the result does not fit in a u16 or is zero.
pub(super) fn ppcm_to_ppi(ppcm: u16) -> Option<u16> {
    let ppi = (f64::from(ppcm) * 2.54).round() as i64;
    let ppi = if (ppi - 500).abs() <= 1 {
        500
    } else if (ppi - 1000).abs() <= 1 {
        1000
    } else {
        ppi
    };
    u16::try_from(ppi).ok().filter(|&p| p > 0)
}

// ---- Decoding --------------------------------------------------------------------------------

/// One decoded finger view.
struct View {
    position: FingerPosition,
    impression: Impression,
    quality: u8,
    minutiae: Vec<Minutia>,
}

/// Decodes the first finger view of an ISO (`Flavor::Iso`) or ANSI record. Every other view is
/// parsed and checked as well, so that a record is accepted only when its declared length, view
/// count, minutia counts and extended data lengths all agree with its bytes.
pub(super) fn decode(bytes: &[u8], flavor: Flavor) -> Result<FingerTemplate, TemplateError> {
    let mut r = Reader::new(bytes);

    if r.take(4, "format identifier")? != MAGIC {
        return Err(malformed("format identifier", 0, "expected \"FMR\\0\""));
    }
    let version = r.take(4, "version")?;
    if version == VERSION_030 {
        return Err(TemplateError::UnsupportedVersion {
            standard: flavor.later_edition(),
            version: printable_version(version),
        });
    }
    if version != VERSION_2005 {
        return Err(TemplateError::UnsupportedVersion {
            standard: flavor.standard(),
            version: printable_version(version),
        });
    }

    let length_offset = r.pos();
    let (declared, header_len) = match flavor {
        Flavor::Iso => (r.be_u32("record length")? as usize, ISO_HEADER_LEN),
        Flavor::Ansi => match r.be_u16("record length")? {
            0 => (r.be_u32("record length")? as usize, ANSI_LONG_HEADER_LEN),
            short => (usize::from(short), ANSI_HEADER_LEN),
        },
    };
    check_declared_length(bytes, flavor, declared, header_len, length_offset)?;

    if flavor == Flavor::Ansi {
        r.be_u16("CBEFF product owner")?;
        r.be_u16("CBEFF product type")?;
    }
    r.be_u16("capture equipment")?;
    let width = r.be_u16("image width")?;
    let height = r.be_u16("image height")?;
    let resolution_offset = r.pos();
    let x_ppcm = r.be_u16("x resolution")?;
    r.be_u16("y resolution")?;
    let ppi = ppcm_to_ppi(x_ppcm).ok_or_else(|| {
        malformed(
            "x resolution",
            resolution_offset,
            format!("{x_ppcm} pixels per cm is not a usable resolution"),
        )
    })?;
    let views_offset = r.pos();
    let views = r.u8("number of finger views")?;
    r.u8("reserved")?;
    debug_assert_eq!(r.pos(), header_len);
    if views == 0 {
        return Err(malformed(
            "number of finger views",
            views_offset,
            "record holds no finger view",
        ));
    }

    let mut first = None;
    for _ in 0..views {
        let view = decode_view(&mut r, flavor)?;
        if first.is_none() {
            first = Some(view);
        }
    }
    if r.remaining() != 0 {
        return Err(malformed(
            "record length",
            r.pos(),
            format!(
                "{} bytes follow the last of {views} finger views",
                r.remaining()
            ),
        ));
    }
    let view = first.ok_or_else(|| malformed("number of finger views", views_offset, "no view"))?;
    Ok(FingerTemplate {
        width,
        height,
        ppi,
        position: view.position,
        impression: view.impression,
        quality: view.quality,
        minutiae: view.minutiae,
    })
}

/// The declared record length must cover the header and equal the bytes given.
fn check_declared_length(
    bytes: &[u8],
    flavor: Flavor,
    declared: usize,
    header_len: usize,
    offset: usize,
) -> Result<(), TemplateError> {
    let hint = match flavor {
        Flavor::Iso if looks_like_ansi(bytes) => " (the header looks like ANSI/INCITS 378)",
        Flavor::Ansi if !looks_like_ansi(bytes) => " (the header looks like ISO/IEC 19794-2)",
        _ => "",
    };
    if declared < header_len {
        return Err(malformed(
            "record length",
            offset,
            format!("declares {declared} bytes, less than the {header_len}-byte header{hint}"),
        ));
    }
    if declared > bytes.len() {
        return Err(TemplateError::Truncated {
            field: "record",
            offset: 0,
            needed: declared,
            available: bytes.len(),
        });
    }
    if declared < bytes.len() {
        return Err(malformed(
            "record length",
            offset,
            format!(
                "declares {declared} bytes but {} were given{hint}",
                bytes.len()
            ),
        ));
    }
    Ok(())
}

fn decode_view(r: &mut Reader<'_>, flavor: Flavor) -> Result<View, TemplateError> {
    let offset = r.pos();
    let code = r.u8("finger position")?;
    let position = FingerPosition::new(code).map_err(|_| {
        malformed(
            "finger position",
            offset,
            format!("{code} is not in 0..=10"),
        )
    })?;

    let offset = r.pos();
    let view_impression = r.u8("view number and impression type")?;
    let impression = Impression::from_code(view_impression & 0x0F).map_err(|_| {
        malformed(
            "impression type",
            offset,
            format!(
                "{} is not an impression type (0..=3, 8)",
                view_impression & 0x0F
            ),
        )
    })?;

    let offset = r.pos();
    let quality = r.u8("finger quality")?;
    if quality > 100 {
        return Err(malformed(
            "finger quality",
            offset,
            format!("{quality} exceeds 100"),
        ));
    }

    let count = usize::from(r.u8("number of minutiae")?);
    let base = r.pos();
    let raw = r.take(count * 6, "minutiae")?;
    let mut minutiae = Vec::with_capacity(count);
    for (i, chunk) in raw.chunks_exact(6).enumerate() {
        minutiae.push(decode_minutia(chunk, base + i * 6, flavor)?);
    }

    skip_extended_data(r, flavor)?;
    Ok(View {
        position,
        impression,
        quality,
        minutiae,
    })
}

fn decode_minutia(c: &[u8], offset: usize, flavor: Flavor) -> Result<Minutia, TemplateError> {
    let (w0, w1, angle, quality) = match c {
        &[a, b, c, d, e, f] => (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]), e, f),
        _ => {
            return Err(TemplateError::Truncated {
                field: "minutia",
                offset,
                needed: 6,
                available: c.len(),
            })
        }
    };
    let kind = match w0 >> 14 {
        0 => MinutiaKind::Other,
        1 => MinutiaKind::Ending,
        2 => MinutiaKind::Bifurcation,
        _ => return Err(malformed("minutia type", offset, "type 11 is reserved")),
    };
    let direction = match flavor {
        Flavor::Iso => iso_angle_to_direction(angle),
        Flavor::Ansi if angle < 180 => ansi_angle_to_direction(angle),
        Flavor::Ansi => {
            return Err(malformed(
                "minutia angle",
                offset + 4,
                format!("{angle} is not a 2-degree angle (0..=179)"),
            ))
        }
    };
    if quality > 100 {
        return Err(malformed(
            "minutia quality",
            offset + 5,
            format!("{quality} exceeds 100"),
        ));
    }
    Ok(Minutia {
        x: w0 & MAX_COORDINATE,
        y: w1 & MAX_COORDINATE,
        direction,
        kind,
        quality,
    })
}

/// Skips the extended data of a view, checking that its blocks exactly fill the declared length.
/// ISO block lengths count the data only; ANSI ones include the 4-byte block header.
fn skip_extended_data(r: &mut Reader<'_>, flavor: Flavor) -> Result<(), TemplateError> {
    let total = usize::from(r.be_u16("extended data length")?);
    let start = r.pos();
    let data = r.take(total, "extended data")?;
    let mut at = 0;
    while at < data.len() {
        let offset = start + at;
        let len = match data.get(at..at + 4) {
            Some(&[_, _, hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
            _ => {
                return Err(malformed(
                    "extended data block header",
                    offset,
                    format!("{} bytes left, a block header needs 4", data.len() - at),
                ))
            }
        };
        let data_len = match flavor {
            Flavor::Iso => len,
            Flavor::Ansi => len.checked_sub(4).ok_or_else(|| {
                malformed(
                    "extended data block length",
                    offset + 2,
                    format!("{len} is less than the 4-byte block header it includes"),
                )
            })?,
        };
        let left = data.len() - at - 4;
        if data_len > left {
            return Err(malformed(
                "extended data block length",
                offset + 2,
                format!("block needs {data_len} data bytes, only {left} left in the extended data"),
            ));
        }
        at += 4 + data_len;
    }
    Ok(())
}

// ---- Encoding --------------------------------------------------------------------------------

/// Encodes `t` as a single-view record without extended data.
pub(super) fn encode(t: &FingerTemplate, flavor: Flavor) -> Result<Vec<u8>, TemplateError> {
    t.validate()?;
    for (i, m) in t.minutiae.iter().enumerate() {
        if m.x > MAX_COORDINATE || m.y > MAX_COORDINATE {
            return Err(TemplateError::InvalidField {
                field: "minutia",
                detail: format!(
                    "minutia {i} at ({}, {}) does not fit the 14-bit coordinates of {}",
                    m.x,
                    m.y,
                    flavor.standard()
                ),
            });
        }
    }
    let body = encode_view(t, flavor);
    let mut out = header(t, flavor, body.len())?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// The finger view: 4-byte view header, minutiae, empty extended data.
fn encode_view(t: &FingerTemplate, flavor: Flavor) -> Vec<u8> {
    let mut out = Vec::with_capacity(6 + 6 * t.minutiae.len());
    out.push(t.position.code());
    out.push(t.impression.code()); // view number 0 in the high nibble
    out.push(t.quality);
    // `validate` guarantees at most 255 minutiae.
    out.push(t.minutiae.len().min(255) as u8);
    for m in &t.minutiae {
        let kind: u16 = match m.kind {
            MinutiaKind::Other => 0,
            MinutiaKind::Ending => 1,
            MinutiaKind::Bifurcation => 2,
        };
        out.extend_from_slice(&((kind << 14) | (m.x & MAX_COORDINATE)).to_be_bytes());
        out.extend_from_slice(&(m.y & MAX_COORDINATE).to_be_bytes());
        out.push(match flavor {
            Flavor::Iso => direction_to_iso_angle(m.direction),
            Flavor::Ansi => direction_to_ansi_angle(m.direction),
        });
        out.push(m.quality);
    }
    out.extend_from_slice(&0u16.to_be_bytes()); // no extended data
    out
}

/// The record header for a record whose views take `body_len` bytes. ANSI switches to the
/// `0x0000` + 4-byte length form when the record would reach 64 KiB.
pub(super) fn header(
    t: &FingerTemplate,
    flavor: Flavor,
    body_len: usize,
) -> Result<Vec<u8>, TemplateError> {
    let too_long = || TemplateError::InvalidField {
        field: "record length",
        detail: format!("{body_len} bytes of finger views do not fit a record"),
    };
    let mut out = Vec::with_capacity(ANSI_LONG_HEADER_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(VERSION_2005);
    match flavor {
        Flavor::Iso => {
            let total = body_len.checked_add(ISO_HEADER_LEN).ok_or_else(too_long)?;
            out.extend_from_slice(&u32::try_from(total).map_err(|_| too_long())?.to_be_bytes());
        }
        Flavor::Ansi => {
            let short = body_len.checked_add(ANSI_HEADER_LEN).ok_or_else(too_long)?;
            if let Ok(short) = u16::try_from(short) {
                out.extend_from_slice(&short.to_be_bytes());
            } else {
                let long = body_len
                    .checked_add(ANSI_LONG_HEADER_LEN)
                    .ok_or_else(too_long)?;
                out.extend_from_slice(&0u16.to_be_bytes());
                out.extend_from_slice(&u32::try_from(long).map_err(|_| too_long())?.to_be_bytes());
            }
            out.extend_from_slice(&0u16.to_be_bytes()); // CBEFF product owner: unregistered
            out.extend_from_slice(&0u16.to_be_bytes()); // CBEFF product type
        }
    }
    out.extend_from_slice(&0u16.to_be_bytes()); // capture equipment: not certified, unknown
    out.extend_from_slice(&t.width.to_be_bytes());
    out.extend_from_slice(&t.height.to_be_bytes());
    let ppcm = ppi_to_ppcm(t.ppi);
    out.extend_from_slice(&ppcm.to_be_bytes());
    out.extend_from_slice(&ppcm.to_be_bytes());
    out.push(1); // one finger view
    out.push(0); // reserved
    Ok(out)
}
