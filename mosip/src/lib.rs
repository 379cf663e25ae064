//! MOSIP's ABIS wire, without the engine: what abis must read and write to act as the ABIS of a
//! MOSIP registration processor.
//!
//! - [`message`]: the ABIS API 0.9 JSON requests (Insert, Identify, Delete, Ping, PendingJobs,
//!   ReferenceCount) read leniently as MOSIP really sends them (numbers or strings, `null`s,
//!   `version` or `ver`, `referenceURL` or `referenceUrl`) and the answers written as MOSIP reads
//!   them (every field a string, `returnValue` "1"/"2", `failureReason`, `candidateList` with
//!   analytics). A request that cannot be served is a [`message::RequestError`] carrying what the
//!   failure answer needs; the failure codes are `abis_proto::FailureReason`, the one mapping the
//!   gRPC API uses too.
//! - [`cbeff`]: MOSIP's CBEFF XML (ISO/IEC 19785-3 patron format: nested `BIR`s with `BDBInfo`
//!   and a base64 `BDB`; exceptions marked in `others`), parsed with size and count limits.
//! - [`finger_record`] and [`face_record`]: the ISO/IEC 19794-4 finger image records (2005 and
//!   2011) and ISO/IEC 19794-5:2011 face image records MOSIP puts in the BDBs, down to the
//!   embedded image (JPEG 2000, WSQ, ...) and the finger position.
//! - [`position`]: MOSIP's finger subtypes (`Left IndexFinger`) as ISO finger positions.
//! - [`stomp`]: a small STOMP 1.2 client over tokio for ActiveMQ (see its doc for why it is
//!   written here).
//!
//! Every parser takes untrusted bytes: bad input is a typed error naming the field (and the
//! offset in binary records), never a panic; `fuzz/` and the property tests check that.

pub mod bytes;
pub mod cbeff;
pub mod face_record;
pub mod finger_record;
pub mod message;
pub mod position;
pub mod stomp;
