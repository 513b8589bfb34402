//! The Seam driver's factory: the driver for every configured workspace,
//! the Svix receiver of Seam's events when `webhook_listen` is set, and the
//! pace at which keysmith follows Seam's keys and entrances.
use std::{sync::Arc, time::Duration};

use keysmith_core::{
    follower::Follow,
    hosting::{Built, DriverContext},
    reasons, Error, ErrorKind, Result,
};
use tokio::net::TcpListener;

use crate::{webhook, SeamConfig, SeamDriver, DRIVER_NAME};

/// What the Seam receiver's address is reported as.
pub const EVENTS: &str = "seam-events";

/// Builds the Seam driver from its configuration.
pub async fn build(config: &SeamConfig, ctx: &DriverContext) -> Result<Built> {
    // Config::load checks this too; a configuration built in code is
    // checked here, so that no weak secret ever verifies an event.
    config.validate().map_err(|why| {
        Error::new(
            ErrorKind::InvalidArgument,
            reasons::FIELD_INVALID,
            format!("invalid configuration: {why}"),
        )
    })?;
    let driver = Arc::new(SeamDriver::new(config, ctx.state(DRIVER_NAME)?)?);
    let mut built = Built::driver(driver.clone());
    built.follow = Follow {
        keys: Some(Duration::from_millis(config.poll_interval_ms)),
        entrances: Some(Duration::from_secs(config.entrance_refresh_seconds)),
    };
    if let Some(listen) = config.webhook_listen {
        let secrets = config
            .workspaces
            .iter()
            .filter_map(|w| Some((w.property_id.clone(), w.webhook_secret.clone()?)))
            .collect();
        // Bound now, so that a taken address stops the start with its name.
        let listener = TcpListener::bind(listen).await.map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                reasons::DRIVER_UNAVAILABLE,
                format!("cannot listen for Seam events on {listen}: {e}"),
            )
        })?;
        let addr = listener.local_addr().map_err(|e| {
            Error::internal(format!("the Seam events listener has no address: {e}"))
        })?;
        built.listening.push((EVENTS, addr));
        built.tasks.push(Box::new(move |service, mut stop| {
            Box::pin(async move {
                let app = webhook::router(secrets, driver, service);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop.changed().await;
                    })
                    .await;
            })
        }));
    }
    Ok(built)
}
