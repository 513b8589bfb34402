//! The room access key mutations of the guide: create, add to a stay,
//! remove from it, delete.

use async_graphql::{Context, InputObject, Object, SimpleObject, ID};

use super::{api, core, writer, RoomAccessKey, RoomStay};
use crate::errors::{arg_path, ApiError, ApiResult, Msg};
use crate::model::{Key, KeyKind};
use crate::state::{check_compartment, check_pin, check_qr_data, World};

#[derive(InputObject)]
pub struct RoomAccessPinInput {
    pub pin: String,
}

#[derive(InputObject)]
pub struct RoomAccessKeyStorageInput {
    pub pin: String,
    pub compartment: String,
}

#[derive(InputObject)]
#[graphql(name = "RoomAccessQRInput")]
pub struct RoomAccessQrInput {
    pub qr_data: String,
}

/// Exactly one of the three must be given (checked by the resolver, so a
/// violation is a `validation` error with an `argumentPath`).
#[derive(InputObject)]
pub struct CreateRoomAccessKeyInput {
    pub room_access_pin: Option<RoomAccessPinInput>,
    pub room_access_key_storage: Option<RoomAccessKeyStorageInput>,
    #[graphql(name = "roomAccessQR")]
    pub room_access_qr: Option<RoomAccessQrInput>,
}

impl CreateRoomAccessKeyInput {
    fn to_kind(&self) -> ApiResult<KeyKind> {
        let at = |field: &str, leaf: &str, msg: Msg| {
            ApiError::validation(msg, arg_path!["input", field, leaf])
        };
        match (
            &self.room_access_pin,
            &self.room_access_key_storage,
            &self.room_access_qr,
        ) {
            (Some(p), None, None) => {
                check_pin(&p.pin).map_err(|m| at("roomAccessPin", "pin", m))?;
                Ok(KeyKind::Pin { pin: p.pin.clone() })
            }
            (None, Some(s), None) => {
                check_pin(&s.pin).map_err(|m| at("roomAccessKeyStorage", "pin", m))?;
                check_compartment(&s.compartment)
                    .map_err(|m| at("roomAccessKeyStorage", "compartment", m))?;
                Ok(KeyKind::KeyStorage {
                    pin: s.pin.clone(),
                    compartment: s.compartment.clone(),
                })
            }
            (None, None, Some(q)) => {
                check_qr_data(&q.qr_data).map_err(|m| at("roomAccessQR", "qrData", m))?;
                Ok(KeyKind::Qr {
                    qr_data: q.qr_data.clone(),
                })
            }
            _ => Err(ApiError::validation(
                Msg::OneKeyTypeRequired,
                arg_path!["input"],
            )),
        }
    }
}

#[derive(SimpleObject)]
pub struct CreateRoomAccessKeyPayload {
    pub room_access_key: RoomAccessKey,
}

#[derive(InputObject)]
pub struct AddRoomAccessKeyInput {
    pub room_stay_id: ID,
    pub room_access_key_id: ID,
}

#[derive(InputObject)]
pub struct RemoveRoomAccessKeyInput {
    pub room_stay_id: ID,
    pub room_access_key_id: ID,
}

#[derive(SimpleObject)]
pub struct AddRoomAccessKeyPayload {
    pub room_stay: RoomStay,
}

#[derive(SimpleObject)]
pub struct RemoveRoomAccessKeyPayload {
    pub room_stay: RoomStay,
}

#[derive(InputObject)]
pub struct DeleteRoomAccessKeyInput {
    pub room_access_key_id: ID,
}

#[derive(SimpleObject)]
pub struct DeleteRoomAccessKeyPayload {
    pub deleted: bool,
}

/// Reads a stay for a mutation's answer after the change.
fn stay_after(world: &World, hotel: &str, stay_id: &str) -> ApiResult<RoomStay> {
    world
        .hotel(hotel)
        .and_then(|h| h.stays.get(stay_id))
        .map(|s| RoomStay::new(hotel.to_string(), s.clone()))
        .ok_or_else(|| {
            ApiError::validation(
                Msg::UnknownRoomStay(stay_id.into()),
                arg_path!["input", "roomStayId"],
            )
        })
}

#[derive(Default)]
pub struct KeyMutations;

#[Object]
impl KeyMutations {
    async fn create_room_access_key(
        &self,
        ctx: &Context<'_>,
        input: CreateRoomAccessKeyInput,
    ) -> async_graphql::Result<CreateRoomAccessKeyPayload> {
        let r = writer(ctx)?;
        let mut world = core(ctx).world.lock();
        // Configuration is checked before contents: an unconfigured hotel
        // says so whatever the input.
        if let Some(h) = world.hotel(&r.principal.hotel) {
            if !h.configured {
                return api(
                    ctx,
                    Err(ApiError::configuration(Msg::RoomAccessKeysNotConfigured)),
                );
            }
        }
        let kind = api(ctx, input.to_kind())?;
        let id = api(ctx, world.create_key(&r.principal, kind.clone(), &r.undo))?;
        let key = Key {
            id,
            integration: r.principal.integration.clone(),
            kind,
        };
        Ok(CreateRoomAccessKeyPayload {
            room_access_key: RoomAccessKey::of(&key),
        })
    }

    async fn add_room_access_key(
        &self,
        ctx: &Context<'_>,
        input: AddRoomAccessKeyInput,
    ) -> async_graphql::Result<AddRoomAccessKeyPayload> {
        let r = writer(ctx)?;
        let mut world = core(ctx).world.lock();
        api(
            ctx,
            world.add_key(
                &r.principal,
                &input.room_stay_id,
                &input.room_access_key_id,
                &r.undo,
            ),
        )?;
        let room_stay = api(
            ctx,
            stay_after(&world, &r.principal.hotel, &input.room_stay_id),
        )?;
        Ok(AddRoomAccessKeyPayload { room_stay })
    }

    async fn remove_room_access_key(
        &self,
        ctx: &Context<'_>,
        input: RemoveRoomAccessKeyInput,
    ) -> async_graphql::Result<RemoveRoomAccessKeyPayload> {
        let r = writer(ctx)?;
        let mut world = core(ctx).world.lock();
        api(
            ctx,
            world.remove_key(
                &r.principal,
                &input.room_stay_id,
                &input.room_access_key_id,
                &r.undo,
            ),
        )?;
        let room_stay = api(
            ctx,
            stay_after(&world, &r.principal.hotel, &input.room_stay_id),
        )?;
        Ok(RemoveRoomAccessKeyPayload { room_stay })
    }

    async fn delete_room_access_key(
        &self,
        ctx: &Context<'_>,
        input: DeleteRoomAccessKeyInput,
    ) -> async_graphql::Result<DeleteRoomAccessKeyPayload> {
        let r = writer(ctx)?;
        let mut world = core(ctx).world.lock();
        api(
            ctx,
            world.delete_key(&r.principal, &input.room_access_key_id, &r.undo),
        )?;
        Ok(DeleteRoomAccessKeyPayload { deleted: true })
    }
}
