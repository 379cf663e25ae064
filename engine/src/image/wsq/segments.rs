//! The marker segments of a WSQ file and a bounds-checked reader for them.
//!
//! A WSQ file is a sequence of big-endian marker segments, JPEG style:
//!
//! ```text
//! SOI (FFA0)
//!   { DTT | DQT | DHT | COM }*  SOF (FFA2) frame header
//!   { { DTT | DQT | DHT | COM }*  SOB (FFA3) block header, entropy-coded data }+
//! EOI (FFA1)
//! ```
//!
//! Every segment after a marker starts with a 16-bit length that counts itself. Decimal
//! parameters (filter taps, bin widths, the pixel shift and scale) are stored as an integer
//! plus a "scale" byte giving how many times to divide it by ten. The divisions are done one
//! at a time in `f32`, as the NBIS reference decoder does, so that our tables hold exactly
//! the values it uses and the reconstruction can match it bit for bit.
//!
//! Nothing here trusts a length or count read from the file: [`Cursor`] refuses to read past
//! the segment it was given, and table sizes are checked against fixed caps before use.

use super::errors::{corrupt, unsupported};
use super::huffman::HuffmanTable;
use crate::image::ImageError;

/// Start of image.
pub(super) const SOI: u16 = 0xFFA0;
/// End of image.
pub(super) const EOI: u16 = 0xFFA1;
/// Start of frame (image dimensions, pixel shift and scale).
pub(super) const SOF: u16 = 0xFFA2;
/// Start of block (one run of Huffman-coded coefficients).
pub(super) const SOB: u16 = 0xFFA3;
/// Define transform table (the wavelet filter taps).
pub(super) const DTT: u16 = 0xFFA4;
/// Define quantization table (bin widths per subband).
pub(super) const DQT: u16 = 0xFFA5;
/// Define Huffman table(s).
pub(super) const DHT: u16 = 0xFFA6;
/// Define restart interval: never written by WSQ encoders; skipped if present.
pub(super) const DRT: u16 = 0xFFA7;
/// Comment (a `NIST_COM` comment carries the scan resolution).
pub(super) const COM: u16 = 0xFFA8;

/// Subbands in the WSQ decomposition; 60..64 are never transmitted.
pub(super) const MAX_SUBBANDS: usize = 64;
/// Huffman table ids 0..8 may be defined.
pub(super) const MAX_HUFFMAN_TABLES: usize = 8;
/// Longest filter accepted. The standard filter bank is 9/7 taps.
pub(super) const MAX_FILTER_TAPS: usize = 31;

/// The name of a marker, for error messages.
pub(super) fn marker_name(marker: u16) -> String {
    match marker {
        SOI => "SOI".into(),
        EOI => "EOI".into(),
        SOF => "SOF".into(),
        SOB => "SOB".into(),
        DTT => "DTT".into(),
        DQT => "DQT".into(),
        DHT => "DHT".into(),
        DRT => "DRT".into(),
        COM => "COM".into(),
        other => format!("{other:04X}"),
    }
}

