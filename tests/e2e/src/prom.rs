//! A strict parser for the Prometheus text exposition format (version 0.0.4), for asserting on
//! scraped metrics.
//!
//! Strict on purpose: every sample must belong to a family declared by a `# TYPE` line before it,
//! no family is declared twice, no series appears twice, counters are non-negative, and every
//! histogram series has `_bucket` samples with `le` labels that are cumulative up to a `+Inf`
//! bucket equal to its `_count`, plus a `_sum`. A malformed scrape fails the test with the line.

use std::collections::{BTreeMap, HashMap, HashSet};

/// Label name → value.
pub type Labels = BTreeMap<String, String>;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name as written (`foo_bucket` for a histogram bucket).
    pub name: String,
    /// Labels.
    pub labels: Labels,
    /// Value.
    pub value: f64,
}

/// A parsed and checked scrape.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    /// Family name → `counter`, `gauge`, `histogram`, `summary` or `untyped`.
    pub types: BTreeMap<String, String>,
    /// Every sample, in order.
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// Samples named `name` whose labels include all of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The sum over [`Exposition::matching`] (0 when none match).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// The value of the one sample named `name` with these labels; panics unless exactly one
    /// matches.
    #[track_caller]
    pub fn one(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> = self.matching(name, labels).collect();
        assert_eq!(
            found.len(),
            1,
            "expected exactly one sample {name}{labels:?}, found {found:?}"
        );
        found[0].value
    }
}

/// Parses and checks a scrape.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    let mut seen_series = HashSet::new();
    let mut families_with_samples = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let at = |m: String| format!("line {}: {m}: {line:?}", i + 1);
        let line_t = line.trim();
        if line_t.is_empty() {
            continue;
        }
        if let Some(rest) = line_t.strip_prefix('#') {
            let words: Vec<&str> = rest.split_whitespace().collect();
            if words.first() == Some(&"TYPE") {
                let [_, name, kind] = words[..] else {
                    return Err(at("malformed TYPE line".into()));
                };
                if !matches!(
                    kind,
                    "counter" | "gauge" | "histogram" | "summary" | "untyped"
                ) {
                    return Err(at(format!("unknown type {kind}")));
                }
                if families_with_samples.contains(name) {
                    return Err(at(format!("TYPE of {name} after its samples")));
                }
                if out.types.insert(name.into(), kind.into()).is_some() {
                    return Err(at(format!("second TYPE line for {name}")));
                }
            }
            continue;
        }
        let s = parse_sample(line_t).map_err(at)?;
        let family = family_of(&out.types, &s.name)
            .ok_or_else(|| at(format!("sample {} has no # TYPE line before it", s.name)))?;
        let kind = out.types[&family].as_str();
        if kind == "counter" && (s.value.is_nan() || s.value < 0.0) {
            return Err(at("negative or NaN counter".into()));
        }
        if !seen_series.insert((s.name.clone(), s.labels.clone())) {
            return Err(at("duplicate series".into()));
        }
        families_with_samples.insert(family);
        out.samples.push(s);
    }
    check_histograms(&out)?;
    Ok(out)
}

/// The declared family a sample name belongs to.
fn family_of(types: &BTreeMap<String, String>, name: &str) -> Option<String> {
    if types.contains_key(name) {
        return Some(name.to_owned());
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        let kind = types.get(base)?;
        let ok = kind == "histogram" || (kind == "summary" && *suffix != "_bucket");
        ok.then(|| base.to_owned())
    })
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("bad metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = Labels::new();
    if let Some(r) = rest.strip_prefix('{') {
        let (l, after) = parse_labels(r)?;
        labels = l;
        rest = after;
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("no value")?;
    let value = parse_value(value)?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>().map_err(|_| "bad timestamp")?;
    }
    if fields.next().is_some() {
        return Err("trailing text after value".into());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `a="x",b="y\"z"}` and returns the labels and the text after `}`.
fn parse_labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Labels::new();
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = s.find('=').ok_or("label without =")?;
        let key = s[..eq].trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad label name {key:?}"));
        }
        s = s[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .ok_or("unquoted label value")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => return Err("bad escape in label value".into()),
                },
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        if labels.insert(key.to_owned(), value).is_some() {
            return Err(format!("label {key} twice"));
        }
        s = s[end + 1..].trim_start();
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => v.parse().map_err(|_| format!("bad value {v:?}")),
    }
}

