//! `ParkingQueue`: a many-producer, one-consumer queue whose consumer
//! sleeps on a condition variable as soon as the queue is empty.
//!
//! The writer thread spends most of an idle machine's time waiting for the
//! next write. A general-purpose channel spins and calls `sched_yield` a few
//! times before it sleeps, which on a virtual machine is a system call, and
//! often a context switch, per wait: measured at about eight per put on a
//! three-store cluster. A write arrives long after such a spin gives up, so
//! here the consumer sleeps at once, and a producer pays a wake-up only when
//! the consumer is actually asleep.
//!
//! Invariants: items come out in the order they went in; `pop_group` blocks
//! until there is at least one item or every producer is gone, and once
//! every producer is gone it still hands out what was queued before it
//! reports the end. Once the consumer is gone no item is kept: what is
//! queued then, or pushed later, is dropped.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

struct State<T> {
    items: Vec<T>,
    /// Live `Producer`s; 0 means no item can arrive any more.
    producers: usize,
    /// The consumer waits on the condition variable (a push must wake it).
    asleep: bool,
    /// The consumer is dropped: a push drops its item at once.
    consumer_gone: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // No code path panics while holding the lock with the state half
        // updated, so a poisoned lock still guards a consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sending side. Cloning adds a producer; the queue ends when the last
/// one is dropped.
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving side; there is exactly one.
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
}

/// A new queue.
pub fn parking_queue<T>() -> (Producer<T>, Consumer<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: Vec::new(),
            producers: 1,
            asleep: false,
            consumer_gone: false,
        }),
        ready: Condvar::new(),
    });
    (
        Producer {
            shared: shared.clone(),
        },
        Consumer { shared },
    )
}

impl<T> Producer<T> {
    /// Queues `item`, waking the consumer if it sleeps. Once the consumer
    /// is gone the item is dropped, which its owner may observe (a dropped
    /// answer channel).
    pub fn push(&self, item: T) {
        let mut state = self.shared.lock();
        if state.consumer_gone {
            drop(state);
            drop(item);
            return;
        }
        state.items.push(item);
        if state.asleep {
            state.asleep = false;
            drop(state);
            self.shared.ready.notify_one();
        }
    }
}

impl<T> Clone for Producer<T> {
    fn clone(&self) -> Self {
        self.shared.lock().producers += 1;
        Producer {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.producers -= 1;
        if state.producers == 0 && state.asleep {
            state.asleep = false;
            drop(state);
            self.shared.ready.notify_one();
        }
    }
}

impl<T> Consumer<T> {
    /// Moves up to `max` queued items, oldest first, into `into`, sleeping
    /// until there is one. False once the queue is empty and every producer
    /// is gone.
    pub fn pop_group(&self, max: usize, into: &mut Vec<T>) -> bool {
        let mut state = self.shared.lock();
        while state.items.is_empty() {
            if state.producers == 0 {
                return false;
            }
            state.asleep = true;
            state = self
                .shared
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.asleep = false;
        let take = state.items.len().min(max);
        into.extend(state.items.drain(..take));
        true
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        let items = {
            let mut state = self.shared.lock();
            state.consumer_gone = true;
            std::mem::take(&mut state.items)
        };
        // Outside the lock: dropping an item may run arbitrary code.
        drop(items);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_out_in_order_at_most_max_at_a_time() {
        let (tx, rx) = parking_queue();
        for i in 0..5 {
            tx.push(i);
        }
        let mut got = Vec::new();
        assert!(rx.pop_group(3, &mut got));
        assert_eq!(got, vec![0, 1, 2]);
        got.clear();
        assert!(rx.pop_group(3, &mut got));
        assert_eq!(got, vec![3, 4]);
    }

    #[test]
    fn what_was_queued_is_handed_out_before_the_end() {
        let (tx, rx) = parking_queue();
        let tx2 = tx.clone();
        tx.push(1);
        drop(tx);
        tx2.push(2);
        drop(tx2);
        let mut got = Vec::new();
        assert!(rx.pop_group(10, &mut got));
        assert_eq!(got, vec![1, 2]);
        assert!(!rx.pop_group(10, &mut got));
    }

    /// Items queued or pushed after the consumer is gone are dropped, not
    /// kept forever.
    #[test]
    fn items_are_dropped_once_the_consumer_is_gone() {
        let (tx, rx) = parking_queue();
        let queued = Arc::new(());
        tx.push(queued.clone());
        drop(rx);
        assert_eq!(Arc::strong_count(&queued), 1);
        tx.push(queued.clone());
        assert_eq!(Arc::strong_count(&queued), 1);
    }

    /// A sleeping consumer is woken by a push from another thread, and by
    /// the last producer going away.
    #[test]
    fn a_sleeping_consumer_wakes_for_a_push_and_for_the_end() {
        let (tx, rx) = parking_queue::<u32>();
        let consumer = std::thread::spawn(move || {
            let mut got = Vec::new();
            while rx.pop_group(1, &mut got) {}
            got
        });
        // Pushes race the consumer going to sleep; either order must work.
        for i in 0..1000 {
            tx.push(i);
            if i % 100 == 0 {
                std::thread::yield_now();
            }
        }
        drop(tx);
        let got = consumer.join().expect("consumer thread");
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
    }
}
