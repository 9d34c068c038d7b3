//! Background work, each on its own thread fed by a channel.

pub mod raftlog_gc;
pub mod region;
pub mod write;
