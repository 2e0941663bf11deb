//! Upload session identifiers.

use std::fmt;

/// Identifier of a blob upload session: a lowercase hyphenated UUID, as it appears in
/// `/v2/<name>/blobs/uploads/<id>` and `Docker-Upload-UUID`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadId(String);

impl UploadId {
    /// Validates the canonical 8-4-4-4-12 lowercase hex form, so the id is safe in storage keys.
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        let ok = b.len() == 36
            && b.iter().enumerate().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => *c == b'-',
                _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
            });
        ok.then(|| UploadId(s.to_string()))
    }

    /// Builds an id from 16 random bytes (UUID v4 layout).
    pub fn from_random(mut b: [u8; 16]) -> Self {
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h = hex::encode(b);
        UploadId(format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        ))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UploadId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_junk() {
        let id = UploadId::from_random([0xabu8; 16]);
        assert_eq!(UploadId::parse(id.as_str()), Some(id.clone()));
        for bad in [
            "",
            "../../etc",
            "0000000000000000000000000000000000000",
            &id.as_str().to_uppercase(),
        ] {
            assert!(UploadId::parse(bad).is_none(), "{bad}");
        }
    }
}
