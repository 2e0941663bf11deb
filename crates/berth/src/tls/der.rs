//! Just enough DER to name a certificate in logs: its serial number and `notAfter`.
//!
//! rustls and webpki validate certificates but expose neither field, and a full X.509 parser
//! would be a large dependency for two log fields. Anything this reader does not understand
//! yields `None` and the log line simply omits the fields; nothing else depends on it.

use std::time::{SystemTime, UNIX_EPOCH};

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const EXPLICIT_0: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// What the logs say about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// Serial number in upper-case hex without leading zero bytes, as `openssl x509 -serial` prints it.
    pub serial: String,
    /// Expiry as `YYYY-MM-DDTHH:MM:SSZ`.
    pub not_after: String,
}

impl CertSummary {
    /// True when `notAfter` lies in the past.
    pub fn expired(&self) -> bool {
        self.not_after < utc_now()
    }
}

/// Reads serial and `notAfter` from a DER certificate.
pub fn summary(der: &[u8]) -> Option<CertSummary> {
    let cert = Reader(der).expect(SEQUENCE)?;
    let mut tbs = Reader(Reader(cert).expect(SEQUENCE)?);
    let (mut tag, mut value) = tbs.next()?;
    if tag == EXPLICIT_0 {
        (tag, value) = tbs.next()?;
    }
    if tag != INTEGER {
        return None;
    }
    tbs.next()?; // signature algorithm
    tbs.next()?; // issuer
    let mut validity = Reader(tbs.expect(SEQUENCE)?);
    validity.next()?; // notBefore
    let (tag, time) = validity.next()?;
    Some(CertSummary {
        serial: serial_hex(value),
        not_after: format_time(tag, time)?,
    })
}

fn serial_hex(bytes: &[u8]) -> String {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let hex = hex::encode_upper(&bytes[start..]);
    if hex.is_empty() {
        "0".into()
    } else {
        hex
    }
}

/// UTCTime `YYMMDDHHMMSSZ` or GeneralizedTime `YYYYMMDDHHMMSSZ` as `YYYY-MM-DDTHH:MM:SSZ`.
fn format_time(tag: u8, raw: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(raw).ok()?;
    let digits = s.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let full = match (tag, digits.len()) {
        (UTC_TIME, 12) => {
            let century = if digits[..2] >= *"50" { "19" } else { "20" };
            format!("{century}{digits}")
        }
        (GENERALIZED_TIME, 14) => digits.to_string(),
        _ => return None,
    };
    Some(format!(
        "{}-{}-{}T{}:{}:{}Z",
        &full[0..4],
        &full[4..6],
        &full[6..8],
        &full[8..10],
        &full[10..12],
        &full[12..14]
    ))
}

/// The current time as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_unix(secs)
}

fn format_unix(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A cursor over concatenated DER TLVs (single-byte tags, lengths up to 4 bytes).
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.0.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, b| acc << 8 | usize::from(*b));
            (len, &rest[n..])
        };
        if rest.len() < len {
            return None;
        }
        let (value, rest) = rest.split_at(len);
        self.0 = rest;
        Some((tag, value))
    }

    fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.next()? {
            (t, v) if t == tag => Some(v),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate skeleton with X.509's field order (version, serial 0x000BEEF1, algorithm,
    /// a 200-byte issuer that forces a long-form length, validity, subject). The TLV walk is what
    /// is tested; real openssl certificates are read by the end-to-end TLS tests, which check the
    /// serial in the log.
    fn cert_der() -> Vec<u8> {
        let tlv = |tag: u8, v: &[u8]| {
            let mut out = vec![tag];
            if v.len() < 0x80 {
                out.push(v.len() as u8);
            } else {
                out.extend([0x82, (v.len() >> 8) as u8, v.len() as u8]);
            }
            out.extend_from_slice(v);
            out
        };
        let version = tlv(EXPLICIT_0, &tlv(INTEGER, &[2]));
        let serial = tlv(INTEGER, &[0x00, 0x0b, 0xee, 0xf1]);
        let alg = tlv(SEQUENCE, &[0x06, 0x01, 0x2a]);
        let name = tlv(SEQUENCE, &[0u8; 200]);
        let validity = tlv(
            SEQUENCE,
            &[
                tlv(UTC_TIME, b"250101000000Z"),
                tlv(GENERALIZED_TIME, b"20491231235959Z"),
            ]
            .concat(),
        );
        let tbs = tlv(
            SEQUENCE,
            &[version, serial, alg.clone(), name.clone(), validity, name].concat(),
        );
        tlv(SEQUENCE, &[tbs, alg, tlv(0x03, &[0, 1, 2])].concat())
    }

    #[test]
    fn reads_serial_and_not_after() {
        let s = summary(&cert_der()).unwrap();
        assert_eq!(s.serial, "0BEEF1");
        assert_eq!(s.not_after, "2049-12-31T23:59:59Z");
        assert!(!s.expired());
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(summary(b""), None);
        assert_eq!(summary(&[0x30, 0x85, 1, 2, 3, 4, 5]), None);
        let mut truncated = cert_der();
        truncated.truncate(40);
        assert_eq!(summary(&truncated), None);
    }

    #[test]
    fn time_formats() {
        assert_eq!(
            format_time(UTC_TIME, b"491231235959Z").as_deref(),
            Some("2049-12-31T23:59:59Z")
        );
        assert_eq!(
            format_time(UTC_TIME, b"991231235959Z").as_deref(),
            Some("1999-12-31T23:59:59Z")
        );
        assert_eq!(format_time(UTC_TIME, b"4912312359Z"), None);
        assert_eq!(format_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_unix(4_102_444_799), "2099-12-31T23:59:59Z");
        assert!(CertSummary {
            serial: "1".into(),
            not_after: "2001-01-01T00:00:00Z".into()
        }
        .expired());
    }
}
