//! Where the seller keeps its channels: [`ChannelStore`], in memory ([`MemoryChannelStore`]) or
//! in a SQLite file ([`SqliteChannelStore`], feature `channel-sqlite`) that survives `kill -9`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use alloy::primitives::{Bytes, B256, U256};
use serde::{Deserialize, Serialize};
use tollgate_core::BoxFuture;
use tollgate_proto::PaymentRequirements;

use crate::batch_settlement::{ChannelConfig, ChannelSnapshot};

/// One channel as the seller knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelRecord {
    /// The channel id.
    pub channel_id: B256,
    /// Its config.
    pub config: ChannelConfig,
    /// The requirements it was last paid under: the network, asset and payee its claims are
    /// sent with.
    pub requirements: PaymentRequirements,
    /// What the seller has charged in total (`chargedCumulativeAmount`): the amount it claims.
    #[serde(with = "crate::batch_settlement::types::amount")]
    pub charged: u128,
    /// The ceiling of the latest voucher the payer signed.
    #[serde(with = "crate::batch_settlement::types::amount")]
    pub signed_max: u128,
    /// That voucher's signature; `None` until the first voucher of this seller's record.
    pub signature: Option<Bytes>,
    /// Mirrored from the chain: the channel's balance.
    #[serde(with = "crate::batch_settlement::types::amount")]
    pub balance: u128,
    /// Mirrored from the chain: what is claimed.
    #[serde(with = "crate::batch_settlement::types::amount")]
    pub total_claimed: u128,
    /// Mirrored from the chain: when a timed withdrawal started (0: none).
    pub withdraw_requested_at: u64,
    /// Mirrored from the chain: the next refund nonce.
    #[serde(with = "crate::payload::decimal")]
    pub refund_nonce: U256,
    /// Unix seconds the mirrored fields were read.
    pub synced_at: u64,
    /// Unix seconds of the last paid request.
    pub last_request_at: u64,
}

impl ChannelRecord {
    /// What is charged and not yet claimed on chain.
    pub fn unclaimed(&self) -> u128 {
        self.charged.saturating_sub(self.total_claimed)
    }

    /// The mirrored fields from a chain snapshot read at `now`.
    pub fn mirror(&mut self, snapshot: &ChannelSnapshot, now: u64) {
        self.balance = snapshot.balance;
        self.total_claimed = snapshot.total_claimed;
        self.withdraw_requested_at = snapshot.withdraw_requested_at;
        self.refund_nonce = snapshot.refund_nonce;
        self.synced_at = now;
    }

    /// The channel's state as the seller reports it (`extra.channelState`): the mirror and
    /// the charged cumulative amount.
    pub fn snapshot(&self) -> ChannelSnapshot {
        ChannelSnapshot {
            channel_id: self.channel_id,
            balance: self.balance,
            total_claimed: self.total_claimed,
            withdraw_requested_at: self.withdraw_requested_at,
            refund_nonce: self.refund_nonce,
            charged_cumulative_amount: Some(self.charged),
        }
    }
}

/// Why the channel store failed.
#[derive(Debug, thiserror::Error)]
#[error("channel store: {0}")]
pub struct StoreError(pub String);

/// What [`ChannelStore::save_if`] requires of the stored record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// Nothing: save in any case.
    Any,
    /// No record of the channel yet.
    Absent,
    /// A record whose `charged` is this (compare-and-swap on the charged amount: between two
    /// seller instances, the second to commit on the same state loses).
    Charged(u128),
}