/// Every histogram series: cumulative buckets, a `+Inf` bucket equal to `_count`, a `_sum`.
fn check_histograms(e: &Exposition) -> Result<(), String> {
    for (family, kind) in &e.types {
        if kind != "histogram" {
            continue;
        }
        let (bucket, count, sum) = (
            format!("{family}_bucket"),
            format!("{family}_count"),
            format!("{family}_sum"),
        );
        let mut buckets: HashMap<Labels, Vec<(f64, f64)>> = HashMap::new();
        for s in e.matching(&bucket, &[]) {
            let mut key = s.labels.clone();
            let le = key
                .remove("le")
                .ok_or_else(|| format!("{family}_bucket without le"))?;
            buckets
                .entry(key)
                .or_default()
                .push((parse_value(&le)?, s.value));
        }
        let counts: Vec<&Sample> = e.matching(&count, &[]).collect();
        if counts.len() != buckets.len() {
            return Err(format!(
                "{family}: {} _count series but {} bucket series",
                counts.len(),
                buckets.len()
            ));
        }
        for c in counts {
            let mut b = buckets
                .remove(&c.labels)
                .ok_or_else(|| format!("{family}_count{:?} has no buckets", c.labels))?;
            b.sort_by(|x, y| x.0.total_cmp(&y.0));
            if b.windows(2).any(|w| w[1].1 < w[0].1) {
                return Err(format!(
                    "{family}{:?}: buckets not cumulative: {b:?}",
                    c.labels
                ));
            }
            match b.last() {
                Some((le, n)) if le.is_infinite() && *n == c.value => {}
                _ => {
                    return Err(format!(
                        "{family}{:?}: +Inf bucket must equal _count {}: {b:?}",
                        c.labels, c.value
                    ))
                }
            }
            if !e.matching(&sum, &[]).any(|s| s.labels == c.labels) {
                return Err(format!("{family}{:?}: no _sum", c.labels));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"# HELP req_total Requests
# TYPE req_total counter
req_total{endpoint="manifest",method="PUT",status="201"} 2
req_total{endpoint="blob",method="GET",status="200",odd="a\"b\\c\nd"} 5
# TYPE up gauge
up 1 1700000000000
# TYPE lat_seconds histogram
lat_seconds_bucket{op="read",le="0.1"} 1
lat_seconds_bucket{op="read",le="1"} 3
lat_seconds_bucket{op="read",le="+Inf"} 3
lat_seconds_sum{op="read"} 0.75
lat_seconds_count{op="read"} 3
"#;

    #[test]
    fn parses_labels_values_and_histograms() {
        let e = parse(GOOD).unwrap();
        assert_eq!(e.one("req_total", &[("method", "PUT")]), 2.0);
        assert_eq!(e.sum("req_total", &[]), 7.0);
        assert_eq!(e.matching("req_total", &[("odd", "a\"b\\c\nd")]).count(), 1);
        assert_eq!(e.one("up", &[]), 1.0);
        assert_eq!(e.one("lat_seconds_count", &[("op", "read")]), 3.0);
        assert_eq!(e.types["lat_seconds"], "histogram");
    }

    #[test]
    fn rejects_malformed_scrapes() {
        let bad = [
            ("no_type 1\n", "no # TYPE"),
            ("# TYPE a counter\n# TYPE a counter\n", "second TYPE"),
            ("# TYPE a counter\na -1\n", "negative"),
            ("# TYPE a counter\na 1\na 2\n", "duplicate"),
            ("# TYPE a counter\na{x=\"1} 1\n", "unterminated"),
            ("# TYPE a counter\na one\n", "bad value"),
            ("# TYPE a gauge\na 1 2 3\n", "trailing"),
            (
                "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
                "not cumulative",
            ),
            (
                "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 2\n",
                "+Inf bucket",
            ),
            (
                "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
                "no _sum",
            ),
            ("# TYPE a gauge\na_bucket 1\n", "no # TYPE"),
        ];
        for (text, want) in bad {
            let err = parse(text).expect_err(text);
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
