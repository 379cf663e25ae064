//! Running one ONNX model on one float tensor and reading named float outputs.

use ndarray::ArrayD;
use ort::value::TensorRef;

use super::FaceError;
use crate::model::{ModelError, SessionPool};

/// One output: its shape and values (row-major).
pub struct Output {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Runs `pool`'s model with `input` as `input_name`, returning `outputs` in the order asked.
pub fn run(
    pool: &SessionPool,
    input_name: &str,
    input: &ArrayD<f32>,
    outputs: &[&str],
) -> Result<Vec<Output>, FaceError> {
    let name = pool.name().to_owned();
    let session_err = |e: ort::Error| ModelError::Session {
        name: name.clone(),
        detail: e.to_string(),
    };
    let bad = |detail: String| ModelError::BadOutput {
        name: name.clone(),
        detail,
    };
    let mut session = pool.get()?;
    let tensor = TensorRef::from_array_view(input.view()).map_err(session_err)?;
    let result = session
        .run(ort::inputs![input_name => tensor])
        .map_err(session_err)?;
    let mut out = Vec::with_capacity(outputs.len());
    for &o in outputs {
        let value = result
            .get(o)
            .ok_or_else(|| bad(format!("no output named {o}")))?;
        let (shape, data) = value
            .try_extract_tensor::<f32>()
            .map_err(|e| bad(e.to_string()))?;
        let shape: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
        if shape.iter().product::<usize>() != data.len() {
            return Err(bad(format!(
                "output {o}: shape {shape:?} for {} values",
                data.len()
            ))
            .into());
        }
        out.push(Output {
            shape,
            data: data.to_vec(),
        });
    }
    Ok(out)
}

/// Checks an output's shape against what the caller expects (`0` = any).
pub fn expect_shape(model: &str, out: &Output, expected: &[usize]) -> Result<(), FaceError> {
    let ok = out.shape.len() == expected.len()
        && out
            .shape
            .iter()
            .zip(expected)
            .all(|(&a, &e)| e == 0 || a == e);
    if ok {
        Ok(())
    } else {
        Err(ModelError::BadOutput {
            name: model.to_owned(),
            detail: format!("shape {:?}, expected {expected:?}", out.shape),
        }
        .into())
    }
}