/// Durable per-channel state, and the per-channel hold that lets one request at a time pay on
/// a channel. Saves return only once the record is durable: a voucher whose request was served
/// must be claimable after a crash. A store shared by several seller instances (PostgreSQL)
/// holds channels and compares-and-swaps for all of them.
pub trait ChannelStore: Send + Sync + 'static {
    /// The record of channel `id`.
    fn load(&self, id: B256) -> BoxFuture<'_, Result<Option<ChannelRecord>, StoreError>>;
    /// Stores `record` if the stored one is as `expected`; `false` when it is not (nothing
    /// written).
    fn save_if(
        &self,
        record: ChannelRecord,
        expected: Expected,
    ) -> BoxFuture<'_, Result<bool, StoreError>>;
    /// Every channel with value charged and not claimed.
    fn unclaimed(&self) -> BoxFuture<'_, Result<Vec<ChannelRecord>, StoreError>>;
    /// Every channel.
    fn all(&self) -> BoxFuture<'_, Result<Vec<ChannelRecord>, StoreError>>;
    /// Takes channel `id` for the request keyed `key` for `lease`; `false` while a request
    /// under another key holds it. The manager keys a request by its voucher and its attempt
    /// (`Idempotency-Key`), so only that attempt — its `/settle`, the retries of it — takes the
    /// channel again; a copy of the voucher sent by another request is refused until the hold
    /// is released (the attempt settled, or was abandoned after a failed handler) or its lease
    /// ends. (Without an attempt key the voucher alone is the key.)
    fn hold(&self, id: B256, key: B256, lease: Duration)
        -> BoxFuture<'_, Result<bool, StoreError>>;
    /// Whether channel `id` is held by the request keyed `key`.
    fn holds(&self, id: B256, key: B256) -> BoxFuture<'_, Result<bool, StoreError>>;
    /// Lets go of channel `id` if the request keyed `key` holds it.
    fn release(&self, id: B256, key: B256) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Deletes channel `id`'s record if the stored one is as `expected` (a channel fully
    /// refunded: nothing left to claim or charge); `false` when it is not (nothing deleted).
    fn remove_if(&self, id: B256, expected: Expected) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Stores `record` whatever is stored.
    fn save(&self, record: ChannelRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { self.save_if(record, Expected::Any).await.map(|_| ()) })
    }
}

/// Whether `stored` is as `expected`.
fn matches(stored: Option<&ChannelRecord>, expected: Expected) -> bool {
    match expected {
        Expected::Any => true,
        Expected::Absent => stored.is_none(),
        Expected::Charged(c) => stored.is_some_and(|r| r.charged == c),
    }
}

/// Channel holds within one process (the stores that have one writer).
#[derive(Debug, Default)]
struct LocalHolds(Mutex<HashMap<B256, (B256, Instant)>>);

impl LocalHolds {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<B256, (B256, Instant)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn hold(&self, id: B256, key: B256, lease: Duration) -> bool {
        let mut table = self.table();
        let now = Instant::now();
        match table.get(&id) {
            Some((held, until)) if *until > now && *held != key => false,
            _ => {
                table.insert(id, (key, now + lease));
                true
            }
        }
    }

    fn holds(&self, id: B256, key: B256) -> bool {
        self.table().get(&id).is_some_and(|(held, _)| *held == key)
    }

    fn release(&self, id: B256, key: B256) {
        let mut table = self.table();
        if table.get(&id).is_some_and(|(held, _)| *held == key) {
            table.remove(&id);
        }
    }
}

/// Channels in memory: gone with the process (a restarted seller forfeits what it had not
/// claimed). For tests and single-process demos; production uses [`SqliteChannelStore`].
#[derive(Debug, Default)]
pub struct MemoryChannelStore {
    records: Mutex<HashMap<B256, ChannelRecord>>,
    holds: LocalHolds,
}

impl MemoryChannelStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<B256, ChannelRecord>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ChannelStore for MemoryChannelStore {
    fn load(&self, id: B256) -> BoxFuture<'_, Result<Option<ChannelRecord>, StoreError>> {
        let found = self.map().get(&id).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn save_if(
        &self,
        record: ChannelRecord,
        expected: Expected,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        let mut map = self.map();
        let ok = matches(map.get(&record.channel_id), expected);
        if ok {
            map.insert(record.channel_id, record);
        }
        Box::pin(async move { Ok(ok) })
    }

    fn hold(
        &self,
        id: B256,
        key: B256,
        lease: Duration,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        let ok = self.holds.hold(id, key, lease);
        Box::pin(async move { Ok(ok) })
    }

