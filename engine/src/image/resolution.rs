//! Reads the resolution a file states about itself, from the header fields of each format.
//! Every read is bounds-checked: these bytes are untrusted.

use super::tiff_ifd::Ifd;
use super::ImageFormat;

const CM_PER_INCH: f32 = 2.54;

/// Pixels per inch stated by the file, or `None` where the format or file says nothing usable.
pub(super) fn stated_ppi(format: ImageFormat, bytes: &[u8]) -> Option<f32> {
    match format {
        ImageFormat::Png => png_phys(bytes),
        ImageFormat::Jpeg => jfif_density(bytes),
        ImageFormat::Bmp => bmp_pels_per_meter(bytes),
        ImageFormat::Tiff => tiff_resolution(bytes),
        ImageFormat::Pnm | ImageFormat::Gif | ImageFormat::Wsq | ImageFormat::Jpeg2000 => None,
    }
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn be_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

/// PNG `pHYs`: pixels per unit on x and y, unit 1 = metre (0 = aspect ratio only).
fn png_phys(b: &[u8]) -> Option<f32> {
    let mut at = 8usize;
    while at + 8 <= b.len() {
        let len = be_u32(b, at)? as usize;
        let kind = b.get(at + 4..at + 8)?;
        if kind == b"pHYs" {
            let x = be_u32(b, at + 8)?;
            let unit = *b.get(at + 16)?;
            return (unit == 1 && x > 0).then(|| x as f32 * CM_PER_INCH / 100.0);
        }
        if kind == b"IDAT" || kind == b"IEND" {
            return None;
        }
        at = at.checked_add(12)?.checked_add(len)?;
    }
    None
}

/// JPEG JFIF APP0: units 1 = dots per inch, 2 = dots per cm.
fn jfif_density(b: &[u8]) -> Option<f32> {
    let mut at = 2usize;
    while at + 4 <= b.len() {
        if b[at] != 0xFF {
            return None;
        }
        let marker = b[at + 1];
        let len = be_u16(b, at + 2)? as usize;
        if marker == 0xE0 && b.get(at + 4..at + 9)? == b"JFIF\0" {
            let unit = *b.get(at + 11)?;
            let x = be_u16(b, at + 12)? as f32;
            return match unit {
                1 => Some(x),
                2 => Some(x * CM_PER_INCH),
                _ => None,
            };
        }
        if marker == 0xDA {
            return None; // start of scan: no more headers
        }
        at = at.checked_add(2)?.checked_add(len)?;
    }
    None
}

/// BMP BITMAPINFOHEADER: horizontal resolution in pixels per metre at offset 38.
fn bmp_pels_per_meter(b: &[u8]) -> Option<f32> {
    let header_size = u32::from_le_bytes(b.get(14..18)?.try_into().ok()?);
    if header_size < 40 {
        return None;
    }
    let ppm = i32::from_le_bytes(b.get(38..42)?.try_into().ok()?);
    (ppm > 0).then(|| ppm as f32 * CM_PER_INCH / 100.0)
}

/// TIFF first IFD: XResolution (282) with ResolutionUnit (296: 2 inch, 3 cm; default inch).
fn tiff_resolution(b: &[u8]) -> Option<f32> {
    let ifd = Ifd::first(b)?;
    let x_res = ifd.rational(282)?;
    match ifd.scalar(296).unwrap_or(2) {
        2 => Some(x_res),
        3 => Some(x_res * CM_PER_INCH),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_headers_give_none() {
        for len in 0..64 {
            let b = vec![0xFFu8; len];
            assert_eq!(stated_ppi(ImageFormat::Jpeg, &b), None);
            assert_eq!(stated_ppi(ImageFormat::Png, &b), None);
            assert_eq!(stated_ppi(ImageFormat::Tiff, &b), None);
            assert_eq!(stated_ppi(ImageFormat::Bmp, &b), None);
        }
    }

    #[test]
    fn tiff_resolution_in_inches() {
        // Little-endian TIFF, IFD at 8 with XResolution = 500/1 (rational at offset 26).
        let mut b = b"II*\0\x08\0\0\0".to_vec();
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&282u16.to_le_bytes());
        b.extend_from_slice(&5u16.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&26u32.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
        b.extend_from_slice(&500u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        assert_eq!(stated_ppi(ImageFormat::Tiff, &b), Some(500.0));
    }
}
