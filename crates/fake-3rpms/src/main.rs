//! `fake-3rpms --listen 127.0.0.1:8787`: a fake 3RPMS seeded with the demo
//! hotel keysmith's demo config points at.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use fake_3rpms::{Access, Assumed, Fake3rpms, FakeConfig};
use jiff::civil::Date;
use jiff::ToSpan;

#[derive(Parser)]
#[command(
    name = "fake-3rpms",
    about = "A fake 3RPMS GraphQL API for tests and demos"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// Requests per client IP per minute before the silent block.
    #[arg(long, default_value_t = 200)]
    rate_limit: u32,
    /// Length of the block, in seconds (vendor: 1200).
    #[arg(long, default_value_t = 1200)]
    block_secs: u64,
    /// Schema guesses the vendor does not document, each on only when
    /// named (see README.md): reservation-status, reservation-id-filter,
    /// endpoint-status. Without any, the schema is the documented one.
    #[arg(long, value_delimiter = ',', value_parser = ["reservation-status", "reservation-id-filter", "endpoint-status"])]
    assume: Vec<String>,
}

const HOTEL: &str = "demo-hotel";
const ROOMS: &[&str] = &["101", "102", "201", "203", "301", "401"];

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let assumed = Assumed {
        reservation_status: args.assume.iter().any(|a| a == "reservation-status"),
        reservation_id_filter: args.assume.iter().any(|a| a == "reservation-id-filter"),
        endpoint_status: args.assume.iter().any(|a| a == "endpoint-status"),
    };
    let config = FakeConfig {
        rate_limit_per_minute: args.rate_limit,
        block_duration: Duration::from_secs(args.block_secs),
        assumed,
        ..FakeConfig::default()
    };
    let fake = Fake3rpms::start_on(args.listen, config).await?;
    seed(&fake);

    print_banner(&fake);
    tokio::signal::ctrl_c().await?;
    fake.shutdown().await;
    Ok(())
}

/// Tells the user what is seeded. Printing errors (a closed pipe) are
/// ignored: the server is what matters, not the banner.
fn print_banner(fake: &Fake3rpms) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "fake 3RPMS GraphQL API: {}", fake.graphql_url());
    let _ = writeln!(out, "hotel: {HOTEL}");
    let _ = writeln!(out, "  api_demo_write  (Write, integration \"keysmith\")");
    let _ = writeln!(out, "  api_demo_read   (Read,  integration \"messaging\")");
    let _ = writeln!(out, "rooms: {}", ROOMS.join(", "));
    for stay in fake.room_stays(HOTEL) {
        let _ = writeln!(
            out,
            "  room stay {} in {} from {} to {}",
            stay.id, stay.room_setup_id, stay.from, stay.to
        );
    }
    let _ = out.flush();
}

fn day(today: Date, offset: i64) -> String {
    // Small offsets from today cannot leave jiff's date range.
    today
        .checked_add(offset.days())
        .unwrap_or(today)
        .to_string()
}

fn seed(fake: &Fake3rpms) {
    fake.add_hotel(HOTEL);
    fake.add_api_key(HOTEL, "keysmith", "api_demo_write", Access::Write);
    fake.add_api_key(HOTEL, "messaging", "api_demo_read", Access::Read);
    for room in ROOMS {
        fake.add_room(HOTEL, room, &format!("Room {room}"));
    }
    let today = jiff::Zoned::now().date();
    // (reservation code, [(room, arrival offset, departure offset)])
    type Demo = (&'static str, &'static [(&'static str, i64, i64)]);
    let stays: &[Demo] = &[
        ("DEMO-1001", &[("101", 0, 3)]),
        ("DEMO-1002", &[("102", 1, 4), ("201", 1, 4)]),
        ("DEMO-1003", &[("203", 2, 5)]),
        ("DEMO-1004", &[("301", 3, 10)]),
        ("DEMO-1005", &[("401", 5, 7)]),
    ];
    for (code, rooms) in stays {
        let reservation = fake.add_reservation(HOTEL, code);
        for (room, from, to) in *rooms {
            fake.add_room_stay(
                HOTEL,
                &reservation,
                room,
                &day(today, *from),
                &day(today, *to),
            );
        }
    }
}
