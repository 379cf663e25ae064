//! The index: built once from a gallery's embeddings, then searched by single queries, batches
//! or the self-join.

use faiss::index::autotune::ParameterSpace;
use faiss::index::flat::FlatIndexImpl;
use faiss::index::ivf_flat::IVFFlatIndexImpl;
use faiss::index::{ConcurrentIndex, Index, IndexImpl};
use faiss::{index_factory, Idx, MetricType};
use std::sync::Mutex;

use crate::cells::Cells;
use crate::rows::UnitRows;
use crate::AnnError;

/// Galleries smaller than this get an exact flat index: too few rows for an approximate
/// structure to pay (training, probing or walking cost more than reading every row).
pub const ANN_MIN_ROWS: usize = 20_000;

/// How the rows are organised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Layout {
    /// Inverted file: k-means cells (`None`: about 2·√rows; FAISS's guidance is 1–16·√rows,
    /// fewer cells train faster); a query reads the `breadth` cells nearest it.
    Ivf { nlist: Option<u32> },
    /// Hierarchical navigable small-world graph, `m` links per row; a query walks it keeping
    /// `breadth` candidates (FAISS's efSearch).
    Hnsw { m: u32 },
}

/// How the index is laid out and searched.
#[derive(Debug, Clone, PartialEq)]
pub struct AnnConfig {
    pub layout: Layout,
    /// The recall/speed dial: IVF cells read per query, or HNSW candidates kept.
    pub breadth: u32,
}

impl Default for AnnConfig {
    fn default() -> Self {
        AnnConfig {
            layout: Layout::Ivf { nlist: None },
            breadth: 64,
        }
    }
}

/// A neighbour of a query: its row in the indexed slice and its cosine similarity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbour {
    pub row: u32,
    pub cosine: f32,
}

enum Inner {
    Exact(FlatIndexImpl),
    Ivf(IVFFlatIndexImpl, Cells),
    /// The crate offers HNSW only as a generic index, searched through `&mut`; FAISS's own
    /// search is read-only and spreads a batch over its threads, so one lock costs little.
    Hnsw(Mutex<IndexImpl>, u32),
}

/// An inner-product index over L2-normalised face embeddings (module docs).
pub struct FaceAnn {
    inner: Inner,
    /// The normalised rows, kept for the self-join's queries (4·dim bytes per row).
    rows: UnitRows,
}

impl std::fmt::Debug for FaceAnn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaceAnn")
            .field("rows", &self.len())
            .field("dim", &self.dim())
            .field("layout", &self.describe())
            .finish()
    }
}

impl FaceAnn {
    /// Indexes `rows` (row-major, `dim` values each) with the default configuration.
    pub fn build(rows: &[f32], dim: usize) -> Result<FaceAnn, AnnError> {
        FaceAnn::build_with(rows, dim, &AnnConfig::default())
    }

