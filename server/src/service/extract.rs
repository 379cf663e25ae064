//! `Extract`: samples → templates and quality, nothing stored.

use abis_engine::finger::PpiSource;
use abis_engine::template::{encode_ansi, encode_iso, encode_native, encode_xyt};
use abis_proto::v1::{
    ExtractRequest, ExtractResponse, ExtractedSample, FingerQuality, Modality, TemplateFormat,
};
use tonic::Status;

use super::samples::{check_count, face_choice, Engines, Item};
use super::status;

pub fn extract(engines: &Engines, req: ExtractRequest) -> Result<ExtractResponse, Status> {
    check_count("samples", req.samples.len())?;
    let format = TemplateFormat::try_from(req.format)
        .map_err(|_| status::invalid("format", format!("unknown value {}", req.format)))?;
    let choice = face_choice("face_choice", req.face_choice)?;
    let mut results = Vec::with_capacity(req.samples.len());
    for (i, sample) in req.samples.into_iter().enumerate() {
        let field = format!("samples[{i}]");
        if matches!(sample.data, Some(abis_proto::v1::sample::Data::Template(_))) {
            return Err(status::invalid(
                &format!("{field}.template"),
                "Extract takes images",
            ));
        }
        results.push(match engines.convert_with(&field, sample, choice)? {
            Item::Finger {
                position,
                template,
                extraction,
            } => {
                let encoded = match format {
                    TemplateFormat::Unspecified | TemplateFormat::Native => {
                        encode_native(&template)
                    }
                    TemplateFormat::Iso1979422005 => encode_iso(&template),
                    TemplateFormat::Ansi3782004 => encode_ansi(&template),
                    TemplateFormat::Xyt => encode_xyt(&template).map(String::into_bytes),
                }
                .map_err(|e| status::from_template(&format!("{field}.template"), e))?;
                let x = extraction.ok_or_else(|| status::internal("extraction missing"))?;
                let q = x.quality;
                ExtractedSample {
                    modality: Modality::Finger as i32,
                    finger_position: position.code() as u32,
                    format: if format == TemplateFormat::Unspecified {
                        TemplateFormat::Native as i32
                    } else {
                        format as i32
                    },
                    template: encoded,
                    minutiae: template.minutiae.len() as u32,
                    ppi: x.ppi,
                    ppi_source: match x.ppi_source {
                        PpiSource::Request => "request",
                        PpiSource::File => "file",
                        PpiSource::Default => "default",
                    }
                    .into(),
                    finger_quality: Some(FingerQuality {
                        score: q.score as u32,
                        foreground_mm2: q.foreground_mm2,
                        coherence: q.coherence,
                        contrast: q.contrast,
                        confident_minutiae: q.confident_minutiae,
                    }),
                }
            }
            Item::Face(t) => ExtractedSample {
                modality: Modality::Face as i32,
                format: TemplateFormat::Native as i32,
                template: t
                    .encode()
                    .map_err(|e| status::from_face(&format!("{field}.template"), e))?,
                ..Default::default()
            },
        });
    }
    Ok(ExtractResponse { results })
}
