//! Router tests against real kameo actors.

use std::sync::{Arc, Mutex};

use kameo::Actor;
use kameo::actor::{ActorRef, Spawn};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use kvproto::raft_cmdpb::RaftCmdRequest;
use kvproto::raft_serverpb::RaftMessage;
use tokio::sync::{Notify, mpsc};

use crate::*;

/// A peer stand-in: records what it receives, can be held back by a gate.
struct Recorder {
    load: MailboxLoad,
    seen: mpsc::UnboundedSender<&'static str>,
    gate: Arc<Notify>,
    gated: Arc<Mutex<bool>>,
}

impl Actor for Recorder {
    type Args = Self;
    type Error = Infallible;

    async fn on_start(state: Self, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(state)
    }
}

impl Message<PeerMsg> for Recorder {
    type Reply = ();

    async fn handle(&mut self, msg: PeerMsg, _: &mut Context<Self, ()>) {
        if *self.gated.lock().expect("gate lock") {
            self.gate.notified().await;
        }
        if msg.is_load() {
            self.load.received();
        }
        let name = match msg {
            PeerMsg::RaftMessage(_) => "raft",
            PeerMsg::RaftCommand(cmd) => {
                cmd.callback.respond(CmdResponse::default());
                "command"
            }
            PeerMsg::Tick(_) => "tick",
            _ => "other",
        };
        let _ = self.seen.send(name);
    }
}

struct StoreRecorder(mpsc::UnboundedSender<u64>);

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
        if let StoreMsg::RaftMessage(m) = msg {
            let _ = self.0.send(m.region_id);
        }
    }
}

struct Harness {
    router: Router,
    seen: mpsc::UnboundedReceiver<&'static str>,
    gate: Arc<Notify>,
    gated: Arc<Mutex<bool>>,
    actor: ActorRef<Recorder>,
    load: MailboxLoad,
}

fn spawn_peer(router: &Router, region_id: u64, gated: bool) -> Harness {
    let (tx, seen) = mpsc::unbounded_channel();
    let load = MailboxLoad::new();
    let gate = Arc::new(Notify::new());
    let gated = Arc::new(Mutex::new(gated));
    let actor = Recorder::spawn(Recorder {
        load: load.clone(),
        seen: tx,
        gate: gate.clone(),
        gated: gated.clone(),
    });
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
    let (tx, mut rx) = mpsc::unbounded_channel();
    let store = StoreRecorder::spawn(StoreRecorder(tx));
    router.register_store(store.recipient());
    router
        .send_raft_message(raft_message(42))
        .expect("forwarded to the store");
    assert_eq!(rx.recv().await, Some(42));
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
    router.unregister(1);
    assert!(!router.has_region(1));
}
