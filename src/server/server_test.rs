//! The Raw API over `StandaloneStorage`.
//!
//! The first ten tests port TinyKV's `kv/server/server_test.go` (project 1),
//! one Rust test per Go test, with the `1` part suffix kept; the mapping is in
//! `docs/ported/server_test.md`. Each runs in a fresh temporary directory.
//! The tests after them check input validation, which TinyKV leaves out.

use kvproto::kvrpcpb::{
    Context, RawDeleteRequest, RawGetRequest, RawPutRequest, RawScanRequest, RawScanResponse,
};
use storage::{CF_DEFAULT, CF_LOCK, CF_RAFT, CF_WRITE, Modify, StandaloneStorage, Storage};
use tempfile::TempDir;

use super::Server;
use super::session::SessionStorage;

/// A server over a standalone storage in a fresh temp dir. The dir is
/// returned so that it outlives the storage (fields drop in order).
struct TestServer {
    server: Server<StandaloneStorage>,
    _dir: TempDir,
}

fn new_test_server() -> TestServer {
    let dir = tempfile::tempdir().expect("create temp dir");
    let storage = StandaloneStorage::open(dir.path()).expect("open standalone storage");
    TestServer {
        server: Server::new(storage),
        _dir: dir,
    }
}

/// Writes straight to the storage, bypassing the Raw API (Go's `Set`).
async fn must_set(server: &Server<StandaloneStorage>, cf: &str, key: &[u8], value: &[u8]) {
    let modify = Modify::Put {
        cf: cf.to_owned(),
        key: key.to_vec(),
        value: value.to_vec(),
    };
    server
        .storage()
        .write(&Context::default(), vec![modify])
        .await
        .expect("storage write");
}

/// Reads straight from the storage, bypassing the Raw API (Go's `Get`).
async fn must_get_storage(
    server: &Server<StandaloneStorage>,
    cf: &str,
    key: &[u8],
) -> Option<Vec<u8>> {
    let reader = server
        .storage()
        .reader(&Context::default())
        .await
        .expect("storage reader");
    reader.get_cf(cf, key).expect("storage get")
}

fn get_req(cf: &str, key: &[u8]) -> RawGetRequest {
    RawGetRequest {
        context: None,
        key: key.to_vec(),
        cf: cf.to_owned(),
    }
}

fn put_req(cf: &str, key: &[u8], value: &[u8]) -> RawPutRequest {
    RawPutRequest {
        context: None,
        key: key.to_vec(),
        value: value.to_vec(),
        cf: cf.to_owned(),
    }
}

fn delete_req(cf: &str, key: &[u8]) -> RawDeleteRequest {
    RawDeleteRequest {
        context: None,
        key: key.to_vec(),
        cf: cf.to_owned(),
    }
}

fn scan_req(cf: &str, start_key: &[u8], limit: u32) -> RawScanRequest {
    RawScanRequest {
        context: None,
        start_key: start_key.to_vec(),
        limit,
        cf: cf.to_owned(),
    }
}

/// Asserts a scan succeeded and returned exactly `keys`, each with the value
/// `[233, key...]` the Go tests write.
fn must_scan_keys(resp: &RawScanResponse, keys: &[&[u8]]) {
    assert!(
        resp.error.is_empty() && resp.region_error.is_none(),
        "{resp:?}"
    );
    let got: Vec<&[u8]> = resp.kvs.iter().map(|kv| kv.key.as_slice()).collect();
    assert_eq!(got, keys);
    for kv in &resp.kvs {
        assert_eq!(kv.value, [&[233u8][..], kv.key.as_slice()].concat());
        assert!(kv.error.is_none());
    }
}

async fn set_1_to_4(server: &Server<StandaloneStorage>) {
    for k in 1u8..=4 {
        must_set(server, CF_DEFAULT, &[k], &[233, k]).await;
    }
}

// ---- Ported from TinyKV kv/server/server_test.go ----

/// TestRawGet1
#[tokio::test]
async fn test_raw_get_1() {
    let t = new_test_server();
    must_set(&t.server, CF_DEFAULT, &[99], &[42]).await;

    let resp = t.server.raw_get(get_req(CF_DEFAULT, &[99])).await;
    assert!(
        resp.error.is_empty() && resp.region_error.is_none(),
        "{resp:?}"
    );
    assert_eq!(resp.value, [42]);
    assert!(!resp.not_found);
}

/// TestRawGetNotFound1
#[tokio::test]
async fn test_raw_get_not_found_1() {
    let t = new_test_server();
    let resp = t.server.raw_get(get_req(CF_DEFAULT, &[99])).await;
    assert!(
        resp.error.is_empty() && resp.region_error.is_none(),
        "{resp:?}"
    );
    assert!(resp.not_found);
    assert!(resp.value.is_empty());
}

