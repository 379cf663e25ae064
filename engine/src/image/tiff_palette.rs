//! 8-bit palette ("RGB palette") TIFF, which the `tiff` crate does not decode.
//!
//! The palette indices are stored exactly like 8-bit gray samples, so a copy of the file with
//! its photometric interpretation switched to BlackIsZero decodes, through the ordinary TIFF
//! decoder (every compression it supports), to the raw indices; the colour map then gives each
//! index its colour, and the colour its luma.

use super::tiff_ifd::Ifd;

const PHOTOMETRIC: u16 = 262;
const BITS_PER_SAMPLE: u16 = 258;
const COLOR_MAP: u16 = 320;
const RGB_PALETTE: u32 = 3;
const BLACK_IS_ZERO: u16 = 1;

/// A palette TIFF rewritten to decode as gray indices, and its index → gray table.
pub(super) struct PaletteTiff {
    pub as_gray: Vec<u8>,
    pub luma: [u8; 256],
}

/// `Some` when `bytes` is an 8-bit palette TIFF with a complete colour map.
pub(super) fn prepare(bytes: &[u8]) -> Option<PaletteTiff> {
    let ifd = Ifd::first(bytes)?;
    if ifd.scalar(PHOTOMETRIC)? != RGB_PALETTE || ifd.scalar(BITS_PER_SAMPLE).unwrap_or(1) != 8 {
        return None;
    }
    let map = ifd.shorts(COLOR_MAP, 3 * 256)?;
    if map.len() != 3 * 256 {
        return None;
    }
    let mut luma = [0u8; 256];
    for (i, l) in luma.iter_mut().enumerate() {
        // 16-bit colour map entries; Rec. 601 weights as for every other colour image.
        let (r, g, b) = (map[i] as f32, map[256 + i] as f32, map[512 + i] as f32);
        *l = ((0.299 * r + 0.587 * g + 0.114 * b) / 257.0)
            .round()
            .clamp(0.0, 255.0) as u8;
    }
    let entry = ifd.entry(PHOTOMETRIC)?;
    let mut as_gray = bytes.to_vec();
    let value = if ifd.little_endian() {
        BLACK_IS_ZERO.to_le_bytes()
    } else {
        BLACK_IS_ZERO.to_be_bytes()
    };
    as_gray
        .get_mut(entry.value_at..entry.value_at + 2)?
        .copy_from_slice(&value);
    Some(PaletteTiff { as_gray, luma })
}
