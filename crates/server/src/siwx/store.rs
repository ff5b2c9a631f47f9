//! Where sign-in-with-x keeps what it knows: who paid for what, and which nonces were used.
//!
//! [`SiwxStore`] in memory ([`MemorySiwxStore`], one process), in a SQLite file
//! ([`SqliteSiwxStore`], feature `siwx-sqlite`, survives restarts) or in PostgreSQL
//! ([`PgSiwxStore`], feature `siwx-postgres`, shared by several seller instances: a nonce is
//! used once across all of them, and a payment recorded by one signs in on every other).
//!
//! Keys are canonical: a resource is the gate's target of the request (`"GET /weather?city=x"`,
//! its path canonical), a payer is its chain's canonical address
//! ([`SiwxVerifier::canonical_address`](tollgate_core::SiwxVerifier::canonical_address)).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use tollgate_core::BoxFuture;

/// Why the store failed. Never carries a database URL or password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sign-in store: {0}")]
pub struct SiwxStoreError(pub String);

/// Durable facts of sign-in-with-x. Writes are durable when answered.
pub trait SiwxStore: Send + Sync + 'static {
    /// Records that `payer` paid for `resource` (idempotent).
    fn record_payment<'a>(
        &'a self,
        resource: &'a str,
        payer: &'a str,
    ) -> BoxFuture<'a, Result<(), SiwxStoreError>>;

    /// Whether `payer` paid for `resource`.
    fn has_paid<'a>(
        &'a self,
        resource: &'a str,
        payer: &'a str,
    ) -> BoxFuture<'a, Result<bool, SiwxStoreError>>;

    /// Uses `nonce` once: `true` the first time, `false` when it was used before (a replay).
    /// The use is remembered at least until Unix second `keep_until`; after that a challenge
    /// carrying the nonce is too old to be accepted anyway, and the store may forget it.
    fn use_nonce<'a>(
        &'a self,
        nonce: &'a str,
        keep_until: u64,
    ) -> BoxFuture<'a, Result<bool, SiwxStoreError>>;
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Nonces kept at most in memory before expired ones are swept.
const SWEEP_AT: usize = 4096;

/// Everything in this process's memory: lost on restart, not shared between instances.
#[derive(Debug, Default)]
pub struct MemorySiwxStore {
    paid: Mutex<HashSet<(String, String)>>,
    nonces: Mutex<HashMap<String, u64>>,
}

impl MemorySiwxStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl SiwxStore for MemorySiwxStore {
    fn record_payment<'a>(
        &'a self,
        resource: &'a str,
        payer: &'a str,
    ) -> BoxFuture<'a, Result<(), SiwxStoreError>> {
        self.paid
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((resource.to_owned(), payer.to_owned()));
        Box::pin(async { Ok(()) })
    }

    fn has_paid<'a>(
        &'a self,
        resource: &'a str,
        payer: &'a str,
    ) -> BoxFuture<'a, Result<bool, SiwxStoreError>> {
        let paid = self
            .paid
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(resource.to_owned(), payer.to_owned()));
        Box::pin(async move { Ok(paid) })
    }

    fn use_nonce<'a>(
        &'a self,
        nonce: &'a str,
        keep_until: u64,
    ) -> BoxFuture<'a, Result<bool, SiwxStoreError>> {
        let mut nonces = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
        if nonces.len() >= SWEEP_AT {
            let now = unix_now();
            nonces.retain(|_, until| *until >= now);
        }
        let fresh = !nonces.contains_key(nonce);
        if fresh {
            nonces.insert(nonce.to_owned(), keep_until);
        }
        Box::pin(async move { Ok(fresh) })
    }
}

#[cfg(feature = "siwx-sqlite")]
pub use sqlite::SqliteSiwxStore;

#[cfg(feature = "siwx-sqlite")]
mod sqlite {
    use std::path::Path;
    use std::sync::{Arc, Mutex};

    use rusqlite::{params, Connection};
    use tollgate_core::BoxFuture;

    use super::{unix_now, SiwxStore, SiwxStoreError};

