//! The Clerk's session protocol (`docs/PROTOCOL_EXTENSIONS.md`, "Client
//! sessions", steps 1–4) against fake stores that keep a session table
//! per region: lost answers retried with the same sequence and applied
//! once, `SessionExpired` before and after a possibly applied attempt,
//! sessions opened once per region and again after a split, a missing key
//! read as empty.

use std::time::Duration;

use tonic::Status;

use super::fake::{Answer, FakeEnv, FakeSetup, Recorded, World, new_test_region, region_error};
use crate::client::{Clerk, Error};

/// The deadline of operations expected to succeed: long enough for a
/// loaded machine, never reached by a passing test.
const TIMEOUT: Duration = Duration::from_secs(20);

/// One region over all keys on stores 1, 2, 3, led by store 1.
async fn one_region_env() -> FakeEnv {
    FakeEnv::start(FakeSetup {
        stores: 3,
        dead: vec![],
        regions: vec![new_test_region(1, (b"", b""), (1, 1), &[1, 2, 3])],
        leaders: [(1, 1)].into_iter().collect(),
    })
    .await
}

async fn new_test_clerk(env: &FakeEnv, timeout: Duration) -> Clerk {
    Clerk::new(env.client(timeout).await)
        .await
        .expect("a clerk gets its client id")
}

fn value(env: &FakeEnv, key: &[u8]) -> Option<Vec<u8>> {
    env.with_world(|w| w.data.get(key).cloned())
}

fn requests_of(env: &FakeEnv, op: &str) -> Vec<Recorded> {
    env.with_world(|w| w.requests_of(op))
}

/// `(region, client, sequence)` of each request.
fn sessions_sent(requests: &[Recorded]) -> Vec<(u64, u64, u64)> {
    requests
        .iter()
        .map(|r| (r.ctx.region_id, r.ctx.client_id, r.ctx.sequence))
        .collect()
}

