//! What a bank counter reads from a chip ID card or passport (ICAO Doc 9303): the portrait of
//! EF.DG2 ([`parse_dg2`]: BER-TLV biometric templates around an ISO/IEC 19794-5:2005 facial
//! record, JPEG or JPEG 2000) and the proof that it is genuine, *passive authentication* of
//! EF.SOD ([`Sod::parse`], [`authenticate`]): the Document Signer's CMS signature, its
//! certificate's chain to a CSCA of a [`TrustStore`] (a directory of CSCA certificates, master
//! lists and CRLs), its revocation, and each data group's hash — every check answered
//! separately, with a reason. Untrusted bytes are parsed with limits on size and depth and
//! answered with typed errors naming the part and offset. No dependency on the matching engine.

pub mod algorithm;
pub mod dg2;
pub mod face_record;
pub mod tlv;

pub use dg2::{parse_dg2, Dg2, Dg2Error};
pub use face_record::{FaceRecordError, FacialImage, ImageType};
pub mod passive;
mod signed_data;
pub mod sod;
pub mod trust;
mod x509;

pub use passive::{authenticate, Check, Failure, PassiveAuthentication};
pub use signed_data::{CmsError, SignerId, SignerInfo};
pub use sod::{Sod, SodError};
pub use trust::{TrustError, TrustStore};
pub use x509::{Cert, Crl};
