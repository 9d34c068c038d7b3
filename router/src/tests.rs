//! Router tests against real kameo actors.

use std::sync::{Arc, Mutex};

use kameo::Actor;
use kameo::actor::{ActorRef, Spawn};
use kameo::error::{ActorStopReason, Infallible};
use kameo::mailbox;
use kameo::message::{BoxMessage, Context, Message};
use kvproto::raft_cmdpb::RaftCmdRequest;
use kvproto::raft_serverpb::RaftMessage;
use tokio::sync::{Notify, mpsc};

use crate::*;

/// A peer stand-in: records what it receives, can be held back by a gate,
/// and stops as a peer does on `Destroy`: it closes its entry and stops
/// gracefully, recording what it takes meanwhile as "leftover".
struct Recorder {
    load: MailboxHandle,
    seen: mpsc::UnboundedSender<&'static str>,
    gate: Arc<Notify>,
    gated: Arc<Mutex<bool>>,
    stopping: bool,
}

impl Actor for Recorder {
    type Args = Self;
    type Error = Infallible;

    async fn on_start(state: Self, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(state)
    }

    async fn on_undelivered(
        &mut self,
        _: ActorStopReason,
        undelivered: Vec<BoxMessage<Self>>,
    ) -> Result<(), Self::Error> {
        for _ in undelivered {
            let _ = self.seen.send("undelivered");
        }
        Ok(())
    }
}

impl Message<PeerMsg> for Recorder {
    type Reply = ();

    async fn handle(&mut self, msg: PeerMsg, ctx: &mut Context<Self, ()>) {
        if *self.gated.lock().expect("gate lock") {
            self.gate.notified().await;
        }
        if msg.is_load() {
            self.load.received();
        }
        if self.stopping {
            let _ = self.seen.send("leftover");
            return;
        }
        let name = match msg {
            PeerMsg::RaftMessage(_) => "raft",
            PeerMsg::RaftCommand(cmd) => {
                cmd.callback.respond(CmdResponse::default());
                "command"
            }
            PeerMsg::Tick(_) => "tick",
            // The test's stop signal.
            PeerMsg::SnapshotGenerated => {
                self.load.close();
                self.stopping = true;
                let actor_ref = ctx.actor_ref().clone();
                tokio::spawn(async move { actor_ref.stop_gracefully().await });
                "stop"
            }
            _ => "other",
        };
        let _ = self.seen.send(name);
    }
}

/// A store stand-in: records the regions of the raft messages it takes (0
/// for any other message), can be held back by a gate.
struct StoreRecorder {
    load: MailboxLoad,
    seen: mpsc::UnboundedSender<u64>,
    gate: Arc<Notify>,
    gated: Arc<Mutex<bool>>,
}

impl Actor for StoreRecorder {
    type Args = Self;
    type Error = Infallible;

    async fn on_start(state: Self, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(state)
    }
}

impl Message<StoreMsg> for StoreRecorder {
    type Reply = ();

    async fn handle(&mut self, msg: StoreMsg, _: &mut Context<Self, ()>) {
        if *self.gated.lock().expect("gate lock") {
            self.gate.notified().await;
        }
        if msg.is_load() {
            self.load.received();
        }
        let region_id = match msg {
            StoreMsg::RaftMessage(m) => m.region_id,
            _ => 0,
        };
        let _ = self.seen.send(region_id);
    }
}

struct StoreHarness {
    seen: mpsc::UnboundedReceiver<u64>,
    gate: Arc<Notify>,
    gated: Arc<Mutex<bool>>,
    load: MailboxLoad,
}

fn spawn_store(router: &Router, gated: bool) -> StoreHarness {
    let (tx, seen) = mpsc::unbounded_channel();
    let load = MailboxLoad::new();
    let gate = Arc::new(Notify::new());
    let gated = Arc::new(Mutex::new(gated));
    let actor = StoreRecorder::spawn_with_mailbox(
        StoreRecorder {
            load: load.clone(),
            seen: tx,
            gate: gate.clone(),
            gated: gated.clone(),
        },
        mailbox::unbounded(),
    );
    router.register_store(actor.recipient(), load.clone());
    StoreHarness {
        seen,
        gate,
        gated,
        load,
    }
}