    fn holds(&self, id: B256, key: B256) -> BoxFuture<'_, Result<bool, StoreError>> {
        let ok = self.holds.holds(id, key);
        Box::pin(async move { Ok(ok) })
    }

    fn release(&self, id: B256, key: B256) -> BoxFuture<'_, Result<(), StoreError>> {
        self.holds.release(id, key);
        Box::pin(async { Ok(()) })
    }

    fn remove_if(&self, id: B256, expected: Expected) -> BoxFuture<'_, Result<bool, StoreError>> {
        let mut map = self.map();
        let ok = matches(map.get(&id), expected);
        if ok {
            map.remove(&id);
        }
        Box::pin(async move { Ok(ok) })
    }

    fn unclaimed(&self) -> BoxFuture<'_, Result<Vec<ChannelRecord>, StoreError>> {
        let found: Vec<_> = self
            .map()
            .values()
            .filter(|r| r.unclaimed() > 0)
            .cloned()
            .collect();
        Box::pin(async move { Ok(found) })
    }

    fn all(&self) -> BoxFuture<'_, Result<Vec<ChannelRecord>, StoreError>> {
        let found: Vec<_> = self.map().values().cloned().collect();
        Box::pin(async move { Ok(found) })
    }
}

#[cfg(feature = "channel-sqlite")]
pub use sqlite::SqliteChannelStore;

#[cfg(feature = "channel-sqlite")]
mod sqlite {
    use std::collections::HashMap;
    use std::path::Path;
    use std::sync::{mpsc, Arc, Mutex};

    use alloy::primitives::B256;
    use rusqlite::{params, Connection};
    use tokio::sync::oneshot;
    use tollgate_core::BoxFuture;

    use std::time::Duration;

    use super::{matches, ChannelRecord, ChannelStore, Expected, LocalHolds, StoreError};

    /// Saves queued at once share one transaction (one `fsync`).
    const MAX_GROUP: usize = 256;

    /// One write: a record stored, or a channel's record deleted.
    enum Write {
        Upsert(Box<ChannelRecord>),
        Delete(B256),
    }

    type Save = (Write, oneshot::Sender<Result<(), StoreError>>);

    /// Channels in a SQLite file, written with `synchronous = FULL`: a saved voucher survives
    /// `kill -9` and power loss, so what was served is claimed after a restart.
    ///
    /// One writer thread owns the writing connection and commits every save queued while the
    /// previous group was being written in one transaction (group commit): with many channels
    /// paying at once, their vouchers share an `fsync`, and none is answered before it is
    /// durable. The file has one writer — this store — so reads are answered from a copy in
    /// memory, loaded at open and updated after each durable save: a paid request reads its
    /// channel without leaving the async runtime.
    #[derive(Clone)]
    pub struct SqliteChannelStore {
        cache: Arc<Mutex<HashMap<B256, ChannelRecord>>>,
        writer: mpsc::Sender<Save>,
        holds: Arc<LocalHolds>,
    }

