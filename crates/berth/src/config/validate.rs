//! From the typed file to checked [`Settings`]: defaults, ranges, cross-key rules.

use std::path::PathBuf;
use std::time::Duration;

use berth_notify::{Action, EndpointConfig};
use berth_storage::s3::S3Options;

use super::de::Text;
use super::file::{self, ConfigFile};
use super::settings::*;
use super::{ConfigError, Warning};

/// File name of the embedded metadata database, inside the storage root.
pub const META_DB: &str = "berth-meta.sqlite";

type R<T> = Result<T, ConfigError>;

/// Checks the whole file.
pub fn settings(f: &ConfigFile, warnings: &mut Vec<Warning>) -> R<Settings> {
    if let Some(v) = &f.version {
        if v.as_str() != "0.1" {
            return Err(ConfigError::value(
                "version",
                format!("expected 0.1, got {:?}", v.0),
            ));
        }
    }
    let storage = storage(&f.storage)?;
    let database = database(&f.database, &storage, warnings)?;
    let auth = super::access::auth(f, &database)?;
    let http = &f.http;
    if let Some(net) = http.net.as_ref().map(Text::as_str) {
        if !matches!(net, "tcp" | "tcp4" | "tcp6") {
            return Err(ConfigError::value(
                "http.net",
                format!("{net:?} is not supported; only tcp listeners are"),
            ));
        }
    }
    Ok(Settings {
        addr: addr(
            "http.addr",
            http.addr.as_ref().map_or(":5000", Text::as_str),
        )?,
        prefix: prefix(http.prefix.as_ref())?,
        host: opt_url("http.host", http.host.as_ref())?,
        tls: http.tls.as_ref().map(tls).transpose()?,
        drain_timeout: http.draintimeout.map_or(Duration::from_secs(30), |d| d.0),
        headers: headers("http.headers", &http.headers)?,
        debug: debug(http.debug.as_ref())?,
        metrics_on_main: f.metrics.enabled.0,
        log: log(&f.log)?,
        delete_enabled: f.storage.delete.enabled.0,
        redirect: !f.storage.redirect.disable.0,
        upload_purging: purging(&f.storage.maintenance.uploadpurging)?,
        storage,
        database,
        auth,
        trusted_proxies: super::access::trusted_proxies(&f.http)?,
        limits: limits(&f.http.limits)?,
        notifications: f
            .notifications
            .endpoints
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.disabled.0)
            .map(|(i, e)| endpoint(i, e))
            .collect::<R<_>>()?,
        health: HealthSettings {
            enabled: f.health.storagedriver.enabled.0,
            interval: positive(
                "health.storagedriver.interval",
                f.health.storagedriver.interval.0,
            )?,
            threshold: small(
                "health.storagedriver.threshold",
                f.health.storagedriver.threshold.0,
            )?
            .max(1),
        },
    })
}

fn addr(key: &str, a: &str) -> R<String> {
    let port = a.rsplit_once(':').map(|(_, p)| p);
    match port.map(str::parse::<u16>) {
        Some(Ok(_)) => Ok(a.to_owned()),
        _ => Err(ConfigError::value(
            key,
            format!("{a:?} is not host:port or :port"),
        )),
    }
}

fn prefix(p: Option<&Text>) -> R<String> {
    let Some(p) = p else { return Ok(String::new()) };
    let trimmed = p.as_str().trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if !trimmed.starts_with('/') || trimmed.contains("..") || trimmed.contains("//") {
        return Err(ConfigError::value(
            "http.prefix",
            format!("{:?} must be an absolute path such as /registry/", p.0),
        ));
    }
    Ok(trimmed.to_owned())
}

pub(super) fn opt_url(key: &str, v: Option<&Text>) -> R<Option<String>> {
    let Some(v) = v else { return Ok(None) };
    let s = v.as_str().trim_end_matches('/');
    if !(s.starts_with("http://") || s.starts_with("https://")) || s.len() < 9 {
        return Err(ConfigError::value(
            key,
            format!("{:?} is not an http(s) URL", v.0),
        ));
    }
    Ok(Some(s.to_owned()))
}

pub(super) fn path(key: &str, v: Option<&Text>) -> R<PathBuf> {
    match v {
        Some(t) if !t.as_str().is_empty() => Ok(PathBuf::from(t.as_str())),
        _ => Err(ConfigError::value(key, "is required")),
    }
}

/// Shortest `http.limits.bodytimeout` (other than 0s): a shorter one would cut off clients on
/// any ordinary network hiccup.
const MIN_BODY_TIMEOUT: Duration = Duration::from_secs(1);

