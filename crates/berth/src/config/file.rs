//! The config file as written: registry:2's `config.yml` (version 0.1) keys, plus Berth's own
//! sections (`database`, `metrics`).
//!
//! Every struct here mirrors a YAML mapping key for key; nothing is validated beyond types.
//! [`super::Settings`] turns this into checked settings. Keys of registry:2 that Berth does not
//! implement are deliberately absent: serde reports them as ignored and the loader warns, naming
//! each one. The JSON Schema in `docs/config.schema.json` is generated from these types.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::de::{Count, Flag, GoDuration, Text};

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct ConfigFile {
    /// Config format version; registry:2 uses `0.1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Text>,
    /// Logging.
    pub log: Log,
    /// Where blobs live and storage maintenance.
    pub storage: Storage,
    /// The HTTP listener.
    pub http: Http,
    /// Authentication (registry:2: exactly one of htpasswd or token).
    pub auth: Auth,
    /// Webhooks.
    pub notifications: Notifications,
    /// Health checks behind `/debug/health`.
    pub health: Health,
    /// Berth: the metadata database (embedded SQLite unless a PostgreSQL URL is given).
    pub database: Database,
    /// Berth: Prometheus metrics on the main port.
    pub metrics: MetricsSection,
    /// Berth: access policy for authenticated and anonymous callers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
}

/// `metrics` (Berth).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct MetricsSection {
    /// Serve `/metrics` on the main listener too (registry:2 serves them only on
    /// `http.debug.addr`, which stays the recommended place).
    pub enabled: Flag,
}

/// `log`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Log {
    /// `error`, `warn`, `info` (default) or `debug`; `BERTH_LOG` (a tracing filter) wins when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<Text>,
    /// `text` (default) or `json`; registry:2's `logstash` is read as `json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub formatter: Option<Text>,
    /// Static fields added to every log line.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, Text>,
    /// Access log switch.
    pub accesslog: AccessLog,
}

/// `log.accesslog`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct AccessLog {
    /// No per-request access lines when true.
    pub disabled: Flag,
}

/// `storage`: one driver section plus the driver-independent sections.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Storage {
    /// Local disk (default: `./data`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<Filesystem>,
    /// S3-compatible object storage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3>,
    /// Deletion of manifests and blobs through the API.
    pub delete: Enabled,
    /// Redirects of blob downloads to the storage backend.
    pub redirect: Redirect,
    /// Background maintenance.
    pub maintenance: Maintenance,
}

/// `storage.filesystem`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Filesystem {
    /// Root directory of blobs, uploads and the embedded database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rootdirectory: Option<Text>,
    /// registry:2's cap on concurrent filesystem calls (min 25); Berth sizes its own pool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maxthreads: Option<Count>,
}

/// `storage.s3` with registry:2's keys.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct S3 {
    /// Access key; the AWS environment/credential chain is used when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accesskey: Option<Text>,
    /// Secret key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secretkey: Option<Text>,
    /// Region, e.g. `us-east-1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<Text>,
    /// Endpoint URL for S3-compatible services (MinIO, SeaweedFS, Ceph).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regionendpoint: Option<Text>,
    /// Bucket name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<Text>,
    /// Key prefix inside the bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rootdirectory: Option<Text>,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most non-AWS services.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forcepathstyle: Option<Flag>,
    /// HTTPS to the endpoint when no scheme is given (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secure: Option<Flag>,
    /// Skip TLS verification of the endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipverify: Option<Flag>,
    /// Signature v4 (default true; v2 is not supported).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub v4auth: Option<Flag>,
    /// Multipart part size in bytes (minimum 5 MiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunksize: Option<Count>,
    /// Berth: total time a small request (HEAD, DELETE, list, upload state, manifest-sized
    /// bodies) may take, retries included, before it fails with 503 (default `5s`); blob
    /// transfers fail only when they stall.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requesttimeout: Option<GoDuration>,
}

/// A section with a single `enabled` switch.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Enabled {
    /// The switch.
    pub enabled: Flag,
}

/// `storage.redirect`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Redirect {
    /// Serve blob bytes through the registry instead of redirecting to the backend.
    pub disable: Flag,
}

/// `storage.maintenance`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Maintenance {
    /// Removal of abandoned upload sessions.
    pub uploadpurging: UploadPurging,
}

