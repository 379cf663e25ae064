//! The FAISS index against the exact int8 scan on a deterministic synthetic gallery (the face
//! model fitted to real score distributions): recall of its 1:N lists and its self-join, planted
//! near-duplicates found, and bad input refused with the error naming it.

use abis_ann::{AnnConfig, AnnError, FaceAnn, Layout, Neighbour, Pair};
use abis_engine::index::face_scan::{top_k_batch, Hit, Int8Rows};
use abis_engine::store::quantise;
use abis_engine::synth::{FaceModel, FACE_DIM};

/// People enrolled, then this many of them enrolled again from another capture.
const PEOPLE: usize = 30_000;
const DUPLICATES: usize = 300;
const K: usize = 10;

/// Row `r < PEOPLE` is person `r`'s capture 0; row `PEOPLE + j` is person `j·100`'s capture 2.
fn gallery() -> Vec<f32> {
    let model = FaceModel::new();
    let mut rows = Vec::with_capacity((PEOPLE + DUPLICATES) * FACE_DIM);
    for r in 0..PEOPLE + DUPLICATES {
        let (person, capture) = (person_of(r), if r < PEOPLE { 0 } else { 2 });
        let id = model.identity(person as u64 + 1);
        model.capture(&id, (person as u64) << 8 | capture, &mut rows);
    }
    rows
}

/// How many of the planted pairs (person `j·100`, row `PEOPLE + j`) are among `pairs`.
fn planted_found(pairs: &[Pair]) -> usize {
    (0..DUPLICATES)
        .filter(|&j| {
            let (a, b) = ((j * 100) as u32, (PEOPLE + j) as u32);
            pairs.iter().any(|p| (p.a, p.b) == (a, b))
        })
        .count()
}

/// The person behind a row of [`gallery`].
fn person_of(row: usize) -> usize {
    if row < PEOPLE {
        row
    } else {
        (row - PEOPLE) * 100
    }
}

/// The exact scan's top-k hits for each query (the int8 rows as a segment stores them).
fn exact_hits(rows: &[f32], queries: &[&[f32]], k: usize) -> Vec<Vec<Hit>> {
    let mut data = vec![0i8; rows.len()];
    let scales: Vec<f32> = rows
        .chunks_exact(FACE_DIM)
        .zip(data.chunks_exact_mut(FACE_DIM))
        .map(|(f, q)| quantise(f, q))
        .collect();
    let int8 = Int8Rows::new(&data, FACE_DIM, FACE_DIM, &scales).unwrap();
    top_k_batch(&int8, queries, k).unwrap()
}

/// The exact scan's top-k rows.
fn exact(rows: &[f32], queries: &[&[f32]], k: usize) -> Vec<Vec<u32>> {
    exact_hits(rows, queries, k)
        .into_iter()
        .map(|hits| hits.iter().map(|h| h.row as u32).collect())
        .collect()
}

/// The exact scan's lists, cut at `min_cosine`, against the index's: the share it returns.
fn recall(want: &[Vec<Hit>], got: &[Vec<Neighbour>], min_cosine: f32) -> f64 {
    let (mut total, mut found) = (0, 0);
    for (w, g) in want.iter().zip(got) {
        for h in w.iter().filter(|h| h.score >= min_cosine) {
            total += 1;
            found += usize::from(g.iter().any(|n| n.row as usize == h.row));
        }
    }
    assert!(total > 0);
    found as f64 / total as f64
}