struct Harness {
    router: Router,
    seen: mpsc::UnboundedReceiver<&'static str>,
    gate: Arc<Notify>,
    gated: Arc<Mutex<bool>>,
    actor: ActorRef<Recorder>,
    load: MailboxHandle,
}

fn spawn_peer(router: &Router, region_id: u64, gated: bool) -> Harness {
    let (tx, seen) = mpsc::unbounded_channel();
    let load = MailboxHandle::new();
    let gate = Arc::new(Notify::new());
    let gated = Arc::new(Mutex::new(gated));
    let actor = Recorder::spawn_with_mailbox(
        Recorder {
            load: load.clone(),
            seen: tx,
            gate: gate.clone(),
            gated: gated.clone(),
            stopping: false,
        },
        mailbox::unbounded(),
    );
    router.register(
        region_id,
        PeerMailbox::new(actor.clone().recipient(), load.clone()),
    );
    Harness {
        router: router.clone(),
        seen,
        gate,
        gated,
        actor,
        load,
    }
}

fn raft_message(region_id: u64) -> Box<RaftMessage> {
    Box::new(RaftMessage {
        region_id,
        ..Default::default()
    })
}

fn command() -> (Box<RaftCommand>, CallbackReceiver) {
    let (callback, rx) = Callback::new();
    (
        Box::new(RaftCommand {
            request: RaftCmdRequest::default(),
            callback,
        }),
        rx,
    )
}

#[tokio::test]
async fn delivers_to_the_registered_peer() {
    let router = Router::new(8);
    let mut h = spawn_peer(&router, 1, false);
    router
        .send_raft_message(raft_message(1))
        .expect("delivered");
    assert_eq!(h.seen.recv().await, Some("raft"));
    let (cmd, rx) = command();
    router.send_command(1, cmd).expect("delivered");
    assert!(rx.await.expect("answered").region_error().is_none());
    router
        .send(1, PeerMsg::Tick(PeerTick::Raft))
        .expect("delivered");
    assert_eq!(h.seen.recv().await, Some("command"));
    assert_eq!(h.seen.recv().await, Some("tick"));
    assert_eq!(h.load.queued(), 0);
}

#[tokio::test]
async fn unknown_region_raft_messages_go_to_the_store() {
    let router = Router::new(8);
    let mut store = spawn_store(&router, false);
    router
        .send_raft_message(raft_message(42))
        .expect("forwarded to the store");
    assert_eq!(store.seen.recv().await, Some(42));
}