/// TestRawPut1
#[tokio::test]
async fn test_raw_put_1() {
    let t = new_test_server();
    let resp = t.server.raw_put(put_req(CF_DEFAULT, &[99], &[42])).await;
    assert!(
        resp.error.is_empty() && resp.region_error.is_none(),
        "{resp:?}"
    );

    assert_eq!(
        must_get_storage(&t.server, CF_DEFAULT, &[99]).await,
        Some(vec![42])
    );
}

/// TestRawGetAfterRawPut1: the same key in two CFs holds two values.
#[tokio::test]
async fn test_raw_get_after_raw_put_1() {
    let t = new_test_server();
    let resp = t.server.raw_put(put_req(CF_DEFAULT, &[99], &[42])).await;
    assert!(resp.error.is_empty(), "{resp:?}");
    let resp = t.server.raw_put(put_req(CF_WRITE, &[99], &[44])).await;
    assert!(resp.error.is_empty(), "{resp:?}");

    let resp = t.server.raw_get(get_req(CF_DEFAULT, &[99])).await;
    assert!(resp.error.is_empty(), "{resp:?}");
    assert_eq!(resp.value, [42]);

    let resp = t.server.raw_get(get_req(CF_WRITE, &[99])).await;
    assert!(resp.error.is_empty(), "{resp:?}");
    assert_eq!(resp.value, [44]);
}

/// TestRawGetAfterRawDelete1
#[tokio::test]
async fn test_raw_get_after_raw_delete_1() {
    let t = new_test_server();
    must_set(&t.server, CF_DEFAULT, &[99], &[42]).await;

    let resp = t.server.raw_delete(delete_req(CF_DEFAULT, &[99])).await;
    assert!(
        resp.error.is_empty() && resp.region_error.is_none(),
        "{resp:?}"
    );

    let resp = t.server.raw_get(get_req(CF_DEFAULT, &[99])).await;
    assert!(resp.error.is_empty(), "{resp:?}");
    assert!(resp.not_found);
}

/// TestRawDelete1
#[tokio::test]
async fn test_raw_delete_1() {
    let t = new_test_server();
    must_set(&t.server, CF_DEFAULT, &[99], &[42]).await;

    let resp = t.server.raw_delete(delete_req(CF_DEFAULT, &[99])).await;
    assert!(
        resp.error.is_empty() && resp.region_error.is_none(),
        "{resp:?}"
    );

    assert_eq!(must_get_storage(&t.server, CF_DEFAULT, &[99]).await, None);
}

/// TestRawScan1: the limit cuts the scan.
#[tokio::test]
async fn test_raw_scan_1() {
    let t = new_test_server();
    for k in 1u8..=5 {
        must_set(&t.server, CF_DEFAULT, &[k], &[233, k]).await;
    }

    let resp = t.server.raw_scan(scan_req(CF_DEFAULT, &[1], 3)).await;
    must_scan_keys(&resp, &[&[1], &[2], &[3]]);
}

/// TestRawScanAfterRawPut1: a limit above the key count returns all keys,
/// including one written through the Raw API.
#[tokio::test]
async fn test_raw_scan_after_raw_put_1() {
    let t = new_test_server();
    set_1_to_4(&t.server).await;

    let resp = t.server.raw_put(put_req(CF_DEFAULT, &[5], &[233, 5])).await;
    assert!(resp.error.is_empty(), "{resp:?}");

    let resp = t.server.raw_scan(scan_req(CF_DEFAULT, &[1], 10)).await;
    must_scan_keys(&resp, &[&[1], &[2], &[3], &[4], &[5]]);
}

/// TestRawScanAfterRawDelete1
#[tokio::test]
async fn test_raw_scan_after_raw_delete_1() {
    let t = new_test_server();
    set_1_to_4(&t.server).await;

    let resp = t.server.raw_delete(delete_req(CF_DEFAULT, &[3])).await;
    assert!(resp.error.is_empty(), "{resp:?}");

    let resp = t.server.raw_scan(scan_req(CF_DEFAULT, &[1], 10)).await;
    must_scan_keys(&resp, &[&[1], &[2], &[4]]);
}

/// TestIterWithRawDelete1: an iterator keeps reading the snapshot it was made
/// from; a delete after it was made does not show.
#[tokio::test]
async fn test_iter_with_raw_delete_1() {
    let t = new_test_server();
    set_1_to_4(&t.server).await;

    let reader = t
        .server
        .storage()
        .reader(&Context::default())
        .await
        .expect("reader");
    let mut it = reader.iter_cf(CF_DEFAULT).expect("iter_cf");

    let resp = t.server.raw_delete(delete_req(CF_DEFAULT, &[3])).await;
    assert!(resp.error.is_empty(), "{resp:?}");

    let mut keys = vec![];
    it.seek(&[1]);
    while it.valid() {
        keys.push(it.key().to_vec());
        it.next();
    }
    it.status().expect("iterator status");
    assert_eq!(keys, [[1], [2], [3], [4]]);
}

// ---- Beyond TinyKV: input validation and edge cases ----