    impl std::fmt::Debug for SqliteChannelStore {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("SqliteChannelStore").finish_non_exhaustive()
        }
    }

    fn failed(e: impl std::fmt::Display) -> StoreError {
        StoreError(e.to_string())
    }

    fn upsert(conn: &Connection, record: &ChannelRecord) -> Result<(), StoreError> {
        let text = serde_json::to_string(record).map_err(failed)?;
        conn.prepare_cached(
            "INSERT INTO channels (id, unclaimed, record) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET unclaimed = excluded.unclaimed, record = excluded.record",
        )
        .map_err(failed)?
        .execute(params![
            record.channel_id.to_string(),
            i64::from(record.unclaimed() > 0),
            text
        ])
        .map_err(failed)?;
        Ok(())
    }

    /// The writer thread: one transaction per group of queued saves.
    fn write_groups(mut conn: Connection, saves: mpsc::Receiver<Save>) {
        while let Ok(first) = saves.recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match saves.try_recv() {
                    Ok(save) => group.push(save),
                    Err(_) => break,
                }
            }
            let outcome = (|| {
                let tx = conn.transaction().map_err(failed)?;
                for (write, _) in &group {
                    match write {
                        Write::Upsert(record) => upsert(&tx, record)?,
                        Write::Delete(id) => {
                            tx.prepare_cached("DELETE FROM channels WHERE id = ?1")
                                .map_err(failed)?
                                .execute(params![id.to_string()])
                                .map_err(failed)?;
                        }
                    }
                }
                tx.commit().map_err(failed)
            })();
            for (_, reply) in group {
                let _ = reply.send(match &outcome {
                    Ok(()) => Ok(()),
                    Err(e) => Err(StoreError(e.0.clone())),
                });
            }
        }
    }

    impl SqliteChannelStore {
        /// Opens (creating if needed) the store at `path`.
        pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
            let path = path.as_ref();
            let writer = Connection::open(path).map_err(failed)?;
            writer
                .execute_batch(
                    "PRAGMA journal_mode = WAL;
                     PRAGMA synchronous = FULL;
                     CREATE TABLE IF NOT EXISTS channels (
                         id TEXT PRIMARY KEY,
                         unclaimed INTEGER NOT NULL,
                         record TEXT NOT NULL
                     );
                     CREATE INDEX IF NOT EXISTS channels_unclaimed ON channels (unclaimed) WHERE unclaimed = 1;",
                )
                .map_err(failed)?;
            let cache: HashMap<B256, ChannelRecord> =
                Self::records(&writer, "SELECT record FROM channels")?
                    .into_iter()
                    .map(|r| (r.channel_id, r))
                    .collect();
            let (tx, rx) = mpsc::channel();
            std::thread::Builder::new()
                .name("tollgate-channels".into())
                .spawn(move || write_groups(writer, rx))
                .map_err(failed)?;
            Ok(Self {
                cache: Arc::new(Mutex::new(cache)),
                writer: tx,
                holds: Arc::default(),
            })
        }

        fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<B256, ChannelRecord>> {
            self.cache.lock().unwrap_or_else(|p| p.into_inner())
        }

        fn records(conn: &Connection, sql: &str) -> Result<Vec<ChannelRecord>, StoreError> {
            let mut stmt = conn.prepare_cached(sql).map_err(failed)?;
            let rows = stmt
                .query_map([], |row| row.get::<_, String>(0))
                .map_err(failed)?;
            rows.map(|text| {
                let text = text.map_err(failed)?;
                serde_json::from_str(&text).map_err(failed)
            })
            .collect()
        }
    }

    impl ChannelStore for SqliteChannelStore {
        fn load(&self, id: B256) -> BoxFuture<'_, Result<Option<ChannelRecord>, StoreError>> {
            let found = self.cache().get(&id).cloned();
            Box::pin(async move { Ok(found) })
        }

        /// The comparison is against the copy in memory: this store is the file's only
        /// writer, and the manager holds a channel while it commits on it.
        fn save_if(
            &self,
            record: ChannelRecord,
            expected: Expected,
        ) -> BoxFuture<'_, Result<bool, StoreError>> {
            if !matches(self.cache().get(&record.channel_id), expected) {
                return Box::pin(async { Ok(false) });
            }
            let (reply, done) = oneshot::channel();
            let queued = self
                .writer
                .send((Write::Upsert(Box::new(record.clone())), reply));
            Box::pin(async move {
                let stopped = || StoreError("the channel store's writer has stopped".into());
                queued.map_err(|_| stopped())?;
                done.await.map_err(|_| stopped())??;
                self.cache().insert(record.channel_id, record);
                Ok(true)
            })
        }

        fn remove_if(
            &self,
            id: B256,
            expected: Expected,
        ) -> BoxFuture<'_, Result<bool, StoreError>> {
            if !matches(self.cache().get(&id), expected) {
                return Box::pin(async { Ok(false) });
            }
            let (reply, done) = oneshot::channel();
            let queued = self.writer.send((Write::Delete(id), reply));
            Box::pin(async move {
                let stopped = || StoreError("the channel store's writer has stopped".into());
                queued.map_err(|_| stopped())?;
                done.await.map_err(|_| stopped())??;
                self.cache().remove(&id);
                Ok(true)
            })
        }

        fn hold(
            &self,
            id: B256,
            key: B256,
            lease: Duration,
        ) -> BoxFuture<'_, Result<bool, StoreError>> {
            let ok = self.holds.hold(id, key, lease);
            Box::pin(async move { Ok(ok) })
        }

        fn holds(&self, id: B256, key: B256) -> BoxFuture<'_, Result<bool, StoreError>> {
            let ok = self.holds.holds(id, key);
            Box::pin(async move { Ok(ok) })
        }

        fn release(&self, id: B256, key: B256) -> BoxFuture<'_, Result<(), StoreError>> {
            self.holds.release(id, key);
            Box::pin(async { Ok(()) })
        }

        fn unclaimed(&self) -> BoxFuture<'_, Result<Vec<ChannelRecord>, StoreError>> {
            let found: Vec<_> = self
                .cache()
                .values()
                .filter(|r| r.unclaimed() > 0)
                .cloned()
                .collect();
            Box::pin(async move { Ok(found) })
        }

        fn all(&self) -> BoxFuture<'_, Result<Vec<ChannelRecord>, StoreError>> {
            let found: Vec<_> = self.cache().values().cloned().collect();
            Box::pin(async move { Ok(found) })
        }
    }
}

