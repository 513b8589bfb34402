//! Runs a full scenario with tracing at TRACE and scans everything logged
//! for each secret value: PINs, card, mobile-key and QR data, the site secret.
mod common;

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use common::*;
use keysmith_api::v1 as pb;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_reaches_the_logs_even_at_trace() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let s = TestServer::start().await;
    let mut req = guest("guest-secret", &["room-101", "gym"], T0, T0 + DAY, "stay-s");
    req.modes = vec![
        pb::CredentialMode::Pin as i32,
        pb::CredentialMode::Card as i32,
        pb::CredentialMode::MobileKey as i32,
    ];
    req.pin = "73910482".into();
    let key = s.issue(req.clone()).await.unwrap();
    let mut qr = guest("guest-qr", &["lobby"], T0, T0 + DAY, "");
    qr.modes = vec![pb::CredentialMode::Qr as i32];
    let qr_key = s.issue(qr).await.unwrap();
    // Errors that involve a PIN: reuse, malformed.
    let mut again = req.clone();
    again.holder_id = "other".into();
    assert!(s.issue(again).await.is_err());
    let mut bad = req.clone();
    bad.pin = "73a10482".into();
    assert!(s.issue(bad).await.is_err());
    s.present("room-101", "73910482", T0 + 60).await;
    s.present("room-101", &card(&key), T0 + 120).await;
    s.list(pb::ListKeysRequest {
        property_id: PROPERTY.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    s.revoke_key(&key.key_id).await.unwrap();
    s.running.as_ref().unwrap();

    let mut secrets: Vec<String> = vec![
        "73910482".into(),
        "73a10482".into(),
        "demo-site-secret-not-for-production".into(),
    ];
    for k in [&key, &qr_key] {
        for c in &k.credentials {
            match &c.data {
                Some(pb::credential::Data::CardData(d))
                | Some(pb::credential::Data::MobileKey(d))
                | Some(pb::credential::Data::QrData(d)) => secrets.push(d.clone()),
                Some(pb::credential::Data::Pin(p)) => secrets.push(p.clone()),
                _ => {}
            }
        }
    }
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("key issued"),
        "the scenario was logged at all"
    );
    assert!(logs.contains("stay-s"), "spans carry the reservation key");
    for secret in &secrets {
        // Card data is long; its payload part alone must not leak either.
        let needle = if secret.len() > 40 {
            &secret[5..40]
        } else {
            secret.as_str()
        };
        assert!(
            !logs.contains(needle),
            "a secret reached the logs: {needle}"
        );
    }
}
