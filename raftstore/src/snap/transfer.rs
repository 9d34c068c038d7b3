//! Moving a snapshot between stores as `SnapshotChunk`s (the `Snapshot`
//! stream of `tinykvpb.TinyKv`).
//!
//! ```text
//!   chunk 0:  { message: RaftMessage(MsgSnapshot) }   the snapshot's description
//!   chunk 1…: { data: ≤ SNAPSHOT_CHUNK_SIZE bytes }   the non-empty CF files,
//!                                                     back to back, in meta order
//! ```
//!
//! The file sizes and CRC32s travel inside the message (`RaftSnapshotData`
//! in the raft snapshot's `data`), so the receiver knows where one file ends
//! and can check each one. It writes under tmp names, checks, fsyncs,
//! renames, writes the meta file last, and only then hands back the message
//! for delivery: a peer never sees a snapshot whose files are not complete
//! and durable.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;

use kvproto::eraftpb::MessageType;
use kvproto::raft_serverpb::{RaftMessage, RaftSnapshotData, SnapshotChunk};

use super::{
    SnapGuard, SnapKey, SnapKind, SnapManager, check_snapshot_data, io_error, remove_file_if_exists,
};
use crate::errors::{Error, Result};

/// The most file bytes one chunk carries.
pub const SNAPSHOT_CHUNK_SIZE: usize = 1024 * 1024;

fn snapshot_of(msg: &RaftMessage) -> Result<(SnapKey, RaftSnapshotData)> {
    let message = msg
        .message
        .as_ref()
        .filter(|m| m.msg_type() == MessageType::MsgSnapshot)
        .ok_or_else(|| Error::InvalidSnapshot("not a MsgSnapshot".into()))?;
    let snapshot = message
        .snapshot
        .as_ref()
        .ok_or_else(|| Error::InvalidSnapshot("MsgSnapshot without a snapshot".into()))?;
    let (key, data) = SnapKey::from_snapshot(snapshot)?;
    if key.region_id != msg.region_id {
        return Err(Error::InvalidSnapshot(format!(
            "snapshot {key} sent in a message for region {}",
            msg.region_id
        )));
    }
    check_snapshot_data(&data)?;
    Ok((key, data))
}

/// The chunks of one snapshot message, read from the sender's generated
/// files. Every file is opened up front, so a newer snapshot or the GC
/// replacing or removing them meanwhile does not change what is sent.
pub struct ChunkEncoder {
    first: Option<RaftMessage>,
    /// Open files with the bytes still to read from each.
    files: VecDeque<(File, u64, PathBuf)>,
    _guard: SnapGuard,
}

impl ChunkEncoder {
    /// Prepares the chunks of `msg`, a `MsgSnapshot` of a snapshot
    /// generated in `mgr`.
    pub fn new(mgr: &SnapManager, msg: RaftMessage) -> Result<ChunkEncoder> {
        let (key, data) = snapshot_of(&msg)?;
        let guard = mgr.register(SnapKind::Generated, key);
        let mut files = VecDeque::new();
        for file in &data.meta.as_ref().expect("checked").cf_files {
            if file.size == 0 {
                continue;
            }
            let path = mgr.cf_path(SnapKind::Generated, &key, &file.cf);
            let f = File::open(&path).map_err(io_error(format!("open {}", path.display())))?;
            let len = f
                .metadata()
                .map_err(io_error(format!("stat {}", path.display())))?
                .len();
            if len != file.size {
                return Err(Error::InvalidSnapshot(format!(
                    "{} has {len} bytes, the snapshot says {}",
                    path.display(),
                    file.size
                )));
            }
            files.push_back((f, file.size, path));
        }
        Ok(ChunkEncoder {
            first: Some(msg),
            files,
            _guard: guard,
        })
    }

    fn next_data(&mut self) -> Result<Option<Vec<u8>>> {
        let mut buf = Vec::new();
        while buf.len() < SNAPSHOT_CHUNK_SIZE {
            let Some((file, left, path)) = self.files.front_mut() else {
                break;
            };
            let want = (SNAPSHOT_CHUNK_SIZE - buf.len()).min(*left as usize);
            let start = buf.len();
            buf.resize(start + want, 0);
            file.read_exact(&mut buf[start..])
                .map_err(io_error(format!("read {}", path.display())))?;
            *left -= want as u64;
            if *left == 0 {
                self.files.pop_front();
            }
        }
        Ok((!buf.is_empty()).then_some(buf))
    }
}

impl Iterator for ChunkEncoder {
    type Item = Result<SnapshotChunk>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(message) = self.first.take() {
            return Some(Ok(SnapshotChunk {
                message: Some(message),
                data: Vec::new(),
            }));
        }
        match self.next_data() {
            Ok(Some(data)) => Some(Ok(SnapshotChunk {
                message: None,
                data,
            })),
            Ok(None) => None,
            Err(e) => {
                self.files.clear();
                Some(Err(e))
            }
        }
    }
}

/// One file being received.
struct IncomingFile {
    tmp: PathBuf,
    path: PathBuf,
    file: File,
    size: u64,
    checksum: u32,
    written: u64,
    hasher: crc32fast::Hasher,
}