#[cfg(all(test, feature = "channel-sqlite"))]
mod tests {
    use super::*;
    use alloy::primitives::Address;

    fn record(n: u8, charged: u128, claimed: u128) -> ChannelRecord {
        let requirements: PaymentRequirements = serde_json::from_value(serde_json::json!({
            "scheme": "batch-settlement", "network": "eip155:8453", "amount": "1000",
            "asset": Address::repeat_byte(1).to_string(), "payTo": Address::repeat_byte(2).to_string(),
            "maxTimeoutSeconds": 60
        }))
        .unwrap();
        ChannelRecord {
            channel_id: B256::repeat_byte(n),
            config: ChannelConfig {
                payer: Address::repeat_byte(3),
                payer_authorizer: Address::repeat_byte(3),
                receiver: Address::repeat_byte(2),
                receiver_authorizer: Address::repeat_byte(4),
                token: Address::repeat_byte(1),
                withdraw_delay: 900,
                salt: B256::with_last_byte(n),
            },
            requirements,
            charged,
            signed_max: charged + 1_000,
            signature: Some(Bytes::from(vec![n; 65])),
            balance: 1_000_000,
            total_claimed: claimed,
            withdraw_requested_at: 0,
            refund_nonce: U256::ZERO,
            synced_at: 1,
            last_request_at: 2,
        }
    }

    #[tokio::test]
    async fn concurrent_saves_are_durable_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("channels.db");
        let store = SqliteChannelStore::open(&path).unwrap();
        // 200 channels saved at once (group commit), then one of them updated twice in order.
        let saves: Vec<_> = (0..200u8)
            .map(|n| store.save(record(n, u128::from(n) * 10, 0)))
            .collect();
        for r in futures::future::join_all(saves).await {
            r.unwrap();
        }
        store.save(record(7, 5_000, 0)).await.unwrap();
        store.save(record(7, 6_000, 6_000)).await.unwrap();
        assert_eq!(
            store
                .load(B256::repeat_byte(7))
                .await
                .unwrap()
                .unwrap()
                .charged,
            6_000
        );
        // A refunded channel's record deleted, only over the record expected.
        let nine = B256::repeat_byte(9);
        assert!(!store.remove_if(nine, Expected::Charged(1)).await.unwrap());
        assert!(store.remove_if(nine, Expected::Charged(90)).await.unwrap());
        drop(store);

        let reopened = SqliteChannelStore::open(&path).unwrap();
        assert_eq!(reopened.all().await.unwrap().len(), 199);
        assert!(reopened.load(nine).await.unwrap().is_none());
        let seven = reopened.load(B256::repeat_byte(7)).await.unwrap().unwrap();
        assert_eq!(seven, record(7, 6_000, 6_000));
        // Channel 0 charged nothing, 7 is claimed and 9 is gone: the other 197 are unclaimed.
        assert_eq!(reopened.unclaimed().await.unwrap().len(), 197);
        assert!(reopened
            .load(B256::repeat_byte(250))
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn memory_store_answers_like_the_file() {
        let store = MemoryChannelStore::new();
        store.save(record(1, 10, 0)).await.unwrap();
        store.save(record(2, 10, 10)).await.unwrap();
        assert_eq!(store.unclaimed().await.unwrap().len(), 1);
        assert_eq!(store.all().await.unwrap().len(), 2);
        let id = B256::repeat_byte(2);
        assert!(!store.remove_if(id, Expected::Charged(9)).await.unwrap());
        assert!(store.remove_if(id, Expected::Charged(10)).await.unwrap());
        assert!(store.load(id).await.unwrap().is_none());
    }
}

#[cfg(feature = "channel-postgres")]
pub use postgres::PgChannelStore;

#[cfg(feature = "channel-postgres")]
mod postgres {
    use std::time::Duration;

