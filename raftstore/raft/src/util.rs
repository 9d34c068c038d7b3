//! Small helpers of the Raft core: a seeded random source and message predicates.

use kvproto::eraftpb::MessageType;

/// SplitMix64: a small, fast, seedable generator. Raft only needs it to
/// spread election timeouts, so statistical quality beyond that is moot, and
/// a seed makes every run repeatable.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `[low, high)`; `high > low`.
    pub(crate) fn in_range(&mut self, low: usize, high: usize) -> usize {
        low + (self.next_u64() % (high - low) as u64) as usize
    }
}

/// Messages a node's host gives it directly; never accepted from the
/// network. A proposal from another store would skip every check a local
/// proposal passes (leadership, epoch, shape), so `MsgPropose` is one too.
pub fn is_local_msg(t: MessageType) -> bool {
    matches!(
        t,
        MessageType::MsgHup | MessageType::MsgBeat | MessageType::MsgPropose
    )
}

/// Messages that answer a request.
pub fn is_response_msg(t: MessageType) -> bool {
    matches!(
        t,
        MessageType::MsgAppendResponse
            | MessageType::MsgRequestVoteResponse
            | MessageType::MsgHeartbeatResponse
    )
}
