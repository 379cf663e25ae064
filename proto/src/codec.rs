//! The protobuf codec of the service: prost, except that a request body that does not decode is
//! INVALID_ARGUMENT with MOSIP failure reason 4 (invalid request structure) in its details,
//! rather than the INTERNAL that the gRPC status-code guide suggests. The caller sent bytes the
//! protocol does not allow; INTERNAL would tell it (and its retry policy) that the engine broke.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::ProstEncoder;

use crate::failure::{status, FailureReason};

/// Generated services and clients use this codec (see `build.rs`).
#[derive(Debug, Clone)]
pub struct AbisCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for AbisCodec<T, U> {
    fn default() -> Self {
        AbisCodec(PhantomData)
    }
}

impl<T, U> Codec for AbisCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = StrictDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        StrictDecoder(PhantomData)
    }
}

/// Decodes with prost; malformed bytes become [`malformed`].
#[derive(Debug)]
pub struct StrictDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for StrictDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|e| malformed(&e))
    }
}

/// The status of a message that is not valid protobuf for its type.
pub fn malformed(e: &prost::DecodeError) -> Status {
    status(
        Code::InvalidArgument,
        FailureReason::InvalidRequest,
        format!("malformed request message: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::StatusExt;

    #[test]
    fn malformed_bytes_are_invalid_argument_with_mosip_reason_4() {
        let e = crate::v1::InsertRequest::decode(&[0x0a, 0x05, 0x41][..]).unwrap_err();
        let s = malformed(&e);
        assert_eq!(s.code(), Code::InvalidArgument);
        let info = s.get_details_error_info().expect("error info");
        assert_eq!(info.reason, "MOSIP_4");
        assert_eq!(info.metadata["failureReason"], "4");
    }
}
