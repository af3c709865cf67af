//! The metadata store: one schema and one code path over SQLite (embedded default, WAL) and
//! PostgreSQL (scale-out), through sqlx's `Any` driver.
//!
//! Portable SQL only: `$N` placeholders (SQLite accepts them), `TEXT` and `BIGINT` columns, times in
//! microseconds since the epoch, flags as 0/1. Every transaction that changes identity or
//! authorization data bumps the `revision` row so that caches on every node can tell when to reload.

mod compute;
mod iam;
mod identity;
mod images;
mod migrate;
mod sagas;
mod volumes;

pub use compute::*;
pub use iam::*;
pub use identity::*;
pub use images::*;
pub use migrate::{MIGRATIONS, SCHEMA_VERSION};
pub use sagas::*;
pub use sqlx::AnyConnection;
pub use stratus_model::*;
pub use volumes::*;

use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyPool, Connection, Executor, Row, Transaction};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// What every query function of the store runs on: the pool, a connection, or a transaction
/// (`WriteTx::conn`), of either database.
pub trait Db<'e>: Executor<'e, Database = Any> {}

impl<'e, T: Executor<'e, Database = Any>> Db<'e> for T {}

/// Errors of the store. Constraint violations are told apart so services can map them to 409.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unique constraint violated: {0}")]
    Conflict(String),
    #[error("the database schema is version {found}, newer than this binary supports ({supported}); upgrade stratus")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("unsupported database URL {0:?}: expected sqlite:// or postgres://")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("store task failed: {0}")]
    Internal(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_string())
            }
            _ => StoreError::Database(e),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded: exactly one process uses the database (the data-dir lock guarantees it).
    Sqlite,
    /// Shared: several stateless nodes may use the database at once.
    Postgres,
}

const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;";

pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Last revision this process wrote or read.
    revision: AtomicI64,
}

/// A write transaction. SQLite transactions start `IMMEDIATE` so that concurrent writers wait on
/// the busy timeout instead of failing on lock upgrade.
pub struct WriteTx {
    tx: Transaction<'static, Any>,
    bump_revision: bool,
}

impl Store {
    /// Connects and applies embedded migrations. `url` is `sqlite://PATH` or `postgres://...`.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        // One probe connection first, so an unusable database fails at once with its own error
        // instead of the pool retrying until its acquire timeout.
        let mut probe = AnyConnection::connect(url).await?;
        if backend == Backend::Sqlite {
            probe.execute(SQLITE_PRAGMAS).await?;
        }
        probe.execute("SELECT 1").await?;
        probe.close().await?;
        let mut opts = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(30));
        opts = match backend {
            Backend::Sqlite => {
                opts.max_connections(8)
                    .min_connections(1)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(SQLITE_PRAGMAS).await?;
                            Ok(())
                        })
                    })
            }
            Backend::Postgres => opts.max_connections(16),
        };
        let pool = opts.connect(url).await?;
        let store = Store {
            pool,
            backend,
            revision: AtomicI64::new(0),
        };
        migrate::run(&store).await?;
        let rev = store.read_revision().await?;
        store.revision.store(rev, Ordering::SeqCst);
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a write transaction of data other than identity and authorization data.
    pub async fn write(&self) -> Result<WriteTx> {
        self.begin_write(false).await
    }

    /// Starts a write transaction of identity or authorization data: its commit also advances
    /// the revision, so that every node's caches of such data reload.
    pub async fn write_identity(&self) -> Result<WriteTx> {
        self.begin_write(true).await
    }

    async fn begin_write(&self, bump_revision: bool) -> Result<WriteTx> {
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        // BEGIN runs on a task of its own: a caller cancelled while it runs (a client that went
        // away, a saga that lost its lease) must not leave a pooled connection inside a
        // transaction nothing will end, which the next BEGIN on it would find.
        let pool = self.pool.clone();
        let tx = tokio::spawn(async move { pool.begin_with(begin).await })
            .await
            .map_err(|e| StoreError::Internal(format!("transaction start: {e}")))??;
        Ok(WriteTx { tx, bump_revision })
    }

    /// The current revision of identity and authorization data. With the embedded backend this
    /// process is the only writer, so the in-memory value is exact; with PostgreSQL another node
    /// may have written, so the row is read.
    pub async fn current_revision(&self) -> Result<i64> {
        match self.backend {
            Backend::Sqlite => Ok(self.revision.load(Ordering::SeqCst)),
            Backend::Postgres => {
                let rev = self.read_revision().await?;
                self.revision.fetch_max(rev, Ordering::SeqCst);
                Ok(rev)
            }
        }
    }

    async fn read_revision(&self) -> Result<i64> {
        let row = sqlx::query("SELECT value FROM revision WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// Commits a transaction, advancing the revision if it asked to.
    pub async fn commit(&self, mut w: WriteTx) -> Result<()> {
        if w.bump_revision {
            let row =
                sqlx::query("UPDATE revision SET value = value + 1 WHERE id = 1 RETURNING value")
                    .fetch_one(&mut *w.tx)
                    .await?;
            let rev: i64 = row.try_get(0)?;
            w.tx.commit().await?;
            self.revision.fetch_max(rev, Ordering::SeqCst);
        } else {
            w.tx.commit().await?;
        }
        Ok(())
    }
}

impl WriteTx {
    pub fn conn(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }
}

/// Serialises transactions that take the same `key` across nodes (PostgreSQL advisory lock, held
/// until the transaction ends). SQLite write transactions are already exclusive.
pub async fn advisory_lock(w: &mut WriteTx, key: i64) -> Result<()> {
    if w.tx.backend_name() == "PostgreSQL" {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(key)
            .execute(&mut *w.tx)
            .await?;
    }
    Ok(())
}

pub(crate) fn flag(b: bool) -> i64 {
    i64::from(b)
}

/// Microseconds since the Unix epoch, the store's unit of time.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}