#[tokio::test]
async fn test_raw_api_rejects_bad_cf() {
    let t = new_test_server();
    for cf in ["nope", CF_RAFT, "Default"] {
        let resp = t.server.raw_put(put_req(cf, b"k", b"v")).await;
        assert!(
            resp.error.contains("invalid cf") && resp.error.contains(cf),
            "{cf}: {resp:?}"
        );
        let resp = t.server.raw_get(get_req(cf, b"k")).await;
        assert!(resp.error.contains("invalid cf"), "{cf}: {resp:?}");
        assert!(!resp.not_found);
        let resp = t.server.raw_delete(delete_req(cf, b"k")).await;
        assert!(resp.error.contains("invalid cf"), "{cf}: {resp:?}");
        let resp = t.server.raw_scan(scan_req(cf, b"", 10)).await;
        assert!(
            resp.error.contains("invalid cf") && resp.kvs.is_empty(),
            "{cf}: {resp:?}"
        );
    }
    // Nothing reached the engine's raft CF.
    let mut raft_keys = 0;
    t.server
        .storage()
        .engine()
        .scan_cf(CF_RAFT, b"", b"", |_, _| {
            raft_keys += 1;
            Ok(true)
        })
        .unwrap();
    assert_eq!(raft_keys, 0);
}

#[tokio::test]
async fn test_raw_api_empty_cf_means_default() {
    let t = new_test_server();
    let resp = t.server.raw_put(put_req("", b"k", b"v")).await;
    assert!(resp.error.is_empty(), "{resp:?}");
    assert_eq!(
        must_get_storage(&t.server, CF_DEFAULT, b"k").await,
        Some(b"v".to_vec())
    );
    let resp = t.server.raw_get(get_req("", b"k")).await;
    assert_eq!(resp.value, b"v");
}

#[tokio::test]
async fn test_raw_api_rejects_empty_key() {
    let t = new_test_server();
    let resp = t.server.raw_put(put_req(CF_DEFAULT, b"", b"v")).await;
    assert!(resp.error.contains("key is empty"), "{resp:?}");
    let resp = t.server.raw_delete(delete_req(CF_DEFAULT, b"")).await;
    assert!(resp.error.contains("key is empty"), "{resp:?}");
    let resp = t.server.raw_scan(scan_req(CF_DEFAULT, b"", 10)).await;
    assert!(resp.error.is_empty() && resp.kvs.is_empty(), "{resp:?}");
    // A get of the empty key is simply not found.
    let resp = t.server.raw_get(get_req(CF_DEFAULT, b"")).await;
    assert!(resp.error.is_empty() && resp.not_found, "{resp:?}");
}

#[tokio::test]
async fn test_raw_scan_edges() {
    let t = new_test_server();
    set_1_to_4(&t.server).await;
    must_set(&t.server, CF_LOCK, &[2, 5], &[233, 2, 5]).await;

    // From the middle, between keys, past the end, with limit 0.
    must_scan_keys(
        &t.server.raw_scan(scan_req(CF_DEFAULT, &[2, 0], 10)).await,
        &[&[3], &[4]],
    );
    must_scan_keys(
        &t.server.raw_scan(scan_req(CF_DEFAULT, &[5], 10)).await,
        &[],
    );
    must_scan_keys(&t.server.raw_scan(scan_req(CF_DEFAULT, &[1], 0)).await, &[]);
    must_scan_keys(
        &t.server.raw_scan(scan_req(CF_DEFAULT, &[], 1)).await,
        &[&[1]],
    );
    // Each CF scans alone.
    must_scan_keys(
        &t.server.raw_scan(scan_req(CF_LOCK, &[], 10)).await,
        &[&[2, 5]],
    );
    must_scan_keys(&t.server.raw_scan(scan_req(CF_WRITE, &[], 10)).await, &[]);
}

#[tokio::test]
async fn test_raw_put_overwrites() {
    let t = new_test_server();
    for v in 0u8..3 {
        let resp = t.server.raw_put(put_req(CF_DEFAULT, b"k", &[v])).await;
        assert!(resp.error.is_empty(), "{resp:?}");
        assert_eq!(t.server.raw_get(get_req(CF_DEFAULT, b"k")).await.value, [v]);
    }
    // Deleting an absent key succeeds.
    let resp = t.server.raw_delete(delete_req(CF_DEFAULT, b"absent")).await;
    assert!(resp.error.is_empty(), "{resp:?}");
}

/// tonic runs handlers on a multi-threaded runtime, so their futures must be
/// `Send`. Checked generically: this holds for every `SessionStorage`.
fn assert_handlers_send<S: SessionStorage>(server: &Server<S>) {
    fn is_send<T: Send>(_: &T) {}
    is_send(&server.raw_get(RawGetRequest::default()));
    is_send(&server.raw_put(RawPutRequest::default()));
    is_send(&server.raw_delete(RawDeleteRequest::default()));
    is_send(&server.raw_scan(RawScanRequest::default()));
    is_send(&server.raw_append(Default::default()));
    is_send(&server.open_session(Default::default()));
}

#[test]
fn test_handler_futures_are_send() {
    let t = new_test_server();
    assert_handlers_send(&t.server);
}
