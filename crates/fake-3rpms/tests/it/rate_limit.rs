//! The silent block: no 429, no answer, then the connection is dropped.

use std::time::Duration;

use fake_3rpms::FakeConfig;
use serde_json::json;

use crate::common::*;

fn config(limit: u32, block: Duration) -> FakeConfig {
    FakeConfig {
        rate_limit_per_minute: limit,
        block_duration: block,
        ..FakeConfig::default()
    }
}

fn query() -> serde_json::Value {
    json!({ "query": "{ room_stays { edges { cursor } } }" })
}

#[tokio::test]
async fn exceeding_the_limit_blocks_silently_then_recovers() {
    // Long enough for the second client to arrive within the block even on
    // a loaded machine; nothing waits for it to pass but the test itself.
    let env = env_with(config(3, Duration::from_millis(800))).await;
    for _ in 0..3 {
        env.post(READ, query()).await;
    }
    assert!(!env.fake.is_blocked());

    // The 4th request starts the block and never gets an answer: the
    // connection is dropped when the block ends. Never an HTTP status.
    let url = env.fake.graphql_url();
    let exceeding = tokio::spawn({
        let client = env.client.clone();
        let url = url.clone();
        async move {
            client
                .post(url)
                .bearer_auth(READ)
                .json(&query())
                .send()
                .await
        }
    });
    env.fake.wait_for_block().await;
    assert!(env.fake.is_blocked());

    // A new connection during the block is accepted and left hanging too.
    let fresh = reqwest::Client::new();
    let during = fresh
        .post(&url)
        .bearer_auth(READ)
        .json(&query())
        .send()
        .await;
    let during = during.expect_err("no answer during a block");
    assert!(!during.is_status());
    let exceeding = exceeding
        .await
        .unwrap()
        .expect_err("no answer to the exceeding request");
    assert!(!exceeding.is_status());

    let c = env.fake.counts();
    assert_eq!(c.blocks, 1);
    assert_eq!(c.rate_limited, 1);
    assert_eq!(c.blocked_connections, 1);

    // After the block the client is served again.
    env.fake.wait_until_unblocked().await;
    assert!(!env.fake.is_blocked());
    let resp = env.post(READ, query()).await;
    assert!(!has_errors(&resp), "{resp}");
}

#[tokio::test]
async fn requests_on_an_open_connection_hang_during_a_block() {
    let env = env_with(config(1, Duration::from_millis(200))).await;
    env.post(READ, query()).await;
    // The same pooled client: the request goes over the kept-alive connection.
    let second = env
        .client
        .post(env.fake.graphql_url())
        .bearer_auth(READ)
        .json(&query())
        .send()
        .await;
    assert!(second.is_err());
    let c = env.fake.counts();
    assert_eq!((c.http_requests, c.rate_limited, c.blocks), (2, 1, 1));
}

#[tokio::test]
async fn a_batch_counts_as_one_request() {
    let env = env_with(config(2, Duration::from_secs(3600))).await;
    let batch: Vec<_> = (0..50).map(|_| query()).collect();
    let resp = env.post(READ, json!(batch)).await;
    assert_eq!(resp.as_array().unwrap().len(), 50);
    let resp = env.post(READ, json!(batch)).await;
    assert_eq!(resp.as_array().unwrap().len(), 50);
    let c = env.fake.counts();
    assert_eq!(
        (c.http_requests, c.graphql_operations, c.rate_limited),
        (2, 100, 0)
    );
    assert!(!env.fake.is_blocked());
}