/// A hook answering the first request of kind `op` by `answer(world)`;
/// every other request is served.
fn first_of(
    op: &'static str,
    mut answer: impl FnMut(&mut World, &Recorded) -> Answer + Send + 'static,
) -> impl FnMut(&mut World, &Recorded) -> Option<Answer> + Send + 'static {
    let mut done = false;
    move |world, request| {
        if done || request.op != op {
            return None;
        }
        done = true;
        Some(answer(world, request))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_clerk_ids_are_allocated_and_distinct() {
    let env = one_region_env().await;
    let a = new_test_clerk(&env, TIMEOUT).await;
    let b = new_test_clerk(&env, TIMEOUT).await;
    assert_ne!(a.client_id(), 0);
    assert_ne!(a.client_id(), b.client_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_put_append_get_and_a_missing_key_is_empty() {
    let env = one_region_env().await;
    let mut clerk = new_test_clerk(&env, TIMEOUT).await;
    assert_eq!(clerk.get(b"k").await.expect("get"), b"");
    clerk.put(b"k", b"a").await.expect("put");
    clerk.append(b"k", b"b").await.expect("append");
    clerk
        .append(b"fresh", b"c")
        .await
        .expect("append to a missing key");
    assert_eq!(clerk.get(b"k").await.expect("get"), b"ab");
    assert_eq!(clerk.get(b"fresh").await.expect("get"), b"c");
    // One sequence per write, from 1, each with the clerk's id.
    let id = clerk.client_id();
    let writes: Vec<_> = env.with_world(|w| {
        w.requests
            .iter()
            .filter(|r| r.op == "RawPut" || r.op == "RawAppend")
            .map(|r| (r.ctx.client_id, r.ctx.sequence))
            .collect()
    });
    assert_eq!(writes, vec![(id, 1), (id, 2), (id, 3)]);
    // Reads carry no session.
    assert!(
        requests_of(&env, "RawGet")
            .iter()
            .all(|r| r.ctx.client_id == 0 && r.ctx.sequence == 0)
    );
}

/// The first append applies but its answer is lost; the retry (through
/// another peer's NotLeader hint, back to the leader) carries the same
/// sequence and is answered from the session table: applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_write_whose_answer_is_lost_is_applied_once() {
    let env = one_region_env().await;
    let mut clerk = new_test_clerk(&env, TIMEOUT).await;
    env.set_hook(first_of("RawAppend", |_, _| {
        Answer::Lost(Status::unavailable("connection reset"))
    }));
    clerk.append(b"k", b"x").await.expect("append");
    assert_eq!(
        value(&env, b"k"),
        Some(b"x".to_vec()),
        "appended twice = the retry was applied again"
    );
    let id = clerk.client_id();
    let appends = requests_of(&env, "RawAppend");
    assert!(appends.len() >= 2, "{appends:?}");
    assert!(
        appends
            .iter()
            .all(|r| (r.ctx.client_id, r.ctx.sequence) == (id, 1)),
        "every attempt carries the same sequence: {appends:?}"
    );
    assert_eq!(requests_of(&env, "OpenSession").len(), 1);
    // The next write takes the next sequence and applies.
    clerk.append(b"k", b"y").await.expect("append");
    assert_eq!(value(&env, b"k"), Some(b"xy".to_vec()));
    assert_eq!(
        requests_of(&env, "RawAppend")
            .last()
            .map(|r| r.ctx.sequence),
        Some(2)
    );
}

/// `SessionExpired` on the first attempt (refused before proposal: nothing
/// can have applied): the session is opened again and the same sequence
/// sent, which applies once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_session_expired_on_a_first_attempt_reopens_and_succeeds() {
    let env = one_region_env().await;
    let mut clerk = new_test_clerk(&env, TIMEOUT).await;
    clerk.put(b"k", b"a").await.expect("put");
    // The session expires in the region before the append.
    let id = clerk.client_id();
    env.with_world(|w| w.expire_session(1, id));
    clerk.append(b"k", b"b").await.expect("append");
    assert_eq!(value(&env, b"k"), Some(b"ab".to_vec()));
    let opens = sessions_sent(&requests_of(&env, "OpenSession"));
    assert_eq!(opens, vec![(1, id, 0), (1, id, 0)], "opened, then again");
    let appends = sessions_sent(&requests_of(&env, "RawAppend"));
    assert_eq!(
        appends,
        vec![(1, id, 2), (1, id, 2)],
        "refused, then resent with the same sequence"
    );
    let order: Vec<&str> = env.with_world(|w| w.requests.iter().map(|r| r.op).collect());
    assert_eq!(
        order,
        vec![
            "OpenSession",
            "RawPut",
            "RawAppend",
            "OpenSession",
            "RawAppend"
        ]
    );
}

/// A refusal before proposal (NotLeader) and then `SessionExpired` still
/// re-opens: no attempt can have applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_session_expired_after_not_leader_still_reopens() {
    let env = one_region_env().await;
    let mut clerk = new_test_clerk(&env, TIMEOUT).await;
    let id = clerk.client_id();
    let mut puts = 0;
    env.set_hook(move |w, r| {
        if r.op == "RawPut" {
            puts += 1;
            match puts {
                // Leadership moves to store 3: this attempt gets NotLeader.
                1 => {
                    w.leaders.insert(1, 3);
                }
                // The session ends: this attempt gets SessionExpired.
                2 => w.expire_session(1, id),
                _ => {}
            }
        }
        None
    });
    clerk.put(b"k", b"v").await.expect("put");
    assert_eq!(value(&env, b"k"), Some(b"v".to_vec()));
    let puts = requests_of(&env, "RawPut");
    assert_eq!(
        puts.iter()
            .map(|r| (r.store_id, r.ctx.sequence))
            .collect::<Vec<_>>(),
        vec![(1, 1), (3, 1), (3, 1)],
        "{puts:?}"
    );
    assert_eq!(requests_of(&env, "OpenSession").len(), 2, "opened again");
}

/// The first attempt may have applied (its answer was lost); then the
/// session expires: re-opening could apply the write twice, so the Clerk
/// gives up with `SessionExpired`, having applied it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_session_expired_after_an_unanswered_attempt_gives_up() {
    let env = one_region_env().await;
    let mut clerk = new_test_clerk(&env, TIMEOUT).await;
    let id = clerk.client_id();
    // The first append applies and its answer is lost; the session ends
    // before any retry.
    let mut applied = false;
    let mut lost = first_of("RawAppend", |_, _| {
        Answer::Lost(Status::unavailable("connection reset"))
    });
    env.set_hook(move |w, r| {
        if r.op == "RawAppend" && applied {
            w.expire_session(1, id);
        }
        let answer = lost(w, r);
        if answer.is_some() {
            applied = true;
        }
        answer
    });
    match clerk.append(b"k", b"x").await {
        Err(Error::SessionExpired {
            client_id,
            sequence,
        }) => assert_eq!((client_id, sequence), (id, 1)),
        other => panic!("expected SessionExpired, got {other:?}"),
    }
    assert_eq!(value(&env, b"k"), Some(b"x".to_vec()), "applied once");
    assert_eq!(
        requests_of(&env, "OpenSession").len(),
        1,
        "the session was not opened again"
    );
    // The next operation is a new write with the next sequence.
    clerk.put(b"k2", b"v").await.expect("put after giving up");
    let last = requests_of(&env, "RawPut");
    assert_eq!(last.last().map(|r| r.ctx.sequence), Some(2), "{last:?}");
}

