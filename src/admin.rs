//! `keysmith encryption status|rotate-data-key|rotate-key-encryption-key`:
//! the online rotations, called on a running keysmith over
//! `keysmith.v1.EncryptionService` (as grpcurl would).
use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::Args;
use keysmith_api::v1::{self as pb, encryption_service_client::EncryptionServiceClient};
use tonic::{
    metadata::MetadataValue,
    transport::{Certificate, Channel, ClientTlsConfig},
};

/// Where keysmith is and who calls it.
#[derive(Args)]
pub struct Target {
    /// keysmith's address: http://host:port, or https://host:port.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// The CA certificate (PEM) that signed keysmith's; https needs it.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// A bearer token for every property with keysmith.admin; read from
    /// $KEYSMITH_TOKEN when not given (development mode needs none).
    #[arg(long, env = "KEYSMITH_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl Target {
    async fn client(&self) -> anyhow::Result<Caller> {
        let mut endpoint = Channel::from_shared(self.addr.clone())
            .with_context(|| format!("{:?} is not an address", self.addr))?;
        if self.addr.starts_with("https://") {
            let ca = self
                .ca_cert
                .as_ref()
                .context("https needs --ca-cert: the CA certificate that signed keysmith's")?;
            let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))?;
        }
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot reach keysmith at {}", self.addr))?;
        let bearer = match &self.token {
            Some(token) => Some(
                format!("Bearer {token}")
                    .parse::<MetadataValue<_>>()
                    .context("the token is not valid in a header")?,
            ),
            None => None,
        };
        Ok(Caller {
            client: EncryptionServiceClient::new(channel),
            bearer,
        })
    }
}

struct Caller {
    client: EncryptionServiceClient<Channel>,
    bearer: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Caller {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(bearer) = &self.bearer {
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
        }
        request
    }

    async fn status(&mut self) -> anyhow::Result<pb::GetEncryptionStatusResponse> {
        let request = self.request(pb::GetEncryptionStatusRequest {});
        Ok(self
            .client
            .get_encryption_status(request)
            .await
            .map_err(refused)?
            .into_inner())
    }
}

fn refused(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!(
        "keysmith refused: {:?}: {}",
        status.code(),
        status.message()
    )
}

fn print(status: &pb::GetEncryptionStatusResponse) {
    let pb::GetEncryptionStatusResponse {
        key_encryption_key_id,
        current_data_key,
        data_keys,
        resealing,
    } = status;
    println!("key-encryption key: {key_encryption_key_id}");
    println!("current data key:   {current_data_key}");
    println!("data keys stored:   {data_keys:?}");
    println!(
        "resealing:          {}",
        if *resealing {
            "yes, records are being sealed with the current data key"
        } else {
            "no"
        }
    );
}

pub async fn status(target: Target) -> anyhow::Result<()> {
    let mut caller = target.client().await?;
    print(&caller.status().await?);
    Ok(())
}

/// Starts a data key rotation; with `wait`, reports until every record is
/// sealed with the new key.
pub async fn rotate_data_key(target: Target, wait: bool) -> anyhow::Result<()> {
    let mut caller = target.client().await?;
    let request = caller.request(pb::RotateDataKeyRequest {});
    let answer = caller
        .client
        .rotate_data_key(request)
        .await
        .map_err(refused)?
        .into_inner();
    let mut status = answer.status.unwrap_or_default();
    println!(
        "new records are sealed with data key {}; every stored record is being sealed again",
        status.current_data_key
    );
    while wait && status.resealing {
        // A command line waiting on a server: there is nothing to subscribe
        // to, so it asks again.
        tokio::time::sleep(Duration::from_secs(1)).await;
        status = caller.status().await?;
    }
    print(&status);
    Ok(())
}

pub async fn rotate_key_encryption_key(
    target: Target,
    key_id: String,
    key_file: Option<PathBuf>,
    key_env: Option<String>,
) -> anyhow::Result<()> {
    let mut caller = target.client().await?;
    let request = caller.request(pb::RotateKeyEncryptionKeyRequest {
        key_id: key_id.clone(),
        key_file: key_file
            .map(|f| f.display().to_string())
            .unwrap_or_default(),
        key_env: key_env.unwrap_or_default(),
    });
    let answer = caller
        .client
        .rotate_key_encryption_key(request)
        .await
        .map_err(refused)?
        .into_inner();
    print(&answer.status.unwrap_or_default());
    println!();
    println!(
        "the data keys are wrapped with {key_id:?}: set storage.encryption.key_id and key_file \
         (or key_env) to it before keysmith next starts"
    );
    Ok(())
}
