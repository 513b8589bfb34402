//! Issues a guest key on the demo hotel and lists it: the smallest client.
//!
//! Start keysmith on its embedded default (`cargo run -- serve`), then:
//! `cargo run -p keysmith-examples --example issue_and_list`
use std::time::{SystemTime, UNIX_EPOCH};

use keysmith_api::v1::{self as pb, access_service_client::AccessServiceClient};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:50051".into());
    let mut client = AccessServiceClient::connect(addr).await?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let at = |seconds| prost_types::Timestamp { seconds, nanos: 0 };

    let issued = client
        .issue(pb::IssueRequest {
            property_id: "demo-hotel".into(),
            request_id: format!("example-{now}"),
            holder_id: "guest-42".into(),
            holder_name: "Ada Guest".into(),
            entrance_ids: vec!["room-101".into(), "lobby".into()],
            starts_at: Some(at(now)),
            ends_at: Some(at(now + 3 * 86_400)),
            reservation_key: format!("stay-{now}"),
            modes: vec![pb::CredentialMode::Card as i32],
            ..Default::default()
        })
        .await?
        .into_inner()
        .key
        .ok_or("no key in the answer")?;
    println!("issued key {} ({:?})", issued.key_id, issued.state());
    for e in &issued.entrances {
        println!("  {} via {} ({:?})", e.entrance_id, e.driver, e.behaviour());
    }

    let page = client
        .list_keys(pb::ListKeysRequest {
            property_id: "demo-hotel".into(),
            holder_id: "guest-42".into(),
            page_size: 10,
            ..Default::default()
        })
        .await?
        .into_inner();
    println!("guest-42 holds {} key(s) on this page", page.keys.len());
    Ok(())
}
