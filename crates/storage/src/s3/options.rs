//! [`S3Options`]: registry:2's `storage.s3` keys, and how they become an object_store client.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::{BackoffConfig, Certificate, ClientOptions, RetryConfig};

/// S3 requires every part of a multipart upload but the last to be at least 5 MiB.
pub const MIN_CHUNK_SIZE: u64 = 5 << 20;
/// registry:2's default `chunksize` (10 MiB).
pub const DEFAULT_CHUNK_SIZE: u64 = 10 << 20;
/// S3's largest part (5 GiB); a part is held in memory while it is sent, so keep it modest.
pub const MAX_CHUNK_SIZE: u64 = 5 << 30;
/// Default [`S3Options::request_timeout`]: how long a small request may take, retries included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Default [`S3Options::idle_timeout`]: how long a transfer may go without receiving a byte.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why [`S3Options::validate`] refused: the registry:2 configuration key and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidS3Option {
    /// Dotted configuration key (`storage.s3.chunksize`).
    pub key: &'static str,
    /// What is wrong with its value.
    pub message: String,
}

impl fmt::Display for InvalidS3Option {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for InvalidS3Option {}

/// Environment variables that supply credentials when `accesskey`/`secretkey` are not set, as the
/// AWS SDKs read them (static keys, session token, web identity / IRSA, ECS and EKS pod identity).
/// The region when none is configured (registry:2's, and the AWS SDKs' fallback).
pub const DEFAULT_REGION: &str = "us-east-1";
/// The AWS variables [`S3Options::with_environment`] takes credentials from.
pub const CREDENTIAL_ENV: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_ENDPOINT_URL_STS",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
];

