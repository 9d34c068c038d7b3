//! Client sessions in the state machine: exactly-once writes (MIT 6.824
//! Lab 3, Raft thesis §6.3; the protocol is in
//! `docs/PROTOCOL_EXTENSIONS.md`, "Client sessions").
//!
//! Each region keeps a [`SessionTable`]: client id → the sequence number of
//! the client's last applied write, that write's answer, and when the
//! session was last active. A write carrying a session applies only when
//! its sequence is above the last applied one.
//!
//! Invariants:
//! - The table is a function of the region's applied entries alone: every
//!   decision (apply, deduplicate, expire, evict) reads only the table and
//!   the entry, and time is the session clock, the largest `SessionClock`
//!   stamp the leader put on an applied entry. No replica reads its own
//!   clock, so every replica holds the same table at the same index.
//! - Each change is written into the apply batch that applies the entry
//!   (one key per session, `keys::client_session_key`; the clock in the
//!   apply state), so after a crash the table on disk matches the applied
//!   index it is read back with.
//! - A region snapshot carries the table and clock at its index; a split
//!   copies them to the new region (`operation/split.rs`); destroying the
//!   peer deletes them with its other meta keys.
//! - The table never holds more than the stamped `max_sessions` entries
//!   after a command applies (the least recently active go first).

use std::collections::{BTreeSet, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use kvproto::raft_cmdpb::{CmdType, RaftCmdRequest, Response, SessionClock};
use kvproto::raft_serverpb::ClientSessionState;
use prost::Message as _;
use storage::{CF_DEFAULT, Engine, WriteBatch, keys};

use crate::config::Config;
use crate::errors::{Error, Result};

/// Commands a session may carry: writes and `OpenSession`.
const SESSION_COMMANDS: &[CmdType] = &[
    CmdType::Put,
    CmdType::Delete,
    CmdType::Append,
    CmdType::OpenSession,
];

/// Checks the session parts of a command's shape, before proposing and
/// again at apply: a command with a session holds exactly one request, of
/// a kind in `SESSION_COMMANDS`, from a nonzero client, with a nonzero
/// sequence unless it opens the session; `OpenSession` needs a session.
pub fn check_session_command(req: &RaftCmdRequest) -> Result<()> {
    let session = req.header.as_ref().and_then(|h| h.session);
    let opens = req
        .requests
        .iter()
        .any(|r| r.cmd_type() == CmdType::OpenSession);
    let Some(session) = session else {
        return if opens {
            Err(Error::InvalidRequest(
                "OpenSession without a client session".into(),
            ))
        } else {
            Ok(())
        };
    };
    let [request] = req.requests.as_slice() else {
        return Err(Error::InvalidRequest(format!(
            "a command with a client session holds exactly one request, not {}",
            req.requests.len()
        )));
    };
    if !SESSION_COMMANDS.contains(&request.cmd_type()) {
        return Err(Error::InvalidRequest(format!(
            "{:?} cannot carry a client session",
            request.cmd_type()
        )));
    }
    if session.client_id == 0 {
        return Err(Error::InvalidRequest(
            "client session with client id 0".into(),
        ));
    }
    if session.sequence == 0 && !opens {
        return Err(Error::InvalidRequest(
            "a write of a client session needs a sequence number above 0".into(),
        ));
    }
    Ok(())
}

/// Adds `states` to `wb` as `region_id`'s session records.
fn put_states<'a>(
    wb: &mut WriteBatch,
    region_id: u64,
    states: impl IntoIterator<Item = &'a ClientSessionState>,
) -> Result<()> {
    for state in states {
        wb.put_msg_cf(
            CF_DEFAULT,
            &keys::client_session_key(region_id, state.client_id),
            state,
        )?;
    }
    Ok(())
}

fn decode_state(key: &[u8], value: &[u8]) -> storage::Result<ClientSessionState> {
    ClientSessionState::decode(value).map_err(|source| storage::Error::Decode {
        key: key.to_vec(),
        source,
    })
}

/// The stamp a leader puts on a session command it proposes: its wall
/// clock and `cfg`'s session limits.
pub fn session_clock(cfg: &Config) -> SessionClock {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    SessionClock {
        now_ms,
        ttl_ms: u64::try_from(cfg.client_session_ttl.as_millis()).unwrap_or(u64::MAX),
        max_sessions: cfg.max_client_sessions,
    }
}

/// What a session write's sequence means for it.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionVerdict {
    /// New: apply it, then [`SessionTable::record`] its answer.
    Apply,
    /// Applied already (a retry): answer with the cached response.
    Duplicate(Response),
}

