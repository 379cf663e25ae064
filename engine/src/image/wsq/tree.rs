//! Where each wavelet subband lies in the coefficient plane.
//!
//! WSQ decomposes the image with a fixed, irregular tree of two-dimensional wavelet splits
//! (not the dyadic pyramid of JPEG 2000): 20 splits ("the w-tree") produce 64 subbands ("the
//! q-tree"), numbered in the order the encoder transmits them. The coefficients of every
//! subband are stored in place: subband `k` occupies a rectangle of the same plane the image
//! is rebuilt in, and each w-tree node is a rectangle whose four quadrants are its low/high
//! bands after one split. Subbands 60..64 (the finest diagonal detail) are never sent.
//!
//! Splitting an odd length gives one more sample to one half. Which half gets it depends on
//! whether the band being split sits in the low or the high part of its parent: where a
//! parent's high band is stored first ("inverted" rows or columns, a consequence of the
//! spectral inversion of high bands), the extra sample goes to the second half. The layout
//! below follows the specification's tables for every image size, so that the subband
//! rectangles tile the plane exactly (checked by the tests for many sizes).

/// An axis-aligned rectangle in the coefficient plane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Rect {
    pub(super) x: usize,
    pub(super) y: usize,
    pub(super) width: usize,
    pub(super) height: usize,
}

impl Rect {
    fn new(x: usize, y: usize, width: usize, height: usize) -> Self {
        Rect {
            x,
            y,
            width,
            height,
        }
    }
}

/// One split of the w-tree: the rectangle that one synthesis step rebuilds from its four
/// quadrants, and whether its rows / columns store the high band first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct WaveletNode {
    pub(super) rect: Rect,
    pub(super) high_first_in_rows: bool,
    pub(super) high_first_in_columns: bool,
}

pub(super) const WAVELET_NODES: usize = 20;
pub(super) const SUBBANDS: usize = 64;
/// Subbands 0..60 are transmitted; 60..64 are implicitly zero.
pub(super) const CODED_SUBBANDS: usize = 60;

/// The shortest line one synthesis step with the standard 7/9 filters can rebuild.
pub(super) const MIN_SPLIT: usize = 4;
/// The smallest image side for which every split has [`MIN_SPLIT`] samples (the deepest
/// split is about 1/16 of the side). Below it the reference implementation reads outside
/// its buffers, so there is no reference behaviour to follow and such images are refused.
pub(super) const MIN_SIDE: usize = 49;

/// The w-tree nodes whose rows (x direction) hold the high band first.
const HIGH_FIRST_ROWS: [usize; 8] = [2, 4, 7, 9, 11, 13, 16, 18];
/// The w-tree nodes whose columns (y direction) hold the high band first.
const HIGH_FIRST_COLUMNS: [usize; 8] = [3, 5, 8, 9, 12, 13, 17, 18];

/// The full decomposition layout for one image size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Geometry {
    /// Splits, coarsest-last: synthesis runs from node 19 down to node 0 (the whole image).
    pub(super) nodes: [WaveletNode; WAVELET_NODES],
    /// Subband rectangles in transmission order.
    pub(super) subbands: [Rect; SUBBANDS],
}

/// Splits `len` into two halves; for odd `len` the extra sample goes to the second half
/// when `second_larger`, else to the first.
fn halves(len: usize, second_larger: bool) -> (usize, usize) {
    let small = len / 2;
    let large = len - small;
    if second_larger {
        (small, large)
    } else {
        (large, small)
    }
}