/// Configuration of the S3 backend, named after registry:2's `storage.s3` keys.
///
/// Keys registry:2 has and this backend does not use: `encrypt`, `keyid`, `storageclass`,
/// `objectacl`, `sessiontoken`, `useragent`, `usedualstack`, `accelerate`, `loglevel`,
/// `multipartcopy*` (a commit copies the upload's `chunksize` parts server-side, 8 at a time).
#[derive(Clone, PartialEq, Eq)]
pub struct S3Options {
    /// `accesskey`; with `secretkey`. When both are absent, credentials come from the
    /// environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, web
    /// identity, container credentials), then from the EC2 instance metadata service.
    pub access_key: Option<String>,
    /// `secretkey`.
    pub secret_key: Option<String>,
    /// `region`; [`DEFAULT_REGION`] when absent ([`S3Options::with_environment`] fills it from
    /// `AWS_REGION` / `AWS_DEFAULT_REGION`).
    pub region: Option<String>,
    /// `regionendpoint`: the endpoint of an S3-compatible service (`http://minio:9000`). A
    /// missing scheme means `https` (or `http` when `secure` is false). Absent: AWS.
    pub region_endpoint: Option<String>,
    /// `bucket` (must exist).
    pub bucket: String,
    /// `rootdirectory`: a key prefix under which everything is stored.
    pub root_directory: String,
    /// `forcepathstyle`: `endpoint/bucket/key` instead of `bucket.endpoint/key`.
    pub force_path_style: bool,
    /// `secure`: HTTPS for endpoints given without a scheme (and for AWS). Default true.
    pub secure: bool,
    /// `v4auth`: registry:2's switch for AWS Signature V4. Only V4 is implemented: `false` is
    /// refused for AWS endpoints (as registry:2 does) and otherwise logged and ignored.
    pub v4auth: bool,
    /// `chunksize`: the multipart part size in bytes, at least 5 MiB (default 10 MiB). Each
    /// upload request holds at most one part in memory.
    pub chunk_size: u64,
    /// `skipverify`: accept any TLS certificate from the endpoint.
    pub skip_verify: bool,
    /// Extra trusted CA certificates (PEM bundle), as the AWS CLI's `AWS_CA_BUNDLE`; they add to
    /// the system roots and only matter for HTTPS endpoints.
    pub ca_bundle: Option<PathBuf>,
    /// Credential settings from the environment ([`CREDENTIAL_ENV`] names and values), used
    /// when `access_key` is absent; filled by [`S3Options::with_environment`].
    pub env_credentials: Vec<(String, String)>,
    /// How many times a failed request is retried (connection errors, 5xx, throttling).
    pub max_retries: usize,
    /// Give up retrying a request after this long.
    pub retry_timeout: Duration,
    /// `requesttimeout` (a Berth key): the whole time, retries included, that a small request
    /// may take: `HEAD`, `DELETE`, listings, multipart create/abort/complete, `GET`s until their
    /// headers arrive, and `PUT`/`GET` of bodies up to 1 MiB (upload state, manifests). A
    /// stalled endpoint then fails the request with a timeout (503 `UNAVAILABLE`) in this long.
    /// Default 5 s.
    pub request_timeout: Duration,
    /// For transfers (blob bodies, part objects, `UploadPartCopy`): no limit on their whole
    /// time, but a response that delivers no byte for this long (and a request whose answer
    /// does not begin this long after it was sent) fails. Default 60 s.
    pub idle_timeout: Duration,
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Options")
            .field("access_key", &self.access_key)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field("region", &self.region)
            .field("region_endpoint", &self.region_endpoint)
            .field("bucket", &self.bucket)
            .field("root_directory", &self.root_directory)
            .field("force_path_style", &self.force_path_style)
            .field("secure", &self.secure)
            .field("chunk_size", &self.chunk_size)
            .field("skip_verify", &self.skip_verify)
            .field("ca_bundle", &self.ca_bundle)
            .field(
                "env_credentials",
                &self
                    .env_credentials
                    .iter()
                    .map(|(k, _)| k)
                    .collect::<Vec<_>>(),
            )
            .field("request_timeout", &self.request_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl S3Options {
    /// Defaults for `bucket`, as registry:2 has them. Nothing is read from the environment:
    /// the binary passes it in with [`S3Options::with_environment`].
    pub fn new(bucket: impl Into<String>) -> Self {
        S3Options {
            access_key: None,
            secret_key: None,
            region: None,
            region_endpoint: None,
            bucket: bucket.into(),
            root_directory: String::new(),
            force_path_style: false,
            secure: true,
            v4auth: true,
            chunk_size: DEFAULT_CHUNK_SIZE,
            skip_verify: false,
            ca_bundle: None,
            env_credentials: Vec::new(),
            max_retries: 3,
            retry_timeout: Duration::from_secs(20),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }

    /// The key prefix every key is stored under: empty, or `rootdirectory` without leading or
    /// trailing slashes, plus one `/`.
    pub(crate) fn key_prefix(&self) -> String {
        let root = self.root_directory.trim_matches('/');
        if root.is_empty() {
            String::new()
        } else {
            format!("{root}/")
        }
    }

    /// What the AWS SDKs (and so registry:2) take from the environment, looked up with
    /// `lookup` (the binary's `std::env::var`; this crate reads no environment itself):
    /// `AWS_CA_BUNDLE` when no bundle is set, `AWS_REGION` then `AWS_DEFAULT_REGION` when no
    /// region is set, and the [`CREDENTIAL_ENV`] variables for when `access_key` is absent.
    pub fn with_environment(mut self, lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |k: &str| lookup(k).filter(|v| !v.is_empty());
        if self.ca_bundle.is_none() {
            self.ca_bundle = get("AWS_CA_BUNDLE").map(PathBuf::from);
        }
        if self.region.as_deref().is_none_or(str::is_empty) {
            self.region = get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION"));
        }
        self.env_credentials = CREDENTIAL_ENV
            .iter()
            .filter_map(|name| get(name).map(|v| ((*name).to_string(), v)))
            .collect();
        self
    }

    pub(crate) fn region_or_default(&self) -> String {
        self.region
            .clone()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| DEFAULT_REGION.to_string())
    }

    /// Checks the values a misconfiguration would otherwise only reveal at the first request.
    /// This is the one place these rules live: the configuration loader reports its errors under
    /// their keys.
    pub fn validate(&self) -> Result<(), InvalidS3Option> {
        let bad = |key, message: String| Err(InvalidS3Option { key, message });
        if self.bucket.is_empty() {
            return bad("storage.s3.bucket", "is required".into());
        }
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return bad(
                "storage.s3.chunksize",
                format!(
                    "{} must be between {MIN_CHUNK_SIZE} (5 MiB) and {MAX_CHUNK_SIZE} (5 GiB)",
                    self.chunk_size
                ),
            );
        }
        if self.request_timeout.is_zero() {
            return bad(
                "storage.s3.requesttimeout",
                "must be more than zero, e.g. 5s".into(),
            );
        }
        if self.idle_timeout.is_zero() {
            return bad(
                "storage.s3",
                "the idle timeout must be more than zero".into(),
            );
        }
        if self.access_key.is_some() != self.secret_key.is_some() {
            return bad(
                "storage.s3.accesskey",
                "accesskey and secretkey must be set together".into(),
            );
        }
        if !self.v4auth {
            let aws = self
                .region_endpoint
                .as_deref()
                .is_none_or(|e| e.is_empty() || e.contains("amazonaws.com"));
            if aws {
                return bad(
                    "storage.s3.v4auth",
                    "signature v2 is not possible on Amazon S3; remove the key or set it to true"
                        .into(),
                );
            }
            tracing::warn!(
                "storage.s3.v4auth is false, but only Signature V4 is implemented; signing with V4"
            );
        }
        Ok(())
    }

    /// The URL of the bucket (`https://bucket.s3.region.amazonaws.com`,
    /// `http://minio:9000/bucket`, …): every object URL is this plus `/` and the encoded key.
    pub(crate) fn bucket_url(&self) -> Result<String, String> {
        let scheme = if self.secure { "https" } else { "http" };
        let endpoint = match self.region_endpoint.as_deref().filter(|e| !e.is_empty()) {
            Some(e) if e.contains("://") => e.trim_end_matches('/').to_string(),
            Some(e) => format!("{scheme}://{}", e.trim_end_matches('/')),
            None => format!("{scheme}://s3.{}.amazonaws.com", self.region_or_default()),
        };
        if self.force_path_style {
            return Ok(format!("{endpoint}/{}", self.bucket));
        }
        let (scheme, rest) = endpoint
            .split_once("://")
            .ok_or_else(|| format!("storage.s3.regionendpoint {endpoint:?} is not a URL"))?;
        Ok(format!("{scheme}://{}.{rest}", self.bucket))
    }

    /// HTTP client settings shared by the object_store client and the raw requests.
    pub(crate) fn client_options(&self, bucket_url: &str) -> Result<ClientOptions, String> {
        let mut opts = ClientOptions::new()
            .with_allow_http(bucket_url.starts_with("http://"))
            .with_allow_invalid_certificates(self.skip_verify)
            .with_connect_timeout(self.request_timeout.min(Duration::from_secs(5)))
            // no limit on a whole request here (a blob GET lasts as long as its client reads),
            // but a connection that stops delivering bytes is dropped; small requests get their
            // total limit (`request_timeout`) from the backend, around each call
            .with_timeout_disabled()
            .with_read_timeout(self.idle_timeout)
            .with_pool_idle_timeout(Duration::from_secs(30));
        if let (Some(path), true) = (&self.ca_bundle, bucket_url.starts_with("https://")) {
            let pem = std::fs::read(path)
                .map_err(|e| format!("reading the CA bundle {}: {e}", path.display()))?;
            let certs = Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("parsing the CA bundle {}: {e}", path.display()))?;
            for cert in certs {
                opts = opts.with_root_certificate(cert);
            }
        }
        Ok(opts)
    }

