//! Webhook endpoints: `createWebhookEndpoint` as the vendor documents it
//! (`url`, `events`; the secret readable once), and, only with the assumed
//! endpoint status, its `status` and `updateWebhookEndpoint`.

use async_graphql::{Context, InputObject, Object, SimpleObject, ID};

use super::{api, core, writer};
use crate::errors::{arg_path, ApiError, ApiResult, Msg};
use crate::model::WebhookEndpointStatus;
use crate::state::World;

#[derive(SimpleObject, Clone)]
pub struct WebhookEndpoint {
    pub id: ID,
    /// Not documented by the vendor: an assumed extra.
    #[graphql(visible = "super::with_endpoint_status")]
    pub status: WebhookEndpointStatus,
    pub url: String,
    pub events: Vec<String>,
}

/// The vendor names `url`, `status` and `events`, but not the values of
/// `status`: without the assumed endpoint status the field is not there
/// and an endpoint is created active.
#[derive(InputObject)]
pub struct CreateWebhookEndpointInput {
    pub url: String,
    #[graphql(visible = "super::with_endpoint_status")]
    pub status: Option<WebhookEndpointStatus>,
    pub events: Vec<String>,
}

/// The secret is only readable here, once: `WebhookEndpoint` has no field for it.
#[derive(SimpleObject)]
pub struct CreateWebhookEndpointPayload {
    pub webhook_endpoint: WebhookEndpoint,
    pub secret: String,
}

#[derive(InputObject)]
pub struct UpdateWebhookEndpointInput {
    pub id: ID,
    pub status: Option<WebhookEndpointStatus>,
}

#[derive(SimpleObject)]
pub struct UpdateWebhookEndpointPayload {
    pub webhook_endpoint: WebhookEndpoint,
}

fn endpoint_view(world: &World, hotel: &str, id: &str) -> ApiResult<WebhookEndpoint> {
    world
        .hotel(hotel)
        .and_then(|h| h.endpoints.get(id))
        .map(|e| WebhookEndpoint {
            id: ID(e.id.clone()),
            status: e.status,
            url: e.url.clone(),
            events: e.events.clone(),
        })
        .ok_or_else(|| {
            ApiError::validation(
                Msg::UnknownWebhookEndpoint(id.into()),
                arg_path!["input", "id"],
            )
        })
}

#[derive(Default)]
pub struct EndpointMutations;

#[Object]
impl EndpointMutations {
    async fn create_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: CreateWebhookEndpointInput,
    ) -> async_graphql::Result<CreateWebhookEndpointPayload> {
        let r = writer(ctx)?;
        let mut world = core(ctx).world.lock();
        let (id, secret) = api(
            ctx,
            world.create_endpoint(
                &r.principal,
                &input.url,
                input.status.unwrap_or(WebhookEndpointStatus::Enabled),
                &input.events,
                &r.undo,
            ),
        )?;
        let webhook_endpoint = api(ctx, endpoint_view(&world, &r.principal.hotel, &id))?;
        Ok(CreateWebhookEndpointPayload {
            webhook_endpoint,
            secret,
        })
    }

    /// Not documented by the vendor: an assumed extra.
    #[graphql(visible = "super::with_endpoint_status")]
    async fn update_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: UpdateWebhookEndpointInput,
    ) -> async_graphql::Result<UpdateWebhookEndpointPayload> {
        let r = writer(ctx)?;
        let mut world = core(ctx).world.lock();
        api(
            ctx,
            world.update_endpoint(&r.principal, &input.id, input.status, &r.undo),
        )?;
        let webhook_endpoint = api(ctx, endpoint_view(&world, &r.principal.hotel, &input.id))?;
        Ok(UpdateWebhookEndpointPayload { webhook_endpoint })
    }
}
