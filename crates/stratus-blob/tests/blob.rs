//! The blob store on a real directory, digests checked against md5sum and sha512sum.

use bytes::Bytes;
use futures::{stream, StreamExt};
use rand::RngCore;
use std::path::Path;
use std::process::Command;
use stratus_blob::{BlobError, BlobStore};

fn chunks(data: &[u8], sizes: &[usize]) -> Vec<Result<Bytes, std::io::Error>> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < data.len() {
        let n = sizes[i % sizes.len()].min(data.len() - at);
        out.push(Ok(Bytes::copy_from_slice(&data[at..at + n])));
        at += n;
        i += 1;
    }
    out
}

fn tool_digest(tool: &str, file: &Path) -> String {
    let out = Command::new(tool).arg(file).output().expect("coreutils");
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Every regular file under `dir`.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_with_digests_equal_to_coreutils() {
    let tmp = tempfile::tempdir().unwrap();
    let store = BlobStore::local(&tmp.path().join("blobs")).unwrap();
    let mut data = vec![0u8; 20 * 1024 * 1024 + 123];
    rand::thread_rng().fill_bytes(&mut data);
    let src = stream::iter(chunks(&data, &[65536, 1, 3 * 1024 * 1024, 4097]));
    let d = store.put("images/a", src, u64::MAX).await.unwrap();

    let f = tmp.path().join("plain");
    std::fs::write(&f, &data).unwrap();
    assert_eq!(d.size, data.len() as u64);
    assert_eq!(d.md5, tool_digest("md5sum", &f));
    assert_eq!(d.sha512, tool_digest("sha512sum", &f));

    let read = |range: Option<std::ops::Range<u64>>| {
        let store = store.clone();
        async move {
            let mut back = Vec::new();
            let mut s = store.get("images/a", range).await.unwrap();
            while let Some(c) = s.next().await {
                back.extend_from_slice(&c.unwrap());
            }
            back
        }
    };
    assert!(read(None).await == data, "read back differs");
    assert_eq!(store.size("images/a").await.unwrap(), data.len() as u64);
    assert_eq!(&read(Some(10..20)).await[..], &data[10..20]);
    let tail = data.len() as u64 - 5..data.len() as u64;
    assert_eq!(&read(Some(tail)).await[..], &data[data.len() - 5..]);

    store.delete("images/a").await.unwrap();
    store.delete("images/a").await.unwrap();
    assert!(matches!(
        store.get("images/a", None).await,
        Err(BlobError::NotFound(_))
    ));
    assert!(files(&tmp.path().join("blobs")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_blob_has_the_empty_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let store = BlobStore::local(tmp.path()).unwrap();
    let d = store
        .put(
            "e",
            stream::iter(Vec::<Result<Bytes, std::io::Error>>::new()),
            10,
        )
        .await
        .unwrap();
    assert_eq!(d.size, 0);
    assert_eq!(d.md5, "d41d8cd98f00b204e9800998ecf8427e");
    assert!(d.sha512.starts_with("cf83e1357eefb8bd"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_writes_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("blobs");
    let store = BlobStore::local(&dir).unwrap();
    let data = vec![7u8; 12 * 1024 * 1024];

    // Larger than the limit.
    let r = store
        .put(
            "big",
            stream::iter(chunks(&data, &[1 << 20])),
            5 * 1024 * 1024,
        )
        .await;
    assert!(
        matches!(r, Err(BlobError::TooLarge { limit }) if limit == 5 * 1024 * 1024),
        "{r:?}"
    );
    assert!(matches!(
        store.get("big", None).await,
        Err(BlobError::NotFound(_))
    ));
    assert!(files(&dir).is_empty(), "{:?}", files(&dir));

    // The source fails midway (a client that disconnects).
    let mut parts = chunks(&data, &[1 << 20]);
    parts.insert(10, Err(std::io::Error::other("connection reset")));
    let r = store.put("cut", stream::iter(parts), u64::MAX).await;
    assert!(
        matches!(&r, Err(BlobError::Source(m)) if m.contains("connection reset")),
        "{r:?}"
    );
    assert!(matches!(
        store.get("cut", None).await,
        Err(BlobError::NotFound(_))
    ));
    assert!(files(&dir).is_empty(), "{:?}", files(&dir));
}

#[tokio::test]
async fn verified_reads_hold_back_the_last_chunk_until_the_digest_matches() {
    let chunks = || {
        stream::iter(
            [&b"ab"[..], b"cd", b"e"]
                .into_iter()
                .map(|c| Ok::<_, BlobError>(Bytes::copy_from_slice(c))),
        )
    };
    let good = "ab56b4d92b40713acc5af89985d4b786".to_string();
    let out: Vec<_> = stratus_blob::verify_md5(chunks(), Some(good))
        .collect()
        .await;
    let bytes: Vec<u8> = out.into_iter().flat_map(|c| c.unwrap().to_vec()).collect();
    assert_eq!(bytes, b"abcde");

    let out: Vec<_> = stratus_blob::verify_md5(chunks(), Some("0".repeat(32)))
        .collect()
        .await;
    assert_eq!(
        out.len(),
        3,
        "two chunks, then the error instead of the last"
    );
    assert_eq!(&out[0].as_ref().unwrap()[..], b"ab");
    assert_eq!(&out[1].as_ref().unwrap()[..], b"cd");
    assert!(matches!(out[2], Err(BlobError::Corrupt { .. })));

    let out: Vec<_> = stratus_blob::verify_md5(chunks(), None).collect().await;
    assert_eq!(out.len(), 3);
}

/// A blob as a file: the local store's own file; a copy for any other store, removed when it
/// is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn materialize_gives_a_file_with_the_blobs_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = b"blob bytes".repeat(100_000);
    let local = BlobStore::local(&tmp.path().join("blobs")).unwrap();
    let memory = BlobStore::from_object_store(
        std::sync::Arc::new(object_store::memory::InMemory::new()),
        tmp.path().join("work"),
    );
    for store in [&local, &memory] {
        let src = stream::iter(chunks(&data, &[4096, 70_000]));
        store.put("k", src, u64::MAX).await.unwrap();
        let f = store.materialize("k").await.unwrap();
        assert_eq!(std::fs::read(f.path()).unwrap(), data);
        let path = f.path().to_path_buf();
        drop(f);
        // The local store's file stays; a copy goes.
        assert_eq!(path.exists(), std::ptr::eq(store, &local), "{path:?}");
    }
    assert!(files(&tmp.path().join("work")).is_empty());
}

/// Purging a blob also removes the staging files an interrupted write left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_removes_the_blob_and_its_staging_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("blobs");
    let store = BlobStore::local(&dir).unwrap();
    let src = stream::iter(chunks(b"data", &[2]));
    store.put("k", src, u64::MAX).await.unwrap();
    std::fs::write(dir.join("k#7"), b"half").unwrap();
    std::fs::write(dir.join("other#1"), b"not ours").unwrap();
    store.purge("k").await.unwrap();
    assert_eq!(files(&dir), [dir.join("other#1").display().to_string()]);
    // Purging what is not there is not an error.
    store.purge("k").await.unwrap();
}