impl Geometry {
    pub(super) fn new(width: usize, height: usize) -> Self {
        let mut nodes = [WaveletNode::default(); WAVELET_NODES];
        for (i, node) in nodes.iter_mut().enumerate() {
            node.high_first_in_rows = HIGH_FIRST_ROWS.contains(&i);
            node.high_first_in_columns = HIGH_FIRST_COLUMNS.contains(&i);
        }

        // Level 1: the whole image (node 0) into quadrants 1 (low-low), 2 and 3. Its fourth
        // quadrant is subbands 60..64 and is never split further.
        split(&mut nodes, 0, 1, Rect::new(0, 0, width, height), false);
        // Level 2: node 1's quadrants, two of which (4, 5) are split once more.
        let n1 = nodes[1].rect;
        let (left, right) = halves(n1.width, false);
        let (top, bottom) = halves(n1.height, false);
        split(&mut nodes, 4, 6, Rect::new(left, 0, right, top), true);
        split(&mut nodes, 5, 10, Rect::new(0, top, left, bottom), true);
        split(&mut nodes, 14, 15, Rect::new(0, 0, left, top), true);
        // The deepest node: the low-low quarter of node 15.
        let n15 = nodes[15].rect;
        nodes[19].rect = Rect::new(
            0,
            0,
            halves(n15.width, false).0,
            halves(n15.height, false).0,
        );

        let mut subbands = [Rect::default(); SUBBANDS];
        // Order matters: later grids overwrite entries of earlier ones (3 by the final 2x2
        // grid, 48..51 by node 5's grid), exactly as the subband numbering requires.
        grid16(&mut subbands, 3, nodes[14].rect, false, false);
        grid16(&mut subbands, 19, nodes[4].rect, false, true);
        grid16(&mut subbands, 48, nodes[0].rect, false, false);
        grid16(&mut subbands, 35, nodes[5].rect, true, false);
        grid4(&mut subbands, 0, nodes[19].rect);

        Geometry { nodes, subbands }
    }

    /// The shortest side of any split (w-tree node).
    pub(super) fn smallest_split(&self) -> usize {
        self.nodes
            .iter()
            .flat_map(|n| [n.rect.width, n.rect.height])
            .min()
            .unwrap_or(0)
    }
}

/// Records node `parent` as `rect` and its quadrants as nodes `first..first + 3` (or
/// `first..first + 2` when `with_fourth` is false). Nodes 4 and 5 hold the high band first
/// along x and y respectively, so their odd splits give the second half the extra sample.
fn split(
    nodes: &mut [WaveletNode; WAVELET_NODES],
    parent: usize,
    first: usize,
    rect: Rect,
    with_fourth: bool,
) {
    nodes[parent].rect = rect;
    let (a, b) = halves(rect.width, parent == 4);
    let (c, d) = halves(rect.height, parent == 5);
    let (x, y) = (rect.x, rect.y);
    nodes[first].rect = Rect::new(x, y, a, c);
    nodes[first + 1].rect = Rect::new(x + a, y, b, c);
    nodes[first + 2].rect = Rect::new(x, y + c, a, d);
    if with_fourth {
        nodes[first + 3].rect = Rect::new(x + a, y + c, b, d);
    }
}

/// The 16 subbands of two levels of splitting inside `rect`, as a 4x4 grid numbered by
/// 2x2 quadrant. `high_first_y` / `high_first_x` say whether the first-level split of
/// `rect` has its high band first along that axis; within the second level, the quadrants
/// that came from a high band put the extra sample of an odd split in their second half.
fn grid16(
    bands: &mut [Rect; SUBBANDS],
    start: usize,
    rect: Rect,
    high_first_y: bool,
    high_first_x: bool,
) {
    let (x, y) = (rect.x, rect.y);
    let (wa, wb) = halves(rect.width, high_first_x);
    let (ha, hb) = halves(rect.height, high_first_y);
    // Second-level splits: the first halves split larger-first, the second ones smaller-first.
    let (wa1, wa2) = halves(wa, false);
    let (ha1, ha2) = halves(ha, false);
    let (wb1, wb2) = halves(wb, true);
    let (hb1, hb2) = halves(hb, true);

    let quadrant = |bx: usize, by: usize, w1: usize, w2: usize, h1: usize, h2: usize| {
        [
            Rect::new(bx, by, w1, h1),
            Rect::new(bx + w1, by, w2, h1),
            Rect::new(bx, by + h1, w1, h2),
            Rect::new(bx + w1, by + h1, w2, h2),
        ]
    };
    let all = [
        quadrant(x, y, wa1, wa2, ha1, ha2),
        quadrant(x + wa, y, wb1, wb2, ha1, ha2),
        quadrant(x, y + ha, wa1, wa2, hb1, hb2),
        quadrant(x + wa, y + ha, wb1, wb2, hb1, hb2),
    ];
    for (slot, r) in bands.iter_mut().skip(start).zip(all.iter().flatten()) {
        *slot = *r;
    }
}