/// A read position inside `data[..end]`. Offsets stay absolute (relative to the whole
/// file) so that errors point at the right byte.
#[derive(Debug, Clone)]
pub(super) struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        Cursor {
            data,
            pos: 0,
            end: data.len(),
        }
    }

    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left before the end of this cursor's window.
    pub(super) fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// Moves to `pos`, which must lie within this cursor's window.
    pub(super) fn seek(&mut self, pos: usize) -> Result<(), ImageError> {
        if pos > self.end {
            return Err(corrupt(self.pos, "data runs past the end of the file"));
        }
        self.pos = pos;
        Ok(())
    }

    pub(super) fn bytes(&mut self, len: usize, what: &str) -> Result<&'a [u8], ImageError> {
        let start = self.pos;
        match start.checked_add(len) {
            Some(stop) if stop <= self.end => {
                self.pos = stop;
                Ok(self.data.get(start..stop).unwrap_or_default())
            }
            _ => Err(corrupt(
                start,
                format!("{what}: {len} bytes needed, {} left", self.end - start),
            )),
        }
    }

    pub(super) fn u8(&mut self, what: &str) -> Result<u8, ImageError> {
        let b = self.bytes(1, what)?;
        Ok(b.first().copied().unwrap_or(0))
    }

    pub(super) fn u16(&mut self, what: &str) -> Result<u16, ImageError> {
        let b = self.bytes(2, what)?;
        Ok(b.iter().fold(0u16, |acc, &x| (acc << 8) | u16::from(x)))
    }

    pub(super) fn u32(&mut self, what: &str) -> Result<u32, ImageError> {
        let b = self.bytes(4, what)?;
        Ok(b.iter().fold(0u32, |acc, &x| (acc << 8) | u32::from(x)))
    }

    /// Reads a marker: a 16-bit value whose high byte is 0xFF.
    pub(super) fn marker(&mut self) -> Result<u16, ImageError> {
        let at = self.pos;
        let marker = self.u16("marker")?;
        if marker >> 8 != 0xFF {
            return Err(corrupt(
                at,
                format!("expected a marker, found {marker:04X}"),
            ));
        }
        Ok(marker)
    }

    /// Reads a segment length and returns a cursor over the segment's payload (the bytes
    /// after the length), leaving `self` just past the segment.
    pub(super) fn segment(&mut self, name: &str) -> Result<Cursor<'a>, ImageError> {
        let at = self.pos;
        let len = usize::from(self.u16(name)?);
        if len < 2 {
            return Err(corrupt(
                at,
                format!("{name} segment length {len} is below 2"),
            ));
        }
        let start = self.pos;
        self.bytes(len - 2, name)?;
        Ok(Cursor {
            data: self.data,
            pos: start,
            end: self.pos,
        })
    }
}

/// Divides `raw` by ten `scale` times, one `f32` division at a time (see the module docs).
fn scaled(raw: f32, scale: u8) -> f32 {
    let mut value = raw;
    for _ in 0..scale {
        value /= 10.0;
    }
    value
}

/// A scale byte followed by a 16-bit integer.
fn scaled_u16(seg: &mut Cursor<'_>, what: &str) -> Result<f32, ImageError> {
    let scale = seg.u8(what)?;
    let raw = seg.u16(what)?;
    Ok(scaled(f32::from(raw), scale))
}

/// The frame header: image size and the affine map from reconstructed values to pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct FrameHeader {
    pub(super) width: u16,
    pub(super) height: u16,
    /// `M` in the specification: added back after scaling.
    pub(super) shift: f32,
    /// `R` in the specification: the reconstructed values are multiplied by it.
    pub(super) scale: f32,
}

impl FrameHeader {
    pub(super) fn parse(seg: &mut Cursor<'_>) -> Result<Self, ImageError> {
        let _black = seg.u8("SOF black level")?;
        let _white = seg.u8("SOF white level")?;
        let height = seg.u16("SOF height")?;
        let width = seg.u16("SOF width")?;
        let shift = scaled_u16(seg, "SOF shift M")?;
        let scale = scaled_u16(seg, "SOF scale R")?;
        let _encoder = seg.u8("SOF encoder number")?;
        let _software = seg.u16("SOF software implementation number")?;
        Ok(FrameHeader {
            width,
            height,
            shift,
            scale,
        })
    }
}

/// The synthesis filter pair from the transform table.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct TransformTable {
    /// Synthesis lowpass taps (the modulated analysis highpass): 7 in the standard bank.
    pub(super) lowpass: Vec<f32>,
    /// Synthesis highpass taps (the modulated analysis lowpass): 9 in the standard bank.
    pub(super) highpass: Vec<f32>,
}

