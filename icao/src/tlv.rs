//! BER-TLV as ICAO 9303 data groups use it: tags of one to three bytes, definite lengths of up
//! to four length bytes, and nothing longer than the bytes at hand. Every element knows its
//! offset in the outermost input, so an error can say where the bytes went wrong.

use thiserror::Error;

/// Nesting deeper than this is refused: DG2 needs 5 levels and a SOD about 10.
pub const MAX_DEPTH: usize = 32;

/// What is wrong with a BER-TLV encoding, and where (offset from the start of the input).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TlvError {
    #[error("truncated at offset {offset}: {needed} bytes needed, {available} left")]
    Truncated {
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("indefinite length at offset {offset} (data groups use definite lengths)")]
    IndefiniteLength { offset: usize },
    #[error("tag at offset {offset} is longer than 3 bytes")]
    TagTooLong { offset: usize },
    #[error("length at offset {offset} has {bytes} length bytes (at most 4)")]
    LengthTooLong { offset: usize, bytes: usize },
    #[error("nested deeper than {MAX_DEPTH} levels at offset {offset}")]
    TooDeep { offset: usize },
    #[error("expected tag {expected:#X} at offset {offset}, found {found:#X}")]
    UnexpectedTag {
        offset: usize,
        expected: u32,
        found: u32,
    },
    #[error("tag {tag:#X} missing in the element at offset {offset}")]
    Missing { offset: usize, tag: u32 },
    #[error("{left} bytes after the element that ends at offset {offset}")]
    TrailingBytes { offset: usize, left: usize },
}

/// One element: its tag (the tag bytes read big-endian, `0x7F61`), where it starts and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: u32,
    /// Offset of the tag's first byte in the outermost input.
    pub offset: usize,
    /// Offset of the value's first byte in the outermost input.
    pub value_offset: usize,
    pub value: &'a [u8],
    /// The whole element, tag and length included.
    pub raw: &'a [u8],
    depth: usize,
}

impl<'a> Tlv<'a> {
    /// Whether the tag says the value is itself a sequence of elements.
    pub fn is_constructed(&self) -> bool {
        let first_byte = self.tag >> (8 * (tag_len(self.tag) - 1));
        first_byte & 0x20 != 0
    }

    /// A reader over the value's elements, one level deeper.
    pub fn children(&self) -> Result<Reader<'a>, TlvError> {
        if self.depth + 1 > MAX_DEPTH {
            return Err(TlvError::TooDeep {
                offset: self.offset,
            });
        }
        Ok(Reader {
            data: self.value,
            pos: 0,
            base: self.value_offset,
            depth: self.depth + 1,
        })
    }

    /// The first child with `tag`, or [`TlvError::Missing`].
    pub fn child(&self, tag: u32) -> Result<Tlv<'a>, TlvError> {
        let mut children = self.children()?;
        while let Some(element) = children.next_element()? {
            if element.tag == tag {
                return Ok(element);
            }
        }
        Err(TlvError::Missing {
            offset: self.offset,
            tag,
        })
    }

    /// The value's only element, which must carry `tag` (offsets stay those of the input).
    pub fn only_child(&self, tag: u32) -> Result<Tlv<'a>, TlvError> {
        let mut children = self.children()?;
        let child = children.expect(tag)?;
        children.finish()?;
        Ok(child)
    }

    /// Fails unless the tag is `expected`.
    pub fn expect(self, expected: u32) -> Result<Tlv<'a>, TlvError> {
        if self.tag == expected {
            Ok(self)
        } else {
            Err(TlvError::UnexpectedTag {
                offset: self.offset,
                expected,
                found: self.tag,
            })
        }
    }
}

fn tag_len(tag: u32) -> usize {
    match tag {
        0..=0xFF => 1,
        0x100..=0xFFFF => 2,
        _ => 3,
    }
}

/// Reads elements one after the other from a byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    base: usize,
    depth: usize,
}

impl<'a> Reader<'a> {
    /// A reader over the outermost input.
    pub fn new(data: &'a [u8]) -> Self {
        Reader {
            data,
            pos: 0,
            base: 0,
            depth: 0,
        }
    }