/// `storage.maintenance.uploadpurging` (registry:2 defaults: on, 168h, every 24h).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct UploadPurging {
    /// Purge sessions at all.
    pub enabled: Flag,
    /// Sessions idle longer than this are removed.
    pub age: GoDuration,
    /// How often to look.
    pub interval: GoDuration,
    /// Log what would be removed without removing it.
    pub dryrun: Flag,
}

impl Default for UploadPurging {
    fn default() -> Self {
        UploadPurging {
            enabled: Flag(true),
            age: GoDuration::secs(168 * 3600),
            interval: GoDuration::secs(24 * 3600),
            dryrun: Flag(false),
        }
    }
}

/// `http`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Http {
    /// Listen address: `:5000` (all interfaces), `127.0.0.1:5000`, `[::1]:5000`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<Text>,
    /// `tcp` (default); `unix` sockets are not supported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net: Option<Text>,
    /// Path prefix when served below a sub-path, e.g. `/registry/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<Text>,
    /// External base URL (`https://registry.example.com`) used in webhook events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<Text>,
    /// registry:2 signs upload state with it; Berth keeps upload state server-side and needs none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<Text>,
    /// Locations are always relative in Berth; accepted for compatibility.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relativeurls: Option<Flag>,
    /// How long in-flight requests may run after SIGTERM (default 30s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub draintimeout: Option<GoDuration>,
    /// HTTPS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// Extra response headers, e.g. `X-Content-Type-Options: [nosniff]`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Vec<Text>>,
    /// The debug/metrics listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debug: Option<Debug>,
    /// Berth: proxies (addresses or CIDR networks) whose `X-Forwarded-For` and
    /// `X-Forwarded-Proto` headers are believed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trustedproxies: Vec<Text>,
    /// Berth: limits on slow request bodies and on open connections.
    pub limits: HttpLimits,
}

/// `http.limits` (Berth).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct HttpLimits {
    /// Bytes per second a request body must average while the server waits for it, measured
    /// over `bodytimeout` (default 1024; 0: only require that something arrives each period).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bodyminrate: Option<Count>,
    /// The period of that measurement; a body that brings nothing for this long fails too
    /// (default 30s; 0s: no limit on request bodies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bodytimeout: Option<GoDuration>,
    /// Open connections per client address, IPv6 per /64; trusted proxies are exempt
    /// (default 256; 0: unlimited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connectionsperclient: Option<Count>,
    /// Open connections per listener (default: from the descriptor limit; 0: unlimited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maxconnections: Option<Count>,
}

/// `http.tls`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<Text>,
    /// PEM private key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<Text>,
    /// CA bundles for client-certificate authentication.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub clientcas: Vec<Text>,
    /// `tls1.2` (default) or `tls1.3`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimumtls: Option<Text>,
}

/// `http.debug`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Debug {
    /// Listen address of the debug server (metrics, health).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<Text>,
    /// Prometheus exposition.
    pub prometheus: Prometheus,
}

/// `http.debug.prometheus`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Prometheus {
    /// Serve metrics (default true when `http.debug.addr` is set).
    pub enabled: Flag,
    /// Metrics path (default `/metrics`).
    pub path: Text,
}

impl Default for Prometheus {
    fn default() -> Self {
        Prometheus {
            enabled: Flag(true),
            path: "/metrics".into(),
        }
    }
}

/// `auth`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Auth {
    /// Basic authentication from an htpasswd file (bcrypt entries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub htpasswd: Option<Htpasswd>,
    /// Bearer tokens from an external token server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Token>,
    /// Berth: its own token endpoint (`/auth/token`) signing short-lived bearer tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<Issuer>,
    /// Berth: robot accounts (`robot$<name>` logins), managed with `berth robot`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub robots: Option<RobotsFile>,
    /// Berth: limits on failed logins.
    pub limits: LoginLimits,
}

/// `auth.issuer` (Berth's own token endpoint).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Issuer {
    /// PEM signing key (P-256 or RSA); a P-256 key is generated there when missing. Default:
    /// `token-signing-key.pem` next to the embedded metadata database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<Text>,
    /// `iss` claim (default `berth`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<Text>,
    /// `aud` claim and challenge `service` (default `berth-registry`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<Text>,
    /// Token lifetime (default 5m).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<GoDuration>,
    /// Longest session a login with `offline_token=true` starts (refresh tokens; default 30d,
    /// `0s` turns refresh tokens off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessionlifetime: Option<GoDuration>,
    /// Fixed realm URL; default: the request's scheme and host plus `/auth/token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realm: Option<Text>,
}

