//! Blob and image contents that cost the client almost nothing.
//!
//! A blob of any size is a random block (at most 1 MiB) repeated up to `size - 16` bytes,
//! followed by a 16-byte tail holding the run nonce and the blob number. The SHA-256 state after
//! the repeated prefix is computed once per [`BlobSource`], so each unique blob's digest costs one
//! clone of that state plus one hash block, and its body is a list of shared [`Bytes`] slices.

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use crate::http::Body;

const BLOCK: u64 = 1 << 20;
const TAIL: u64 = 16;

/// OCI image manifest media type.
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Makes unique blobs of one size.
pub(crate) struct BlobSource {
    block: Bytes,
    size: u64,
    prefix_len: u64,
    prefix_state: Sha256,
}

impl BlobSource {
    /// Prepares blobs of `size` bytes whose shared block is derived from `seed` (hashes the
    /// prefix once: about 0.7 ms per MiB).
    pub(crate) fn new(size: u64, seed: u64) -> BlobSource {
        let prefix_len = size - size.min(TAIL);
        let block = Bytes::from(random_bytes(prefix_len.min(BLOCK) as usize, seed));
        let mut state = Sha256::new();
        for part in repeat_slices(&block, 0, prefix_len) {
            state.update(&part);
        }
        BlobSource {
            block,
            size,
            prefix_len,
            prefix_state: state,
        }
    }

    /// Blob number `id` of the run with this `nonce`.
    pub(crate) fn blob(&self, nonce: u64, id: u64) -> Blob {
        let mut tail = [0u8; TAIL as usize];
        tail[..8].copy_from_slice(&nonce.to_le_bytes());
        tail[8..].copy_from_slice(&id.to_le_bytes());
        let tail = Bytes::copy_from_slice(&tail[..(self.size - self.prefix_len) as usize]);
        let mut state = self.prefix_state.clone();
        state.update(&tail);
        Blob {
            digest: sha256_string(state),
            size: self.size,
            block: self.block.clone(),
            prefix_len: self.prefix_len,
            tail,
        }
    }
}

/// One blob: its digest and a zero-copy view of its bytes.
#[derive(Clone)]
pub(crate) struct Blob {
    pub digest: String,
    pub size: u64,
    block: Bytes,
    prefix_len: u64,
    tail: Bytes,
}

impl Blob {
    /// A blob holding exactly these bytes (configs, manifests).
    pub(crate) fn from_bytes(bytes: Bytes) -> Blob {
        let mut state = Sha256::new();
        state.update(&bytes);
        Blob {
            digest: sha256_string(state),
            size: bytes.len() as u64,
            block: Bytes::new(),
            prefix_len: 0,
            tail: bytes,
        }
    }

    /// The whole blob as a request body.
    pub(crate) fn body(&self) -> Body {
        self.range(0, self.size)
    }

    /// Bytes `start..end` as a request body.
    pub(crate) fn range(&self, start: u64, end: u64) -> Body {
        let end = end.min(self.size);
        let mut frames = repeat_slices(&self.block, start, end.min(self.prefix_len));
        let (ts, te) = (start.max(self.prefix_len), end);
        if ts < te {
            let (a, b) = (
                (ts - self.prefix_len) as usize,
                (te - self.prefix_len) as usize,
            );
            frames.push(self.tail.slice(a..b));
        }
        Body::from_frames(frames)
    }

    /// This blob as a manifest descriptor of the given media type.
    pub(crate) fn descriptor(&self, media_type: &'static str) -> Descriptor {
        Descriptor {
            media_type,
            digest: self.digest.clone(),
            size: self.size,
        }
    }

    /// This blob as a layer descriptor.
    pub(crate) fn layer(&self) -> Descriptor {
        self.descriptor(OCI_LAYER)
    }
}

/// What a manifest says about a blob.
#[derive(Clone, Debug)]
pub(crate) struct Descriptor {
    pub media_type: &'static str,
    pub digest: String,
    pub size: u64,
}

