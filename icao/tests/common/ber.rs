//! A minimal DER writer for the structures the tests build.

/// `tag length value`, the value being the concatenation of `parts`.
pub fn der(tag: u32, parts: &[&[u8]]) -> Vec<u8> {
    let value: Vec<u8> = parts.concat();
    let mut out = Vec::new();
    let tag_bytes = tag.to_be_bytes();
    let first = tag_bytes.iter().position(|b| *b != 0).unwrap_or(3);
    out.extend(&tag_bytes[first..]);
    out.extend(length(value.len()));
    out.extend(value);
    out
}

pub fn length(len: usize) -> Vec<u8> {
    if len < 0x80 {
        return vec![len as u8];
    }
    let bytes = (len as u32).to_be_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(3);
    let mut out = vec![0x80 | (4 - first) as u8];
    out.extend(&bytes[first..]);
    out
}

/// An OBJECT IDENTIFIER element.
pub fn oid(dotted: &str) -> Vec<u8> {
    let oid = const_oid::ObjectIdentifier::new(dotted).expect("valid OID");
    der(0x06, &[oid.as_bytes()])
}

/// `SEQUENCE { oid }` or `SEQUENCE { oid, params }`.
pub fn algorithm(dotted: &str, params: Option<&[u8]>) -> Vec<u8> {
    match params {
        Some(p) => der(0x30, &[&oid(dotted), p]),
        None => der(0x30, &[&oid(dotted)]),
    }
}
