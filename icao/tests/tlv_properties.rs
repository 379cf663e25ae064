//! Properties of the BER-TLV reader: any bytes give elements or an error, never a panic or a
//! value beyond the input; whatever is encoded reads back the same.

use abis_icao::tlv::{Reader, Tlv};
use proptest::prelude::*;

/// Walks every element, descending into constructed ones, as the parsers do.
fn walk(element: &Tlv<'_>, count: &mut usize) {
    *count += 1;
    if !element.is_constructed() {
        return;
    }
    if let Ok(mut children) = element.children() {
        while let Ok(Some(child)) = children.next_element() {
            walk(&child, count);
        }
    }
}

fn encode(tag: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = tag.to_vec();
    match value.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend(value);
    out
}

/// Tags of one, two or three bytes as BER writes them.
fn tag() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (0u8..=0xFF)
            .prop_filter("not a long-form first byte", |b| b & 0x1F != 0x1F)
            .prop_map(|b| vec![b]),
        ((0u8..=7).prop_map(|c| (c << 5) | 0x1F), 0u8..0x80).prop_map(|(a, b)| vec![a, b]),
        (
            (0u8..=7).prop_map(|c| (c << 5) | 0x1F),
            0x80u8..=0xFF,
            0u8..0x80
        )
            .prop_map(|(a, b, c)| vec![a, b, c]),
    ]
}

proptest! {
    #[test]
    fn any_bytes_read_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut reader = Reader::new(&bytes);
        let mut count = 0;
        while let Ok(Some(element)) = reader.next_element() {
            prop_assert!(element.value_offset + element.value.len() <= bytes.len());
            walk(&element, &mut count);
        }
    }

    #[test]
    fn encoded_elements_read_back(tag in tag(), value in proptest::collection::vec(any::<u8>(), 0..600)) {
        let bytes = encode(&tag, &value);
        let expected = tag.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
        let element = Reader::single(&bytes, expected).unwrap();
        prop_assert_eq!(element.value, value.as_slice());
        prop_assert_eq!(element.raw, bytes.as_slice());
    }
}
