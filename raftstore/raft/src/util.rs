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

/// Messages that answer a request. `MsgReadIndex` is neither local nor a
/// response: a follower forwards its host's read to the leader.
pub fn is_response_msg(t: MessageType) -> bool {
    matches!(
        t,
        MessageType::MsgAppendResponse
            | MessageType::MsgRequestVoteResponse
            | MessageType::MsgHeartbeatResponse
            | MessageType::MsgPreVoteResponse
            | MessageType::MsgReadIndexResponse
    )
}

/// The answer type for a vote request type (`MsgRequestVote` or `MsgPreVote`).
pub(crate) fn vote_resp_msg_type(t: MessageType) -> MessageType {
    if t == MessageType::MsgPreVote {
        MessageType::MsgPreVoteResponse
    } else {
        MessageType::MsgRequestVoteResponse
    }
}

#[cfg(test)]
mod tests {
    use kvproto::eraftpb::Message;
    use prost::Message as _;

    use super::*;

    /// The extensions' wire form: message types 100..=103 and `context` as
    /// field 101, after TinyKV's own numbers.
    #[test]
    fn extensions_encode_past_tinykv_numbers() {
        let msg = Message {
            msg_type: MessageType::MsgReadIndex as i32,
            to: 1,
            from: 2,
            context: b"r1".to_vec(),
            ..Default::default()
        };
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0x08, 0x66,             // 1 msg_type: MsgReadIndex = 102
            0x10, 0x01,             // 2 to: 1
            0x18, 0x02,             // 3 from: 2
            0xaa, 0x06, 0x02,       // 101 context: key (101 << 3) | 2 = 810, len 2
            b'r', b'1',
        ];
        assert_eq!(msg.encode_to_vec(), expected);
        assert_eq!(Message::decode(expected).expect("decodes"), msg);
        assert_eq!(MessageType::MsgPreVote as i32, 100);
        assert_eq!(MessageType::MsgPreVoteResponse as i32, 101);
        assert_eq!(MessageType::MsgReadIndexResponse as i32, 103);
    }

    /// Which kinds the host may step from the network.
    #[test]
    fn message_predicates() {
        for t in [
            MessageType::MsgPreVote,
            MessageType::MsgPreVoteResponse,
            MessageType::MsgReadIndex,
            MessageType::MsgReadIndexResponse,
        ] {
            assert!(!is_local_msg(t), "{t:?} comes from the network");
        }
        assert!(is_response_msg(MessageType::MsgPreVoteResponse));
        assert!(is_response_msg(MessageType::MsgReadIndexResponse));
        assert!(!is_response_msg(MessageType::MsgReadIndex));
        assert_eq!(
            vote_resp_msg_type(MessageType::MsgPreVote),
            MessageType::MsgPreVoteResponse
        );
        assert_eq!(
            vote_resp_msg_type(MessageType::MsgRequestVote),
            MessageType::MsgRequestVoteResponse
        );
    }
}