/// The 4 subbands of one split of `rect` (larger half first on both axes).
fn grid4(bands: &mut [Rect; SUBBANDS], start: usize, rect: Rect) {
    let (w1, w2) = halves(rect.width, false);
    let (h1, h2) = halves(rect.height, false);
    let (x, y) = (rect.x, rect.y);
    let quads = [
        Rect::new(x, y, w1, h1),
        Rect::new(x + w1, y, w2, h1),
        Rect::new(x, y + h1, w1, h2),
        Rect::new(x + w1, y + h1, w2, h2),
    ];
    for (slot, r) in bands.iter_mut().skip(start).zip(quads) {
        *slot = r;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coverage(width: usize, height: usize, rects: impl Iterator<Item = Rect>) -> Vec<u8> {
        let mut hits = vec![0u8; width * height];
        for r in rects {
            assert!(
                r.x + r.width <= width && r.y + r.height <= height,
                "{r:?} outside {width}x{height}"
            );
            for row in r.y..r.y + r.height {
                for col in r.x..r.x + r.width {
                    hits[row * width + col] += 1;
                }
            }
        }
        hits
    }

    #[test]
    fn subbands_tile_the_image_exactly() {
        for (w, h) in [
            (500, 500),
            (97, 119),
            (120, 144),
            (388, 374),
            (193, 257),
            (64, 72),
            (17, 33),
            (1, 1),
        ] {
            let g = Geometry::new(w, h);
            let hits = coverage(w, h, g.subbands.iter().copied());
            assert!(
                hits.iter().all(|&n| n == 1),
                "{w}x{h}: subbands do not tile the plane"
            );
        }
    }

    #[test]
    fn each_split_node_is_covered_by_its_descendant_subbands() {
        // Every w-tree node rectangle must be exactly a union of subbands.
        for (w, h) in [(500, 500), (97, 119), (255, 301)] {
            let g = Geometry::new(w, h);
            for node in g.nodes {
                let r = node.rect;
                let inside = g.subbands.iter().filter(|s| {
                    s.x >= r.x
                        && s.y >= r.y
                        && s.x + s.width <= r.x + r.width
                        && s.y + s.height <= r.y + r.height
                });
                let area: usize = inside.map(|s| s.width * s.height).sum();
                assert_eq!(area, r.width * r.height, "{w}x{h} node {r:?}");
            }
        }
    }

    #[test]
    fn min_side_is_where_every_split_gets_long_enough() {
        for side in 1..200 {
            for other in [side, 500] {
                let ok = Geometry::new(side, other).smallest_split() >= MIN_SPLIT;
                assert_eq!(ok, side >= MIN_SIDE, "{side}x{other}");
                let ok = Geometry::new(other, side).smallest_split() >= MIN_SPLIT;
                assert_eq!(ok, side >= MIN_SIDE, "{other}x{side}");
            }
        }
    }

    #[test]
    fn standard_layout_for_a_500_pixel_square() {
        let g = Geometry::new(500, 500);
        assert_eq!(g.nodes[1].rect, Rect::new(0, 0, 250, 250));
        assert_eq!(g.nodes[14].rect, Rect::new(0, 0, 125, 125));
        assert_eq!(g.nodes[19].rect, Rect::new(0, 0, 32, 32));
        // Subband 0 is the coarsest low-low band; 59 the last coded one.
        assert_eq!(g.subbands[0], Rect::new(0, 0, 16, 16));
        assert_eq!(g.subbands[63], Rect::new(375, 375, 125, 125));
    }
}
