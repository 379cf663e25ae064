//! One table from every layer's errors to gRPC status codes, with MOSIP's ABIS failure reason
//! carried in the error details (`google.rpc.ErrorInfo`, reason `MOSIP_<code>`, metadata
//! `failureReason`) so an adapter can reproduce MOSIP's responses exactly.

use abis_cluster::{FailureKind, RouteError, ShardError};
use abis_engine::face::FaceError;
use abis_engine::finger::FingerError;
use abis_engine::gallery::GalleryError;
use abis_engine::store::RecordDefect;
use abis_engine::store::StoreError;
use abis_engine::template::TemplateError;
pub use abis_proto::failure::status;
use abis_proto::FailureReason;
use tonic::{Code, Status};

pub fn invalid(field: &str, detail: impl std::fmt::Display) -> Status {
    status(
        Code::InvalidArgument,
        FailureReason::InvalidRequest,
        format!("{field}: {detail}"),
    )
}

pub fn bad_biometric(field: &str, detail: impl std::fmt::Display) -> Status {
    status(
        Code::InvalidArgument,
        FailureReason::InvalidBiometricFormat,
        format!("{field}: {detail}"),
    )
}

pub fn internal(what: &str) -> Status {
    status(Code::Internal, FailureReason::Internal, what.to_string())
}

fn record_reason(defect: Option<RecordDefect>) -> FailureReason {
    match defect {
        Some(RecordDefect::MissingReferenceId) => FailureReason::MissingReferenceId,
        Some(RecordDefect::NoBiometrics) => FailureReason::NoBiometricData,
        Some(RecordDefect::Biometric) => FailureReason::InvalidBiometricFormat,
        Some(RecordDefect::Structure) | None => FailureReason::InvalidRequest,
    }
}

/// A cluster router's failures. UNAVAILABLE names the shards that did not answer: a search is
/// never answered from part of the gallery.
pub fn from_route(e: RouteError) -> Status {
    match e {
        RouteError::AlreadyExists => status(
            Code::AlreadyExists,
            FailureReason::ReferenceIdExists,
            "referenceId already exists",
        ),
        RouteError::NotFound => status(
            Code::NotFound,
            FailureReason::ReferenceIdNotFound,
            "referenceId not found",
        ),
        RouteError::EmptyProbe => status(
            Code::InvalidArgument,
            FailureReason::NoBiometricData,
            "the probe has no biometric data",
        ),
        RouteError::Invalid(detail) => bad_biometric("samples", detail),
        RouteError::InvalidRecord { defect, message } => {
            status(Code::InvalidArgument, record_reason(defect), message)
        }
        RouteError::TooLarge { .. } => status(
            Code::InvalidArgument,
            FailureReason::InvalidRequest,
            e.to_string(),
        ),
        RouteError::Unavailable { .. } | RouteError::LogUnavailable(_) => {
            tracing::warn!(error = %e, "cluster call unavailable");
            status(Code::Unavailable, FailureReason::Internal, e.to_string())
        }
        RouteError::Internal(_) => {
            tracing::error!(error = %e, "cluster failure");
            internal("cluster failure")
        }
    }
}

/// A backup that could not be written.
pub fn from_backup(e: abis_engine::store::backup::BackupError) -> Status {
    use abis_engine::store::backup::BackupError;
    match e {
        BackupError::Store(s) => from_store(s),
        other => {
            tracing::error!(error = %other, "backup failed");
            status(Code::Internal, FailureReason::Internal, other.to_string())
        }
    }
}

pub fn from_store(e: StoreError) -> Status {
    let defect = e.record_defect();
    match e {
        StoreError::AlreadyExists => status(
            Code::AlreadyExists,
            FailureReason::ReferenceIdExists,
            "referenceId already exists",
        ),
        StoreError::NotFound => status(
            Code::NotFound,
            FailureReason::ReferenceIdNotFound,
            "referenceId not found",
        ),
        StoreError::InvalidRecord { field, detail } => status(
            Code::InvalidArgument,
            record_reason(defect),
            format!("{field}: {detail}"),
        ),
        StoreError::Full { detail } => {
            status(Code::ResourceExhausted, FailureReason::Internal, detail)
        }
        StoreError::Corrupt { .. } => {
            tracing::error!(error = %e, "gallery corruption");
            status(
                Code::DataLoss,
                FailureReason::Internal,
                "gallery data is corrupt",
            )
        }
        StoreError::Failed { .. } => {
            tracing::error!(error = %e, "gallery refuses writes");
            status(
                Code::Unavailable,
                FailureReason::Internal,
                "gallery refuses writes after a storage failure",
            )
        }
        other => {
            tracing::error!(error = %other, "gallery failure");
            internal("gallery failure")
        }
    }
}

/// The local shard's failures: its gallery's, or its request task's.
pub fn from_shard(e: ShardError) -> Status {
    match e {
        ShardError::Gallery(g) => from_gallery(g),
        other => {
            tracing::error!(error = %other, "gallery request failed");
            status(
                Code::Internal,
                FailureReason::Unexpected,
                "request task failed",
            )
        }
    }
}

/// A gallery's failures: the kind is the cluster's one mapping ([`FailureKind::of`], also what
/// a replica sends); the server adds the MOSIP reason and, for internal failures, what was
/// damaged.
pub fn from_gallery(e: GalleryError) -> Status {
    match (FailureKind::of(&e), e) {
        (_, GalleryError::Store(s)) => from_store(s),
        (FailureKind::NotFound, _) => status(
            Code::NotFound,
            FailureReason::ReferenceIdNotFound,
            "referenceId not found",
        ),
        (FailureKind::EmptyProbe, _) => status(
            Code::InvalidArgument,
            FailureReason::NoBiometricData,
            "the probe has no biometric data",
        ),
        (FailureKind::Invalid, e) => bad_biometric("samples", e),
        (FailureKind::Unavailable, _) => status(
            Code::Unavailable,
            FailureReason::Internal,
            "the 1:N index is being rebuilt; retry when the service reports SERVING",
        ),
        (FailureKind::Internal, e) => from_damage(e),
    }
}

/// A gallery's internal failure: stored data or the index is damaged.
fn from_damage(e: GalleryError) -> Status {
    let what = match &e {
        GalleryError::StoredTemplate(_) | GalleryError::StoredRecord(_) => {
            "a stored template is unreadable"
        }
        _ => "the 1:N index is damaged",
    };
    tracing::error!(error = %e, "{what}");
    status(Code::DataLoss, FailureReason::Internal, what)
}

pub fn from_finger(field: &str, e: FingerError) -> Status {
    match e {
        FingerError::Image(_) | FingerError::TooLarge(_) => bad_biometric(field, e),
        FingerError::Template(t) => from_template(field, t),
        FingerError::Model(m) => {
            tracing::error!(error = %m, "fingerprint model failure");
            internal("fingerprint model failure")
        }
    }
}

pub fn from_template(field: &str, e: TemplateError) -> Status {
    bad_biometric(field, e)
}

pub fn from_face(field: &str, e: FaceError) -> Status {
    match e {
        FaceError::NoFace | FaceError::Degenerate => status(
            Code::InvalidArgument,
            FailureReason::QualityCheckFailed,
            format!("{field}: {e}"),
        ),
        FaceError::Image(_)
        | FaceError::SeveralFaces { .. }
        | FaceError::Template(_)
        | FaceError::ModelMismatch { .. }
        | FaceError::BadFmr(_) => bad_biometric(field, e),
        FaceError::Model(_) | FaceError::Config(_) => {
            tracing::error!(error = %e, "face model failure");
            internal("face model failure")
        }
    }
}