/// One region's client sessions (see the module doc).
#[derive(Debug, Default, Clone)]
pub struct SessionTable {
    sessions: HashMap<u64, ClientSessionState>,
    /// `(last_active_ms, client_id)` of every session: the least recently
    /// active first, for expiry and eviction.
    by_activity: BTreeSet<(u64, u64)>,
    clock_ms: u64,
}

impl SessionTable {
    /// The table of `region_id` as stored in `engine`, with the session
    /// clock of its apply state.
    pub fn load(engine: &Engine, region_id: u64, clock_ms: u64) -> Result<SessionTable> {
        let (start, end) = keys::client_session_range(region_id);
        let mut states = Vec::new();
        engine.scan_cf(CF_DEFAULT, &start, &end, |key, value| {
            states.push(decode_state(key, value)?);
            Ok(true)
        })?;
        Ok(SessionTable::from_states(states, clock_ms))
    }

    /// The sessions of `region_id` in `snap`, in client id order (for a
    /// region snapshot built from it).
    pub fn states_at(snap: &storage::Snapshot, region_id: u64) -> Result<Vec<ClientSessionState>> {
        let (start, end) = keys::client_session_range(region_id);
        let mut states = Vec::new();
        snap.scan_cf(CF_DEFAULT, &start, &end, |key, value| {
            states.push(decode_state(key, value)?);
            Ok(true)
        })?;
        Ok(states)
    }

    /// Replaces, in `wb`, every session of `region_id` with `states` (a
    /// snapshot being installed).
    pub fn replace_all(
        wb: &mut WriteBatch,
        region_id: u64,
        states: &[ClientSessionState],
    ) -> Result<()> {
        let (start, end) = keys::client_session_range(region_id);
        wb.delete_range_cf(CF_DEFAULT, &start, &end)?;
        put_states(wb, region_id, states)
    }

    /// A table holding `states`, at session clock `clock_ms`.
    pub fn from_states(
        states: impl IntoIterator<Item = ClientSessionState>,
        clock_ms: u64,
    ) -> SessionTable {
        let mut table = SessionTable {
            clock_ms,
            ..Default::default()
        };
        for state in states {
            table
                .by_activity
                .insert((state.last_active_ms, state.client_id));
            table.sessions.insert(state.client_id, state);
        }
        table
    }

    /// The number of sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether the table holds no session.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The session clock: the largest leader time applied.
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// Every session, in client id order (deterministic, for snapshots).
    pub fn states(&self) -> Vec<ClientSessionState> {
        let mut states: Vec<_> = self.sessions.values().cloned().collect();
        states.sort_by_key(|s| s.client_id);
        states
    }

    /// Writes every session into `wb` as `region_id`'s (a split's new
    /// region: it starts with a copy of its parent's table).
    pub fn write_all(&self, wb: &mut WriteBatch, region_id: u64) -> Result<()> {
        put_states(wb, region_id, self.sessions.values())
    }

    /// Moves the session clock to `stamp`'s time (never back) and drops,
    /// in `wb`, the sessions idle for longer than its time-to-live.
    pub fn advance(
        &mut self,
        stamp: &SessionClock,
        wb: &mut WriteBatch,
        region_id: u64,
    ) -> Result<()> {
        self.clock_ms = self.clock_ms.max(stamp.now_ms);
        if stamp.ttl_ms == 0 {
            return Ok(());
        }
        while let Some(&(last_active, client_id)) = self.by_activity.first() {
            if last_active.saturating_add(stamp.ttl_ms) >= self.clock_ms {
                break;
            }
            self.remove(client_id, wb, region_id)?;
        }
        Ok(())
    }

    /// Opens `client_id`'s session (refreshing it if open), dropping the
    /// least recently active sessions while the table is full
    /// (`max_sessions`; 0 = no limit).
    pub fn open(
        &mut self,
        client_id: u64,
        max_sessions: u64,
        wb: &mut WriteBatch,
        region_id: u64,
    ) -> Result<()> {
        let mut state = match self.take(client_id) {
            Some(state) => state,
            None => {
                // 0: no limit was stamped (only our leaders propose, and
                // they always stamp one).
                let limit = match max_sessions {
                    0 => usize::MAX,
                    n => usize::try_from(n).unwrap_or(usize::MAX),
                };
                while self.sessions.len() >= limit {
                    let &(_, oldest) = self
                        .by_activity
                        .first()
                        .expect("a full table has a least recently active session");
                    self.remove(oldest, wb, region_id)?;
                }
                ClientSessionState {
                    client_id,
                    ..Default::default()
                }
            }
        };
        state.last_active_ms = self.clock_ms;
        self.put(state, wb, region_id)
    }

