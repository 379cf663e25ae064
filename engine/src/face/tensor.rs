//! Image -> model input, following the manifest's contract (layout, colour order,
//! normalisation, MTCNN's transposition).

use super::config::InputContract;
use super::geometry::RgbF32;

/// Dimensions of one batch item as the model sees it: `(rows, cols)`; transposed swaps them.
pub fn item_dims(img: &RgbF32, c: &InputContract) -> (usize, usize) {
    if c.transposed {
        (img.width, img.height)
    } else {
        (img.height, img.width)
    }
}

/// Writes one batch item (`rows * cols * 3` values) into `out`.
pub fn write_item(img: &RgbF32, c: &InputContract, out: &mut [f32]) {
    let (rows, cols) = item_dims(img, c);
    let plane = rows * cols;
    debug_assert_eq!(out.len(), plane * 3);
    for r in 0..rows {
        for col in 0..cols {
            let (x, y) = if c.transposed { (r, col) } else { (col, r) };
            let mut p = img.px(x, y);
            if c.bgr {
                p.swap(0, 2);
            }
            for (ch, v) in p.iter().enumerate() {
                let v = (v - c.mean) * c.scale;
                let at = if c.nchw {
                    ch * plane + r * cols + col
                } else {
                    (r * cols + col) * 3 + ch
                };
                out[at] = v;
            }
        }
    }
}

/// The shape of a batch of `n` items of `rows x cols`.
pub fn batch_shape(n: usize, rows: usize, cols: usize, c: &InputContract) -> Vec<usize> {
    if c.nchw {
        vec![n, 3, rows, cols]
    } else {
        vec![n, rows, cols, 3]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract(nchw: bool, transposed: bool, bgr: bool) -> InputContract {
        InputContract {
            nchw,
            bgr,
            mean: 127.5,
            scale: 1.0 / 128.0,
            transposed,
            fixed_batch: None,
        }
    }

    #[test]
    fn layouts() {
        // 2 wide, 1 high: pixel (0,0) = (0,10,20), (1,0) = (100,110,120).
        let img = RgbF32 {
            width: 2,
            height: 1,
            data: vec![0.0, 10.0, 20.0, 100.0, 110.0, 120.0],
        };
        let f = |v: f32| (v - 127.5) / 128.0;
        let mut out = vec![0f32; 6];
        write_item(&img, &contract(false, false, false), &mut out);
        assert_eq!(out, [0.0, 10.0, 20.0, 100.0, 110.0, 120.0].map(f));
        write_item(&img, &contract(true, false, false), &mut out);
        assert_eq!(out, [0.0, 100.0, 10.0, 110.0, 20.0, 120.0].map(f));
        write_item(&img, &contract(false, false, true), &mut out);
        assert_eq!(out[0], f(20.0));
        // Transposed: 2 rows (x), 1 column (y): same order here, dims swapped.
        assert_eq!(item_dims(&img, &contract(false, true, false)), (2, 1));
    }
}
