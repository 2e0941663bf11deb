//! Content digests (`algorithm:hex`) and the streaming hasher that produces them.

use std::fmt;
use std::str::FromStr;

use sha2::digest::common::hazmat::SerializableState;
use sha2::Digest as _;

/// A digest algorithm Berth accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// `sha256`, 64 hex characters.
    Sha256,
    /// `sha512`, 128 hex characters.
    Sha512,
}

impl Algorithm {
    /// Parses an algorithm name (`sha256`, `sha512`), as in a digest or the spec's
    /// `?digest-algorithm=` upload parameter.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        match s {
            "sha256" => Ok(Algorithm::Sha256),
            "sha512" => Ok(Algorithm::Sha512),
            other => Err(DigestError::UnsupportedAlgorithm(other.to_string())),
        }
    }

    /// The algorithm's name as it appears in a digest string.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// Why a digest string was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    /// No `:` separator.
    #[error("digest must have the form algorithm:hex")]
    Malformed,
    /// The algorithm is not sha256 or sha512.
    #[error("unsupported digest algorithm {}", crate::quoted(.0))]
    UnsupportedAlgorithm(String),
    /// The encoded part has the wrong length or is not lowercase hex.
    #[error("digest hex must be {0} lowercase hex characters")]
    BadHex(usize),
}

/// A validated content digest such as `sha256:e3b0…`.
///
/// The inner string is always `<alg>:<lowercase hex of the right length>`, so it is safe to use in
/// storage keys and URLs without further escaping.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    alg: Algorithm,
    text: String,
}

impl Digest {
    /// Parses and validates a digest string.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let (alg, hex) = s.split_once(':').ok_or(DigestError::Malformed)?;
        let alg = Algorithm::parse(alg)?;
        let ok = hex.len() == alg.hex_len()
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok {
            return Err(DigestError::BadHex(alg.hex_len()));
        }
        Ok(Digest {
            alg,
            text: s.to_string(),
        })
    }

    /// The sha256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Self {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(data);
        h.finish()
    }

    /// The digest of `data` with the given algorithm.
    pub fn of(alg: Algorithm, data: &[u8]) -> Self {
        let mut h = Hasher::new(alg);
        h.update(data);
        h.finish()
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The lowercase hex part after the colon.
    pub fn hex(&self) -> &str {
        &self.text[self.alg.as_str().len() + 1..]
    }

    /// The whole digest string.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.text)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Incremental, resumable hasher for either algorithm; feed it chunks as they stream past.
///
/// Its state serialises to a few hundred bytes ([`Hasher::to_state`]) so an upload session can be
/// continued after a restart or on another replica without re-reading the bytes received so far.
#[derive(Clone)]
pub struct Hasher {
    inner: Inner,
    len: u64,
}

#[derive(Clone)]
enum Inner {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// A fresh hasher.
    pub fn new(alg: Algorithm) -> Self {
        let inner = match alg {
            Algorithm::Sha256 => Inner::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Inner::Sha512(sha2::Sha512::new()),
        };
        Hasher { inner, len: 0 }
    }

    /// The algorithm this hasher computes.
    pub fn algorithm(&self) -> Algorithm {
        match self.inner {
            Inner::Sha256(_) => Algorithm::Sha256,
            Inner::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Number of bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing has been fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.len += data.len() as u64;
        match &mut self.inner {
            Inner::Sha256(h) => h.update(data),
            Inner::Sha512(h) => h.update(data),
        }
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        let alg = self.algorithm();
        let hex = match self.inner {
            Inner::Sha256(h) => hex::encode(h.finalize()),
            Inner::Sha512(h) => hex::encode(h.finalize()),
        };
        Digest {
            alg,
            text: format!("{}:{hex}", alg.as_str()),
        }
    }

    /// Serialises the state: algorithm tag, byte count, then the hash core state.
    pub fn to_state(&self) -> Vec<u8> {
        let (tag, core) = match &self.inner {
            Inner::Sha256(h) => (1u8, h.serialize().to_vec()),
            Inner::Sha512(h) => (2u8, h.serialize().to_vec()),
        };
        let mut out = Vec::with_capacity(9 + core.len());
        out.push(tag);
        out.extend_from_slice(&self.len.to_be_bytes());
        out.extend_from_slice(&core);
        out
    }

    /// Restores a state written by [`Hasher::to_state`]; `None` if it is corrupt.
    pub fn from_state(state: &[u8]) -> Option<Self> {
        let (&tag, rest) = state.split_first()?;
        let (len, core) = rest.split_at_checked(8)?;
        let len = u64::from_be_bytes(len.try_into().ok()?);
        let inner = match tag {
            1 => Inner::Sha256(sha2::Sha256::deserialize(core.try_into().ok()?).ok()?),
            2 => Inner::Sha512(sha2::Sha512::deserialize(core.try_into().ok()?).ok()?),
            _ => return None,
        };
        Some(Hasher { inner, len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_valid_digests() {
        let d = Digest::parse(EMPTY).unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.hex().len(), 64);
        assert_eq!(d.to_string(), EMPTY);
        let long = format!("sha512:{}", "a".repeat(128));
        assert_eq!(Digest::parse(&long).unwrap().algorithm(), Algorithm::Sha512);
    }

    #[test]
    fn rejects_bad_digests() {
        let cases = [
            ("", DigestError::Malformed),
            ("sha256", DigestError::Malformed),
            ("md5:abcd", DigestError::UnsupportedAlgorithm("md5".into())),
            ("sha256:abc", DigestError::BadHex(64)),
            (
                &EMPTY.to_uppercase().replace("SHA256", "sha256"),
                DigestError::BadHex(64),
            ),
            ("sha256:../../../../etc/passwd", DigestError::BadHex(64)),
            ("sha512:abcd", DigestError::BadHex(128)),
        ];
        for (input, want) in cases {
            assert_eq!(Digest::parse(input).unwrap_err(), want, "{input}");
        }
        let non_hex = format!("sha256:{}", "g".repeat(64));
        assert!(Digest::parse(&non_hex).is_err());
    }

    #[test]
    fn algorithms_parse_by_name() {
        assert_eq!(Algorithm::parse("sha256"), Ok(Algorithm::Sha256));
        assert_eq!(Algorithm::parse("sha512"), Ok(Algorithm::Sha512));
        for bad in ["", "SHA512", "sha384", "blake3"] {
            assert_eq!(
                Algorithm::parse(bad),
                Err(DigestError::UnsupportedAlgorithm(bad.into()))
            );
        }
    }

    #[test]
    fn hasher_matches_known_values() {
        assert_eq!(Digest::sha256_of(b"").as_str(), EMPTY);
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(b"hello ");
        h.update(b"world");
        assert_eq!(h.finish(), Digest::sha256_of(b"hello world"));
        let d = Digest::of(Algorithm::Sha512, b"");
        assert!(d.as_str().starts_with("sha512:cf83e135"));
    }

    #[test]
    fn state_round_trips_at_any_split() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let want = Digest::of(alg, &data);
            for split in [0, 1, 63, 64, 65, 127, 128, 129, 5000, 10_000] {
                let mut h = Hasher::new(alg);
                h.update(&data[..split]);
                let mut r = Hasher::from_state(&h.to_state()).unwrap();
                assert_eq!(r.len(), split as u64);
                r.update(&data[split..]);
                assert_eq!(r.finish(), want, "{alg:?} split {split}");
            }
        }
        assert!(Hasher::from_state(&[]).is_none());
        assert!(Hasher::from_state(&[1, 0, 0]).is_none());
        assert!(Hasher::from_state(&[9; 200]).is_none());
    }
}
