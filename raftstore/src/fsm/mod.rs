//! The actor shells: `PeerActor` for a region peer, `StoreActor` for the store.

pub mod peer;
pub mod store;

use std::time::Duration;

use kameo::actor::WeakActorRef;
use kameo::message::Message;
use tokio::time::MissedTickBehavior;

/// Sends `actor` the message `tick()` builds every `interval`, until the
/// actor is gone or refuses it. Holds only a weak reference, so a ticker
/// never keeps its actor alive.
pub(crate) async fn tick_loop<A, M>(
    actor: WeakActorRef<A>,
    interval: Duration,
    tick: impl Fn() -> M,
) where
    A: Message<M>,
    M: Send + 'static,
{
    let mut timer = tokio::time::interval(interval);
    timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        timer.tick().await;
        let Some(actor) = actor.upgrade() else {
            return;
        };
        if actor.tell(tick()).try_send().is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
