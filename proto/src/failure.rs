//! MOSIP's ABIS failure reasons, the one definition every layer uses.
//!
//! An adapter between abis and MOSIP must answer MOSIP with the exact failure code, so every
//! error status carries it in its details (`google.rpc.ErrorInfo`, reason `MOSIP_<code>`,
//! metadata `failureReason`). The server attaches it with [`status`]; clients read it back with
//! [`FailureReason::of`].

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo` domain of every abis error.
pub const ERROR_DOMAIN: &str = "abis.v1";

/// MOSIP ABIS failure reasons (`../shared/docs/abis.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    Internal = 1,
    Aborted = 2,
    Unexpected = 3,
    InvalidRequest = 4,
    MissingReferenceId = 5,
    /// The biometrics behind a request's `referenceURL` could not be fetched.
    UnableToFetchBiometrics = 7,
    ReferenceIdExists = 10,
    NoBiometricData = 11,
    ReferenceIdNotFound = 12,
    InvalidBiometricFormat = 16,
    /// The datashare says the `referenceURL` has expired (its error `DAT-SER-006`).
    ReferenceUrlExpired = 17,
    QualityCheckFailed = 18,
}

impl FailureReason {
    pub const ALL: [FailureReason; 12] = [
        FailureReason::Internal,
        FailureReason::Aborted,
        FailureReason::Unexpected,
        FailureReason::InvalidRequest,
        FailureReason::MissingReferenceId,
        FailureReason::UnableToFetchBiometrics,
        FailureReason::ReferenceIdExists,
        FailureReason::NoBiometricData,
        FailureReason::ReferenceIdNotFound,
        FailureReason::InvalidBiometricFormat,
        FailureReason::ReferenceUrlExpired,
        FailureReason::QualityCheckFailed,
    ];

    /// MOSIP's numeric code.
    pub fn code(self) -> u32 {
        self as u32
    }

    pub fn from_code(code: u32) -> Option<FailureReason> {
        FailureReason::ALL.into_iter().find(|r| r.code() == code)
    }

    /// The reason a status carries in its details, if any.
    pub fn of(status: &Status) -> Option<FailureReason> {
        let info = status.get_details_error_info()?;
        let code = info.metadata.get("failureReason")?.parse().ok()?;
        FailureReason::from_code(code)
    }
}

/// A status with `reason` in its details.
pub fn status(code: Code, reason: FailureReason, message: impl Into<String>) -> Status {
    let n = reason.code();
    let details = ErrorDetails::with_error_info(
        format!("MOSIP_{n}"),
        ERROR_DOMAIN,
        [("failureReason".to_string(), n.to_string())],
    );
    Status::with_error_details(code, message, details)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_survives_a_status_round_trip() {
        for reason in FailureReason::ALL {
            let s = status(Code::InvalidArgument, reason, "x");
            assert_eq!(FailureReason::of(&s), Some(reason));
            let info = s.get_details_error_info().unwrap();
            assert_eq!(info.reason, format!("MOSIP_{}", reason.code()));
            assert_eq!(info.domain, ERROR_DOMAIN);
        }
        assert_eq!(FailureReason::of(&Status::internal("plain")), None);
    }
}
