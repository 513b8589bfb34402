//! Writes N keys into one engine the way keysmith's committer writes the
//! records of an Issue made by h2load (store layout 8), a durable commit per
//! 64 keys, and reports the bytes on disk per key.
//!
//! Each key is five entries, as keysmith writes them: the key record (421
//! bytes, sealed: random), its change record (113 bytes, sealed: random),
//! two index entries (holder, entrance) and the sweeper's entry by window
//! end, those three with empty values. With `--scattered` the holder,
//! entrance and window end vary from key to key (a PMS's Issues), else they
//! are the same for every key (h2load sends one request body), so every
//! entry is appended at the end of its range.
//!
//! ```sh
//! cd examples/bench/engine_bytes
//! cargo run --release -- --engine sled --keys 200000
//! ```
use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use rand::Rng;

const KEYS_PER_COMMIT: u64 = 64;
const KEY_RECORD_BYTES: usize = 421;
const CHANGE_RECORD_BYTES: usize = 113;

struct Options {
    engine: String,
    keys: u64,
    scattered: bool,
    dir: PathBuf,
}

fn options() -> Options {
    let mut out = Options {
        engine: "sled".into(),
        keys: 200_000,
        scattered: false,
        dir: PathBuf::from("/tmp/engine-bytes"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--engine" => out.engine = args.next().expect("--engine sled|sled-zstd|redb|fjall"),
            "--keys" => out.keys = args.next().and_then(|n| n.parse().ok()).expect("--keys N"),
            "--scattered" => out.scattered = true,
            "--dir" => out.dir = args.next().map(PathBuf::from).expect("--dir PATH"),
            other => panic!("unknown argument {other}"),
        }
    }
    out
}

fn path(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![tag];
    for part in parts {
        out.extend_from_slice(&(part.len() as u16).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// The entries of the `i`th key, as (path, value).
fn entries(i: u64, scattered: bool, rng: &mut impl Rng) -> Vec<(Vec<u8>, Vec<u8>)> {
    let property = b"demo-hotel";
    // A ULID's 26 characters: time first, so ids grow with creation.
    let mut id = format!("{i:010}").into_bytes();
    id.extend((0..16).map(|_| b'A' + rng.gen_range(0..26u8)));
    let mut record = vec![0; KEY_RECORD_BYTES];
    rng.fill_bytes(&mut record);
    let mut change = vec![0; CHANGE_RECORD_BYTES];
    rng.fill_bytes(&mut change);
    let (holder, entrance, ends_at) = if scattered {
        (
            format!("guest-{}", rng.gen_range(0..1_000_000)),
            format!("room-{}", rng.gen_range(100..400)),
            1_800_000_000_000_000u64 + rng.gen_range(0..7 * 86_400_000_000u64),
        )
    } else {
        (
            "guest-1".into(),
            "room-101".into(),
            1_800_000_000_000_000u64,
        )
    };
    vec![
        (path(b'K', &[property, &id]), record),
        (path(b'C', &[property, &i.to_be_bytes()]), change),
        (
            path(b'A', &[property, b"h", holder.as_bytes(), &id]),
            Vec::new(),
        ),
        (
            path(b'A', &[property, b"e", entrance.as_bytes(), &id]),
            Vec::new(),
        ),
        (
            path(b'X', &[&ends_at.to_be_bytes(), property, &id]),
            Vec::new(),
        ),
    ]
}

/// One durable commit of a batch of entries.
trait Engine {
    fn commit(&mut self, batch: Vec<(Vec<u8>, Vec<u8>)>);
}

struct Sled {
    db: sled::Db,
    tree: sled::Tree,
}

impl Engine for Sled {
    fn commit(&mut self, batch: Vec<(Vec<u8>, Vec<u8>)>) {
        let mut writes = sled::Batch::default();
        for (k, v) in batch {
            writes.insert(k, v);
        }
        self.tree.apply_batch(writes).unwrap();
        self.db.flush().unwrap();
    }
}

struct Redb {
    db: redb::Database,
}

const REDB_TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("keysmith");

impl Engine for Redb {
    fn commit(&mut self, batch: Vec<(Vec<u8>, Vec<u8>)>) {
        let mut tx = self.db.begin_write().unwrap();
        tx.set_durability(redb::Durability::Immediate);
        {
            let mut table = tx.open_table(REDB_TABLE).unwrap();
            for (k, v) in &batch {
                table.insert(k.as_slice(), v.as_slice()).unwrap();
            }
        }
        tx.commit().unwrap();
    }
}

struct Fjall {
    keyspace: fjall::Keyspace,
    partition: fjall::PartitionHandle,
}

impl Engine for Fjall {
    fn commit(&mut self, batch: Vec<(Vec<u8>, Vec<u8>)>) {
        let mut writes = self.keyspace.batch();
        for (k, v) in batch {
            writes.insert(&self.partition, k, v);
        }
        writes.commit().unwrap();
        self.keyspace.persist(fjall::PersistMode::SyncAll).unwrap();
    }
}

fn open(engine: &str, dir: &Path) -> Box<dyn Engine> {
    // keysmith's default memory budget gives sled's cache about 28 MB.
    let cache = 32 << 20;
    match engine {
        "sled" | "sled-zstd" => {
            let db = sled::Config::new()
                .path(dir)
                .cache_capacity(cache)
                .flush_every_ms(None)
                .use_compression(engine == "sled-zstd")
                .compression_factor(1)
                .open()
                .unwrap();
            let tree = db.open_tree("keysmith").unwrap();
            Box::new(Sled { db, tree })
        }
        "redb" => {
            std::fs::create_dir_all(dir).unwrap();
            let db = redb::Builder::new()
                .set_cache_size(cache as usize)
                .create(dir.join("keysmith.redb"))
                .unwrap();
            Box::new(Redb { db })
        }
        "fjall" => {
            let keyspace = fjall::Config::new(dir).cache_size(cache).open().unwrap();
            let partition = keyspace
                .open_partition("keysmith", fjall::PartitionCreateOptions::default())
                .unwrap();
            Box::new(Fjall {
                keyspace,
                partition,
            })
        }
        other => panic!("unknown engine {other}: sled, sled-zstd, redb or fjall"),
    }
}

fn bytes_under(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                bytes_under(&entry.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

fn main() {
    let options = options();
    let _ = std::fs::remove_dir_all(&options.dir);
    let mut engine = open(&options.engine, &options.dir);
    let mut rng = rand::thread_rng();
    let started = Instant::now();
    let mut written = 0;
    while written < options.keys {
        let n = KEYS_PER_COMMIT.min(options.keys - written);
        let batch = (written..written + n)
            .flat_map(|i| entries(i, options.scattered, &mut rng))
            .collect();
        engine.commit(batch);
        written += n;
    }
    let took = started.elapsed();
    drop(engine);
    let bytes = bytes_under(&options.dir);
    println!(
        "{} ({}): {} keys in {:.1} s ({:.0} keys/s), {} bytes on disk per key",
        options.engine,
        if options.scattered {
            "scattered"
        } else {
            "appended"
        },
        options.keys,
        took.as_secs_f64(),
        options.keys as f64 / took.as_secs_f64(),
        bytes / options.keys,
    );
    std::fs::remove_dir_all(&options.dir).unwrap();
}