    fn failed(e: impl std::fmt::Display) -> SiwxStoreError {
        SiwxStoreError(e.to_string())
    }

    /// Payments and used nonces in a SQLite file (`synchronous = FULL`): a payment recorded
    /// before its response left signs in after a restart, and a used nonce stays used.
    /// Queries run on the blocking pool, one at a time on one connection.
    #[derive(Clone)]
    pub struct SqliteSiwxStore {
        conn: Arc<Mutex<Connection>>,
    }

    impl std::fmt::Debug for SqliteSiwxStore {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("SqliteSiwxStore").finish_non_exhaustive()
        }
    }

    impl SqliteSiwxStore {
        /// Opens (creating if needed) the store at `path`.
        pub fn open(path: impl AsRef<Path>) -> Result<Self, SiwxStoreError> {
            let conn = Connection::open(path.as_ref()).map_err(failed)?;
            conn.execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA busy_timeout = 5000;
                 CREATE TABLE IF NOT EXISTS siwx_payments (
                     resource TEXT NOT NULL,
                     payer TEXT NOT NULL,
                     at INTEGER NOT NULL,
                     PRIMARY KEY (resource, payer)
                 );
                 CREATE TABLE IF NOT EXISTS siwx_nonces (
                     nonce TEXT PRIMARY KEY,
                     keep_until INTEGER NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS siwx_nonces_keep_until ON siwx_nonces (keep_until);",
            )
            .map_err(failed)?;
            Ok(Self {
                conn: Arc::new(Mutex::new(conn)),
            })
        }

        async fn run<T: Send + 'static>(
            &self,
            work: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
        ) -> Result<T, SiwxStoreError> {
            let conn = self.conn.clone();
            tokio::task::spawn_blocking(move || {
                let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                work(&conn).map_err(failed)
            })
            .await
            .map_err(failed)?
        }
    }

    impl SiwxStore for SqliteSiwxStore {
        fn record_payment<'a>(
            &'a self,
            resource: &'a str,
            payer: &'a str,
        ) -> BoxFuture<'a, Result<(), SiwxStoreError>> {
            let (resource, payer) = (resource.to_owned(), payer.to_owned());
            Box::pin(self.run(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO siwx_payments (resource, payer, at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (resource, payer) DO NOTHING",
                )?
                .execute(params![resource, payer, unix_now() as i64])?;
                Ok(())
            }))
        }

        fn has_paid<'a>(
            &'a self,
            resource: &'a str,
            payer: &'a str,
        ) -> BoxFuture<'a, Result<bool, SiwxStoreError>> {
            let (resource, payer) = (resource.to_owned(), payer.to_owned());
            Box::pin(self.run(move |conn| {
                conn.prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM siwx_payments WHERE resource = ?1 AND payer = ?2)",
                )?
                .query_row(params![resource, payer], |r| r.get::<_, bool>(0))
            }))
        }

        fn use_nonce<'a>(
            &'a self,
            nonce: &'a str,
            keep_until: u64,
        ) -> BoxFuture<'a, Result<bool, SiwxStoreError>> {
            let nonce = nonce.to_owned();
            let keep_until = i64::try_from(keep_until).unwrap_or(i64::MAX);
            Box::pin(self.run(move |conn| {
                conn.prepare_cached("DELETE FROM siwx_nonces WHERE keep_until < ?1")?
                    .execute(params![unix_now() as i64])?;
                let inserted = conn
                    .prepare_cached(
                        "INSERT INTO siwx_nonces (nonce, keep_until) VALUES (?1, ?2)
                         ON CONFLICT (nonce) DO NOTHING",
                    )?
                    .execute(params![nonce, keep_until])?;
                Ok(inserted == 1)
            }))
        }
    }
}

#[cfg(feature = "siwx-postgres")]
pub use postgres::PgSiwxStore;

#[cfg(feature = "siwx-postgres")]
mod postgres {
    use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
    use tokio_postgres::NoTls;
    use tollgate_core::BoxFuture;

    use super::{unix_now, SiwxStore, SiwxStoreError};