impl TransformTable {
    /// The table lists the lengths of the two *synthesis* filters, then the right halves
    /// (centre tap first) of the two *analysis* filters: the analysis lowpass (whose
    /// sign-alternated mirror image is the synthesis highpass) and then the analysis
    /// highpass (likewise giving the synthesis lowpass). Each tap is a sign byte, a scale
    /// byte and a 32-bit magnitude.
    pub(super) fn parse(seg: &mut Cursor<'_>) -> Result<Self, ImageError> {
        let at = seg.pos();
        let high_len = usize::from(seg.u8("DTT highpass length")?);
        let low_len = usize::from(seg.u8("DTT lowpass length")?);
        for (name, len) in [("highpass", high_len), ("lowpass", low_len)] {
            if len == 0 || len > MAX_FILTER_TAPS {
                return Err(corrupt(
                    at,
                    format!("DTT {name} filter length {len} outside 1..={MAX_FILTER_TAPS}"),
                ));
            }
            if len.is_multiple_of(2) {
                return Err(unsupported(
                    at,
                    format!("DTT {name} filter of even length {len}"),
                ));
            }
        }
        let highpass = Self::symmetric_filter(seg, high_len)?;
        let lowpass = Self::symmetric_filter(seg, low_len)?;
        Ok(TransformTable { lowpass, highpass })
    }

    /// Reads the `(len + 1) / 2` stored taps and expands them into the full odd-length,
    /// symmetric filter, alternating signs away from the centre.
    fn symmetric_filter(seg: &mut Cursor<'_>, len: usize) -> Result<Vec<f32>, ImageError> {
        let centre = len / 2;
        let mut taps = vec![0.0f32; len];
        for k in 0..=centre {
            let sign = seg.u8("DTT tap sign")?;
            let scale = seg.u8("DTT tap scale")?;
            let magnitude = seg.u32("DTT tap value")?;
            let mut value = scaled(magnitude as f32, scale);
            if sign != 0 {
                value = -value;
            }
            if k % 2 == 1 {
                value = -value;
            }
            // Both indices are within 0..len because k <= centre = len / 2.
            if let Some(t) = taps.get_mut(centre + k) {
                *t = value;
            }
            if let Some(t) = taps.get_mut(centre - k) {
                *t = value;
            }
        }
        Ok(taps)
    }
}

/// The quantizer: the bin centre `C` and, per subband, the bin width `Q` and the zero-bin
/// width `Z`. A subband with `Q == 0` was not transmitted (all its coefficients are zero).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct QuantTable {
    pub(super) bin_center: f32,
    pub(super) bin_width: [f32; MAX_SUBBANDS],
    pub(super) zero_width: [f32; MAX_SUBBANDS],
}

impl QuantTable {
    pub(super) fn parse(seg: &mut Cursor<'_>) -> Result<Self, ImageError> {
        let bin_center = scaled_u16(seg, "DQT bin centre C")?;
        let mut bin_width = [0.0f32; MAX_SUBBANDS];
        let mut zero_width = [0.0f32; MAX_SUBBANDS];
        for (q, z) in bin_width.iter_mut().zip(zero_width.iter_mut()) {
            *q = scaled_u16(seg, "DQT bin width Q")?;
            *z = scaled_u16(seg, "DQT zero-bin width Z")?;
        }
        Ok(QuantTable {
            bin_center,
            bin_width,
            zero_width,
        })
    }
}

/// Reads every Huffman table in a DHT segment (one segment may define several), storing
/// each under its id. A later definition of an id replaces the earlier one.
pub(super) fn parse_huffman_tables(
    seg: &mut Cursor<'_>,
    tables: &mut [Option<HuffmanTable>; MAX_HUFFMAN_TABLES],
) -> Result<(), ImageError> {
    let mut first = true;
    while first || seg.remaining() > 0 {
        first = false;
        let at = seg.pos();
        let id = usize::from(seg.u8("DHT table id")?);
        let counts_bytes = seg.bytes(16, "DHT code-length counts")?;
        let mut counts = [0u8; 16];
        for (c, &b) in counts.iter_mut().zip(counts_bytes) {
            *c = b;
        }
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        let values = seg.bytes(total, "DHT values")?;
        let table = HuffmanTable::new(&counts, values)
            .map_err(|why| corrupt(at, format!("DHT table {id}: {why}")))?;
        match tables.get_mut(id) {
            Some(slot) => *slot = Some(table),
            None => {
                return Err(corrupt(
                    at,
                    format!("DHT table id {id} outside 0..{MAX_HUFFMAN_TABLES}"),
                ))
            }
        }
    }
    Ok(())
}