    pub(crate) fn retry_config(&self) -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: self.max_retries,
            retry_timeout: self.retry_timeout,
        }
    }

    /// The object_store client. The bucket URL is computed here and handed over as a
    /// "virtual-hosted" endpoint, which object_store uses verbatim, so both addressing styles
    /// and any endpoint behave the same for object_store and for the raw requests.
    pub(crate) fn build_store(&self, bucket_url: &str) -> Result<AmazonS3, String> {
        let mut b = AmazonS3Builder::new();
        if self.access_key.is_none() {
            for (name, value) in &self.env_credentials {
                let key = AmazonS3ConfigKey::from_str(&name.to_ascii_lowercase())
                    .map_err(|e| format!("{name}: {e}"))?;
                b = b.with_config(key, value);
            }
        }
        if let (Some(key), Some(secret)) = (&self.access_key, &self.secret_key) {
            b = b.with_access_key_id(key).with_secret_access_key(secret);
        }
        b.with_bucket_name(&self.bucket)
            .with_region(self.region_or_default())
            .with_endpoint(bucket_url)
            .with_virtual_hosted_style_request(true)
            .with_client_options(self.client_options(bucket_url)?)
            .with_retry(self.retry_config())
            .build()
            .map_err(|e| format!("S3 client: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(endpoint: Option<&str>) -> S3Options {
        let mut o = S3Options::new("reg");
        o.region = Some("eu-west-1".into());
        o.region_endpoint = endpoint.map(str::to_string);
        o
    }

    #[test]
    fn the_environment_comes_from_the_caller() {
        let vars = |k: &str| match k {
            "AWS_CA_BUNDLE" => Some("/etc/ca.pem".to_string()),
            "AWS_DEFAULT_REGION" => Some("eu-north-1".to_string()),
            "AWS_ACCESS_KEY_ID" => Some("AKID".to_string()),
            "AWS_SESSION_TOKEN" => Some(String::new()),
            _ => None,
        };
        let o = S3Options::new("reg").with_environment(vars);
        assert_eq!(o.ca_bundle, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(o.region_or_default(), "eu-north-1");
        assert_eq!(
            o.env_credentials,
            [("AWS_ACCESS_KEY_ID".to_string(), "AKID".to_string())],
            "empty values are ignored"
        );
        assert!(!format!("{o:?}").contains("AKID"), "values are not printed");
        let mut configured = opts(None);
        configured.ca_bundle = Some("/mine.pem".into());
        let configured = configured.with_environment(vars);
        assert_eq!(configured.region_or_default(), "eu-west-1", "config wins");
        assert_eq!(configured.ca_bundle, Some(PathBuf::from("/mine.pem")));
        assert_eq!(S3Options::new("reg").region_or_default(), DEFAULT_REGION);
    }

    #[test]
    fn bucket_urls_follow_registry2_rules() {
        let mut o = opts(None);
        assert_eq!(
            o.bucket_url().unwrap(),
            "https://reg.s3.eu-west-1.amazonaws.com"
        );
        o.force_path_style = true;
        assert_eq!(
            o.bucket_url().unwrap(),
            "https://s3.eu-west-1.amazonaws.com/reg"
        );
        let mut o = opts(Some("http://127.0.0.1:8333/"));
        o.force_path_style = true;
        assert_eq!(o.bucket_url().unwrap(), "http://127.0.0.1:8333/reg");
        let mut o = opts(Some("minio.example.com:9000"));
        assert_eq!(
            o.bucket_url().unwrap(),
            "https://reg.minio.example.com:9000"
        );
        o.secure = false;
        assert_eq!(o.bucket_url().unwrap(), "http://reg.minio.example.com:9000");
    }

    #[test]
    fn root_directory_becomes_a_clean_prefix() {
        let mut o = opts(None);
        assert_eq!(o.key_prefix(), "");
        o.root_directory = "/s3/object/name/prefix/".into();
        assert_eq!(o.key_prefix(), "s3/object/name/prefix/");
        o.root_directory = "/".into();
        assert_eq!(o.key_prefix(), "");
    }

    #[test]
    fn validation() {
        assert!(opts(None).validate().is_ok());
        let mut o = opts(None);
        o.chunk_size = MIN_CHUNK_SIZE - 1;
        assert_eq!(o.validate().unwrap_err().key, "storage.s3.chunksize");
        let mut o = opts(None);
        o.access_key = Some("k".into());
        assert!(o.validate().is_err());
        let mut o = opts(None);
        o.request_timeout = Duration::ZERO;
        assert_eq!(o.validate().unwrap_err().key, "storage.s3.requesttimeout");
        let mut o = opts(None);
        o.v4auth = false;
        assert_eq!(
            o.validate().unwrap_err().key,
            "storage.s3.v4auth",
            "no V2 signatures on AWS"
        );
        let mut o = opts(Some("http://ceph:7480"));
        o.v4auth = false;
        assert!(o.validate().is_ok());
        assert!(S3Options::new("").validate().is_err());
    }

    #[test]
    fn debug_redacts_the_secret() {
        let mut o = opts(None);
        o.secret_key = Some("hunter2".into());
        assert!(!format!("{o:?}").contains("hunter2"));
    }
}
