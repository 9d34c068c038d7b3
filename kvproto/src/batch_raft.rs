//! `raft_serverpb.BatchRaftMessage`, written by hand rather than generated,
//! so that one bad entry does not cost the whole batch.
//!
//! On the wire it is exactly the generated message (`repeated RaftMessage
//! msgs = 1`): it encodes the same bytes, and a peer that generated it from
//! the `.proto` file reads ours and writes what we read. What differs is
//! decoding: a generated decoder fails the whole message when one entry does
//! not decode, which would drop every other region's message of that batch.
//! This one decodes each entry on its own, keeps the ones that decode, and
//! counts the others in [`BatchRaftMessage::malformed`].
//!
//! Invariants:
//! - an entry is skipped only when its extent on the wire is known (a
//!   length-delimited field whose bytes are all there, or a field of another
//!   wire type); a batch whose framing is broken (truncated, bad length)
//!   fails to decode as a whole, as any protobuf message does.
//! - entries keep their order; fields other than `msgs` are skipped, as
//!   unknown fields are.

use prost::Message;
use prost::bytes::{Buf, BufMut, Bytes};
use prost::encoding::{DecodeContext, WireType};

use crate::raft_serverpb::RaftMessage;

/// The field number of `msgs`.
const MSGS_TAG: u32 = 1;

/// Raft messages to one store, in the order they were queued, as one gRPC
/// message on the `BatchRaft` stream.
#[derive(Clone, PartialEq, Default, Debug)]
pub struct BatchRaftMessage {
    /// The messages, in order.
    pub msgs: Vec<RaftMessage>,
    /// Received entries that did not decode as a `RaftMessage` and were
    /// skipped. Not on the wire: always 0 on the sending side.
    pub malformed: u32,
}

impl Message for BatchRaftMessage {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        prost::encoding::message::encode_repeated(MSGS_TAG, &self.msgs, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        if tag != MSGS_TAG {
            return prost::encoding::skip_field(wire_type, tag, buf, ctx);
        }
        if wire_type != WireType::LengthDelimited {
            // Not a message at all, but its extent is known: skip it.
            self.malformed = self.malformed.saturating_add(1);
            return prost::encoding::skip_field(wire_type, tag, buf, ctx);
        }
        // The entry's bytes, whole: a length past the end fails the batch
        // here, since nothing after it can be framed.
        let mut entry = Bytes::new();
        prost::encoding::bytes::merge(wire_type, &mut entry, buf, ctx)?;
        match RaftMessage::decode(entry) {
            Ok(msg) => self.msgs.push(msg),
            Err(_) => self.malformed = self.malformed.saturating_add(1),
        }
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        prost::encoding::message::encoded_len_repeated(MSGS_TAG, &self.msgs)
    }

    fn clear(&mut self) {
        self.msgs.clear();
        self.malformed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(region_id: u64) -> RaftMessage {
        RaftMessage {
            region_id,
            start_key: b"a".to_vec(),
            ..Default::default()
        }
    }

    /// `0x0a len bytes`: one `msgs` entry as the generated encoder writes it.
    fn entry(bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![0x0a];
        prost::encode_length_delimiter(bytes.len(), &mut out).expect("a Vec grows");
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn encodes_as_repeated_raft_message() {
        let batch = BatchRaftMessage {
            msgs: vec![msg(1), msg(300)],
            malformed: 0,
        };
        let mut want = entry(&msg(1).encode_to_vec());
        want.extend(entry(&msg(300).encode_to_vec()));
        assert_eq!(batch.encode_to_vec(), want);
        assert_eq!(batch.encoded_len(), want.len());
        assert_eq!(BatchRaftMessage::decode(&want[..]).expect("decodes"), batch);
        assert_eq!(
            BatchRaftMessage::decode(&[][..]).expect("empty decodes"),
            BatchRaftMessage::default()
        );
    }

    #[test]
    fn a_bad_entry_is_skipped_and_counted() {
        let mut wire = entry(&msg(1).encode_to_vec());
        // An overlong varint where a field key should be.
        wire.extend(entry(&[0xff; 11]));
        // Field 1 as a varint: not a message.
        wire.extend([0x08, 0x05]);
        // An unknown field, skipped as such.
        wire.extend([0x10, 0x07]);
        wire.extend(entry(&msg(2).encode_to_vec()));
        let batch = BatchRaftMessage::decode(&wire[..]).expect("decodes");
        assert_eq!(batch.msgs, vec![msg(1), msg(2)]);
        assert_eq!(batch.malformed, 2);
    }

    #[test]
    fn broken_framing_fails_the_batch() {
        let mut wire = entry(&msg(1).encode_to_vec());
        // An entry announcing 50 bytes, with 3 left.
        wire.extend([0x0a, 50, 1, 2, 3]);
        assert!(BatchRaftMessage::decode(&wire[..]).is_err());
    }
}