    /// The next element, `None` at the end of the input.
    pub fn next_element(&mut self) -> Result<Option<Tlv<'a>>, TlvError> {
        if self.pos >= self.data.len() {
            return Ok(None);
        }
        let start = self.pos;
        let tag = self.read_tag()?;
        let len = self.read_length()?;
        let value_start = self.pos;
        let value = self.take(len)?;
        Ok(Some(Tlv {
            tag,
            offset: self.base + start,
            value_offset: self.base + value_start,
            value,
            raw: &self.data[start..self.pos],
            depth: self.depth,
        }))
    }

    /// The next element, which must exist and carry `tag`.
    pub fn expect(&mut self, tag: u32) -> Result<Tlv<'a>, TlvError> {
        let offset = self.base + self.pos;
        match self.next_element()? {
            Some(element) => element.expect(tag),
            None => Err(TlvError::Missing { offset, tag }),
        }
    }

    /// The next element if it carries `tag` (consumed), else `None` (nothing consumed).
    pub fn optional(&mut self, tag: u32) -> Result<Option<Tlv<'a>>, TlvError> {
        let mut ahead = self.clone();
        match ahead.next_element()? {
            Some(element) if element.tag == tag => {
                *self = ahead;
                Ok(Some(element))
            }
            _ => Ok(None),
        }
    }

    /// Fails when bytes are left after the last element read.
    pub fn finish(&self) -> Result<(), TlvError> {
        let left = self.data.len() - self.pos;
        if left == 0 {
            Ok(())
        } else {
            Err(TlvError::TrailingBytes {
                offset: self.base + self.pos,
                left,
            })
        }
    }

    /// The only element of the input: no bytes may follow it.
    pub fn single(data: &'a [u8], tag: u32) -> Result<Tlv<'a>, TlvError> {
        let mut reader = Reader::new(data);
        let element = reader.expect(tag)?;
        reader.finish()?;
        Ok(element)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], TlvError> {
        let available = self.data.len() - self.pos;
        if n > available {
            return Err(TlvError::Truncated {
                offset: self.base + self.pos,
                needed: n,
                available,
            });
        }
        let bytes = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8, TlvError> {
        Ok(self.take(1)?[0])
    }

    /// Low five bits all set: the tag goes on while bit 8 of the following bytes is set.
    fn read_tag(&mut self) -> Result<u32, TlvError> {
        let offset = self.base + self.pos;
        let first = self.byte()?;
        let mut tag = u32::from(first);
        if first & 0x1F != 0x1F {
            return Ok(tag);
        }
        for _ in 0..2 {
            let next = self.byte()?;
            tag = (tag << 8) | u32::from(next);
            if next & 0x80 == 0 {
                return Ok(tag);
            }
        }
        Err(TlvError::TagTooLong { offset })
    }

    fn read_length(&mut self) -> Result<usize, TlvError> {
        let offset = self.base + self.pos;
        let first = self.byte()?;
        if first < 0x80 {
            return Ok(usize::from(first));
        }
        let bytes = usize::from(first & 0x7F);
        if bytes == 0 {
            return Err(TlvError::IndefiniteLength { offset });
        }
        if bytes > 4 {
            return Err(TlvError::LengthTooLong { offset, bytes });
        }
        let len = self
            .take(bytes)?
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_multi_byte_tags_and_long_lengths() {
        let mut data = vec![0x7F, 0x61, 0x82, 0x01, 0x00];
        data.extend(std::iter::repeat_n(0xAB, 256));
        let element = Reader::single(&data, 0x7F61).unwrap();
        assert_eq!(element.value.len(), 256);
        assert_eq!(element.value_offset, 5);
        assert!(element.is_constructed());
    }

    #[test]
    fn refuses_indefinite_and_truncated() {
        assert_eq!(
            Reader::new(&[0x30, 0x80, 0, 0]).next_element(),
            Err(TlvError::IndefiniteLength { offset: 1 })
        );
        assert!(matches!(
            Reader::new(&[0x04, 0x05, 1, 2]).next_element(),
            Err(TlvError::Truncated { offset: 2, .. })
        ));
        assert_eq!(
            Reader::new(&[0x5F, 0xAE, 0xAE, 0x01, 0x00]).next_element(),
            Err(TlvError::TagTooLong { offset: 0 })
        );
    }

    #[test]
    fn refuses_nesting_past_the_limit() {
        let mut data = vec![0x04, 0x00];
        for _ in 0..=MAX_DEPTH {
            let mut outer = vec![0x30, data.len() as u8];
            outer.extend(&data);
            data = outer;
        }
        let mut element = Reader::single(&data, 0x30).unwrap();
        let error = loop {
            match element.children().and_then(|mut c| c.expect(0x30)) {
                Ok(child) => element = child,
                Err(e) => break e,
            }
        };
        assert!(matches!(error, TlvError::TooDeep { .. }), "{error}");
    }
}
