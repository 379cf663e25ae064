//! Colour decoding for faces: RGB, with the EXIF orientation applied, from every format a face
//! photo arrives in, including WebP and JPEG 2000 (the portrait on an ICAO chip card).
//!
//! The same [`Limits`] as the gray (fingerprint) path apply, checked from the header before the
//! pixel buffer is allocated. Differences from [`super::decode`] and why:
//!
//! - colour is kept (face models are trained on RGB; a gray input is replicated to 3 channels);
//! - the EXIF orientation (JPEG, WebP, TIFF, PNG eXIf) is applied, because a phone photo stored
//!   sideways would otherwise be searched for an upright face that is not there;
//! - JPEG 2000 (`.jp2` boxes or a raw `.j2k` codestream) is decoded by OpenJPEG (the `jpeg2k`
//!   crate with OpenJPEG's C sources built in); sYCC is converted to RGB, sub-sampled components
//!   are up-sampled, precisions other than 8 bits are rescaled. The gray path decodes JPEG 2000
//!   finger images (MOSIP's 19794-4 records) through this same decoder, then takes the luma;
//! - WSQ (a fingerprint codec) is refused here as [`ImageError::Unsupported`].
//!
//! The format is sniffed from magic bytes only; the file name is never trusted.

use image::ImageDecoder;

use super::limits::{image_crate_error, limited_decoder};
use super::{GrayImage, ImageError, ImageFormat, Limits};

/// An 8-bit RGB raster, row-major, `width * height * 3` bytes (R, G, B).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

impl RgbImage {
    /// Builds an image, checking that the buffer matches the dimensions.
    pub fn new(width: u32, height: u32, pixels: Vec<u8>) -> Result<Self, ImageError> {
        let expected = width as usize * height as usize * 3;
        if pixels.len() != expected || width == 0 || height == 0 {
            return Err(ImageError::Corrupt {
                format: "raw",
                detail: format!("{} bytes for a {width}x{height} RGB image", pixels.len()),
            });
        }
        Ok(RgbImage {
            width,
            height,
            pixels,
        })
    }

    /// Replicates a gray image to three channels.
    pub fn from_gray(gray: &GrayImage) -> RgbImage {
        let mut pixels = Vec::with_capacity(gray.pixels.len() * 3);
        for &v in &gray.pixels {
            pixels.extend_from_slice(&[v, v, v]);
        }
        RgbImage {
            width: gray.width,
            height: gray.height,
            pixels,
        }
    }

    /// Rec. 601 luma, rounded.
    pub fn to_gray(&self) -> GrayImage {
        let pixels = self
            .pixels
            .chunks_exact(3)
            .map(|p| {
                let y = 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32;
                y.round().clamp(0.0, 255.0) as u8
            })
            .collect();
        GrayImage {
            width: self.width,
            height: self.height,
            pixels,
        }
    }

    /// The pixel at (x, y) as `[r, g, b]`; the caller keeps x, y in range.
    #[inline]
    pub fn get(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }
}

/// The container a colour image arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorFormat {
    Png,
    Jpeg,
    Bmp,
    Tiff,
    Pnm,
    Gif,
    Webp,
    /// JPEG 2000, JP2 file format or raw codestream.
    Jpeg2000,
}

impl ColorFormat {
    /// Identifies the format from its magic bytes.
    pub fn sniff(bytes: &[u8]) -> Option<ColorFormat> {
        if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            return Some(ColorFormat::Webp);
        }
        Some(match ImageFormat::sniff(bytes)? {
            ImageFormat::Png => ColorFormat::Png,
            ImageFormat::Jpeg => ColorFormat::Jpeg,
            ImageFormat::Bmp => ColorFormat::Bmp,
            ImageFormat::Tiff => ColorFormat::Tiff,
            ImageFormat::Pnm => ColorFormat::Pnm,
            ImageFormat::Gif => ColorFormat::Gif,
            ImageFormat::Jpeg2000 => ColorFormat::Jpeg2000,
            ImageFormat::Wsq => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ColorFormat::Png => "PNG",
            ColorFormat::Jpeg => "JPEG",
            ColorFormat::Bmp => "BMP",
            ColorFormat::Tiff => "TIFF",
            ColorFormat::Pnm => "PNM",
            ColorFormat::Gif => "GIF",
            ColorFormat::Webp => "WebP",
            ColorFormat::Jpeg2000 => "JPEG 2000",
        }
    }

