//! The k-means cells shared by the IVF index (its coarse quantiser) and the blocked self-join
//! (which rows each cell holds): spherical k-means over an even sample of the unit rows, so the
//! centroids are unit vectors too and inner product ranks them as cosine does.

use faiss::cluster::{Clustering, ClusteringParameters};
use faiss::index::flat::FlatIndexImpl;
use faiss::index::{ConcurrentIndex, Index};

use crate::rows::UnitRows;
use crate::AnnError;

/// Training points per cell (FAISS warns below 39; more only slows training).
const TRAIN_PER_CELL: usize = 64;
/// k-means iterations (FAISS's IVF default: the cells need not be optimal, only even).
const ITERATIONS: u32 = 10;

/// Unit centroids and, per cell, the rows nearest its centroid.
pub(crate) struct Cells {
    pub centroids: Vec<f32>,
    pub members: Vec<Vec<u32>>,
}

impl Cells {
    /// Trains `nlist` cells on a sample of `rows` and assigns every row to its nearest.
    pub fn train(rows: &UnitRows, nlist: u32) -> Result<Cells, AnnError> {
        let dim = rows.dim as u32;
        let mut params = ClusteringParameters::new();
        params.set_niter(ITERATIONS);
        params.set_spherical(true);
        params.set_seed(0x0AB1_5A11);
        let mut kmeans = Clustering::new_with_params(dim, nlist, &params)?;
        let sample = training_sample(rows, nlist as usize * TRAIN_PER_CELL);
        kmeans.train(&sample, &mut FlatIndexImpl::new_ip(dim)?)?;
        let centroids: Vec<f32> = kmeans.centroids()?.concat();
        let nearest = nearest(&centroids, dim, &rows.data, 1)?;
        let mut members = vec![Vec::new(); nlist as usize];
        for (row, cells) in nearest.iter().enumerate() {
            if let Some(&c) = cells.first() {
                members[c as usize].push(row as u32);
            }
        }
        Ok(Cells { centroids, members })
    }

    pub fn quantiser(&self, dim: usize) -> Result<FlatIndexImpl, AnnError> {
        let mut q = FlatIndexImpl::new_ip(dim as u32)?;
        q.add(&self.centroids)?;
        Ok(q)
    }

    /// For each of the row-major `queries`, the `nprobe` cells whose centroids are nearest.
    pub fn nearest_cells(
        &self,
        queries: &[f32],
        dim: usize,
        nprobe: usize,
    ) -> Result<Vec<Vec<u32>>, AnnError> {
        nearest(&self.centroids, dim as u32, queries, nprobe)
    }
}

/// The `k` centroids nearest each of `queries`, by inner product.
fn nearest(
    centroids: &[f32],
    dim: u32,
    queries: &[f32],
    k: usize,
) -> Result<Vec<Vec<u32>>, AnnError> {
    let mut index = FlatIndexImpl::new_ip(dim)?;
    index.add(centroids)?;
    let k = k.min(centroids.len() / dim as usize).max(1);
    let found = ConcurrentIndex::assign(&index, queries, k)?;
    Ok(found
        .labels
        .chunks_exact(k)
        .map(|l| {
            l.iter()
                .filter_map(|c| u32::try_from(c.get()?).ok())
                .collect()
        })
        .collect())
}

/// At most `want` rows, evenly spaced: deterministic, and spread over the gallery (rows are in
/// enrolment order, which may drift over time).
fn training_sample(rows: &UnitRows, want: usize) -> Vec<f32> {
    let n = rows.len();
    if want >= n {
        return rows.data.clone();
    }
    let step = n as f64 / want as f64;
    (0..want)
        .flat_map(|i| rows.row((i as f64 * step) as usize).iter().copied())
        .collect()
}
