//! Synthetic finger templates for load tests, written as ISO/IEC 19794-2:2005 records (the
//! interchange format every ABIS accepts), so the client needs no engine to make them.

/// SplitMix64: a full-period mixing step, enough to spread seeds over minutiae.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const WIDTH: u16 = 500;
const HEIGHT: u16 = 550;
/// 500 ppi in pixels per centimetre, as the record states resolution.
const PX_PER_CM: u16 = 197;

/// A one-view ISO record at finger `position` (1..=10) with `minutiae` random minutiae (at most
/// 255), different for every `seed`. Random minutiae: strangers to every real finger.
pub fn synthetic_iso_template(seed: u64, position: u8, minutiae: usize) -> Vec<u8> {
    let n = minutiae.min(255);
    let mut state = seed;
    let total = 24 + 4 + 6 * n + 2;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(b"FMR\0 20\0");
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes()); // capture equipment
    out.extend_from_slice(&WIDTH.to_be_bytes());
    out.extend_from_slice(&HEIGHT.to_be_bytes());
    out.extend_from_slice(&PX_PER_CM.to_be_bytes());
    out.extend_from_slice(&PX_PER_CM.to_be_bytes());
    out.extend_from_slice(&[1, 0]); // one view, reserved
    let quality = (next(&mut state) % 101) as u8;
    // Position, view 0 with impression type 0 (live plain), quality, count.
    out.extend_from_slice(&[position.min(10), 0, quality, n as u8]);
    for _ in 0..n {
        let x = (next(&mut state) % u64::from(WIDTH)) as u16;
        let y = (next(&mut state) % u64::from(HEIGHT)) as u16;
        let kind: u16 = if next(&mut state).is_multiple_of(2) {
            1
        } else {
            2
        }; // ending, bifurcation
        let angle = (next(&mut state) % 256) as u8;
        let q = (next(&mut state) % 101) as u8;
        out.extend_from_slice(&((kind << 14) | x).to_be_bytes());
        out.extend_from_slice(&y.to_be_bytes());
        out.extend_from_slice(&[angle, q]);
    }
    out.extend_from_slice(&0u16.to_be_bytes()); // no extended data
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_reads_the_records_back() {
        for seed in 0..20 {
            let bytes = synthetic_iso_template(seed, (seed % 10 + 1) as u8, 40);
            let t = abis_engine::template::decode_iso(&bytes).expect("valid ISO record");
            assert_eq!(t.minutiae.len(), 40);
            assert_eq!((t.width, t.height, t.ppi), (500, 550, 500));
            assert_eq!(t.position.code(), (seed % 10 + 1) as u8);
        }
        assert_ne!(
            synthetic_iso_template(1, 1, 40),
            synthetic_iso_template(2, 1, 40)
        );
    }
}
