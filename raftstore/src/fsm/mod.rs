//! The actor shells: `PeerActor` for a region peer, `StoreActor` for the store.

pub mod peer;
pub mod store;
