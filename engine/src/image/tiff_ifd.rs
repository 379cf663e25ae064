//! A minimal reader of the first TIFF image file directory: just the tags the engine needs
//! (resolution, photometric interpretation, colour map). Every read is bounds-checked.

/// Where an IFD entry sits and what it holds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub kind: u16,
    pub count: u32,
    /// The value field: the value itself when it fits in 4 bytes, else an offset.
    pub value_at: usize,
}

pub(super) struct Ifd<'a> {
    bytes: &'a [u8],
    little: bool,
    entries: Vec<(u16, Entry)>,
}

/// Entries beyond this are ignored: real files have a few dozen.
const MAX_ENTRIES: usize = 512;

impl<'a> Ifd<'a> {
    pub fn first(bytes: &'a [u8]) -> Option<Ifd<'a>> {
        let little = match bytes.get(..4)? {
            b"II*\0" => true,
            b"MM\0*" => false,
            _ => return None,
        };
        let mut ifd = Ifd {
            bytes,
            little,
            entries: Vec::new(),
        };
        let start = ifd.u32_at(4)? as usize;
        let count = ifd.u16_at(start)? as usize;
        for i in 0..count.min(MAX_ENTRIES) {
            let at = start.checked_add(2)?.checked_add(i * 12)?;
            let tag = ifd.u16_at(at)?;
            let entry = Entry {
                kind: ifd.u16_at(at + 2)?,
                count: ifd.u32_at(at + 4)?,
                value_at: at + 8,
            };
            ifd.entries.push((tag, entry));
        }
        Some(ifd)
    }

    pub fn little_endian(&self) -> bool {
        self.little
    }

    pub fn entry(&self, tag: u16) -> Option<Entry> {
        self.entries
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, e)| *e)
    }

    pub fn u16_at(&self, at: usize) -> Option<u16> {
        let s: [u8; 2] = self.bytes.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if self.little {
            u16::from_le_bytes(s)
        } else {
            u16::from_be_bytes(s)
        })
    }

    pub fn u32_at(&self, at: usize) -> Option<u32> {
        let s: [u8; 4] = self.bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if self.little {
            u32::from_le_bytes(s)
        } else {
            u32::from_be_bytes(s)
        })
    }

    /// A SHORT (3) or LONG (4) tag holding one value.
    pub fn scalar(&self, tag: u16) -> Option<u32> {
        let e = self.entry(tag)?;
        match e.kind {
            3 => self.u16_at(e.value_at).map(u32::from),
            4 => self.u32_at(e.value_at),
            _ => None,
        }
    }

    /// A RATIONAL (5) tag's first value.
    pub fn rational(&self, tag: u16) -> Option<f32> {
        let e = self.entry(tag)?;
        if e.kind != 5 {
            return None;
        }
        let off = self.u32_at(e.value_at)? as usize;
        let (num, den) = (self.u32_at(off)?, self.u32_at(off.checked_add(4)?)?);
        (den > 0).then(|| num as f32 / den as f32)
    }

    /// A SHORT array stored out of line (such as the colour map), at most `max` values.
    pub fn shorts(&self, tag: u16, max: usize) -> Option<Vec<u16>> {
        let e = self.entry(tag)?;
        let n = e.count as usize;
        if e.kind != 3 || n > max {
            return None;
        }
        let start = if n <= 2 {
            e.value_at
        } else {
            self.u32_at(e.value_at)? as usize
        };
        (0..n)
            .map(|i| self.u16_at(start.checked_add(i * 2)?))
            .collect()
    }
}
