//! Where the seller keeps its channels: [`ChannelStore`], in memory ([`MemoryChannelStore`]) or
//! in a SQLite file ([`SqliteChannelStore`], feature `channel-sqlite`) that survives `kill -9`.

use std::collections::HashMap;
use std::sync::Mutex;

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

/// Durable per-channel state. [`save`](Self::save) returns only once the record is durable: a
/// voucher whose request was served must be claimable after a crash.
pub trait ChannelStore: Send + Sync + 'static {
    /// The record of channel `id`.
    fn load(&self, id: B256) -> BoxFuture<'_, Result<Option<ChannelRecord>, StoreError>>;
    /// Stores `record` (replacing the channel's previous one).
    fn save(&self, record: ChannelRecord) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Every channel with value charged and not claimed.
    fn unclaimed(&self) -> BoxFuture<'_, Result<Vec<ChannelRecord>, StoreError>>;
    /// Every channel.
    fn all(&self) -> BoxFuture<'_, Result<Vec<ChannelRecord>, StoreError>>;
}

/// Channels in memory: gone with the process (a restarted seller forfeits what it had not
/// claimed). For tests and single-process demos; production uses [`SqliteChannelStore`].
#[derive(Debug, Default)]
pub struct MemoryChannelStore {
    records: Mutex<HashMap<B256, ChannelRecord>>,
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

    fn save(&self, record: ChannelRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        self.map().insert(record.channel_id, record);
        Box::pin(async { Ok(()) })
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

    use super::{ChannelRecord, ChannelStore, StoreError};

    /// Saves queued at once share one transaction (one `fsync`).
    const MAX_GROUP: usize = 256;

    type Save = (ChannelRecord, oneshot::Sender<Result<(), StoreError>>);

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
                for (record, _) in &group {
                    upsert(&tx, record)?;
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

        fn save(&self, record: ChannelRecord) -> BoxFuture<'_, Result<(), StoreError>> {
            let (reply, done) = oneshot::channel();
            let queued = self.writer.send((record.clone(), reply));
            Box::pin(async move {
                let stopped = || StoreError("the channel store's writer has stopped".into());
                queued.map_err(|_| stopped())?;
                done.await.map_err(|_| stopped())??;
                self.cache().insert(record.channel_id, record);
                Ok(())
            })
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
        drop(store);

        let reopened = SqliteChannelStore::open(&path).unwrap();
        assert_eq!(reopened.all().await.unwrap().len(), 200);
        let seven = reopened.load(B256::repeat_byte(7)).await.unwrap().unwrap();
        assert_eq!(seven, record(7, 6_000, 6_000));
        // Channel 0 charged nothing and 7 is claimed: the other 198 are unclaimed.
        assert_eq!(reopened.unclaimed().await.unwrap().len(), 198);
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
    }
}
