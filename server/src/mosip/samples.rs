//! A CBEFF document from the datashare as the samples of an `abis.v1` request: finger images out
//! of their ISO/IEC 19794-4 records (position from the BIR subtype, else the record), face
//! images out of ISO/IEC 19794-5:2011 records, ISO/IEC 19794-2 minutiae as templates. BIRs marked
//! as exceptions, irises (no iris engine) and other types are left out; nothing usable at all is
//! failure 11, anything unreadable failure 16.

use abis_mosip::cbeff::{self, Bir, Modality as CbeffModality};
use abis_mosip::face_record;
use abis_mosip::finger_record::{self, Compression};
use abis_mosip::position::finger_position;
use abis_proto::v1::{sample, Modality, Sample};
use abis_proto::FailureReason;

/// `Format/Type` of a finger minutiae BDB (ISO/IEC 19794-2) in the SC 37 patron format.
const FORMAT_FINGER_MINUTIAE: u32 = 2;

/// Why a CBEFF gave no samples.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error(transparent)]
    Cbeff(#[from] cbeff::CbeffError),
    #[error("BIR #{index}: {detail}")]
    Bdb { index: usize, detail: String },
    #[error("the CBEFF holds no usable finger or face sample")]
    Empty,
}

impl SampleError {
    pub fn reason(&self) -> FailureReason {
        match self {
            SampleError::Empty => FailureReason::NoBiometricData,
            _ => FailureReason::InvalidBiometricFormat,
        }
    }
}

/// The samples of a CBEFF document.
pub fn from_cbeff(xml: &[u8], limits: &cbeff::Limits) -> Result<Vec<Sample>, SampleError> {
    let mut samples = Vec::new();
    for (index, bir) in cbeff::parse(xml, limits)?.iter().enumerate() {
        if bir.exception || bir.bdb.is_empty() {
            continue;
        }
        let bdb = |detail: String| SampleError::Bdb { index, detail };
        match bir.modality {
            CbeffModality::Finger => finger(bir, &mut samples).map_err(bdb)?,
            CbeffModality::Face => face(bir, &mut samples).map_err(bdb)?,
            CbeffModality::Iris | CbeffModality::Other(_) => {}
        }
    }
    if samples.is_empty() {
        return Err(SampleError::Empty);
    }
    Ok(samples)
}

fn finger(bir: &Bir, out: &mut Vec<Sample>) -> Result<(), String> {
    let named = finger_position(&bir.subtype).map(u32::from);
    if bir.format_type == Some(FORMAT_FINGER_MINUTIAE) {
        out.push(Sample {
            modality: Modality::Finger as i32,
            finger_position: named.unwrap_or(0),
            ppi: 0.0,
            data: Some(sample::Data::Template(bir.bdb.clone())),
        });
        return Ok(());
    }
    let record = finger_record::parse(&bir.bdb).map_err(|e| e.to_string())?;
    for image in record.images {
        let data = match image.compression {
            Compression::Uncompressed if image.bit_depth == 8 => {
                pgm(image.width, image.height, image.data)?
            }
            Compression::Uncompressed | Compression::UncompressedBitPacked => {
                return Err(format!("{}-bit uncompressed finger image", image.bit_depth));
            }
            _ => image.data.to_vec(),
        };
        let position =
            named.or_else(|| (image.position <= 10).then_some(u32::from(image.position)));
        out.push(Sample {
            modality: Modality::Finger as i32,
            finger_position: position.unwrap_or(0),
            ppi: f32::from(image.ppi),
            data: Some(sample::Data::Image(data)),
        });
    }
    Ok(())
}

fn face(bir: &Bir, out: &mut Vec<Sample>) -> Result<(), String> {
    for image in face_record::parse(&bir.bdb).map_err(|e| e.to_string())? {
        out.push(Sample {
            modality: Modality::Face as i32,
            finger_position: 0,
            ppi: 0.0,
            data: Some(sample::Data::Image(image.data.to_vec())),
        });
    }
    Ok(())
}

/// An 8-bit raw image as a binary PGM, which the engine decodes.
fn pgm(width: u16, height: u16, pixels: &[u8]) -> Result<Vec<u8>, String> {
    let n = usize::from(width) * usize::from(height);
    if n == 0 || pixels.len() < n {
        return Err(format!(
            "uncompressed image of {width}x{height} has {} bytes",
            pixels.len()
        ));
    }
    let mut out = format!("P5\n{width} {height}\n255\n").into_bytes();
    out.extend_from_slice(&pixels[..n]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use abis_mosip::finger_record::{write_2011, NewFingerImage};

    fn bir(modality: CbeffModality, subtype: &str, bdb: Vec<u8>, exception: bool) -> Bir {
        Bir {
            modality,
            subtype: subtype.into(),
            format_owner: Some("Mosip".into()),
            format_type: Some(7),
            quality: Some(80),
            exception,
            bdb,
        }
    }

    #[test]
    fn fingers_faces_and_exceptions() {
        let image = NewFingerImage {
            position: 0,
            compression: Compression::Png,
            width: 2,
            height: 2,
            ppi: 500,
            quality: 60,
            data: b"png-bytes",
            extended: b"",
        };
        let finger = write_2011(&[image]);
        let face = face_record::write_2011(face_record::ImageType::Jpeg, 1, 1, b"jpeg", 0);
        let doc = cbeff::to_xml(&[
            bir(
                CbeffModality::Finger,
                "Left IndexFinger",
                finger.clone(),
                false,
            ),
            bir(CbeffModality::Finger, "Right Thumb", finger, true),
            bir(CbeffModality::Iris, "Left", b"IIR".to_vec(), false),
            bir(CbeffModality::Face, "", face, false),
        ]);
        let samples = from_cbeff(doc.as_bytes(), &cbeff::Limits::default()).unwrap();
        assert_eq!(samples.len(), 2, "the exception and the iris are left out");
        assert_eq!(samples[0].finger_position, 7);
        assert_eq!(samples[0].ppi, 500.0);
        assert_eq!(
            samples[0].data,
            Some(sample::Data::Image(b"png-bytes".to_vec()))
        );
        assert_eq!(samples[1].modality, Modality::Face as i32);
    }

    #[test]
    fn unusable_documents_have_mosip_reasons() {
        let limits = cbeff::Limits::default();
        let not_xml = from_cbeff(b"%PDF-1.4", &limits).unwrap_err();
        assert_eq!(not_xml.reason(), FailureReason::InvalidBiometricFormat);
        let only_exception =
            cbeff::to_xml(&[bir(CbeffModality::Finger, "Left Thumb", vec![], true)]);
        let empty = from_cbeff(only_exception.as_bytes(), &limits).unwrap_err();
        assert_eq!(empty.reason(), FailureReason::NoBiometricData);
        let garbage = cbeff::to_xml(&[bir(
            CbeffModality::Finger,
            "Left Thumb",
            b"garbage".to_vec(),
            false,
        )]);
        let bad = from_cbeff(garbage.as_bytes(), &limits).unwrap_err();
        assert!(matches!(bad, SampleError::Bdb { index: 0, .. }));
        assert_eq!(bad.reason(), FailureReason::InvalidBiometricFormat);
    }
}