fn limits(l: &file::HttpLimits) -> R<LimitSettings> {
    let d = LimitSettings::default();
    let body_timeout = l.bodytimeout.map_or(d.body_timeout, |t| t.0);
    if !body_timeout.is_zero() && body_timeout < MIN_BODY_TIMEOUT {
        return Err(ConfigError::value(
            "http.limits.bodytimeout",
            "must be 0s (no limit) or at least 1s",
        ));
    }
    let rate_key = "http.limits.bodyminrate";
    let body_min_rate = small(rate_key, l.bodyminrate.map_or(d.body_min_rate, |c| c.0))?;
    let max = |k: &str, c: Option<super::de::Count>| c.map(|c| small(k, c.0)).transpose();
    Ok(LimitSettings {
        body_min_rate: u64::from(body_min_rate),
        body_timeout,
        connections_per_client: max("http.limits.connectionsperclient", l.connectionsperclient)?
            .unwrap_or(d.connections_per_client),
        max_connections: max("http.limits.maxconnections", l.maxconnections)?,
    })
}

fn tls(t: &file::Tls) -> R<TlsSettings> {
    let min_version = match t.minimumtls.as_ref().map(Text::as_str) {
        None | Some("tls1.2") => TlsVersion::Tls12,
        Some("tls1.3") => TlsVersion::Tls13,
        Some(other) => {
            return Err(ConfigError::value(
                "http.tls.minimumtls",
                format!("{other:?} is not supported; use tls1.2 or tls1.3"),
            ))
        }
    };
    Ok(TlsSettings {
        certificate: path("http.tls.certificate", t.certificate.as_ref())?,
        key: path("http.tls.key", t.key.as_ref())?,
        client_cas: t
            .clientcas
            .iter()
            .map(|c| PathBuf::from(c.as_str()))
            .collect(),
        min_version,
    })
}

fn headers(
    key: &str,
    h: &std::collections::BTreeMap<String, Vec<Text>>,
) -> R<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (name, values) in h {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(ConfigError::value(
                &format!("{key}.{name}"),
                "invalid header name",
            ));
        }
        for v in values {
            if http::HeaderValue::from_str(v.as_str()).is_err() {
                return Err(ConfigError::value(
                    &format!("{key}.{name}"),
                    "invalid header value",
                ));
            }
            out.push((name.clone(), v.0.clone()));
        }
    }
    Ok(out)
}

fn debug(d: Option<&file::Debug>) -> R<Option<DebugSettings>> {
    let Some(d) = d else { return Ok(None) };
    let Some(a) = &d.addr else { return Ok(None) };
    let path = d.prometheus.path.as_str();
    if !path.starts_with('/') {
        return Err(ConfigError::value(
            "http.debug.prometheus.path",
            "must start with /",
        ));
    }
    Ok(Some(DebugSettings {
        addr: addr("http.debug.addr", a.as_str())?,
        metrics_path: d.prometheus.enabled.0.then(|| path.to_owned()),
    }))
}

fn log(l: &file::Log) -> R<LogSettings> {
    let level = l
        .level
        .as_ref()
        .map_or("info", Text::as_str)
        .to_ascii_lowercase();
    let level = match level.as_str() {
        "error" | "warn" | "info" | "debug" | "trace" => level,
        "warning" => "warn".into(),
        "fatal" | "panic" => "error".into(),
        other => {
            return Err(ConfigError::value(
                "log.level",
                format!("{other:?} is not one of error, warn, info, debug"),
            ))
        }
    };
    let json = match l.formatter.as_ref().map_or("text", Text::as_str) {
        "text" => false,
        "json" | "logstash" => true,
        other => {
            return Err(ConfigError::value(
                "log.formatter",
                format!("{other:?} is not one of text, json, logstash"),
            ))
        }
    };
    Ok(LogSettings {
        level,
        json,
        fields: l
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect(),
        access_log: !l.accesslog.disabled.0,
    })
}

fn storage(s: &file::Storage) -> R<StorageSettings> {
    match (&s.filesystem, &s.s3) {
        (Some(_), Some(_)) => Err(ConfigError::value(
            "storage",
            "configure one driver: filesystem or s3, not both",
        )),
        (_, Some(s3)) => s3_settings(s3).map(|o| StorageSettings::S3(Box::new(o))),
        (fs, None) => {
            let root = fs.as_ref().and_then(|f| f.rootdirectory.as_ref());
            Ok(StorageSettings::Filesystem {
                root: PathBuf::from(root.map_or("./data", Text::as_str)),
            })
        }
    }
}

