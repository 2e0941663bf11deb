//! The state object of an upload session: which part objects hold its flushed bytes, the bytes
//! not yet flushed (the tail, always shorter than a part), and a commit in progress.
//!
//! It is one object, rewritten whole by every append, so a session is always read in one
//! consistent version: `<header JSON>\n<tail bytes>`. The header (compact JSON, so free of
//! newlines) records the tail's length, which is checked when the object is read back.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Format version written into every state object.
const VERSION: u32 = 1;
/// S3's limit on the parts of one multipart upload.
pub(crate) const MAX_PARTS: usize = 10_000;

/// One flushed part: an object at `layout::upload_part(id, number, nonce)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PartRef {
    /// Part number, 1-based and dense.
    pub number: u32,
    /// Random suffix of the part object's key.
    pub nonce: u64,
    /// Bytes in the part.
    pub size: u64,
}

/// A commit that was started: the multipart upload it opened at the destination, to abort if
/// the commit never finished.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PendingCommit {
    /// Object path (root directory included) the multipart upload completes to.
    pub path: String,
    /// The multipart upload id.
    pub upload_id: String,
}

#[derive(Serialize, Deserialize)]
struct Header {
    v: u32,
    parts: Vec<PartRef>,
    tail: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    commit: Option<PendingCommit>,
}

/// A decoded session state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SessionState {
    /// Flushed parts, in order.
    pub parts: Vec<PartRef>,
    /// Bytes received after the last part.
    pub tail: Bytes,
    /// A commit started and not finished.
    pub commit: Option<PendingCommit>,
}

impl SessionState {
    /// Bytes received so far.
    pub fn size(&self) -> u64 {
        self.parts.iter().map(|p| p.size).sum::<u64>() + self.tail.len() as u64
    }

    /// The number the next flushed part gets.
    pub fn next_part_number(&self) -> u32 {
        self.parts.len() as u32 + 1
    }

    /// The object's bytes.
    pub fn encode(&self) -> Bytes {
        let header = Header {
            v: VERSION,
            parts: self.parts.clone(),
            tail: self.tail.len() as u64,
            commit: self.commit.clone(),
        };
        // serializing plain structs of numbers and strings cannot fail
        let mut out = serde_json::to_vec(&header).unwrap_or_default();
        out.push(b'\n');
        out.extend_from_slice(&self.tail);
        Bytes::from(out)
    }

    /// Parses an object written by [`encode`](Self::encode).
    pub fn decode(data: Bytes) -> Result<Self, String> {
        let newline = data
            .iter()
            .position(|b| *b == b'\n')
            .ok_or("upload state: no header line")?;
        let header: Header = serde_json::from_slice(&data[..newline])
            .map_err(|e| format!("upload state: bad header: {e}"))?;
        if header.v != VERSION {
            return Err(format!("upload state: unknown version {}", header.v));
        }
        let tail = data.slice(newline + 1..);
        if tail.len() as u64 != header.tail {
            return Err(format!(
                "upload state: header says {} tail bytes, object holds {}",
                header.tail,
                tail.len()
            ));
        }
        let dense = header
            .parts
            .iter()
            .enumerate()
            .all(|(i, p)| p.number as usize == i + 1);
        if !dense || header.parts.len() > MAX_PARTS {
            return Err("upload state: part numbers are not 1..n".into());
        }
        Ok(SessionState {
            parts: header.parts,
            tail,
            commit: header.commit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let state = SessionState {
            parts: vec![
                PartRef {
                    number: 1,
                    nonce: 7,
                    size: 5 << 20,
                },
                PartRef {
                    number: 2,
                    nonce: u64::MAX,
                    size: 5 << 20,
                },
            ],
            tail: Bytes::from_static(b"tail\nwith\nnewlines\0"),
            commit: Some(PendingCommit {
                path: "root/docker/x".into(),
                upload_id: "u-1".into(),
            }),
        };
        let back = SessionState::decode(state.encode()).unwrap();
        assert_eq!(back, state);
        assert_eq!(back.size(), (10 << 20) + 19);
        assert_eq!(back.next_part_number(), 3);
        let empty = SessionState::default();
        assert_eq!(SessionState::decode(empty.encode()).unwrap(), empty);
    }

    #[test]
    fn rejects_damaged_objects() {
        let good = SessionState {
            tail: Bytes::from_static(b"abc"),
            ..Default::default()
        }
        .encode();
        assert!(SessionState::decode(good.slice(..good.len() - 1)).is_err());
        assert!(SessionState::decode(Bytes::from_static(b"no header")).is_err());
        assert!(
            SessionState::decode(Bytes::from_static(b"{\"v\":2,\"parts\":[],\"tail\":0}\n"))
                .is_err()
        );
        let gap = b"{\"v\":1,\"parts\":[{\"number\":2,\"nonce\":1,\"size\":1}],\"tail\":0}\n";
        assert!(SessionState::decode(Bytes::from_static(gap)).is_err());
    }
}
