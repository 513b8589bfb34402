//! WatchKeys over gRPC: one task per watcher takes the core's watch events,
//! renders each key as ListKeys renders it for this caller (credential data
//! only with keys.read_secrets, audited when it goes out), and hands them to
//! tonic through a small channel.
//!
//! A change goes to every watcher of its property, so its key is encoded
//! once per audience and shared ([`ListedKey::encoding`], as ListKeys
//! does): WatchKeys is routed here in front of the generated server, and
//! each message is byte for byte a `keysmith.v1.WatchKeysResponse` written
//! around those bytes.
//!
//! The task waits on that channel when the client reads slowly; meanwhile
//! the changes it has yet to take gather in its buffer in the feed, whose
//! bound (`server.watch_buffer`) ends the watch with `WATCH_BUFFER_OVERFLOW`
//! rather than holding more. Issuing never waits for a watcher.
//!
//! [`ListedKey::encoding`]: keysmith_core::listed::ListedKey::encoding
use std::{convert::Infallible, future::Future, pin::Pin, sync::Arc};

use bytes::{Buf, BufMut, Bytes};
use keysmith_api::v1 as pb;
use keysmith_core::{
    audit::AuditOrigin,
    error::reasons,
    listed::Audience,
    service::{KeyWatch, WatchEvent},
    AccessService, Error,
};
use prost::{
    encoding::{self, DecodeContext, WireType},
    DecodeError, Message,
};
use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{body::Body, Status};

use crate::{
    access::{fail, AccessRpcService},
    audit::AuditLog,
    auth::Caller,
    convert, listing,
};

pub const WATCH_KEYS: &str = "/keysmith.v1.AccessService/WatchKeys";

/// The messages tonic sends a watcher.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<EncodedWatchKeysResponse, Status>> + Send>>;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Messages rendered ahead of what the client has read: enough to keep the
/// connection busy; the feed holds the rest.
const RENDERED_AHEAD: usize = 16;

/// Who watches, for rendering and the audit log.
pub struct Watcher {
    pub caller: Caller,
    pub origin: AuditOrigin,
    pub service: Arc<AccessService>,
    pub audit: Arc<AuditLog>,
    /// Becomes true when keysmith stops.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

impl Watcher {
    /// Serves `watch` until it ends, the client leaves, or keysmith stops.
    pub fn serve(self, mut watch: KeyWatch) -> WatchStream {
        let (tx, rx) = mpsc::channel(RENDERED_AHEAD);
        let mut stopping = self.stopping.clone();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    event = watch.next() => event,
                    // The client left: stop at once, even with no change to
                    // send.
                    () = tx.closed() => return,
                    _ = stopping.wait_for(|s| *s) => Err(Error::unavailable(
                        reasons::STORE_UNAVAILABLE,
                        "keysmith is stopping: resume with the resume_token of the last \
                         change received",
                    )),
                };
                let message = event.map(|e| self.render(e)).map_err(fail);
                let ended = message.is_err();
                if tx.send(message).await.is_err() || ended {
                    return;
                }
            }
        });
        Box::pin(ReceiverStream::new(rx))
    }

    fn render(&self, event: WatchEvent) -> EncodedWatchKeysResponse {
        match event {
            WatchEvent::Started { resume_token } => EncodedWatchKeysResponse {
                event_type: pb::KeyEventType::Watching as i32,
                key: None,
                resume_token,
                change_time: None,
            },
            WatchEvent::Change {
                change,
                resume_token,
            } => {
                let now = self.service.now();
                let audience = if self.caller.reads_secrets() {
                    Audience::WithSecrets
                } else {
                    Audience::Redacted
                };
                let key = change.key.encoding(audience, change.key.state(now), |key| {
                    listing::encode_key(key, now, audience)
                });
                if audience == Audience::WithSecrets && change.key.carries_credential_data() {
                    let mut record =
                        self.audit
                            .record(&self.origin, "WatchKeys", &change.property_id);
                    record.key_ids = vec![change.key.key_id.clone()];
                    record.secrets_returned = true;
                    self.audit.write(record);
                }
                EncodedWatchKeysResponse {
                    event_type: convert::event_type(change.kind) as i32,
                    key: Some(key),
                    resume_token,
                    change_time: Some(convert::timestamp(change.at)),
                }
            }
        }
    }
}

/// Routes a WatchKeys call to [`AccessRpcService::watch_keys_encoded`].
pub fn route(
    rpc: Arc<AccessRpcService>,
    max_decoding_message_size: usize,
    request: http::Request<Body>,
) -> BoxFuture<Result<http::Response<Body>, Infallible>> {
    let codec =
        tonic_prost::ProstCodec::<EncodedWatchKeysResponse, pb::WatchKeysRequest>::default();
    let mut grpc = tonic::server::Grpc::new(codec)
        .apply_max_message_size_config(Some(max_decoding_message_size), None);
    Box::pin(async move { Ok(grpc.server_streaming(WatchKeysMethod(rpc), request).await) })
}