#[test]
fn ivf_top_k_recall_against_the_exact_scan() {
    let rows = gallery();
    let model = FaceModel::new();
    let mut ann = FaceAnn::build(&rows, FACE_DIM).unwrap();
    assert!(
        ann.describe().starts_with("IVF"),
        "a gallery this size gets the IVF index"
    );
    // Mated queries: another capture of 200 enrolled people.
    let mut flat = Vec::new();
    for q in 0..200u64 {
        let person = q * 149;
        model.capture(&model.identity(person + 1), person << 8 | 1, &mut flat);
    }
    let queries: Vec<&[f32]> = flat.chunks_exact(FACE_DIM).collect();
    let want = exact_hits(&rows, &queries, K);
    let got = ann.search_batch(&flat, K).unwrap();
    // What a search returns (cosine ≥ 0.5: the mates, and the few impostors that close): at
    // least 95 % at the default nprobe.
    // What a search returns above cosine 0.6 (the mates, and the rare impostor that close):
    // at least 95 % at the default nprobe (98 % measured).
    let close = recall(&want, &got, 0.6);
    assert!(close >= 0.95, "recall@{K} above cosine 0.6: {close}");
    // A record of the person first (the enrolled one, or the planted duplicate of persons 0
    // and 14,900) as often as the exact scan puts one first, give or take 4 of 200.
    let first = |lists: Vec<usize>| {
        let hits = lists
            .iter()
            .enumerate()
            .filter(|&(q, &r)| person_of(r) == q * 149);
        hits.count()
    };
    let exact_first = first(want.iter().map(|w| w[0].row).collect());
    let ann_first = first(got.iter().map(|g| g[0].row as usize).collect());
    assert!(
        exact_first >= 190,
        "exact scan: mate first for {exact_first} of 200"
    );
    // IVF loses some mates: a noisy capture can fall in a cell its other capture does not
    // probe (3 of 200 here at the default nprobe; the bench measures it at scale).
    assert!(ann_first + 4 >= exact_first, "{ann_first} vs {exact_first}");
    // The whole top 10 (mostly impostors near cosine 0.5, scattered over the cells) needs
    // every cell read; then only int8 rounding of near-ties separates the two lists.
    ann.set_breadth(u32::MAX).unwrap();
    let all = recall(&want, &ann.search_batch(&flat, K).unwrap(), -1.0);
    assert!(all >= 0.97, "recall@{K} reading every cell: {all}");
    // One query alone answers as in the batch.
    let single = ann.search(queries[7], K).unwrap();
    assert_eq!(single, ann.search_batch(&flat, K).unwrap()[7]);
}

#[test]
fn self_join_finds_the_planted_duplicates() {
    let rows = gallery();
    let ann = FaceAnn::build(&rows, FACE_DIM).unwrap();
    let pairs = ann.knn_self_join(K, 0.5).unwrap();
    let found = planted_found(&pairs);
    // Genuine pairs below the 0.5 threshold exist (bad captures: the model's low tail), so not
    // all 300; the index finds all but at most 1 % (3) of those the exact scan finds.
    let exact_found = {
        let queries: Vec<&[f32]> = (PEOPLE..PEOPLE + DUPLICATES)
            .map(|r| &rows[r * FACE_DIM..][..FACE_DIM])
            .collect();
        let lists = exact(&rows, &queries, K + 1);
        (0..DUPLICATES)
            .filter(|&j| {
                let (a, b) = (&rows[j * 100 * FACE_DIM..][..FACE_DIM], queries[j]);
                let cos: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                cos >= 0.5 && lists[j].contains(&((j * 100) as u32))
            })
            .count()
    };
    assert!(
        exact_found >= DUPLICATES * 97 / 100,
        "exact found {exact_found}"
    );
    assert!(
        found + 3 >= exact_found,
        "FAISS {found}, exact {exact_found}"
    );
    for w in pairs.windows(2) {
        assert!(
            (w[0].a, w[0].b) < (w[1].a, w[1].b),
            "sorted, each pair once"
        );
    }
    assert!(pairs.iter().all(|p| p.a < p.b && p.cosine >= 0.5));
    // Slices of rows found the same pairs as the whole join, once merged.
    let n = ann.len() as u32;
    let mut sliced = ann.self_join_rows(0..n / 2, K, 0.5).unwrap();
    sliced.extend(ann.self_join_rows(n / 2..n, K, 0.5).unwrap());
    // (BLAS blocks differ with the batch, so cosines may differ in the last bits.)
    let sliced = abis_ann::merge_pairs(sliced);
    assert_eq!(sliced.len(), pairs.len());
    for (s, p) in sliced.iter().zip(&pairs) {
        assert_eq!((s.a, s.b), (p.a, p.b));
        assert!((s.cosine - p.cosine).abs() < 1e-5, "{s:?} vs {p:?}");
    }
}

