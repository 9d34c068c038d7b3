//! Messages between the store's actors and the router that delivers them (not built yet).
//!
//! This crate will define `PeerMsg`, `StoreMsg` and their callbacks, and the
//! `Router`: region id → the peer actor's mailbox, plus the store mailbox, with
//! a documented loss policy per message kind. Nothing here works yet.