    fn as_image_crate(self) -> Option<image::ImageFormat> {
        Some(match self {
            ColorFormat::Png => image::ImageFormat::Png,
            ColorFormat::Jpeg => image::ImageFormat::Jpeg,
            ColorFormat::Bmp => image::ImageFormat::Bmp,
            ColorFormat::Tiff => image::ImageFormat::Tiff,
            ColorFormat::Pnm => image::ImageFormat::Pnm,
            ColorFormat::Gif => image::ImageFormat::Gif,
            ColorFormat::Webp => image::ImageFormat::WebP,
            ColorFormat::Jpeg2000 => return None,
        })
    }
}

/// A decoded colour image and what the file said about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedRgb {
    pub image: RgbImage,
    pub format: ColorFormat,
    /// EXIF orientation (1..=8) found and applied; 1 when the file states none.
    pub exif_orientation: u8,
}

/// Decodes any supported format to 8-bit RGB, upright. See the module documentation.
pub fn decode_rgb(bytes: &[u8], limits: &Limits) -> Result<DecodedRgb, ImageError> {
    limits.check_bytes(bytes.len())?;
    let Some(format) = ColorFormat::sniff(bytes) else {
        if ImageFormat::sniff(bytes) == Some(ImageFormat::Wsq) {
            return Err(ImageError::Unsupported {
                format: "WSQ",
                detail: "a fingerprint codec, not a face photo".into(),
            });
        }
        return Err(ImageError::UnknownFormat);
    };
    if format == ColorFormat::Jpeg2000 {
        return Ok(DecodedRgb {
            image: decode_jpeg2000(bytes, limits)?,
            format,
            exif_orientation: 1,
        });
    }
    let image_format = format.as_image_crate().ok_or(ImageError::UnknownFormat)?;
    let mut decoder = limited_decoder(bytes, image_format, format.name(), limits)?;
    // A broken or absent EXIF block is not a reason to refuse the picture: upright it stays.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = image::DynamicImage::from_decoder(decoder)
        .map_err(|e| image_crate_error(format.name(), e))?;
    img.apply_orientation(orientation);
    let rgb = img.into_rgb8();
    let (width, height) = rgb.dimensions();
    Ok(DecodedRgb {
        image: RgbImage::new(width, height, rgb.into_raw())?,
        format,
        exif_orientation: orientation_number(orientation),
    })
}

fn orientation_number(o: image::metadata::Orientation) -> u8 {
    use image::metadata::Orientation as O;
    match o {
        O::NoTransforms => 1,
        O::FlipHorizontal => 2,
        O::Rotate180 => 3,
        O::FlipVertical => 4,
        O::Rotate90FlipH => 5,
        O::Rotate90 => 6,
        O::Rotate270FlipH => 7,
        O::Rotate270 => 8,
    }
}

const J2K: &str = "JPEG 2000";