    fn failed(e: impl std::fmt::Display) -> SiwxStoreError {
        SiwxStoreError(e.to_string())
    }

    /// Payments and used nonces in PostgreSQL, shared by every seller instance on the
    /// database: a nonce's use is one `INSERT … ON CONFLICT DO NOTHING`, so of two instances
    /// presented the same sign-in at once exactly one accepts it.
    #[derive(Clone)]
    pub struct PgSiwxStore {
        pool: Pool,
    }

    impl std::fmt::Debug for PgSiwxStore {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("PgSiwxStore").finish_non_exhaustive()
        }
    }

    impl PgSiwxStore {
        /// Connects to the database at `url` and creates the tables if needed.
        pub async fn connect(url: &str) -> Result<Self, SiwxStoreError> {
            let config: tokio_postgres::Config = url
                .parse()
                // The parser's message may echo the URL, password included.
                .map_err(|_| SiwxStoreError("invalid PostgreSQL URL".into()))?;
            let manager = Manager::from_config(
                config,
                NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            let pool = Pool::builder(manager)
                .max_size(16)
                .build()
                .map_err(failed)?;
            let mut client = pool.get().await.map_err(failed)?;
            // Instances starting together create the tables once.
            let tx = client.transaction().await.map_err(failed)?;
            tx.batch_execute(
                "SELECT pg_advisory_xact_lock(4020019);
                 CREATE TABLE IF NOT EXISTS tollgate_siwx_payments (
                     resource TEXT NOT NULL,
                     payer TEXT NOT NULL,
                     at BIGINT NOT NULL,
                     PRIMARY KEY (resource, payer)
                 );
                 CREATE TABLE IF NOT EXISTS tollgate_siwx_nonces (
                     nonce TEXT PRIMARY KEY,
                     keep_until BIGINT NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS tollgate_siwx_nonces_keep_until
                     ON tollgate_siwx_nonces (keep_until);",
            )
            .await
            .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            Ok(Self { pool })
        }
    }

    impl SiwxStore for PgSiwxStore {
        fn record_payment<'a>(
            &'a self,
            resource: &'a str,
            payer: &'a str,
        ) -> BoxFuture<'a, Result<(), SiwxStoreError>> {
            Box::pin(async move {
                let client = self.pool.get().await.map_err(failed)?;
                client
                    .execute(
                        "INSERT INTO tollgate_siwx_payments (resource, payer, at) VALUES ($1, $2, $3)
                         ON CONFLICT (resource, payer) DO NOTHING",
                        &[&resource, &payer, &(unix_now() as i64)],
                    )
                    .await
                    .map_err(failed)?;
                Ok(())
            })
        }

        fn has_paid<'a>(
            &'a self,
            resource: &'a str,
            payer: &'a str,
        ) -> BoxFuture<'a, Result<bool, SiwxStoreError>> {
            Box::pin(async move {
                let client = self.pool.get().await.map_err(failed)?;
                let row = client
                    .query_opt(
                        "SELECT 1 FROM tollgate_siwx_payments WHERE resource = $1 AND payer = $2",
                        &[&resource, &payer],
                    )
                    .await
                    .map_err(failed)?;
                Ok(row.is_some())
            })
        }

        fn use_nonce<'a>(
            &'a self,
            nonce: &'a str,
            keep_until: u64,
        ) -> BoxFuture<'a, Result<bool, SiwxStoreError>> {
            Box::pin(async move {
                let client = self.pool.get().await.map_err(failed)?;
                let keep_until = i64::try_from(keep_until).unwrap_or(i64::MAX);
                client
                    .execute(
                        "DELETE FROM tollgate_siwx_nonces WHERE keep_until < $1",
                        &[&(unix_now() as i64)],
                    )
                    .await
                    .map_err(failed)?;
                let inserted = client
                    .execute(
                        "INSERT INTO tollgate_siwx_nonces (nonce, keep_until) VALUES ($1, $2)
                         ON CONFLICT (nonce) DO NOTHING",
                        &[&nonce, &keep_until],
                    )
                    .await
                    .map_err(failed)?;
                Ok(inserted == 1)
            })
        }
    }
}
