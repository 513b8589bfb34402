//! A database of a test's own on the PostgreSQL server that
//! `KEYSMITH_TEST_POSTGRES_URL` names: made fresh, dropped when the value
//! is. Shared by this crate's store suite and keysmith's end-to-end and
//! replica tests, so that each says the same thing when it is skipped.
//!
//! Not for production use: it creates and drops databases.
use std::io::Write as _;

/// The variable that names the server the PostgreSQL tests run against.
pub const URL_VARIABLE: &str = "KEYSMITH_TEST_POSTGRES_URL";

/// A fresh database, dropped (with its connections) when this is.
pub struct TestDatabase {
    /// Where databases are made and dropped (the URL given).
    admin: tokio_postgres::Config,
    name: String,
}

/// A connection on which nothing else waits. Panics when the server is
/// unreachable: with the variable set, a test must fail rather than skip.
pub async fn connect(config: &tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("{URL_VARIABLE} is set but PostgreSQL is not reachable: {e}"));
    tokio::spawn(connection);
    client
}

impl TestDatabase {
    /// A fresh database, or None when the variable is not set: then it says
    /// on stderr (past the test harness's capture) that `what` was skipped
    /// and that `rerun` runs it.
    pub async fn create(what: &str, rerun: &str) -> Option<Self> {
        let Ok(url) = std::env::var(URL_VARIABLE) else {
            let _ = writeln!(
                std::io::stderr(),
                "\n{what}: SKIPPED, {URL_VARIABLE} is not set. To run it: \
                 {URL_VARIABLE}=postgres://postgres@127.0.0.1:5432/test {rerun}\n"
            );
            return None;
        };
        let admin: tokio_postgres::Config = url.parse().expect("a PostgreSQL URL");
        let name = format!(
            "keysmith_test_{}",
            ulid::Ulid::new().to_string().to_lowercase()
        );
        connect(&admin)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE");
        Some(Self { admin, name })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL of this database: everything from the given one but the
    /// database's name.
    pub fn url(&self) -> String {
        let host = match self.admin.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".into(),
        };
        let port = self.admin.get_ports().first().copied().unwrap_or(5432);
        let user = self.admin.get_user().unwrap_or("postgres");
        match self.admin.get_password() {
            Some(p) => format!(
                "postgres://{user}:{}@{host}:{port}/{}",
                String::from_utf8_lossy(p),
                self.name
            ),
            None => format!("postgres://{user}@{host}:{port}/{}", self.name),
        }
    }

    /// A connection to this database, for a test's own queries.
    pub async fn client(&self) -> tokio_postgres::Client {
        let mut config = self.admin.clone();
        config.dbname(&self.name);
        connect(&config).await
    }

    /// Ends every session on this database, as a restart of the server
    /// does for its clients (other databases are not touched). Returns how
    /// many were ended.
    pub async fn terminate_sessions(&self) -> usize {
        connect(&self.admin)
            .await
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&self.name],
            )
            .await
            .expect("pg_terminate_backend")
            .len()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // On a thread of its own: a drop may happen while a runtime is
        // shutting down, or during a panic.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let _ = connect(&admin)
                    .await
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            });
        })
        .join();
    }
}

/// A TCP relay in front of a test's PostgreSQL that the test cuts (every
/// connection through it closed, new ones closed at once) and restores:
/// the database unreachable for whatever connects through it, as in a
/// network partition, an outage or a replica cut off, without touching the
/// server other tests use.
pub struct Relay {
    addr: std::net::SocketAddr,
    /// The database's `host:port`, as the URLs given name it.
    upstream: String,
    cut: tokio::sync::watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// A relay to the server `url` names (a `postgres://user@host:port/db`
    /// URL, as `KEYSMITH_TEST_POSTGRES_URL` and [`TestDatabase::url`] are).
    pub async fn to(url: &str) -> Self {
        let upstream = host_port(url).to_owned();
        let target = tokio::net::lookup_host(upstream.as_str())
            .await
            .expect("the database's address resolves")
            .next()
            .expect("the database has an address");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, watching) = tokio::sync::watch::channel(false);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if *watching.borrow() {
                    continue; // dropped: closed at once
                }
                let mut cut = watching.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Self {
            addr,
            upstream,
            cut,
            accept,
        }
    }

    /// `url` (a database on the relayed server) reached through the relay.
    pub fn url(&self, url: &str) -> String {
        url.replacen(&self.upstream, &self.addr.to_string(), 1)
    }

    /// Closes every connection relayed, and every new one at once.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Relays new connections again.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// The `host:port` of a `postgres://user@host:port/db` URL.
fn host_port(url: &str) -> &str {
    let after_at = &url[url.find('@').expect("a user in the URL") + 1..];
    &after_at[..after_at.find('/').expect("a database in the URL")]
}
