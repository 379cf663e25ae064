//! Entropy decoding: canonical Huffman codes over a byte-stuffed bit stream, and the WSQ
//! symbol alphabet of zero runs, small values and escapes.
//!
//! The coefficients of all transmitted subbands are coded one after another, subband by
//! subband in raster order, split over (normally three) blocks. Each block's data runs from
//! the end of its SOB header up to the next marker; a 0xFF data byte is followed by a
//! stuffed 0x00, so a 0xFF followed by anything else is the marker that ends the block.
//! The last byte of a block is padded; a code left incomplete when the marker is reached is
//! that padding and is dropped.
//!
//! Symbols (per the specification's category table):
//!
//! | symbol    | meaning                                              |
//! |-----------|------------------------------------------------------|
//! | 1..=100   | that many zero coefficients                          |
//! | 101 / 102 | next 8 bits: a positive / negative coefficient       |
//! | 103 / 104 | next 16 bits: a positive / negative coefficient      |
//! | 105 / 106 | next 8 / 16 bits: a run of that many zeros           |
//! | 107..=254 | the coefficient `symbol - 180` (-73..=74)            |
//!
//! Everything is bounds-checked: decoding stops with an error rather than writing past the
//! number of coefficients the image can hold.

use super::errors::corrupt;
use crate::image::ImageError;

const MAX_CODE_LEN: usize = 16;

/// A canonical Huffman code (JPEG style): code lengths 1..=16 with a count per length,
/// and the symbols in code order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HuffmanTable {
    /// For each length `l`, the first code of that length...
    first_code: [u32; MAX_CODE_LEN + 1],
    /// ...how many codes have that length...
    count: [u32; MAX_CODE_LEN + 1],
    /// ...and where their symbols start in `symbols`.
    first_index: [u32; MAX_CODE_LEN + 1],
    symbols: Vec<u8>,
}

impl HuffmanTable {
    /// `counts[l - 1]` codes of length `l`; `symbols` lists their symbols in code order.
    /// A table may be empty: the reference encoder writes one for a block with no data.
    pub(super) fn new(counts: &[u8; MAX_CODE_LEN], symbols: &[u8]) -> Result<Self, String> {
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        if total != symbols.len() {
            return Err(format!("{total} codes but {} symbols", symbols.len()));
        }
        if total > 256 {
            return Err(format!("{total} codes, more than 256"));
        }
        let mut table = HuffmanTable {
            first_code: [0; MAX_CODE_LEN + 1],
            count: [0; MAX_CODE_LEN + 1],
            first_index: [0; MAX_CODE_LEN + 1],
            symbols: symbols.to_vec(),
        };
        let mut code = 0u32;
        let mut index = 0u32;
        for len in 1..=MAX_CODE_LEN {
            let n = u32::from(counts[len - 1]);
            table.first_code[len] = code;
            table.count[len] = n;
            table.first_index[len] = index;
            code += n;
            // All codes of this length must fit in `len` bits, or the code is not prefix-free.
            if code > 1u32 << len {
                return Err(format!("over-subscribed at code length {len}"));
            }
            index += n;
            code <<= 1;
        }
        Ok(table)
    }

    /// Decodes one symbol, or returns `None` when the block's closing marker is reached.
    fn decode(&self, bits: &mut BitReader<'_>) -> Result<Option<u8>, ImageError> {
        let start = bits.pos;
        let mut code = 0u32;
        for len in 1..=MAX_CODE_LEN {
            let Some(bit) = bits.bit()? else {
                return Ok(None);
            };
            code = (code << 1) | bit;
            let offset = code.wrapping_sub(self.first_code[len]);
            if code >= self.first_code[len] && offset < self.count[len] {
                let index = (self.first_index[len] + offset) as usize;
                return match self.symbols.get(index) {
                    Some(&symbol) => Ok(Some(symbol)),
                    None => Err(corrupt(start, "Huffman symbol index out of range")),
                };
            }
        }
        Err(corrupt(start, "invalid Huffman code in block data"))
    }
}

/// Reads bits most-significant first from entropy-coded data, removing stuffed zero bytes
/// and stopping at the first marker.
struct BitReader<'a> {
    data: &'a [u8],
    /// Offset of the next unread byte.
    pos: usize,
    current: u8,
    /// Bits of `current` not yet read.
    left: u32,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        BitReader {
            data,
            pos,
            current: 0,
            left: 0,
        }
    }

    /// The next bit, or `None` if a marker starts at the next byte boundary.
    #[inline]
    fn bit(&mut self) -> Result<Option<u32>, ImageError> {
        if self.left == 0 {
            let Some(&byte) = self.data.get(self.pos) else {
                return Err(corrupt(
                    self.pos,
                    "block data ends without a marker (truncated file)",
                ));
            };
            if byte == 0xFF {
                match self.data.get(self.pos + 1) {
                    Some(0x00) => self.pos += 2,
                    Some(_) => return Ok(None),
                    None => {
                        return Err(corrupt(
                            self.pos,
                            "block data ends inside a 0xFF byte pair (truncated file)",
                        ))
                    }
                }
            } else {
                self.pos += 1;
            }
            self.current = byte;
            self.left = 8;
        }
        self.left -= 1;
        Ok(Some(u32::from(self.current >> self.left) & 1))
    }

    /// `n` raw bits following an escape symbol; a marker here means the data is cut short.
    fn bits(&mut self, n: u32) -> Result<u32, ImageError> {
        let mut value = 0u32;
        for _ in 0..n {
            match self.bit()? {
                Some(bit) => value = (value << 1) | bit,
                None => {
                    return Err(corrupt(
                        self.pos,
                        "marker inside an escaped value in block data",
                    ))
                }
            }
        }
        Ok(value)
    }
}