/// OpenJPEG: header first (dimensions checked against the limits), then the pixels.
pub(super) fn decode_jpeg2000(bytes: &[u8], limits: &Limits) -> Result<RgbImage, ImageError> {
    let corrupt = |detail: String| ImageError::Corrupt {
        format: J2K,
        detail,
    };
    let params = jpeg2k::DecodeParameters::new().strict(true);
    let dump =
        jpeg2k::DumpImage::from_bytes_with(bytes, params).map_err(|e| corrupt(e.to_string()))?;
    let (w, h) = (dump.img.orig_width(), dump.img.orig_height());
    limits.check_dimensions(w as u64, h as u64)?;
    let ncomp = dump.img.num_components();
    if !(1..=4).contains(&ncomp) {
        return Err(ImageError::Unsupported {
            format: J2K,
            detail: format!("{ncomp} components"),
        });
    }
    dump.decode().map_err(|e| corrupt(e.to_string()))?;
    let img = &dump.img;
    let comps = img.components();
    if comps.is_empty() {
        return Err(corrupt("no components".into()));
    }
    // Colour from the first three components (gray when fewer); alpha is dropped.
    let colour: Vec<&jpeg2k::ImageComponent> = if comps.len() >= 3 {
        comps[..3].iter().collect()
    } else {
        vec![&comps[0]]
    };
    let (w, h) = (w as usize, h as usize);
    let mut planes: Vec<Vec<f32>> = Vec::with_capacity(colour.len());
    for c in &colour {
        let (cw, ch) = (c.width() as usize, c.height() as usize);
        let data = c.data();
        if cw == 0 || ch == 0 || data.len() < cw * ch || cw > w || ch > h {
            return Err(corrupt(format!(
                "component of {cw}x{ch} in a {w}x{h} image"
            )));
        }
        let prec = c.precision();
        if !(1..=16).contains(&prec) {
            return Err(ImageError::Unsupported {
                format: J2K,
                detail: format!("{prec}-bit samples"),
            });
        }
        let offset = if c.is_signed() {
            (1i64 << (prec - 1)) as f32
        } else {
            0.0
        };
        let max = ((1u32 << prec) - 1) as f32;
        let mut plane = vec![0f32; w * h];
        for y in 0..h {
            // Sub-sampled components (e.g. 4:2:0) are up-sampled by nearest neighbour.
            let sy = (y * ch / h).min(ch - 1);
            for x in 0..w {
                let sx = (x * cw / w).min(cw - 1);
                let v = data[sy * cw + sx] as f32 + offset;
                plane[y * w + x] = v.clamp(0.0, max) * (255.0 / max);
            }
        }
        planes.push(plane);
    }
    let sycc = matches!(img.color_space(), jpeg2k::ColorSpace::SYCC) && planes.len() == 3;
    let mut pixels = Vec::with_capacity(w * h * 3);
    for i in 0..w * h {
        let rgb = if planes.len() == 3 {
            let (a, b, c) = (planes[0][i], planes[1][i], planes[2][i]);
            if sycc {
                let (cb, cr) = (b - 128.0, c - 128.0);
                [
                    a + 1.402 * cr,
                    a - 0.344_136 * cb - 0.714_136 * cr,
                    a + 1.772 * cb,
                ]
            } else {
                [a, b, c]
            }
        } else {
            [planes[0][i]; 3]
        };
        for v in rgb {
            pixels.push(v.round().clamp(0.0, 255.0) as u8);
        }
    }
    RgbImage::new(w as u32, h as u32, pixels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn png_rgb(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut out = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn png_keeps_colour() {
        let d = decode_rgb(&png_rgb(40, 30), &Limits::default()).unwrap();
        assert_eq!((d.image.width, d.image.height), (40, 30));
        assert_eq!(d.image.get(5, 9), [5, 9, 7]);
        assert_eq!(d.format, ColorFormat::Png);
        assert_eq!(d.exif_orientation, 1);
    }

    #[test]
    fn webp_lossless_round_trip() {
        let img =
            image::RgbaImage::from_fn(33, 21, |x, y| image::Rgba([x as u8 * 3, y as u8, 200, 255]));
        let mut out = Vec::new();
        image::DynamicImage::ImageRgba8(img)
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::WebP)
            .unwrap();
        assert_eq!(ColorFormat::sniff(&out), Some(ColorFormat::Webp));
        let d = decode_rgb(&out, &Limits::default()).unwrap();
        assert_eq!(d.image.get(10, 4), [30, 4, 200]);
    }

    #[test]
    fn hostile_inputs_give_typed_errors() {
        let l = Limits::default();
        assert_eq!(decode_rgb(&[], &l), Err(ImageError::Empty));
        assert_eq!(decode_rgb(b"hello", &l), Err(ImageError::UnknownFormat));
        let jp2 = [
            0, 0, 0, 0x0C, b'j', b'P', b' ', b' ', 0x0D, 0x0A, 0x87, 0x0A, 1, 2,
        ];
        assert!(matches!(
            decode_rgb(&jp2, &l),
            Err(ImageError::Corrupt { format: J2K, .. })
        ));
        let j2k = [0xFF, 0x4F, 0xFF, 0x51, 0, 0x29, 0, 0];
        assert!(decode_rgb(&j2k, &l).is_err());
        let mut webp = b"RIFF\x10\0\0\0WEBPVP8 ".to_vec();
        webp.extend_from_slice(&[0; 8]);
        assert!(decode_rgb(&webp, &l).is_err());
    }

    #[test]
    fn too_small_is_refused_from_the_header() {
        let r = decode_rgb(&png_rgb(8, 8), &Limits::default());
        assert!(matches!(r, Err(ImageError::BadDimensions { .. })));
    }

    #[test]
    fn gray_round_trips_through_rgb() {
        let g = GrayImage::new(2, 1, vec![10, 200]).unwrap();
        assert_eq!(RgbImage::from_gray(&g).to_gray(), g);
    }
}
