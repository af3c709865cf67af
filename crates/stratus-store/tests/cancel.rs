//! Writes cancelled while their transaction starts (a client that went away, a saga that lost its
//! lease) leave no pooled connection inside a transaction: later writes all work.

use std::time::Duration;
use stratus_store::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_transaction_starts_poison_no_connection() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
    let store = Store::open(&url).await.unwrap();
    // Start many writes and drop each after its first poll: BEGIN is on its way, its future gone.
    for n in 0..64u64 {
        let write = store.write();
        tokio::pin!(write);
        let _ = tokio::time::timeout(Duration::from_micros(n % 7), &mut write).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Every connection of the pool is used again: none may be inside a transaction.
    for _ in 0..64 {
        let mut w = store.write().await.expect("a transaction starts");
        sqlx::query("SELECT 1").execute(w.conn()).await.unwrap();
        store.commit(w).await.expect("and commits");
    }
    store.close().await;
}