    /// Decides what to do with write `sequence` of `client_id`; a duplicate
    /// refreshes the session.
    pub fn check(
        &mut self,
        client_id: u64,
        sequence: u64,
        cmd_type: CmdType,
        wb: &mut WriteBatch,
        region_id: u64,
    ) -> Result<std::result::Result<SessionVerdict, Error>> {
        let Some(mut state) = self.take(client_id) else {
            return Ok(Err(Error::SessionExpired {
                client_id,
                sequence,
            }));
        };
        let verdict = if sequence > state.sequence {
            Ok(SessionVerdict::Apply)
        } else if sequence == state.sequence {
            // Cached answers are ours; an undecodable one still answers
            // "applied", which is all a write's answer says.
            let cached = Response::decode(state.answer.as_slice()).unwrap_or(Response {
                cmd_type: cmd_type as i32,
                ..Default::default()
            });
            Ok(SessionVerdict::Duplicate(cached))
        } else {
            // A late copy of a write the client has moved past: nobody
            // waits for it, and it must not apply after its successor.
            // Not `StaleCommand`, which clients retry.
            Err(Error::InvalidRequest(format!(
                "write {sequence} of client {client_id} is older than its last applied write {}",
                state.sequence
            )))
        };
        state.last_active_ms = self.clock_ms;
        self.put(state, wb, region_id)?;
        Ok(verdict)
    }

    /// Records that write `sequence` of `client_id` applied with `answer`.
    pub fn record(
        &mut self,
        client_id: u64,
        sequence: u64,
        answer: &Response,
        wb: &mut WriteBatch,
        region_id: u64,
    ) -> Result<()> {
        let mut state = self.take(client_id).unwrap_or(ClientSessionState {
            client_id,
            ..Default::default()
        });
        state.sequence = sequence;
        state.answer = answer.encode_to_vec();
        state.last_active_ms = self.clock_ms;
        self.put(state, wb, region_id)
    }

    fn take(&mut self, client_id: u64) -> Option<ClientSessionState> {
        let state = self.sessions.remove(&client_id)?;
        self.by_activity.remove(&(state.last_active_ms, client_id));
        Some(state)
    }

    fn put(
        &mut self,
        state: ClientSessionState,
        wb: &mut WriteBatch,
        region_id: u64,
    ) -> Result<()> {
        wb.put_msg_cf(
            CF_DEFAULT,
            &keys::client_session_key(region_id, state.client_id),
            &state,
        )?;
        self.by_activity
            .insert((state.last_active_ms, state.client_id));
        self.sessions.insert(state.client_id, state);
        Ok(())
    }