/// A write that never gets an answer ends at the deadline with a
/// timeout; the next write takes a new sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_write_that_times_out_is_given_up_and_the_next_takes_a_new_sequence() {
    let env = one_region_env().await;
    let mut clerk = new_test_clerk(&env, Duration::from_millis(800)).await;
    env.set_hook(|_, r| {
        (r.op == "RawPut" && r.key == b"lost")
            .then(|| Answer::Lost(Status::unavailable("connection reset")))
    });
    match clerk.put(b"lost", b"v").await {
        Err(Error::Timeout { op, .. }) => assert_eq!(op, "RawPut"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    let tries = requests_of(&env, "RawPut");
    assert!(tries.iter().all(|r| r.ctx.sequence == 1), "{tries:?}");
    clerk.put(b"next", b"v").await.expect("put");
    // Selected by key: an attempt cut off at the deadline may still reach
    // the server's hook after the next write's requests.
    let next: Vec<_> = requests_of(&env, "RawPut")
        .into_iter()
        .filter(|r| r.key == b"next")
        .collect();
    assert!(!next.is_empty());
    assert!(next.iter().all(|r| r.ctx.sequence == 2), "{next:?}");
}

/// The session is opened once per region: again only in a region the
/// Clerk has not written to, such as the new half of a split (whose table
/// the store copied).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_the_session_is_opened_once_per_region_and_after_a_split() {
    let env = one_region_env().await;
    let mut clerk = new_test_clerk(&env, TIMEOUT).await;
    let id = clerk.client_id();
    clerk.put(b"a", b"1").await.expect("put");
    clerk.put(b"x", b"2").await.expect("put");
    clerk.append(b"a", b"1").await.expect("append");
    assert_eq!(
        sessions_sent(&requests_of(&env, "OpenSession")),
        vec![(1, id, 0)]
    );

    // Region 1 splits at "m" into 1 and 5; the scheduler does not hear.
    env.with_world(|w| w.split(1, b"m", 5));
    clerk
        .append(b"x", b"2")
        .await
        .expect("append in the new region");
    clerk
        .append(b"a", b"1")
        .await
        .expect("append in the old region");
    clerk.put(b"y", b"3").await.expect("put in the new region");
    assert_eq!(
        sessions_sent(&requests_of(&env, "OpenSession")),
        vec![(1, id, 0), (5, id, 0)],
        "opened in the new region only"
    );
    let in_new: Vec<&str> = env.with_world(|w| {
        w.requests
            .iter()
            .filter(|r| r.ctx.region_id == 5)
            .map(|r| r.op)
            .collect()
    });
    assert_eq!(
        in_new,
        vec!["OpenSession", "RawAppend", "RawPut"],
        "opened before the first write there, and only then"
    );
    assert_eq!(value(&env, b"a"), Some(b"111".to_vec()));
    assert_eq!(value(&env, b"x"), Some(b"22".to_vec()));
}

/// A plain request that gets `SessionExpired` is not retried: the typed
/// error comes back at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_session_expired_is_not_retried_by_the_routing() {
    let env = one_region_env().await;
    env.set_hook(|_, _| {
        Some(Answer::RegionError(Box::new(region_error(|e| {
            e.session_expired = Some(kvproto::errorpb::SessionExpired {
                client_id: 8,
                sequence: 3,
            })
        }))))
    });
    let client = env.client(TIMEOUT).await;
    match client.raw_append("", b"k", b"v").await {
        Err(Error::SessionExpired {
            client_id,
            sequence,
        }) => assert_eq!((client_id, sequence), (8, 3)),
        other => panic!("expected SessionExpired, got {other:?}"),
    }
    assert_eq!(env.with_world(|w| w.requests.len()), 1, "no retry");
}