    /// Indexes `rows` with `config`: normalise, train the cells (IVF only), add every row.
    pub fn build_with(rows: &[f32], dim: usize, config: &AnnConfig) -> Result<FaceAnn, AnnError> {
        let rows = UnitRows::new(rows, dim, "row")?;
        let n = rows.len();
        if n == 0 {
            return Err(AnnError::Empty);
        }
        if n > i32::MAX as usize {
            return Err(AnnError::TooManyRows {
                got: n,
                max: i32::MAX as usize,
            });
        }
        check_breadth(config.breadth)?;
        let inner = match (config.layout, n < ANN_MIN_ROWS) {
            (Layout::Ivf { nlist: None }, true) | (Layout::Hnsw { .. }, true) => {
                let mut index = FlatIndexImpl::new_ip(dim as u32)?;
                index.add(&rows.data)?;
                Inner::Exact(index)
            }
            (Layout::Ivf { nlist }, _) => {
                let cells = Cells::train(&rows, cells(n, nlist)?)?;
                Inner::Ivf(build_ivf(&rows, &cells, config.breadth)?, cells)
            }
            (Layout::Hnsw { m }, false) => Inner::Hnsw(Mutex::new(build_hnsw(&rows, m)?), 0),
        };
        let mut ann = FaceAnn { inner, rows };
        ann.set_breadth(config.breadth)?;
        Ok(ann)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dim(&self) -> usize {
        self.rows.dim
    }

    /// The structure built, in FAISS's index-factory words ("Flat": exact).
    pub fn describe(&self) -> String {
        match &self.inner {
            Inner::Exact(_) => "Flat".into(),
            Inner::Ivf(i, _) => format!("IVF{},Flat", i.nlist()),
            Inner::Hnsw(..) => "HNSW,Flat".into(),
        }
    }

    /// The search breadth in force (0: the exact flat index, which reads every row).
    pub fn breadth(&self) -> u32 {
        match &self.inner {
            Inner::Exact(_) => 0,
            Inner::Ivf(i, _) => i.nprobe(),
            Inner::Hnsw(_, ef) => *ef,
        }
    }

    /// IVF cells read, or HNSW candidates kept, per query from now on (ignored by the exact
    /// flat index).
    pub fn set_breadth(&mut self, breadth: u32) -> Result<(), AnnError> {
        check_breadth(breadth)?;
        match &mut self.inner {
            Inner::Exact(_) => {}
            Inner::Ivf(i, _) => i.set_nprobe(breadth.min(i.nlist())),
            Inner::Hnsw(index, ef) => {
                let index = index.get_mut().unwrap_or_else(|e| e.into_inner());
                ParameterSpace::new()?.set_index_parameter(index, "efSearch", breadth)?;
                *ef = breadth;
            }
        }
        Ok(())
    }

    /// The `k` rows nearest `query`, best first (fewer when the cells read hold fewer rows).
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Neighbour>, AnnError> {
        Ok(self.search_batch(query, k)?.pop().unwrap_or_default())
    }

    /// [`FaceAnn::search`] for each of the row-major `queries` (FAISS spreads a batch over its
    /// OpenMP threads).
    pub fn search_batch(&self, queries: &[f32], k: usize) -> Result<Vec<Vec<Neighbour>>, AnnError> {
        if !queries.len().is_multiple_of(self.dim()) || queries.is_empty() {
            return Err(AnnError::QueryDimension {
                got: queries.len(),
                want: self.dim(),
            });
        }
        let queries = UnitRows::new(queries, self.dim(), "query")?;
        self.search_unit(&queries.data, k)
    }

    /// Searches rows already normalised (the indexed rows themselves, for the self-join).
    pub(crate) fn search_unit(
        &self,
        unit: &[f32],
        k: usize,
    ) -> Result<Vec<Vec<Neighbour>>, AnnError> {
        if k == 0 {
            return Err(AnnError::Parameter {
                name: "k",
                why: "must be at least 1".into(),
            });
        }
        let k = k.min(self.len());
        let found = match &self.inner {
            Inner::Exact(i) => ConcurrentIndex::search(i, unit, k)?,
            Inner::Ivf(i, _) => ConcurrentIndex::search(i, unit, k)?,
            Inner::Hnsw(i, _) => {
                let mut index = i.lock().unwrap_or_else(|e| e.into_inner());
                Index::search(&mut *index, unit, k)?
            }
        };
        Ok(neighbours(&found.labels, &found.distances, k, |row| row))
    }

    /// The cells, for the blocked self-join (`None`: the exact flat index).
    pub(crate) fn cells(&self) -> Option<&Cells> {
        match &self.inner {
            Inner::Exact(_) | Inner::Hnsw(..) => None,
            Inner::Ivf(_, cells) => Some(cells),
        }
    }

    pub(crate) fn unit_rows(&self) -> &UnitRows {
        &self.rows
    }
}

/// FAISS's answer (`k` labels and inner products per query) as neighbour lists, each label
/// mapped to a gallery row by `row_of`; FAISS's "none" labels dropped.
pub(crate) fn neighbours(
    labels: &[Idx],
    cosines: &[f32],
    k: usize,
    row_of: impl Fn(u32) -> u32,
) -> Vec<Vec<Neighbour>> {
    labels
        .chunks_exact(k)
        .zip(cosines.chunks_exact(k))
        .map(|(labels, cosines)| {
            labels
                .iter()
                .zip(cosines)
                .filter_map(|(l, &cosine)| {
                    let row = row_of(u32::try_from(l.get()?).ok()?);
                    Some(Neighbour { row, cosine })
                })
                .collect()
        })
        .collect()
}
fn check_breadth(breadth: u32) -> Result<(), AnnError> {
    if breadth == 0 {
        return Err(AnnError::Parameter {
            name: "breadth",
            why: "must be at least 1".into(),
        });
    }
    Ok(())
}

/// The number of k-means cells for `n` rows.
fn cells(n: usize, nlist: Option<u32>) -> Result<u32, AnnError> {
    match nlist {
        Some(0) => Err(AnnError::Parameter {
            name: "nlist",
            why: "must be at least 1".into(),
        }),
        Some(c) if c as usize * 39 > n => Err(AnnError::Parameter {
            name: "nlist",
            why: format!(
                "{c} cells need at least {} rows to train, got {n}",
                c as usize * 39
            ),
        }),
        Some(c) => Ok(c),
        None => Ok((2.0 * (n as f64).sqrt()).round().max(1.0) as u32),
    }
}

/// IVF-Flat over `cells` (its quantiser holds their centroids, so FAISS trains nothing).
fn build_ivf(rows: &UnitRows, cells: &Cells, nprobe: u32) -> Result<IVFFlatIndexImpl, AnnError> {
    let nlist = cells.members.len() as u32;
    let quantiser = cells.quantiser(rows.dim)?;
    let mut index = IVFFlatIndexImpl::new_ip(quantiser, rows.dim as u32, nlist)?;
    // The quantiser holds `nlist` centroids already: training only marks the index trained.
    index.train(&cells.centroids)?;
    index.add(&rows.data)?;
    index.set_nprobe(nprobe.min(nlist));
    Ok(index)
}

/// HNSW over the rows, inner product; FAISS builds the graph over its threads.
fn build_hnsw(rows: &UnitRows, m: u32) -> Result<IndexImpl, AnnError> {
    if !(4..=256).contains(&m) {
        return Err(AnnError::Parameter {
            name: "m",
            why: format!("HNSW links per row must be 4..=256, got {m}"),
        });
    }
    let description = format!("HNSW{m},Flat");
    let mut index = index_factory(rows.dim as u32, description, MetricType::InnerProduct)?;
    index.add(&rows.data)?;
    Ok(index)
}