#[test]
fn small_galleries_are_searched_exactly() {
    let rows: Vec<f32> = gallery()[..500 * FACE_DIM].to_vec();
    let ann = FaceAnn::build(&rows, FACE_DIM).unwrap();
    assert_eq!(ann.describe(), "Flat");
    let q = &rows[42 * FACE_DIM..][..FACE_DIM];
    let want = exact(&rows, &[q], 5).remove(0);
    let got: Vec<u32> = ann.search(q, 5).unwrap().iter().map(|n| n.row).collect();
    assert_eq!(got, want);
    // k beyond the gallery: every row once.
    assert_eq!(ann.search(q, 10_000).unwrap().len(), 500);
}

#[test]
fn bad_input_is_refused_by_name() {
    let rows: Vec<f32> = gallery()[..100 * FACE_DIM].to_vec();
    assert_eq!(FaceAnn::build(&[], FACE_DIM).unwrap_err(), AnnError::Empty);
    assert!(matches!(
        FaceAnn::build(&rows[..FACE_DIM + 1], FACE_DIM),
        Err(AnnError::Shape { .. })
    ));
    let mut nan = rows.clone();
    nan[7 * FACE_DIM + 3] = f32::NAN;
    assert_eq!(
        FaceAnn::build(&nan, FACE_DIM).unwrap_err(),
        AnnError::NotFinite {
            what: "row",
            index: 7
        }
    );
    let bad_nlist = AnnConfig {
        layout: Layout::Ivf { nlist: Some(50) },
        ..AnnConfig::default()
    };
    assert!(matches!(
        FaceAnn::build_with(&rows, FACE_DIM, &bad_nlist),
        Err(AnnError::Parameter { name: "nlist", .. })
    ));
    let ann = FaceAnn::build(&rows, FACE_DIM).unwrap();
    assert_eq!(
        ann.search(&rows[..FACE_DIM - 1], 3).unwrap_err(),
        AnnError::QueryDimension {
            got: FACE_DIM - 1,
            want: FACE_DIM
        }
    );
    let mut q = rows[..FACE_DIM].to_vec();
    q[0] = f32::INFINITY;
    assert_eq!(
        ann.search(&q, 3).unwrap_err(),
        AnnError::NotFinite {
            what: "query",
            index: 0
        }
    );
    assert!(matches!(
        ann.search(&rows[..FACE_DIM], 0),
        Err(AnnError::Parameter { name: "k", .. })
    ));
    assert!(matches!(
        ann.knn_self_join(3, f32::NAN),
        Err(AnnError::Parameter {
            name: "min_cosine",
            ..
        })
    ));
    assert!(matches!(
        ann.self_join_rows(50..200, 3, 0.5),
        Err(AnnError::RowRange { .. })
    ));
    let mut ann = ann;
    assert!(ann.set_breadth(0).is_err());
}

#[test]
fn hnsw_finds_the_mates_and_the_planted_duplicates() {
    let rows = gallery();
    let config = AnnConfig {
        layout: Layout::Hnsw { m: 16 },
        breadth: 64,
    };
    let ann = FaceAnn::build_with(&rows, FACE_DIM, &config).unwrap();
    assert!(ann.describe().starts_with("HNSW"));
    assert_eq!(ann.breadth(), 64);
    // Each indexed row finds itself first.
    let probes: Vec<f32> = (0..50)
        .flat_map(|q| rows[q * 577 * FACE_DIM..][..FACE_DIM].to_vec())
        .collect();
    let lists = ann.search_batch(&probes, K).unwrap();
    let own = (0..50).filter(|&q| lists[q][0].row as usize == q * 577);
    assert!(own.count() >= 49);
    let pairs = ann.knn_self_join(K, 0.5).unwrap();
    let found = planted_found(&pairs);
    // The exact scan finds at least 97 % of them (the test above).
    assert!(found >= DUPLICATES * 96 / 100, "HNSW found {found}");
}