/// Receives one snapshot stream into the receiver's `SnapManager`. Feed it
/// every chunk, then `finish` for the message to deliver. Dropped before
/// `finish` succeeds, it removes what it wrote.
pub struct SnapshotReceiver {
    mgr: SnapManager,
    msg: RaftMessage,
    key: SnapKey,
    data: RaftSnapshotData,
    /// The files still to write, in stream order; `None` when the snapshot
    /// is already complete here and the bytes are only counted.
    files: Option<Vec<IncomingFile>>,
    current: usize,
    received: u64,
    _guard: SnapGuard,
}

impl SnapshotReceiver {
    /// Starts receiving from the stream's first chunk.
    pub fn new(mgr: &SnapManager, first: SnapshotChunk) -> Result<SnapshotReceiver> {
        let msg = first
            .message
            .ok_or_else(|| Error::InvalidSnapshot("first chunk carries no message".into()))?;
        if !first.data.is_empty() {
            return Err(Error::InvalidSnapshot("first chunk carries data".into()));
        }
        let (key, data) = snapshot_of(&msg)?;
        let guard = mgr.register(SnapKind::Received, key);
        let files = if mgr.exists(SnapKind::Received, &key) {
            None
        } else {
            let mut files = Vec::new();
            for file in &data.meta.as_ref().expect("checked").cf_files {
                if file.size == 0 {
                    continue;
                }
                let path = mgr.cf_path(SnapKind::Received, &key, &file.cf);
                let tmp = mgr.tmp_path(&path);
                let f =
                    File::create(&tmp).map_err(io_error(format!("create {}", tmp.display())))?;
                files.push(IncomingFile {
                    tmp,
                    path,
                    file: f,
                    size: file.size,
                    checksum: file.checksum,
                    written: 0,
                    hasher: crc32fast::Hasher::new(),
                });
            }
            Some(files)
        };
        Ok(SnapshotReceiver {
            mgr: mgr.clone(),
            msg,
            key,
            data,
            files,
            current: 0,
            received: 0,
            _guard: guard,
        })
    }

    /// The snapshot being received.
    pub fn key(&self) -> SnapKey {
        self.key
    }

    /// Takes the next chunk of file bytes.
    pub fn feed(&mut self, chunk: SnapshotChunk) -> Result<()> {
        if chunk.message.is_some() {
            return Err(Error::InvalidSnapshot(format!(
                "snapshot {}: a second message in the stream",
                self.key
            )));
        }
        let mut bytes = chunk.data.as_slice();
        if bytes.is_empty() {
            return Err(Error::InvalidSnapshot(format!(
                "snapshot {}: empty chunk",
                self.key
            )));
        }
        let total = self.data.file_size;
        if self.received + bytes.len() as u64 > total {
            return Err(Error::InvalidSnapshot(format!(
                "snapshot {}: more than the {total} bytes announced",
                self.key
            )));
        }
        self.received += bytes.len() as u64;
        let Some(files) = self.files.as_mut() else {
            return Ok(());
        };
        while !bytes.is_empty() {
            let file = &mut files[self.current];
            let n = ((file.size - file.written) as usize).min(bytes.len());
            let (part, rest) = bytes.split_at(n);
            file.file
                .write_all(part)
                .map_err(io_error(format!("write {}", file.tmp.display())))?;
            file.hasher.update(part);
            file.written += n as u64;
            bytes = rest;
            if file.written == file.size {
                let checksum = file.hasher.clone().finalize();
                if checksum != file.checksum {
                    return Err(Error::InvalidSnapshot(format!(
                        "snapshot {}: {} has crc32 {checksum:#010x}, expected {:#010x}",
                        self.key,
                        file.path.display(),
                        file.checksum
                    )));
                }
                self.current += 1;
            }
        }
        Ok(())
    }

    /// Completes the snapshot: every byte arrived and checked, the files
    /// durable and in place. Returns the message to deliver.
    pub fn finish(mut self) -> Result<RaftMessage> {
        if self.received != self.data.file_size {
            return Err(Error::InvalidSnapshot(format!(
                "snapshot {}: stream ended after {} of {} bytes",
                self.key, self.received, self.data.file_size
            )));
        }
        if let Some(files) = self.files.take() {
            let installed = (|| {
                for file in &files {
                    file.file
                        .sync_all()
                        .map_err(io_error(format!("sync {}", file.tmp.display())))?;
                    std::fs::rename(&file.tmp, &file.path)
                        .map_err(io_error(format!("rename {}", file.tmp.display())))?;
                }
                self.mgr
                    .save_meta(SnapKind::Received, &self.key, &self.data, true)
            })();
            if let Err(e) = installed {
                // Files already renamed stay: without a meta file the
                // snapshot is incomplete, and a retry overwrites them.
                for file in &files {
                    let _ = remove_file_if_exists(&file.tmp);
                }
                return Err(e);
            }
        }
        Ok(std::mem::take(&mut self.msg))
    }
}

impl Drop for SnapshotReceiver {
    fn drop(&mut self) {
        if let Some(files) = self.files.take() {
            for file in files {
                let _ = remove_file_if_exists(&file.tmp);
            }
        }
    }
}