    use alloy::primitives::B256;
    use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
    use tokio_postgres::NoTls;
    use tollgate_core::BoxFuture;

    use super::{ChannelRecord, ChannelStore, Expected, StoreError};

    /// The database server's clock in Unix milliseconds: every instance's holds are judged by
    /// one clock.
    const DB_NOW_MILLIS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

    fn failed(e: impl std::fmt::Display) -> StoreError {
        StoreError(e.to_string())
    }

    /// Channels in PostgreSQL, shared by every seller instance that connects to the database:
    /// a channel's hold (one request at a time) is a row every instance sees, and a commit is a
    /// compare-and-swap on the channel's charged amount, so one voucher is charged once however
    /// many instances it is presented to at once. Commits are durable when answered
    /// (PostgreSQL's `synchronous_commit`).
    #[derive(Clone)]
    pub struct PgChannelStore {
        pool: Pool,
    }

    impl std::fmt::Debug for PgChannelStore {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("PgChannelStore").finish_non_exhaustive()
        }
    }

    impl PgChannelStore {
        /// Connects to the database at `url` and creates the channel tables if needed.
        pub async fn connect(url: &str) -> Result<Self, StoreError> {
            let config: tokio_postgres::Config = url
                .parse()
                // The parser's message may echo the URL, password included.
                .map_err(|_| StoreError("invalid PostgreSQL URL".into()))?;
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
                "SELECT pg_advisory_xact_lock(4020018);
                 CREATE TABLE IF NOT EXISTS tollgate_channels (
                     id TEXT PRIMARY KEY,
                     charged TEXT NOT NULL,
                     unclaimed BOOLEAN NOT NULL,
                     record TEXT NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS tollgate_channels_unclaimed
                     ON tollgate_channels (unclaimed) WHERE unclaimed;
                 CREATE TABLE IF NOT EXISTS tollgate_channel_holds (
                     id TEXT PRIMARY KEY,
                     voucher TEXT NOT NULL,
                     until_ms BIGINT NOT NULL
                 );",
            )
            .await
            .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            Ok(Self { pool })
        }

        async fn load_text(&self, id: &str) -> Result<Option<String>, StoreError> {
            let client = self.pool.get().await.map_err(failed)?;
            let row = client
                .query_opt("SELECT record FROM tollgate_channels WHERE id = $1", &[&id])
                .await
                .map_err(failed)?;
            Ok(row.map(|r| r.get::<_, String>(0)))
        }

        async fn records(&self, sql: &str) -> Result<Vec<ChannelRecord>, StoreError> {
            let client = self.pool.get().await.map_err(failed)?;
            let rows = client.query(sql, &[]).await.map_err(failed)?;
            rows.iter()
                .map(|row| serde_json::from_str(row.get::<_, &str>(0)).map_err(failed))
                .collect()
        }
    }

    impl ChannelStore for PgChannelStore {
        fn load(&self, id: B256) -> BoxFuture<'_, Result<Option<ChannelRecord>, StoreError>> {
            Box::pin(async move {
                self.load_text(&id.to_string())
                    .await?
                    .map(|text| serde_json::from_str(&text).map_err(failed))
                    .transpose()
            })
        }

