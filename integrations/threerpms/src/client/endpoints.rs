//! Webhook endpoints: created with the documented fields (and a status
//! where the schema has one), switched on or off where the schema has
//! `updateWebhookEndpoint`.
use keysmith_core::{Result, Secret};
use serde::Deserialize;
use serde_json::json;

use super::{field, Client, IdOnly};
use crate::{queries, transport::Operation};

impl Client {
    /// Registers a webhook endpoint, with `status` set when given (an enum
    /// value introspection named). The answer carries the secret, readable
    /// only this once.
    pub async fn create_webhook_endpoint(
        &self,
        url: &str,
        events: &[&str],
        status: Option<&str>,
    ) -> Result<(String, Secret<String>)> {
        let data = self
            .one(Operation::mutation(
                queries::create_webhook_endpoint(status),
                json!({ "url": url, "events": events }),
            ))
            .await?;
        #[derive(Deserialize)]
        struct Created {
            #[serde(rename = "webhookEndpoint")]
            endpoint: IdOnly,
            secret: String,
        }
        let created: Created = field(data, "createWebhookEndpoint")?;
        // A secret that cannot verify a delivery would have every event
        // refused: said now, to the operator who registers, not stored.
        if let Some(why) = crate::webhook::signature::secret_weakness(&created.secret) {
            return Err(crate::errors::bad_answer(format!(
                "createWebhookEndpoint answered a secret that {why}"
            )));
        }
        Ok((created.endpoint.id, Secret::new(created.secret)))
    }

    /// Sets an endpoint's status (an enum value introspection named).
    pub async fn set_webhook_endpoint_status(&self, id: &str, status: &str) -> Result<()> {
        self.one(Operation::mutation(
            queries::update_webhook_endpoint(status),
            json!({ "id": id }),
        ))
        .await
        .map(drop)
    }
}
