//! The codec of every keysmith service: prost's, except that bytes which
//! are not the method's message are the caller's mistake.
//!
//! tonic-prost answers a message it cannot decode INTERNAL, as gRPC's
//! status code guide (`doc/statuscodes.md`) says a library should. keysmith
//! promises more (README, errors): bad input is INVALID_ARGUMENT with an
//! `ErrorInfo`, never INTERNAL, so that a client can tell its own mistake
//! from keysmith's. Frames (flags, lengths, a missing message) are checked
//! before decoding, by the server's admission layer.
//!
//! The generated clients use this codec too. keysmith's answers always
//! decode, so a client meets the refusal only with a server that sends
//! other bytes; it is then labelled as the server labels a request's.
use std::collections::HashMap;

use prost::Message;
use tonic::{
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
    Code, Status,
};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};
use tonic_types::{ErrorDetails, StatusExt};

/// The domain of every `ErrorInfo` keysmith returns.
pub const ERROR_DOMAIN: &str = "keysmith.dev";
/// The `ErrorInfo` reason of a request that is not its method's message
/// (the same as `keysmith_core::reasons::MALFORMED_REQUEST`; a server test
/// keeps them equal).
pub const MALFORMED_REQUEST: &str = "MALFORMED_REQUEST";

/// prost's codec, with [`EdgeDecoder`] as its decoder.
#[derive(Debug, Clone)]
pub struct EdgeCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Default for EdgeCodec<T, U> {
    fn default() -> Self {
        Self(ProstCodec::default())
    }
}

impl<T, U> Codec for EdgeCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = EdgeDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        EdgeDecoder(self.0.decoder())
    }
}

/// prost's decoder, whose decoding errors are INVALID_ARGUMENT
/// `MALFORMED_REQUEST`.
#[derive(Debug, Clone)]
pub struct EdgeDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default> Decoder for EdgeDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(malformed)
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

/// prost's decoding error, as the caller's. Its text names the message and
/// field and what was wrong with the bytes, never the bytes themselves.
fn malformed(status: Status) -> Status {
    if status.code() != Code::Internal {
        return status;
    }
    let details = ErrorDetails::with_error_info(MALFORMED_REQUEST, ERROR_DOMAIN, HashMap::new());
    Status::with_error_details(
        Code::InvalidArgument,
        format!(
            "the request is not a valid message of its method: {}",
            status.message()
        ),
        details,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undecodable_bytes_are_invalid_argument_with_an_error_info() {
        let status = malformed(Status::internal("failed to decode Protobuf message"));
        assert_eq!(status.code(), Code::InvalidArgument);
        let info = status.get_details_error_info().unwrap();
        assert_eq!(info.reason, MALFORMED_REQUEST);
        assert_eq!(info.domain, ERROR_DOMAIN);
    }
}