        fn save_if(
            &self,
            record: ChannelRecord,
            expected: Expected,
        ) -> BoxFuture<'_, Result<bool, StoreError>> {
            Box::pin(async move {
                let client = self.pool.get().await.map_err(failed)?;
                let text = serde_json::to_string(&record).map_err(failed)?;
                let id = record.channel_id.to_string();
                let charged = record.charged.to_string();
                let unclaimed = record.unclaimed() > 0;
                let written = match expected {
                    Expected::Any => {
                        client
                            .execute(
                                "INSERT INTO tollgate_channels (id, charged, unclaimed, record)
                             VALUES ($1, $2, $3, $4)
                             ON CONFLICT (id) DO UPDATE SET charged = excluded.charged,
                                 unclaimed = excluded.unclaimed, record = excluded.record",
                                &[&id, &charged, &unclaimed, &text],
                            )
                            .await
                    }
                    Expected::Absent => {
                        client
                            .execute(
                                "INSERT INTO tollgate_channels (id, charged, unclaimed, record)
                             VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
                                &[&id, &charged, &unclaimed, &text],
                            )
                            .await
                    }
                    Expected::Charged(before) => client
                        .execute(
                            "UPDATE tollgate_channels SET charged = $2, unclaimed = $3, record = $4
                             WHERE id = $1 AND charged = $5",
                            &[&id, &charged, &unclaimed, &text, &before.to_string()],
                        )
                        .await,
                };
                Ok(written.map_err(failed)? == 1)
            })
        }

        fn remove_if(
            &self,
            id: B256,
            expected: Expected,
        ) -> BoxFuture<'_, Result<bool, StoreError>> {
            Box::pin(async move {
                let client = self.pool.get().await.map_err(failed)?;
                let id = id.to_string();
                let deleted = match expected {
                    Expected::Any => {
                        client
                            .execute("DELETE FROM tollgate_channels WHERE id = $1", &[&id])
                            .await
                    }
                    // Nothing to delete is what was expected.
                    Expected::Absent => return Ok(self.load_text(&id).await?.is_none()),
                    Expected::Charged(before) => {
                        client
                            .execute(
                                "DELETE FROM tollgate_channels WHERE id = $1 AND charged = $2",
                                &[&id, &before.to_string()],
                            )
                            .await
                    }
                };
                Ok(deleted.map_err(failed)? == 1)
            })
        }

        fn unclaimed(&self) -> BoxFuture<'_, Result<Vec<ChannelRecord>, StoreError>> {
            Box::pin(self.records("SELECT record FROM tollgate_channels WHERE unclaimed"))
        }

        fn all(&self) -> BoxFuture<'_, Result<Vec<ChannelRecord>, StoreError>> {
            Box::pin(self.records("SELECT record FROM tollgate_channels"))
        }

        fn hold(
            &self,
            id: B256,
            key: B256,
            lease: Duration,
        ) -> BoxFuture<'_, Result<bool, StoreError>> {
            Box::pin(async move {
                let client = self.pool.get().await.map_err(failed)?;
                let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
                let taken = client
                    .query_opt(
                        &format!(
                            "INSERT INTO tollgate_channel_holds (id, voucher, until_ms)
                             VALUES ($1, $2, {DB_NOW_MILLIS} + $3)
                             ON CONFLICT (id) DO UPDATE SET voucher = excluded.voucher,
                                 until_ms = excluded.until_ms
                             WHERE tollgate_channel_holds.voucher = excluded.voucher
                                OR tollgate_channel_holds.until_ms < {DB_NOW_MILLIS}
                             RETURNING id"
                        ),
                        &[&id.to_string(), &key.to_string(), &lease_ms],
                    )
                    .await
                    .map_err(failed)?;
                Ok(taken.is_some())
            })
        }

        fn holds(&self, id: B256, key: B256) -> BoxFuture<'_, Result<bool, StoreError>> {
            Box::pin(async move {
                let client = self.pool.get().await.map_err(failed)?;
                let row = client
                    .query_opt(
                        "SELECT 1 FROM tollgate_channel_holds WHERE id = $1 AND voucher = $2",
                        &[&id.to_string(), &key.to_string()],
                    )
                    .await
                    .map_err(failed)?;
                Ok(row.is_some())
            })
        }

        fn release(&self, id: B256, key: B256) -> BoxFuture<'_, Result<(), StoreError>> {
            Box::pin(async move {
                let client = self.pool.get().await.map_err(failed)?;
                client
                    .execute(
                        "DELETE FROM tollgate_channel_holds WHERE id = $1 AND voucher = $2",
                        &[&id.to_string(), &key.to_string()],
                    )
                    .await
                    .map_err(failed)?;
                Ok(())
            })
        }
    }
}