impl Descriptor {
    fn json(&self) -> String {
        format!(
            r#"{{"mediaType":"{}","digest":"{}","size":{}}}"#,
            self.media_type, self.digest, self.size
        )
    }
}

/// A small, unique image config blob.
pub(crate) fn config_blob(nonce: u64, id: u64) -> Blob {
    Blob::from_bytes(Bytes::from(format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"berth.bench":"{nonce:016x}-{id}"}}}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
    )))
}

/// An OCI image manifest over a config and layers.
pub(crate) fn manifest(config: &Blob, layers: &[Descriptor]) -> Bytes {
    let layers: Vec<String> = layers.iter().map(Descriptor::json).collect();
    Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{}]}}"#,
        config.descriptor(OCI_CONFIG).json(),
        layers.join(",")
    ))
}

/// A manifest made unique by an annotation, over shared blobs.
pub(crate) fn annotated_manifest(config: &Blob, layers: &[Descriptor], note: &str) -> Bytes {
    let layers: Vec<String> = layers.iter().map(Descriptor::json).collect();
    Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{}],"annotations":{{"berth.bench":"{note}"}}}}"#,
        config.descriptor(OCI_CONFIG).json(),
        layers.join(",")
    ))
}

/// `sha256:<hex>` of a byte string.
pub(crate) fn sha256_of(data: &[u8]) -> String {
    let mut state = Sha256::new();
    state.update(data);
    sha256_string(state)
}

fn sha256_string(state: Sha256) -> String {
    format!("sha256:{}", hex::encode(state.finalize()))
}

/// Slices of `block` repeated, covering positions `start..end` of the infinite repetition.
fn repeat_slices(block: &Bytes, start: u64, end: u64) -> Vec<Bytes> {
    let len = block.len() as u64;
    let mut out = Vec::new();
    let mut pos = start;
    while len > 0 && pos < end {
        let off = pos % len;
        let take = (len - off).min(end - pos);
        out.push(block.slice(off as usize..(off + take) as usize));
        pos += take;
    }
    out
}

/// Deterministic incompressible bytes (splitmix64).
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn collect(body: Body) -> Vec<u8> {
        match body.collect().await {
            Ok(c) => c.to_bytes().to_vec(),
            Err(e) => match e {},
        }
    }

    #[tokio::test]
    async fn digests_match_bytes_for_every_shape() {
        for size in [0, 1, 15, 16, 17, 4096, BLOCK + 100, 3 * BLOCK] {
            let src = BlobSource::new(size, 7);
            let blob = src.blob(1, 2);
            let bytes = collect(blob.body()).await;
            assert_eq!(bytes.len() as u64, size);
            assert_eq!(blob.digest, sha256_of(&bytes), "size {size}");
        }
    }

    #[tokio::test]
    async fn blobs_are_unique_and_ranges_concatenate() {
        let src = BlobSource::new(2 * BLOCK + 5, 3);
        let (a, b) = (src.blob(9, 1), src.blob(9, 2));
        assert_ne!(a.digest, b.digest);
        assert_ne!(a.digest, src.blob(10, 1).digest);
        let whole = collect(a.body()).await;
        let mut parts = Vec::new();
        let step = 700_000;
        let mut s = 0;
        while s < a.size {
            parts.extend(collect(a.range(s, s + step)).await);
            s += step;
        }
        assert_eq!(parts, whole);
    }

    #[test]
    fn manifest_is_valid_json_with_descriptors() {
        let config = config_blob(1, 2);
        let layer = BlobSource::new(4096, 1).blob(1, 2);
        let m = manifest(&config, &[layer.layer()]);
        let v: serde_json::Value = serde_json::from_slice(&m).unwrap_or_default();
        assert_eq!(v["config"]["digest"], config.digest.as_str());
        assert_eq!(v["layers"][0]["size"], 4096);
        assert_ne!(config.digest, config_blob(1, 3).digest);
    }
}
