//! The `abis.v1.Abis` gRPC service.

use std::sync::Arc;

use abis_engine::finger::{CaptureInfo, FingerError, FingerExtractor, PpiSource};
use abis_engine::template::{
    encode_ansi, encode_iso, encode_native, encode_xyt, FingerPosition, TemplateError,
};
use abis_proto::v1::{
    abis_server::Abis, sample, ExtractRequest, ExtractResponse, ExtractedSample, FingerQuality,
    Modality, TemplateFormat,
};
use tonic::{Request, Response, Status};

/// Most samples one request may carry: ten fingers, a face, and a few spare impressions.
const MAX_SAMPLES: usize = 32;

pub struct AbisService {
    extractor: Arc<FingerExtractor>,
}

impl AbisService {
    pub fn new(extractor: Arc<FingerExtractor>) -> Self {
        AbisService { extractor }
    }
}

#[tonic::async_trait]
impl Abis for AbisService {
    async fn extract(
        &self,
        request: Request<ExtractRequest>,
    ) -> Result<Response<ExtractResponse>, Status> {
        let req = request.into_inner();
        if req.samples.is_empty() {
            return Err(Status::invalid_argument(
                "samples: at least one sample is required",
            ));
        }
        if req.samples.len() > MAX_SAMPLES {
            return Err(Status::invalid_argument(format!(
                "samples: at most {MAX_SAMPLES} per request"
            )));
        }
        let format = TemplateFormat::try_from(req.format).map_err(|_| {
            Status::invalid_argument(format!("format: unknown value {}", req.format))
        })?;
        let extractor = Arc::clone(&self.extractor);
        // Extraction is CPU-bound work for a model: keep it off the async executor's threads.
        let results = tokio::task::spawn_blocking(move || {
            req.samples
                .into_iter()
                .enumerate()
                .map(|(i, s)| extract_one(&extractor, i, s, format))
                .collect::<Result<Vec<_>, Status>>()
        })
        .await
        .map_err(|_| Status::internal("extraction task failed"))??;
        Ok(Response::new(ExtractResponse { results }))
    }
}

fn extract_one(
    extractor: &FingerExtractor,
    index: usize,
    sample: abis_proto::v1::Sample,
    format: TemplateFormat,
) -> Result<ExtractedSample, Status> {
    let field = |name: &str| format!("samples[{index}].{name}");
    match Modality::try_from(sample.modality) {
        Ok(Modality::Finger) => {}
        Ok(Modality::Face) => {
            return Err(Status::unimplemented(format!(
                "{}: face extraction is not available yet",
                field("modality")
            )))
        }
        _ => {
            return Err(Status::invalid_argument(format!(
                "{}: must be FINGER or FACE",
                field("modality")
            )))
        }
    }
    let position = u8::try_from(sample.finger_position)
        .ok()
        .and_then(|p| FingerPosition::new(p).ok())
        .ok_or_else(|| {
            Status::invalid_argument(format!("{}: must be 0..=10", field("finger_position")))
        })?;
    if !sample.ppi.is_finite() || sample.ppi < 0.0 {
        return Err(Status::invalid_argument(format!(
            "{}: must be 0 or a resolution",
            field("ppi")
        )));
    }
    let image = match sample.data {
        Some(sample::Data::Image(bytes)) => bytes,
        Some(sample::Data::Template(_)) => {
            return Err(Status::invalid_argument(format!(
                "{}: Extract takes images",
                field("template")
            )))
        }
        None => {
            return Err(Status::invalid_argument(format!(
                "{}: image is required",
                field("image")
            )))
        }
    };
    let info = CaptureInfo {
        ppi: (sample.ppi > 0.0).then_some(sample.ppi),
        position,
        ..Default::default()
    };
    let extraction = extractor
        .extract(&image, info)
        .map_err(|e| finger_status(&field("image"), e))?;
    let t = &extraction.template;
    let encoded = match format {
        TemplateFormat::Unspecified | TemplateFormat::Native => encode_native(t),
        TemplateFormat::Iso1979422005 => encode_iso(t),
        TemplateFormat::Ansi3782004 => encode_ansi(t),
        TemplateFormat::Xyt => encode_xyt(t).map(String::into_bytes),
    }
    .map_err(|e| template_status(&field("template"), e))?;
    let q = extraction.quality;
    Ok(ExtractedSample {
        modality: Modality::Finger as i32,
        finger_position: position.code() as u32,
        format: if format == TemplateFormat::Unspecified {
            TemplateFormat::Native as i32
        } else {
            format as i32
        },
        template: encoded,
        minutiae: t.minutiae.len() as u32,
        ppi: extraction.ppi,
        ppi_source: match extraction.ppi_source {
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
    })
}

/// Bad images are the caller's fault (INVALID_ARGUMENT naming the field); a model failure is ours.
fn finger_status(field: &str, e: FingerError) -> Status {
    match e {
        FingerError::Image(_) | FingerError::TooLarge(_) => {
            Status::invalid_argument(format!("{field}: {e}"))
        }
        FingerError::Template(t) => template_status(field, t),
        FingerError::Model(m) => {
            tracing::error!(error = %m, "model failure during extraction");
            Status::internal("fingerprint model failure")
        }
    }
}

fn template_status(field: &str, e: TemplateError) -> Status {
    Status::invalid_argument(format!("{field}: {e}"))
}
