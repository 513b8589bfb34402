//! `fake-seam --listen 127.0.0.1:8790`: a fake Seam Connect seeded with a
//! demo workspace: a Visionline-like system with guest rooms and a plain one
//! with common doors. Prints what it seeded.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use fake_seam::{EntranceSeed, FakeSeam, FakeSeamConfig};

#[derive(Parser)]
#[command(
    name = "fake-seam",
    about = "A fake Seam Connect API for tests and demos"
)]
struct Args {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8790")]
    listen: SocketAddr,
    /// Milliseconds before access methods are issued (Seam takes seconds).
    #[arg(long, default_value_t = 1500)]
    issue_delay_ms: u64,
    /// Milliseconds before a deleted grant disappears.
    #[arg(long, default_value_t = 1500)]
    delete_delay_ms: u64,
    /// Milliseconds before a card encoding ends.
    #[arg(long, default_value_t = 1000)]
    encode_delay_ms: u64,
    /// Register a webhook endpoint for the demo workspace (prints its secret).
    #[arg(long)]
    webhook_url: Option<String>,
}

const WORKSPACE: &str = "ws_demo";
const API_KEY: &str = "seam_test_demo";
/// The systems' names in the control API (clients see minted UUIDs).
const VISIONLINE: &str = "visionline";
const PLAIN: &str = "plain";

struct Seeded {
    system: &'static str,
    name: &'static str,
    id: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    if let Some(url) = &args.webhook_url {
        if reqwest::Url::parse(url).is_err() {
            eprintln!("fake-seam: --webhook-url {url:?} is not an absolute URL");
            std::process::exit(2);
        }
    }
    let config = FakeSeamConfig {
        issue_delay: Some(Duration::from_millis(args.issue_delay_ms)),
        delete_delay: Some(Duration::from_millis(args.delete_delay_ms)),
        encode_delay: Some(Duration::from_millis(args.encode_delay_ms)),
        ..FakeSeamConfig::default()
    };
    let fake = FakeSeam::start_on(args.listen, config).await?;
    let seeded = seed(&fake);
    let secret = args
        .webhook_url
        .as_deref()
        .map(|url| (url, fake.add_webhook(WORKSPACE, url)));
    print_banner(&fake, &seeded, secret);
    tokio::signal::ctrl_c().await?;
    fake.shutdown().await;
    Ok(())
}

/// What the demo seeds, by the ids clients see.
struct Seed {
    workspace_id: String,
    visionline_id: String,
    plain_id: String,
    entrances: Vec<Seeded>,
    encoders: Vec<Seeded>,
}

fn seed(fake: &FakeSeam) -> Seed {
    let workspace_id = fake.add_workspace(WORKSPACE, API_KEY);
    let visionline_id = fake.add_acs_system(WORKSPACE, VISIONLINE, "Visionline (demo)", true);
    let plain_id = fake.add_acs_system(WORKSPACE, PLAIN, "Common doors (demo)", false);
    let room = |name: &'static str, space: &str, code: bool| {
        let id = fake.add_entrance(
            WORKSPACE,
            VISIONLINE,
            EntranceSeed {
                display_name: name.into(),
                space_key: Some(space.into()),
                can_belong_to_reservation: true,
                can_unlock_with_card: true,
                can_unlock_with_mobile_key: true,
                can_unlock_with_code: code,
            },
        );
        Seeded {
            system: "visionline",
            name,
            id,
        }
    };
    let common = |name: &'static str, space: &str| {
        let id = fake.add_entrance(
            WORKSPACE,
            PLAIN,
            EntranceSeed {
                display_name: name.into(),
                space_key: Some(space.into()),
                can_unlock_with_card: true,
                can_unlock_with_code: true,
                ..EntranceSeed::default()
            },
        );
        Seeded {
            system: "plain",
            name,
            id,
        }
    };
    let entrances = vec![
        room("Room 101", "room-101", false),
        room("Room 102", "room-102", false),
        room("Room 201", "room-201", true),
        room("Room 203", "room-203", false),
        common("Lobby", "lobby"),
        common("Gym", "gym"),
    ];
    let encoders = vec![
        Seeded {
            system: "visionline",
            name: "Front desk encoder",
            id: fake.add_encoder(WORKSPACE, VISIONLINE, "Front desk encoder"),
        },
        Seeded {
            system: "plain",
            name: "Back office encoder",
            id: fake.add_encoder(WORKSPACE, PLAIN, "Back office encoder"),
        },
    ];
    Seed {
        workspace_id,
        visionline_id,
        plain_id,
        entrances,
        encoders,
    }
}

/// Tells the user what is seeded. Printing errors (a closed pipe) are
/// ignored: the server is what matters, not the banner.
fn print_banner(fake: &FakeSeam, seeded: &Seed, webhook: Option<(&str, String)>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "fake Seam Connect: {}", fake.base_url());
    let _ = writeln!(
        out,
        "workspace {WORKSPACE} ({}), API key {API_KEY}",
        seeded.workspace_id
    );
    let _ = writeln!(
        out,
        "acs system visionline (guest cards need a reservation_key): {}",
        seeded.visionline_id
    );
    let _ = writeln!(out, "acs system plain: {}", seeded.plain_id);
    for e in &seeded.entrances {
        let _ = writeln!(out, "entrance {:<10} {:<8} {}", e.system, e.name, e.id);
    }
    for e in &seeded.encoders {
        let _ = writeln!(out, "encoder  {:<10} {} {}", e.system, e.id, e.name);
    }
    if let Some((url, secret)) = webhook {
        let _ = writeln!(out, "webhook {url} secret {secret}");
    }
    let _ = writeln!(out, "ready");
    let _ = out.flush();
}