/// `auth.robots`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RobotsFile {
    /// The robots YAML file (re-read when it changes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<Text>,
}

/// `auth.limits`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct LoginLimits {
    /// Failed logins per client address per window before 429 (default 10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clientfailures: Option<Count>,
    /// Failed logins per user name per window before 429 (default 50).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userfailures: Option<Count>,
    /// The window (default 1m).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<GoDuration>,
}

/// `policy` (Berth): who may pull, push and delete where. Default deny once present.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Policy {
    /// Users with every action on every repository.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub admins: Vec<Text>,
    /// Group name to member user names.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, Vec<Text>>,
    /// What callers without credentials may do.
    pub anonymous: AnonymousAccess,
    /// Grants.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
}

/// `policy.anonymous`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct AnonymousAccess {
    /// Repository patterns anyone may pull (`public/**`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pull: Vec<Text>,
}

/// `policy.rules[]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Rule {
    /// User names; `*` is every htpasswd user.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<Text>,
    /// Groups from `policy.groups`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Text>,
    /// Robot names without the `robot$` prefix; `*` is every robot.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub robots: Vec<Text>,
    /// Repository patterns: `team-a/*` (one level), `team-a/**` (any depth), `**`.
    pub repositories: Vec<Text>,
    /// `pull`, `push`, `delete`.
    pub actions: Vec<Text>,
}

/// `auth.htpasswd`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Htpasswd {
    /// Realm in the `WWW-Authenticate` challenge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realm: Option<Text>,
    /// Path of the htpasswd file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<Text>,
}

/// `auth.token` (registry:2's external token server mode).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Token {
    /// Token endpoint clients are sent to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realm: Option<Text>,
    /// Service name (token audience).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<Text>,
    /// Expected token issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<Text>,
    /// PEM bundle of certificates whose keys may sign tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rootcertbundle: Option<Text>,
    /// Redirect `/v2/` challenges to the realm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autoredirect: Option<Flag>,
}

/// `notifications`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Notifications {
    /// Event options.
    pub events: Events,
    /// Webhook receivers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<Endpoint>,
}

/// `notifications.events`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Events {
    /// Include manifest references in events (accepted; Berth sends the target only).
    pub includereferences: Flag,
}

/// One `notifications.endpoints[]` entry.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Endpoint {
    /// Name used in logs and metrics.
    pub name: Text,
    /// Skip this endpoint.
    pub disabled: Flag,
    /// Receiver URL.
    pub url: Text,
    /// Headers sent with each request.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Vec<Text>>,
    /// Per-request timeout (default 1s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<GoDuration>,
    /// Failures before backing off (default 10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<Count>,
    /// Wait after failures (default 1s, doubling up to 5 minutes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff: Option<GoDuration>,
    /// Events whose target has one of these media types are not sent (old spelling).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignoredmediatypes: Vec<Text>,
    /// Events to skip by media type or action.
    pub ignore: Ignore,
}

/// `notifications.endpoints[].ignore`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Ignore {
    /// Media types to skip.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mediatypes: Vec<Text>,
    /// Actions to skip (`push`, `pull`, `delete`, `mount`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Text>,
}

/// `health`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Health {
    /// Periodic storage check.
    pub storagedriver: StorageCheck,
}

/// `health.storagedriver` (registry:2 defaults: on, every 10s, threshold 3).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct StorageCheck {
    /// Check at all.
    pub enabled: Flag,
    /// Interval between checks.
    pub interval: GoDuration,
    /// Consecutive failures before reporting unhealthy.
    pub threshold: Count,
}

impl Default for StorageCheck {
    fn default() -> Self {
        StorageCheck {
            enabled: Flag(true),
            interval: GoDuration::secs(10),
            threshold: Count(3),
        }
    }
}

/// `database` (Berth).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Database {
    /// `postgres://user:pass@host/db` for PostgreSQL, or `sqlite:///path/file.sqlite`.
    /// Absent: embedded SQLite at `<storage root>/berth-meta.sqlite` (or `./data/` with S3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Text>,
    /// Connection pool size (PostgreSQL; default 16).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poolsize: Option<Count>,
}
