//! Real chip structures made by the tests: a CSCA and Document Signers (rcgen), EF.DG2 with an
//! ISO/IEC 19794-5 record around an ATT/ORL face, and EF.SOD as CMS SignedData, built here from
//! their definitions (Doc 9303 parts 10-11, RFC 5652) and not with the parser under test.
#![allow(dead_code)]

pub mod ber;
pub mod pki;

use std::io::Cursor;
use std::sync::OnceLock;

use ber::{der, oid};

/// JPEG of an ATT/ORL face (`s{subject}/{n}.pgm`), or `None` when the shared data is missing.
pub fn att_face_jpeg(subject: u32, n: u32) -> Option<Vec<u8>> {
    let path = abis_testkit::shared(&format!("face/ATT_ORL/s{subject}/{n}.pgm"))?;
    let image = image::open(&path).expect("ATT face decodes");
    let mut out = Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("JPEG encodes");
    Some(out.into_inner())
}

/// One ATT face for every test of a binary.
pub fn face() -> Option<&'static [u8]> {
    static FACE: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    FACE.get_or_init(|| att_face_jpeg(1, 1)).as_deref()
}

/// A 19794-5:2005 record with one image of `image_type` (0 JPEG, 1 JPEG 2000).
pub fn facial_record(image: &[u8], image_type: u8, width: u16, height: u16) -> Vec<u8> {
    let feature_points = 1u16;
    let block_len = 20 + 8 * u32::from(feature_points) + 12 + image.len() as u32;
    let mut out = Vec::new();
    out.extend(b"FAC\x00010\x00");
    out.extend((14 + block_len).to_be_bytes());
    out.extend(1u16.to_be_bytes());
    // Facial information: length, feature points, gender, eyes, hair, mask, expression, pose.
    out.extend(block_len.to_be_bytes());
    out.extend(feature_points.to_be_bytes());
    out.extend([1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    // One feature point: type 1, MPEG-4 point 12.1 (left eye centre), x, y, reserved.
    out.extend([1, 0xC1, 0, 30, 0, 40, 0, 0]);
    // Image information: full frontal, data type, width, height, 24-bit RGB, static photo.
    out.extend([1, image_type]);
    out.extend(width.to_be_bytes());
    out.extend(height.to_be_bytes());
    out.extend([1, 2, 0, 0, 0, 0]);
    out.extend(image);
    out
}

/// EF.DG2 around one facial record.
pub fn dg2(record: &[u8]) -> Vec<u8> {
    let header = der(
        0xA1,
        &[
            &der(0x81, &[&[0x02]]),
            &der(0x87, &[&[0x01, 0x01]]),
            &der(0x88, &[&[0x00, 0x08]]),
        ],
    );
    let template = der(0x7F60, &[&header, &der(0x5F2E, &[record])]);
    der(0x75, &[&der(0x7F61, &[&der(0x02, &[&[1]]), &template])])
}

/// A DG2 with an ATT face as JPEG, or `None` without shared data.
pub fn face_dg2() -> Option<Vec<u8>> {
    Some(dg2(&facial_record(face()?, 0, 92, 112)))
}

/// An EF.DG1 (MRZ) of a TD1 ID card with made-up data.
pub fn dg1() -> Vec<u8> {
    let mrz = b"I<UTOD231458907<<<<<<<<<<<<<<<7408122F1204159UTO<<<<<<<<<<<6ERIKSSON<<ANNA<MARIA<<<<<<<<<<";
    der(0x61, &[&der(0x5F1F, &[mrz])])
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

/// `LDSSecurityObject` with SHA-256 hashes of `groups`.
pub fn lds_security_object(groups: &[(u32, &[u8])]) -> Vec<u8> {
    lds_with_hash(
        &oid("2.16.840.1.101.3.4.2.1"),
        groups.iter().map(|(n, b)| (*n, sha256(b))).collect(),
    )
}

pub fn lds_with_hash(hash_oid: &[u8], hashes: Vec<(u32, Vec<u8>)>) -> Vec<u8> {
    let entries: Vec<Vec<u8>> = hashes
        .iter()
        .map(|(n, h)| der(0x30, &[&der(0x02, &[&[*n as u8]]), &der(0x04, &[h])]))
        .collect();
    let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
    der(
        0x30,
        &[
            &der(0x02, &[&[0]]),
            &der(0x30, &[hash_oid]),
            &der(0x30, &refs),
        ],
    )
}

/// DG1, DG2 and the SOD vouching for both.
pub struct Card {
    pub dg1: Vec<u8>,
    pub dg2: Vec<u8>,
    pub sod: Vec<u8>,
}

impl Card {
    pub fn new(signer: &pki::DocumentSigner, dg2: Vec<u8>, options: &pki::SodOptions) -> Card {
        let dg1 = dg1();
        let lds = lds_security_object(&[(1, &dg1), (2, &dg2)]);
        let sod = pki::sod(signer, &lds, options);
        Card { dg1, dg2, sod }
    }

    pub fn groups(&self) -> Vec<(u32, &[u8])> {
        vec![(1, self.dg1.as_slice()), (2, self.dg2.as_slice())]
    }

    /// Passive authentication of this card against `trust`, now.
    pub fn authenticate(&self, trust: &abis_icao::TrustStore) -> abis_icao::PassiveAuthentication {
        let sod = abis_icao::Sod::parse(&self.sod).expect("test SOD parses");
        abis_icao::authenticate(&sod, &self.groups(), trust, std::time::SystemTime::now())
    }
}

/// A trust store holding `cscas` and `crls`.
pub fn trust(cscas: &[&pki::Csca], crls: &[Vec<u8>]) -> abis_icao::TrustStore {
    let mut store = abis_icao::TrustStore::new();
    for csca in cscas {
        store.add_csca_der(&csca.der).unwrap();
    }
    for crl in crls {
        store.add_crl_der(crl).unwrap();
    }
    store
}

/// JPEG 2000 (JP2) of an ATT/ORL face made by OpenJPEG's `opj_compress` at `ratio`:1, or `None`
/// (reported by the testkit) when the shared data or the tool is missing.
pub fn att_face_jpeg2000(subject: u32, n: u32, ratio: u32) -> Option<Vec<u8>> {
    let face = image::open(abis_testkit::shared(&format!(
        "face/ATT_ORL/s{subject}/{n}.pgm"
    ))?)
    .unwrap();
    jpeg2000(&face, ratio)
}

/// `image` as JPEG 2000 (JP2) by `opj_compress` at `ratio`:1, or `None` without the tool.
pub fn jpeg2000(image: &image::DynamicImage, ratio: u32) -> Option<Vec<u8>> {
    let gray = image.to_luma8();
    abis_testkit::openjpeg::jpeg2000(gray.width(), gray.height(), gray.as_raw(), Some(ratio))
}

/// A chip portrait as cards carry it: an ATT face enlarged 4x (368x448) in JPEG 2000 at 6:1
/// (20-30 KB).
pub fn chip_portrait(subject: u32, n: u32) -> Option<Vec<u8>> {
    let face = image::open(abis_testkit::shared(&format!(
        "face/ATT_ORL/s{subject}/{n}.pgm"
    ))?)
    .unwrap();
    jpeg2000(
        &face.resize_exact(368, 448, image::imageops::FilterType::CatmullRom),
        6,
    )
}

/// A counter's live photo: an ATT face enlarged 4x in the middle of a grey 1152x864 (1 MP)
/// scene, as JPEG.
pub fn live_photo(subject: u32, n: u32) -> Option<Vec<u8>> {
    let face = image::open(abis_testkit::shared(&format!(
        "face/ATT_ORL/s{subject}/{n}.pgm"
    ))?)
    .unwrap();
    let face = face
        .resize_exact(368, 448, image::imageops::FilterType::CatmullRom)
        .to_rgb8();
    let mut scene = image::RgbImage::from_pixel(1152, 864, image::Rgb([128, 128, 128]));
    image::imageops::overlay(&mut scene, &face, (1152 - 368) / 2, (864 - 448) / 2);
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(scene)
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .unwrap();
    Some(out.into_inner())
}