#[tokio::test]
async fn unknown_region_commands_are_refused() {
    let router = Router::new(8);
    let (cmd, _rx) = command();
    match router.send_command(7, cmd) {
        Err(RouterError::RegionNotFound(7, cmd)) => cmd.callback.respond(CmdResponse::default()),
        other => panic!("expected RegionNotFound, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn over_the_limit_raft_is_dropped_commands_refused_control_delivered() {
    let router = Router::new(2);
    let mut h = spawn_peer(&router, 1, true);
    // The actor is stuck on the first message; two more fill the limit.
    router.send_raft_message(raft_message(1)).expect("first");
    router.send_raft_message(raft_message(1)).expect("second");
    assert!(matches!(
        router.send_raft_message(raft_message(1)),
        Err(RouterError::Full(1, _))
    ));
    let (cmd, _rx) = command();
    match router.send_command(1, cmd) {
        Err(RouterError::Full(1, cmd)) => cmd.callback.respond(CmdResponse::default()),
        other => panic!("expected Full, got {:?}", other.map(|_| ())),
    }
    // Must-deliver messages ignore the limit.
    router
        .send(1, PeerMsg::Tick(PeerTick::Raft))
        .expect("tick is never refused for load");
    *h.gated.lock().expect("gate lock") = false;
    h.gate.notify_one();
    assert_eq!(h.seen.recv().await, Some("raft"));
    assert_eq!(h.seen.recv().await, Some("raft"));
    assert_eq!(h.seen.recv().await, Some("tick"));
    assert_eq!(h.load.queued(), 0);
    // Room again.
    router
        .send_raft_message(raft_message(1))
        .expect("room after draining");
}

#[tokio::test]
async fn a_stopped_actor_hands_messages_back() {
    let router = Router::new(8);
    let h = spawn_peer(&router, 1, false);
    h.actor.kill();
    h.actor.wait_for_shutdown().await;
    let (cmd, _rx) = command();
    match h.router.send_command(1, cmd) {
        Err(RouterError::Stopped(cmd)) => cmd.callback.respond(CmdResponse::default()),
        other => panic!("expected Stopped, got {:?}", other.map(|_| ())),
    }
    assert!(matches!(
        router.send(1, PeerMsg::SnapshotGenerated),
        Err(RouterError::Stopped(PeerMsg::SnapshotGenerated))
    ));
    assert_eq!(h.load.queued(), 0, "a refused message does not count");
    assert!(router.unregister(1, h.load.incarnation()));
    assert!(!router.has_region(1));
}

/// A stopping actor's stop hook removes only its own entry: by then the
/// store may have registered a successor for the region (issue 6).
#[tokio::test]
async fn unregister_removes_only_its_own_incarnation() {
    let router = Router::new(8);
    let old = spawn_peer(&router, 1, false);
    let mut new = spawn_peer(&router, 1, false);
    assert_ne!(old.load.incarnation(), new.load.incarnation());
    assert!(
        !router.unregister(1, old.load.incarnation()),
        "the old incarnation must not remove its successor's entry"
    );
    router
        .send(1, PeerMsg::Tick(PeerTick::Raft))
        .expect("still routed to the successor");
    assert_eq!(new.seen.recv().await, Some("tick"));
    assert_eq!(router.incarnation(1), Some(new.load.incarnation()));
    assert!(router.unregister(1, new.load.incarnation()));
    assert_eq!(router.incarnation(1), None);
}

/// An actor that died with its counted messages (here: killed while the
/// limit was reached, so it never closed its entry) reads `Stopped`, never
/// `Full`, and its region's raft traffic reaches the store actor, which may
/// recreate the peer.
#[tokio::test]
async fn a_dead_mailbox_reads_stopped_and_raft_traffic_goes_to_the_store() {
    let router = Router::new(2);
    let mut store = spawn_store(&router, false);
    let h = spawn_peer(&router, 1, true);
    router.send_raft_message(raft_message(1)).expect("first");
    router.send_raft_message(raft_message(1)).expect("second");
    assert!(matches!(
        router.send_raft_message(raft_message(1)),
        Err(RouterError::Full(1, _))
    ));
    h.actor.kill();
    h.actor.wait_for_shutdown().await;
    assert_eq!(h.load.queued(), 2, "the count died at the limit");
    let (cmd, _rx) = command();
    match router.send_command(1, cmd) {
        Err(RouterError::Stopped(cmd)) => cmd.callback.respond(CmdResponse::default()),
        other => panic!("expected Stopped, got {:?}", other.map(|_| ())),
    }
    router
        .send_raft_message(raft_message(1))
        .expect("forwarded to the store");
    assert_eq!(store.seen.recv().await, Some(1));
    assert!(!router.has_region(1), "a dead peer is not a running one");
}

/// Closing an entry hands every later message back at once, although the
/// actor still runs (a stopping peer closes its entry before it takes its
/// last message); what was accepted before still reaches the actor.
#[tokio::test]
async fn a_closed_entry_hands_messages_back_and_keeps_what_it_took() {
    let router = Router::new(8);
    let mut store = spawn_store(&router, false);
    let mut h = spawn_peer(&router, 1, true);
    // Held at the gate: the tick. Queued behind it: a raft message.
    router.send(1, PeerMsg::Tick(PeerTick::Raft)).expect("tick");
    router
        .send_raft_message(raft_message(1))
        .expect("queued raft");
    h.load.close();
    assert!(h.actor.is_alive());
    assert!(matches!(
        router.send(1, PeerMsg::SnapshotGenerated),
        Err(RouterError::Stopped(PeerMsg::SnapshotGenerated))
    ));
    let (cmd, _rx) = command();
    match router.send_command(1, cmd) {
        Err(RouterError::Stopped(cmd)) => cmd.callback.respond(CmdResponse::default()),
        other => panic!("expected Stopped, got {:?}", other.map(|_| ())),
    }
    assert!(!router.has_region(1));
    router
        .send_raft_message(raft_message(1))
        .expect("a closed peer's raft traffic goes to the store");
    assert_eq!(store.seen.recv().await, Some(1));
    *h.gated.lock().expect("gate lock") = false;
    h.gate.notify_one();
    assert_eq!(h.seen.recv().await, Some("tick"));
    assert_eq!(h.seen.recv().await, Some("raft"));
    h.actor.kill();
    h.actor.wait_for_shutdown().await;
    assert_eq!(h.seen.recv().await, None, "nothing else was accepted");
}

/// Senders racing with a peer's stop: every message the router accepted is
/// handled or taken as a leftover by the stopping actor, none vanishes in
/// between. (A property check: the window it guards is too narrow for a
/// broken close to fail it reliably; the test above pins `close` itself.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_message_accepted_during_a_stop_is_lost() {
    let router = Router::new(8);
    let mut h = spawn_peer(&router, 1, false);
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let router = router.clone();
            tokio::spawn(async move {
                let mut accepted = 0usize;
                loop {
                    match router.send(1, PeerMsg::Tick(PeerTick::Raft)) {
                        Ok(()) => accepted += 1,
                        Err(RouterError::Stopped(_)) => return accepted,
                        Err(e) => panic!("unexpected refusal: {e}"),
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    // Let the senders get going, then stop the peer under them.
    let mut handled = 0usize;
    while handled < 100 {
        match h.seen.recv().await {
            Some("tick") => handled += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    router
        .send(1, PeerMsg::SnapshotGenerated)
        .expect("stop signal");
    let mut accepted = 0;
    for sender in senders {
        accepted += sender.await.expect("sender task");
    }
    h.actor.wait_for_shutdown().await;
    let mut undelivered = 0usize;
    while let Some(what) = h.seen.recv().await {
        match what {
            "tick" => handled += 1,
            "leftover" | "undelivered" => undelivered += 1,
            "stop" => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(accepted, handled + undelivered);
}

/// Raft messages for regions the store lacks are bounded like a peer's:
/// past the limit they are dropped, while the store's must-deliver messages
/// still get through.
#[tokio::test]
async fn the_store_mailbox_bounds_raft_messages_for_unknown_regions() {
    let router = Router::new(2);
    let mut store = spawn_store(&router, true);
    router.send_raft_message(raft_message(7)).expect("first");
    router.send_raft_message(raft_message(8)).expect("second");
    assert!(matches!(
        router.send_raft_message(raft_message(9)),
        Err(RouterError::Full(9, _))
    ));
    assert!(matches!(
        router.send_store(StoreMsg::RaftMessage(raft_message(9))),
        Err(RouterError::Full(9, _))
    ));
    router
        .send_store(StoreMsg::Tick(StoreTick::SnapshotGc))
        .expect("a tick is never refused for load");
    router
        .send_store(StoreMsg::PeerStopped {
            region_id: 3,
            peer_id: 3,
            reason: PeerStopReason::Shutdown,
        })
        .expect("a notice is never refused for load");
    *store.gated.lock().expect("gate lock") = false;
    store.gate.notify_one();
    assert_eq!(store.seen.recv().await, Some(7));
    assert_eq!(store.seen.recv().await, Some(8));
    assert_eq!(store.seen.recv().await, Some(0));
    assert_eq!(store.seen.recv().await, Some(0));
    assert_eq!(store.load.queued(), 0);
    router
        .send_raft_message(raft_message(9))
        .expect("room after draining");
}

/// Once a stopping store closed every entry, a peer created afterwards (a
/// split applying as the store stops) is refused and handed back, so its
/// creator stops it instead of leaving it running unseen.
#[tokio::test]
async fn try_register_is_refused_after_close_all() {
    let router = Router::new(4);
    let first = spawn_peer(&router, 1, false);
    let late = spawn_peer(&Router::new(4), 2, false);
    let mailbox = PeerMailbox::new(late.actor.clone().recipient(), late.load.clone());
    assert!(router.try_register(2, mailbox.clone()).is_ok());
    assert!(router.has_region(2));
    let closed = router.close_all();
    assert_eq!(closed.len(), 2);
    assert!(router.try_register(2, mailbox).is_err());
    assert!(!router.has_region(2) && !router.has_region(1));
    drop(first);
}