struct WatchKeysMethod(Arc<AccessRpcService>);

impl tonic::server::ServerStreamingService<pb::WatchKeysRequest> for WatchKeysMethod {
    type Response = EncodedWatchKeysResponse;
    type ResponseStream = WatchStream;
    type Future = BoxFuture<Result<tonic::Response<WatchStream>, Status>>;

    fn call(&mut self, request: tonic::Request<pb::WatchKeysRequest>) -> Self::Future {
        let rpc = self.0.clone();
        Box::pin(async move { rpc.watch_keys_encoded(request) })
    }
}

const EVENT_TYPE_FIELD: u32 = 1;
const KEY_FIELD: u32 = 2;
const RESUME_TOKEN_FIELD: u32 = 3;
const CHANGE_TIME_FIELD: u32 = 4;

/// A `WatchKeysResponse` whose key is already an encoded `AccessKey`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EncodedWatchKeysResponse {
    pub event_type: i32,
    pub key: Option<Bytes>,
    pub resume_token: String,
    pub change_time: Option<prost_types::Timestamp>,
}

impl Message for EncodedWatchKeysResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if self.event_type != 0 {
            encoding::int32::encode(EVENT_TYPE_FIELD, &self.event_type, buf);
        }
        if let Some(key) = &self.key {
            encoding::bytes::encode(KEY_FIELD, key, buf);
        }
        if !self.resume_token.is_empty() {
            encoding::string::encode(RESUME_TOKEN_FIELD, &self.resume_token, buf);
        }
        if let Some(time) = &self.change_time {
            encoding::message::encode(CHANGE_TIME_FIELD, time, buf);
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
            EVENT_TYPE_FIELD => encoding::int32::merge(wire_type, &mut self.event_type, buf, ctx),
            KEY_FIELD => {
                let mut key = Bytes::new();
                encoding::bytes::merge(wire_type, &mut key, buf, ctx)?;
                self.key = Some(key);
                Ok(())
            }
            RESUME_TOKEN_FIELD => {
                encoding::string::merge(wire_type, &mut self.resume_token, buf, ctx)
            }
            CHANGE_TIME_FIELD => encoding::message::merge(
                wire_type,
                self.change_time.get_or_insert_with(Default::default),
                buf,
                ctx,
            ),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        (if self.event_type != 0 {
            encoding::int32::encoded_len(EVENT_TYPE_FIELD, &self.event_type)
        } else {
            0
        }) + self
            .key
            .as_ref()
            .map_or(0, |k| encoding::bytes::encoded_len(KEY_FIELD, k))
            + if self.resume_token.is_empty() {
                0
            } else {
                encoding::string::encoded_len(RESUME_TOKEN_FIELD, &self.resume_token)
            }
            + self
                .change_time
                .as_ref()
                .map_or(0, |t| encoding::message::encoded_len(CHANGE_TIME_FIELD, t))
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoded_message_is_a_watch_keys_response_on_the_wire() {
        let key = pb::AccessKey {
            key_id: "k1".into(),
            holder_name: "Ada".into(),
            state: 2,
            ..Default::default()
        };
        let time = prost_types::Timestamp {
            seconds: 1_900_000_000,
            nanos: 5,
        };
        let expected = pb::WatchKeysResponse {
            event_type: pb::KeyEventType::Issued as i32,
            key: Some(key.clone()),
            resume_token: "token".into(),
            change_time: Some(time),
        };
        let encoded = EncodedWatchKeysResponse {
            event_type: pb::KeyEventType::Issued as i32,
            key: Some(Bytes::from(key.encode_to_vec())),
            resume_token: "token".into(),
            change_time: Some(time),
        };
        let wire = encoded.encode_to_vec();
        assert_eq!(wire.len(), encoded.encoded_len());
        assert_eq!(wire, expected.encode_to_vec());
        assert_eq!(pb::WatchKeysResponse::decode(&wire[..]).unwrap(), expected);
        assert_eq!(
            EncodedWatchKeysResponse::decode(&wire[..]).unwrap(),
            encoded
        );

        let started = EncodedWatchKeysResponse {
            event_type: pb::KeyEventType::Watching as i32,
            resume_token: "t".into(),
            ..Default::default()
        };
        let wire = started.encode_to_vec();
        assert_eq!(wire.len(), started.encoded_len());
        assert_eq!(
            pb::WatchKeysResponse::decode(&wire[..]).unwrap(),
            pb::WatchKeysResponse {
                event_type: pb::KeyEventType::Watching as i32,
                resume_token: "t".into(),
                ..Default::default()
            }
        );
    }
}