/// The scan resolution from a `NIST_COM` comment: lines of `KEY VALUE`, of which `PPI`
/// holds the resolution (-1 when unknown). `None` when the comment is not a NISTCOM
/// comment, has no usable `PPI` entry, or states a non-positive value.
pub(super) fn nistcom_ppi(comment: &[u8]) -> Option<Option<f32>> {
    if !comment.starts_with(b"NIST_COM") {
        return None;
    }
    let text = String::from_utf8_lossy(comment);
    let ppi = text
        .split(['\n', '\r', '\0'])
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            (parts.next() == Some("PPI"))
                .then(|| parts.next())
                .flatten()
        })
        .next()
        .and_then(|value| value.parse::<f32>().ok())
        .filter(|ppi| ppi.is_finite() && *ppi > 0.0);
    Some(ppi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_never_reads_past_its_window() {
        let data = [0x00, 0x05, 1, 2, 3, 0xFF];
        let mut c = Cursor::new(&data);
        let mut seg = c.segment("TEST").unwrap();
        assert_eq!(seg.u16("x").unwrap(), 0x0102);
        assert_eq!(seg.u8("x").unwrap(), 3);
        assert!(seg.u8("x").is_err());
        assert_eq!(c.u8("x").unwrap(), 0xFF);
        assert!(c.u32("x").is_err());
        let mut short = Cursor::new(&[0x00, 0x09, 1]);
        assert!(short.segment("TEST").is_err());
        let mut tiny = Cursor::new(&[0x00, 0x01]);
        assert!(tiny.segment("TEST").is_err());
    }

    #[test]
    fn scaled_values_divide_by_ten_per_step() {
        assert_eq!(scaled(44.0, 2), 44.0f32 / 10.0 / 10.0);
        assert_eq!(scaled(7.0, 0), 7.0);
        assert_eq!(scaled(65535.0, 255), 0.0);
    }

    #[test]
    fn transform_table_expands_symmetric_alternating_filters() {
        // high length 3 (2 stored taps), low length 1 (1 stored tap)
        let mut bytes = vec![3u8, 1];
        for (sign, scale, value) in [(0u8, 1u8, 5u32), (1, 2, 25), (0, 0, 1)] {
            bytes.extend([sign, scale]);
            bytes.extend(value.to_be_bytes());
        }
        let mut seg = Cursor::new(&bytes);
        let t = TransformTable::parse(&mut seg).unwrap();
        // centre 0.5, next tap -0.25 stored, negated by the alternation -> +0.25
        assert_eq!(t.highpass, vec![0.25, 0.5, 0.25]);
        assert_eq!(t.lowpass, vec![1.0]);
        assert!(TransformTable::parse(&mut Cursor::new(&[2, 1])).is_err());
        assert!(TransformTable::parse(&mut Cursor::new(&[99, 1])).is_err());
    }

    #[test]
    fn nistcom_ppi_is_read_when_present() {
        let c = b"NIST_COM 3\nPIX_WIDTH 10\nPPI 500\nLOSSY 1";
        assert_eq!(nistcom_ppi(c), Some(Some(500.0)));
        assert_eq!(nistcom_ppi(b"NIST_COM 2\nPPI -1\n"), Some(None));
        assert_eq!(nistcom_ppi(b"NIST_COM 1\nPIX_WIDTH 3\n"), Some(None));
        assert_eq!(nistcom_ppi(b"NIST_COM 1\nPPI abc\n"), Some(None));
        assert_eq!(nistcom_ppi(b"some other comment PPI 500"), None);
    }
}
