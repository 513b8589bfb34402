//! ListKeys answered from each key's kept encoding.
//!
//! A page repeats the same unchanged keys to caller after caller, and
//! converting and encoding all of them again was a large part of what a
//! page cost (BENCHMARKS.md). The generated tonic server can only encode a
//! `ListKeysResponse` it is handed whole, so ListKeys is routed here, in
//! front of it: the answer is written from the encodings each key version
//! keeps ([`ListedKey::encoding`]), and on the wire it is byte for byte a
//! `keysmith.v1.ListKeysResponse`. Every other method goes to the
//! generated server untouched.
use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::{Buf, BufMut, Bytes};
use keysmith_api::v1::{self as pb, access_service_server::AccessServiceServer};
use keysmith_core::{listed::Audience, AccessKey, Timestamp};
use prost::{
    encoding::{self, DecodeContext, WireType},
    DecodeError, Message,
};
use tonic::{body::Body, server::NamedService};

use crate::{access::AccessRpcService, convert};

const LIST_KEYS: &str = "/keysmith.v1.AccessService/ListKeys";
const KEYS_FIELD: u32 = 1;
const NEXT_PAGE_TOKEN_FIELD: u32 = 2;

/// A `ListKeysResponse` whose keys are already encoded `AccessKey`s.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EncodedListKeys {
    pub keys: Vec<Bytes>,
    pub next_page_token: String,
}

impl Message for EncodedListKeys {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        for key in &self.keys {
            encoding::bytes::encode(KEYS_FIELD, key, buf);
        }
        if !self.next_page_token.is_empty() {
            encoding::string::encode(NEXT_PAGE_TOKEN_FIELD, &self.next_page_token, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            KEYS_FIELD => {
                let mut key = Bytes::new();
                encoding::bytes::merge(wire_type, &mut key, buf, ctx)?;
                self.keys.push(key);
                Ok(())
            }
            NEXT_PAGE_TOKEN_FIELD => {
                encoding::string::merge(wire_type, &mut self.next_page_token, buf, ctx)
            }
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        let keys: usize = self
            .keys
            .iter()
            .map(|key| encoding::bytes::encoded_len(KEYS_FIELD, key))
            .sum();
        let token = if self.next_page_token.is_empty() {
            0
        } else {
            encoding::string::encoded_len(NEXT_PAGE_TOKEN_FIELD, &self.next_page_token)
        };
        keys + token
    }

    fn clear(&mut self) {
        self.keys.clear();
        self.next_page_token.clear();
    }
}

/// The encoding of one key version for `audience`, at `now`.
pub fn encode_key(key: &AccessKey, now: Timestamp, audience: Audience) -> Bytes {
    let mut key = convert::access_key(key.clone(), now);
    if audience == Audience::Redacted {
        convert::redact(&mut key);
    }
    Bytes::from(key.encode_to_vec())
}

/// keysmith.v1.AccessService with ListKeys routed to [`EncodedListKeys`],
/// and WatchKeys to `crate::watch`.
#[derive(Clone)]
pub struct AccessRoutes {
    rpc: Arc<AccessRpcService>,
    generated: AccessServiceServer<AccessRpcService>,
    max_decoding_message_size: usize,
}

impl AccessRoutes {
    pub fn new(rpc: AccessRpcService, max_decoding_message_size: usize) -> Self {
        let rpc = Arc::new(rpc);
        Self {
            generated: AccessServiceServer::from_arc(rpc.clone())
                .max_decoding_message_size(max_decoding_message_size),
            rpc,
            max_decoding_message_size,
        }
    }
}

impl NamedService for AccessRoutes {
    const NAME: &'static str = <AccessServiceServer<AccessRpcService> as NamedService>::NAME;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower::Service<http::Request<Body>> for AccessRoutes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() == crate::watch::WATCH_KEYS {
            return crate::watch::route(self.rpc.clone(), self.max_decoding_message_size, request);
        }
        if request.uri().path() != LIST_KEYS {
            return Box::pin(tower::Service::call(&mut self.generated, request));
        }
        let method = ListKeysMethod(self.rpc.clone());
        // keysmith's codec, as every generated route has: undecodable bytes are
        // INVALID_ARGUMENT `MALFORMED_REQUEST`.
        let codec =
            keysmith_api::codec::EdgeCodec::<EncodedListKeys, pb::ListKeysRequest>::default();
        let mut grpc = tonic::server::Grpc::new(codec)
            .apply_max_message_size_config(Some(self.max_decoding_message_size), None);
        Box::pin(async move { Ok(grpc.unary(method, request).await) })
    }
}

struct ListKeysMethod(Arc<AccessRpcService>);

impl tonic::server::UnaryService<pb::ListKeysRequest> for ListKeysMethod {
    type Response = EncodedListKeys;
    type Future = BoxFuture<Result<tonic::Response<EncodedListKeys>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<pb::ListKeysRequest>) -> Self::Future {
        let rpc = self.0.clone();
        Box::pin(async move { rpc.list_keys_encoded(request).map(tonic::Response::new) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoded_page_is_a_list_keys_response_on_the_wire() {
        let keys: Vec<pb::AccessKey> = (0..3)
            .map(|i| pb::AccessKey {
                key_id: format!("k{i}"),
                holder_name: "Ada".into(),
                state: i,
                ..Default::default()
            })
            .collect();
        for token in ["", "next"] {
            let encoded = EncodedListKeys {
                keys: keys
                    .iter()
                    .map(|k| Bytes::from(k.encode_to_vec()))
                    .collect(),
                next_page_token: token.into(),
            };
            let expected = pb::ListKeysResponse {
                keys: keys.clone(),
                next_page_token: token.into(),
            };
            let wire = encoded.encode_to_vec();
            assert_eq!(wire.len(), encoded.encoded_len());
            assert_eq!(wire, expected.encode_to_vec());
            assert_eq!(pb::ListKeysResponse::decode(&wire[..]).unwrap(), expected);
            assert_eq!(EncodedListKeys::decode(&wire[..]).unwrap(), encoded);
        }
    }
}
