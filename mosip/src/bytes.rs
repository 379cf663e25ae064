//! A bounds-checked big-endian reader for the ISO/IEC 19794 records: every read names the field
//! it was for and the offset where it failed.

use thiserror::Error;

/// A binary record that cannot be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("{record}: {field} at offset {offset} runs past the end ({len} bytes)")]
    Truncated {
        record: &'static str,
        field: &'static str,
        offset: usize,
        len: usize,
    },
    #[error("{record}: {field} at offset {offset} is invalid: {detail}")]
    Invalid {
        record: &'static str,
        field: &'static str,
        offset: usize,
        detail: String,
    },
}

/// Where a representation lies in its record.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    start: usize,
    length: usize,
    end: usize,
}

/// A cursor over one record's bytes.
pub struct Reader<'a> {
    record: &'static str,
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(record: &'static str, data: &'a [u8]) -> Self {
        Reader {
            record,
            data,
            pos: 0,
        }
    }

    pub fn offset(&self) -> usize {
        self.pos
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next `n` bytes.
    pub fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], RecordError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or(RecordError::Truncated {
                record: self.record,
                field,
                offset: self.pos,
                len: self.data.len(),
            })?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8, RecordError> {
        Ok(self.take(field, 1)?[0])
    }

    pub fn u16(&mut self, field: &'static str) -> Result<u16, RecordError> {
        let b = self.take(field, 2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A 6-byte length (ISO/IEC 19794-4:2005's record length).
    pub fn u48(&mut self, field: &'static str) -> Result<u64, RecordError> {
        let b = self.take(field, 6)?;
        Ok(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    pub fn u32(&mut self, field: &'static str) -> Result<u32, RecordError> {
        let b = self.take(field, 4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Opens one representation of a 2011 record (finger or face, the same layout up to here):
    /// its length, checked to stay inside the record, then the capture date and device and
    /// the quality blocks. Returns the span and the first quality score.
    pub fn begin_representation(&mut self) -> Result<(Span, Option<u8>), RecordError> {
        let start = self.pos;
        let length = self.u32("representation length")? as usize;
        let end = start
            .checked_add(length)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| {
                let detail = format!("{length} runs past the record");
                self.invalid("representation length", start, detail)
            })?;
        self.take("capture date and device", 14)?;
        let qualities = usize::from(self.u8("number of quality blocks")?);
        let blocks = self.take("quality blocks", 5 * qualities)?;
        Ok((Span { start, length, end }, blocks.first().copied()))
    }

    /// Closes a representation: its image (a 4-byte length and the bytes), then whatever
    /// follows up to the representation's end (extended data) is skipped.
    pub fn end_representation(&mut self, span: Span) -> Result<&'a [u8], RecordError> {
        let len = self.u32("image data length")? as usize;
        let data = self.take("image data", len)?;
        if self.pos > span.end {
            let detail = format!("{} is shorter than its content", span.length);
            return Err(self.invalid("representation length", span.start, detail));
        }
        self.pos = span.end;
        Ok(data)
    }

    /// An [`RecordError::Invalid`] for `field` at `offset`.
    pub fn invalid(&self, field: &'static str, offset: usize, detail: String) -> RecordError {
        RecordError::Invalid {
            record: self.record,
            field,
            offset,
            detail,
        }
    }
}