/// `storage.s3` as the storage crate's own [`S3Options`]: the keys are copied here, and every
/// rule on their values lives in [`S3Options::validate`] (reported under its key). Only the
/// region rule is registry:2's configuration rule: required for AWS, defaulted for S3-compatible
/// endpoints. The environment is added at startup ([`S3Options::with_environment`]).
fn s3_settings(s: &file::S3) -> R<S3Options> {
    let text = |v: &Option<Text>| v.as_ref().map(|t| t.0.clone()).filter(|t| !t.is_empty());
    let mut o = S3Options::new(text(&s.bucket).unwrap_or_default());
    o.region = match (text(&s.region), text(&s.regionendpoint)) {
        (Some(r), _) => Some(r),
        (None, Some(_)) => Some(berth_storage::s3::DEFAULT_REGION.to_owned()),
        (None, None) if o.bucket.is_empty() => None,
        (None, None) => {
            return Err(ConfigError::value(
                "storage.s3.region",
                "is required unless regionendpoint is set",
            ))
        }
    };
    o.access_key = text(&s.accesskey);
    o.secret_key = text(&s.secretkey);
    o.region_endpoint = text(&s.regionendpoint);
    o.root_directory = text(&s.rootdirectory).unwrap_or_default();
    o.force_path_style = s.forcepathstyle.is_some_and(|f| f.0);
    o.secure = s.secure.is_none_or(|f| f.0);
    o.skip_verify = s.skipverify.is_some_and(|f| f.0);
    o.v4auth = s.v4auth.is_none_or(|f| f.0);
    if let Some(c) = s.chunksize {
        o.chunk_size = c.0;
    }
    if let Some(t) = &s.requesttimeout {
        o.request_timeout = t.0;
    }
    o.validate()
        .map_err(|e| ConfigError::value(e.key, e.message))?;
    Ok(o)
}

fn database(d: &file::Database, s: &StorageSettings, w: &mut Vec<Warning>) -> R<DatabaseSettings> {
    let pool_size = small("database.poolsize", d.poolsize.map_or(16, |c| c.0))?;
    if pool_size == 0 {
        return Err(ConfigError::value(
            "database.poolsize",
            "must be at least 1",
        ));
    }
    let url = d.url.as_ref().map(Text::as_str).filter(|u| !u.is_empty());
    match url {
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
            Ok(DatabaseSettings::Postgres {
                url: u.to_owned(),
                pool_size,
            })
        }
        Some(u) => match u.strip_prefix("sqlite://") {
            Some(p) if !p.is_empty() => Ok(DatabaseSettings::Sqlite { path: p.into() }),
            _ => Err(ConfigError::value(
                "database.url",
                "use postgres://user:password@host:5432/db or sqlite:///path/to/file.sqlite",
            )),
        },
        None => {
            let root = match s {
                StorageSettings::Filesystem { root } => root.clone(),
                StorageSettings::S3(_) => {
                    w.push(Warning {
                        key: "database.url".into(),
                        message: "not set with S3 storage: metadata is embedded in ./data/berth-meta.sqlite, so only one replica may run".into(),
                    });
                    PathBuf::from("./data")
                }
            };
            Ok(DatabaseSettings::Sqlite {
                path: root.join(META_DB),
            })
        }
    }
}

fn purging(p: &file::UploadPurging) -> R<Option<PurgeSettings>> {
    if !p.enabled.0 {
        return Ok(None);
    }
    Ok(Some(PurgeSettings {
        age: positive("storage.maintenance.uploadpurging.age", p.age.0)?,
        interval: positive("storage.maintenance.uploadpurging.interval", p.interval.0)?,
        dry_run: p.dryrun.0,
    }))
}

fn endpoint(i: usize, e: &file::Endpoint) -> R<EndpointConfig> {
    let key = |k: &str| format!("notifications.endpoints[{i}].{k}");
    let url = e.url.as_str();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ConfigError::value(
            &key("url"),
            format!("{url:?} is not an http(s) URL"),
        ));
    }
    let name = if e.name.as_str().is_empty() {
        url
    } else {
        e.name.as_str()
    };
    let mut ignored_media_types: Vec<String> =
        e.ignoredmediatypes.iter().map(|t| t.0.clone()).collect();
    ignored_media_types.extend(e.ignore.mediatypes.iter().map(|t| t.0.clone()));
    let ignored_actions = e
        .ignore
        .actions
        .iter()
        .map(|t| t.0.clone())
        .collect::<Vec<_>>();
    if let Some(a) = ignored_actions.iter().find(|a| Action::parse(a).is_none()) {
        return Err(ConfigError::value(
            &key("ignore.actions"),
            format!("{a:?} is not push, pull, delete or mount"),
        ));
    }
    Ok(EndpointConfig {
        name: name.to_owned(),
        url: url.to_owned(),
        headers: headers(&key("headers"), &e.headers)?,
        timeout: positive(
            &key("timeout"),
            e.timeout.map_or(Duration::from_secs(1), |d| d.0),
        )?,
        threshold: small(&key("threshold"), e.threshold.map_or(10, |c| c.0))?.max(1),
        backoff: positive(
            &key("backoff"),
            e.backoff.map_or(Duration::from_secs(1), |d| d.0),
        )?,
        ignored_media_types,
        ignored_actions,
    })
}

pub(super) fn positive(key: &str, d: Duration) -> R<Duration> {
    if d.is_zero() {
        return Err(ConfigError::value(key, "must be greater than zero"));
    }
    Ok(d)
}

pub(super) fn small(key: &str, n: u64) -> R<u32> {
    u32::try_from(n).map_err(|_| ConfigError::value(key, format!("{n} is too large")))
}
