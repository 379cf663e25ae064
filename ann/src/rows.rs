//! Checking and L2-normalising the embeddings handed to the index: inner product over unit
//! rows is the cosine, whatever scale the caller's vectors had.

use crate::AnnError;

/// Longest embedding accepted (the store's face dimension limit is far below it).
pub const MAX_DIM: usize = 4096;

/// Row-major unit vectors of one dimension.
pub(crate) struct UnitRows {
    pub data: Vec<f32>,
    pub dim: usize,
}

impl UnitRows {
    /// `rows` (a whole number of `dim`-long rows) normalised; `what` names them in errors
    /// ("row", "query").
    pub fn new(rows: &[f32], dim: usize, what: &'static str) -> Result<UnitRows, AnnError> {
        if dim == 0 || dim > MAX_DIM {
            return Err(AnnError::BadDimension {
                got: dim,
                max: MAX_DIM,
            });
        }
        if !rows.len().is_multiple_of(dim) {
            return Err(AnnError::Shape {
                len: rows.len(),
                dim,
            });
        }
        let mut data = rows.to_vec();
        for (index, row) in data.chunks_exact_mut(dim).enumerate() {
            normalise(row, what, index)?;
        }
        Ok(UnitRows { data, dim })
    }

    pub fn len(&self) -> usize {
        self.data.len() / self.dim
    }

    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.dim..(r + 1) * self.dim]
    }
}

fn normalise(row: &mut [f32], what: &'static str, index: usize) -> Result<(), AnnError> {
    if row.iter().any(|v| !v.is_finite()) {
        return Err(AnnError::NotFinite { what, index });
    }
    // In f64: a row of large finite values must not overflow to an infinite norm.
    let norm = row
        .iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return Err(AnnError::ZeroVector { what, index });
    }
    row.iter_mut()
        .for_each(|v| *v = (f64::from(*v) / norm) as f32);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_normalised_and_bad_ones_named() {
        let r = UnitRows::new(&[3.0, 4.0, 0.0, 2.0], 2, "row").unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r.row(0), &[0.6, 0.8]);
        assert_eq!(r.row(1), &[0.0, 1.0]);
        assert_eq!(
            UnitRows::new(&[1.0, 0.0, f32::NAN, 1.0], 2, "row").err(),
            Some(AnnError::NotFinite {
                what: "row",
                index: 1
            })
        );
        assert_eq!(
            UnitRows::new(&[0.0, 0.0], 2, "query").err(),
            Some(AnnError::ZeroVector {
                what: "query",
                index: 0
            })
        );
        assert!(matches!(
            UnitRows::new(&[1.0; 5], 2, "row"),
            Err(AnnError::Shape { len: 5, dim: 2 })
        ));
        assert!(matches!(
            UnitRows::new(&[1.0; 4], 0, "row"),
            Err(AnnError::BadDimension { got: 0, .. })
        ));
        let big = UnitRows::new(&[f32::MAX, f32::MAX], 2, "row").unwrap();
        assert!((big.row(0)[0] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
    }
}