/// Decodes the entropy-coded data of one block starting at `data[start]`, appending the
/// quantized coefficients to `out`, which may hold at most `capacity` values. Returns the
/// offset of the marker that ends the block.
pub(super) fn decode_block(
    data: &[u8],
    start: usize,
    table: &HuffmanTable,
    out: &mut Vec<i32>,
    capacity: usize,
) -> Result<usize, ImageError> {
    let mut bits = BitReader::new(data, start);
    let overflow = |at: usize| {
        corrupt(
            at,
            format!("block data holds more than the image's {capacity} coefficients"),
        )
    };
    let push_zeros = |out: &mut Vec<i32>, run: usize, at: usize| {
        if run > capacity.saturating_sub(out.len()) {
            return Err(overflow(at));
        }
        out.resize(out.len() + run, 0);
        Ok(())
    };
    loop {
        let at = bits.pos;
        let Some(symbol) = table.decode(&mut bits)? else {
            return Ok(bits.pos);
        };
        let value = match symbol {
            1..=100 => {
                push_zeros(out, usize::from(symbol), at)?;
                continue;
            }
            105 => {
                let run = bits.bits(8)? as usize;
                push_zeros(out, run, at)?;
                continue;
            }
            106 => {
                let run = bits.bits(16)? as usize;
                push_zeros(out, run, at)?;
                continue;
            }
            101 => bits.bits(8)? as i32,
            102 => -(bits.bits(8)? as i32),
            103 => bits.bits(16)? as i32,
            104 => -(bits.bits(16)? as i32),
            107..=254 => i32::from(symbol) - 180,
            0 | 255 => {
                return Err(corrupt(
                    at,
                    format!("invalid coefficient symbol {symbol} in block data"),
                ))
            }
        };
        if out.len() >= capacity {
            return Err(overflow(at));
        }
        out.push(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Symbols 180 (code 0), 1 (10), 101 (110) and 106 (1110); like the encoder's tables,
    /// no code is all ones, so padding a block's last byte with 1 bits decodes to nothing.
    fn small_table() -> HuffmanTable {
        let mut counts = [0u8; 16];
        counts[..4].copy_from_slice(&[1, 1, 1, 1]);
        HuffmanTable::new(&counts, &[180, 1, 101, 106]).unwrap()
    }

    fn pack(bits: &str) -> Vec<u8> {
        bits.as_bytes()
            .chunks(8)
            .map(|c| c.iter().fold(0u8, |a, &b| (a << 1) | (b - b'0')))
            .collect()
    }

    #[test]
    fn rejects_malformed_tables() {
        let mut counts = [0u8; 16];
        counts[0] = 3; // three 1-bit codes cannot exist
        assert!(HuffmanTable::new(&counts, &[1, 2, 3]).is_err());
        counts[0] = 1;
        assert!(HuffmanTable::new(&counts, &[1, 2]).is_err());
        // An empty table is valid, but decodes nothing.
        let empty = HuffmanTable::new(&[0; 16], &[]).unwrap();
        assert_eq!(
            decode_block(&[0xFF, 0xA1], 0, &empty, &mut Vec::new(), 10).unwrap(),
            0
        );
        assert!(decode_block(&[0x00, 0x00, 0xFF, 0xA1], 0, &empty, &mut Vec::new(), 10).is_err());
    }

    #[test]
    fn decodes_symbols_runs_and_escapes_up_to_the_marker() {
        let t = small_table();
        // 0 | 10 | 110 00000101 | 1110 0000000000000011 | 0 | padding 11111, then EOI
        let mut bytes = pack("0101100000010111100000000000000011011111");
        bytes.extend([0xFF, 0xA1]);
        let mut out = Vec::new();
        let end = decode_block(&bytes, 0, &t, &mut out, 100).unwrap();
        assert_eq!(end, bytes.len() - 2);
        assert_eq!(out, vec![0, 0, 5, 0, 0, 0, 0]);
        // Capacity is enforced.
        let mut out = Vec::new();
        assert!(decode_block(&bytes, 0, &t, &mut out, 4).is_err());
        // No closing marker: truncated.
        let mut out = Vec::new();
        assert!(decode_block(&bytes[..bytes.len() - 2], 0, &t, &mut out, 100).is_err());
        // A marker inside an escape's raw bits is an error.
        let mut cut = pack("11000011");
        cut.extend([0xFF, 0xA1]);
        assert!(decode_block(&cut, 0, &t, &mut Vec::new(), 100).is_err());
    }

    #[test]
    fn stuffed_ff_bytes_are_data() {
        let t = small_table();
        // Data bytes E0, FF (stuffed), 0F: 1110 | 0000 11111111 0000 | 1111 (padding)
        // = symbol 106 with a run of 0x0FF0 zeros.
        let bytes = [0xE0, 0xFF, 0x00, 0x0F, 0xFF, 0xA1];
        let mut out = Vec::new();
        let end = decode_block(&bytes, 0, &t, &mut out, 70_000).unwrap();
        assert_eq!(end, 4);
        assert_eq!(out.len(), 0x0FF0);
    }
}