    fn remove(&mut self, client_id: u64, wb: &mut WriteBatch, region_id: u64) -> Result<()> {
        self.take(client_id);
        wb.delete_cf(CF_DEFAULT, &keys::client_session_key(region_id, client_id))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use kvproto::raft_cmdpb::{ClientSession, PutResponse, RaftRequestHeader, Request};

    use super::*;

    const REGION: u64 = 7;

    fn engine() -> (tempfile::TempDir, Engine) {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = Engine::open(dir.path().join("db")).expect("open engine");
        (dir, engine)
    }

    fn stamp(now_ms: u64, ttl_ms: u64, max_sessions: u64) -> SessionClock {
        SessionClock {
            now_ms,
            ttl_ms,
            max_sessions,
        }
    }

    fn put_answer() -> Response {
        Response {
            cmd_type: CmdType::Put as i32,
            put: Some(PutResponse {}),
            ..Default::default()
        }
    }

    /// Applies `f` to the table with a fresh batch, then writes the batch.
    fn step<T>(
        engine: &Engine,
        table: &mut SessionTable,
        f: impl FnOnce(&mut SessionTable, &mut WriteBatch) -> T,
    ) -> T {
        let mut wb = engine.write_batch();
        let out = f(table, &mut wb);
        engine.write(wb, false).expect("write");
        out
    }

    fn verdict(
        engine: &Engine,
        table: &mut SessionTable,
        client_id: u64,
        sequence: u64,
    ) -> std::result::Result<SessionVerdict, Error> {
        step(engine, table, |t, wb| {
            t.check(client_id, sequence, CmdType::Put, wb, REGION)
                .expect("check")
        })
    }

    #[test]
    fn a_write_applies_once_and_its_retry_gets_the_cached_answer() {
        let (_dir, engine) = engine();
        let mut table = SessionTable::default();
        step(&engine, &mut table, |t, wb| t.open(1, 10, wb, REGION)).expect("open");
        assert_eq!(
            verdict(&engine, &mut table, 1, 1).ok(),
            Some(SessionVerdict::Apply)
        );
        step(&engine, &mut table, |t, wb| {
            t.record(1, 1, &put_answer(), wb, REGION)
        })
        .expect("record");
        assert_eq!(
            verdict(&engine, &mut table, 1, 1).ok(),
            Some(SessionVerdict::Duplicate(put_answer()))
        );
        assert!(matches!(
            verdict(&engine, &mut table, 1, 0),
            Err(Error::InvalidRequest(_))
        ));
        assert_eq!(
            verdict(&engine, &mut table, 1, 5).ok(),
            Some(SessionVerdict::Apply)
        );
    }

    #[test]
    fn a_session_never_opened_is_refused() {
        let (_dir, engine) = engine();
        let mut table = SessionTable::default();
        assert!(matches!(
            verdict(&engine, &mut table, 9, 1),
            Err(Error::SessionExpired {
                client_id: 9,
                sequence: 1
            })
        ));
        assert!(table.is_empty());
    }

    #[test]
    fn idle_sessions_expire_by_the_stamped_clock_only() {
        let (_dir, engine) = engine();
        let mut table = SessionTable::default();
        let advance = |table: &mut SessionTable, s: SessionClock| {
            step(&engine, table, |t, wb| t.advance(&s, wb, REGION)).expect("advance");
        };
        advance(&mut table, stamp(1_000, 100, 10));
        step(&engine, &mut table, |t, wb| t.open(1, 10, wb, REGION)).expect("open");
        advance(&mut table, stamp(1_050, 100, 10));
        step(&engine, &mut table, |t, wb| t.open(2, 10, wb, REGION)).expect("open");
        // A leader whose clock is behind does not move the clock back.
        advance(&mut table, stamp(10, 100, 10));
        assert_eq!(table.clock_ms(), 1_050);
        // Exactly the time-to-live idle: still open.
        advance(&mut table, stamp(1_100, 100, 10));
        assert_eq!(table.len(), 2);
        advance(&mut table, stamp(1_101, 100, 10));
        assert_eq!(table.len(), 1, "client 1 idle for 101 ms");
        assert!(matches!(
            verdict(&engine, &mut table, 1, 1),
            Err(Error::SessionExpired { .. })
        ));
        // Gone from the engine too.
        let reloaded = SessionTable::load(&engine, REGION, table.clock_ms()).expect("load");
        assert_eq!(reloaded.states(), table.states());
        assert_eq!(reloaded.states().len(), 1);
    }

    #[test]
    fn a_full_table_drops_the_least_recently_active_session() {
        let (_dir, engine) = engine();
        let mut table = SessionTable::default();
        for (now, client) in [(1, 1), (2, 2), (3, 3)] {
            step(&engine, &mut table, |t, wb| {
                t.advance(&stamp(now, 0, 3), wb, REGION)?;
                t.open(client, 3, wb, REGION)
            })
            .expect("open");
        }
        // Client 1 is active again, so client 2 is now the oldest.
        step(&engine, &mut table, |t, wb| {
            t.advance(&stamp(4, 0, 3), wb, REGION)
        })
        .expect("advance");
        assert_eq!(
            verdict(&engine, &mut table, 1, 1).ok(),
            Some(SessionVerdict::Apply)
        );
        step(&engine, &mut table, |t, wb| t.open(4, 3, wb, REGION)).expect("open");
        assert_eq!(table.len(), 3);
        let clients: Vec<u64> = table.states().iter().map(|s| s.client_id).collect();
        assert_eq!(clients, vec![1, 3, 4]);
        let reloaded = SessionTable::load(&engine, REGION, table.clock_ms()).expect("load");
        assert_eq!(reloaded.states(), table.states());
    }

    #[test]
    fn session_commands_have_one_request_and_a_real_client() {
        let command = |session: Option<ClientSession>, kinds: &[CmdType]| RaftCmdRequest {
            header: Some(RaftRequestHeader {
                session,
                ..Default::default()
            }),
            requests: kinds
                .iter()
                .map(|k| Request {
                    cmd_type: *k as i32,
                    ..Default::default()
                })
                .collect(),
            admin_request: None,
        };
        let session = |client_id, sequence| {
            Some(ClientSession {
                client_id,
                sequence,
            })
        };
        assert!(check_session_command(&command(None, &[CmdType::Put, CmdType::Put])).is_ok());
        assert!(check_session_command(&command(session(1, 1), &[CmdType::Append])).is_ok());
        assert!(check_session_command(&command(session(1, 0), &[CmdType::OpenSession])).is_ok());
        for bad in [
            command(None, &[CmdType::OpenSession]),
            command(session(1, 1), &[CmdType::Put, CmdType::Put]),
            command(session(1, 1), &[CmdType::Get]),
            command(session(0, 1), &[CmdType::Put]),
            command(session(1, 0), &[CmdType::Put]),
        ] {
            assert!(
                matches!(check_session_command(&bad), Err(Error::InvalidRequest(_))),
                "{bad:?} accepted"
            );
        }
    }
}
