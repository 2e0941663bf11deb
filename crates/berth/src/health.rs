//! Health: `/healthz` (the process answers), `/readyz` (storage and metadata reachable now) and
//! registry:2's `/debug/health` (the periodic storage check, `{}` when healthy).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_api::ApiError;
use berth_meta::MetaStore;
use berth_oci::ErrorCode;
use berth_storage::{layout, Backend};
use serde_json::json;

use crate::config::HealthSettings;

/// How long one readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/debug/health` says while the periodic check fails; the cause is in the server log.
const STORAGE_FAILING: &str = "storage unreachable (the cause is in the server log)";

/// Shared health state.
#[derive(Clone)]
pub struct Health {
    storage: Arc<dyn Backend>,
    meta: Arc<dyn MetaStore>,
    /// registry:2's check name, e.g. `storagedriver_filesystem`.
    check_name: String,
    /// Whether the periodic check has failed `threshold` times in a row (and not passed since).
    failing: Arc<AtomicBool>,
}

impl Health {
    /// Health over these components; `driver` is `filesystem` or `s3`.
    pub fn new(storage: Arc<dyn Backend>, meta: Arc<dyn MetaStore>, driver: &str) -> Self {
        Health {
            storage,
            meta,
            check_name: format!("storagedriver_{driver}"),
            failing: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Probes storage; the error is for the log, never for a response body.
    async fn storage_ok(&self) -> Result<(), String> {
        let probe = layout::health_probe();
        match tokio::time::timeout(PROBE_TIMEOUT, self.storage.stat(&probe)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
        }
    }

    /// Pings the metadata store; the error is for the log, never for a response body.
    async fn meta_ok(&self) -> Result<(), String> {
        match tokio::time::timeout(PROBE_TIMEOUT, self.meta.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
        }
    }

    /// `GET /healthz`.
    pub async fn live(&self) -> Response {
        (StatusCode::OK, Json(json!({"status": "ok"}))).into_response()
    }

    /// `GET /readyz`: 200, or 503 with OCI error JSON naming which component failed (`ok` or
    /// `unreachable` each); the errors themselves are logged, not sent.
    pub async fn ready(&self) -> Response {
        let (storage, meta) = tokio::join!(self.storage_ok(), self.meta_ok());
        if storage.is_ok() && meta.is_ok() {
            return (StatusCode::OK, Json(json!({"status": "ready"}))).into_response();
        }
        tracing::warn!(
            storage = storage.as_ref().err().map_or("ok", String::as_str),
            metadata = meta.as_ref().err().map_or("ok", String::as_str),
            "not ready"
        );
        let state = |r: &Result<(), String>| if r.is_ok() { "ok" } else { "unreachable" };
        ApiError::msg(
            ErrorCode::Unavailable,
            "storage or metadata database unreachable",
        )
        .detail(json!({"storage": state(&storage), "metadata": state(&meta)}))
        .into_response()
    }

    /// `GET /debug/health` in registry:2's shape (`{}`, or `{"<check>": "<message>"}` with 503);
    /// registry:2 monitors read this shape, so it is not OCI error JSON.
    pub async fn debug(&self) -> Response {
        if self.failing.load(Ordering::Relaxed) {
            let body = json!({ self.check_name.clone(): STORAGE_FAILING });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        } else {
            (StatusCode::OK, Json(json!({}))).into_response()
        }
    }

    /// Runs the periodic storage check until the runtime stops.
    pub fn spawn_checker(&self, s: &HealthSettings) {
        if !s.enabled {
            return;
        }
        let (me, interval, threshold) = (self.clone(), s.interval, s.threshold);
        tokio::spawn(async move {
            let mut failures = 0u32;
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                match me.storage_ok().await {
                    Ok(()) => failures = 0,
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        if failures == threshold.max(1) {
                            tracing::warn!(error = %e, failures, "storage health check failing");
                        }
                    }
                }
                let failing = failures >= threshold.max(1);
                if failures > 0 && !failing {
                    continue;
                }
                if me.failing.swap(failing, Ordering::Relaxed) && !failing {
                    tracing::info!("storage health check passes again");
                }
                metrics::gauge!("berth_storage_healthy").set(if failing { 0.0 } else { 1.0 });
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_meta::sqlite::SqliteStore;
    use berth_storage::fs::FsBackend;

    async fn body(resp: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn readyz_names_the_failed_component_without_its_error() {
        let dir = tempfile::tempdir().unwrap();
        // The probe key is a symlink to itself: stat fails with ELOOP, an internal detail.
        let probe = dir.path().join("berth/v1/health/probe");
        std::fs::create_dir_all(probe.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&probe, &probe).unwrap();
        let storage = Arc::new(FsBackend::new(dir.path()).unwrap());
        let meta = Arc::new(SqliteStore::open_temporary().unwrap());
        let h = Health::new(storage, meta, "filesystem");

        let resp = h.ready().await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let v = body(resp).await;
        assert_eq!(
            v,
            json!({"errors": [{
                "code": "UNAVAILABLE",
                "message": "storage or metadata database unreachable",
                "detail": {"storage": "unreachable", "metadata": "ok"},
            }]})
        );

        std::fs::remove_file(&probe).unwrap();
        let resp = h.ready().await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(body(resp).await, json!({"status": "ready"}));
    }

    #[tokio::test]
    async fn debug_health_keeps_registry2_shape_without_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(FsBackend::new(dir.path()).unwrap());
        let meta = Arc::new(SqliteStore::open_temporary().unwrap());
        let h = Health::new(storage, meta, "filesystem");
        let resp = h.debug().await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(body(resp).await, json!({}));

        h.failing.store(true, Ordering::Relaxed);
        let resp = h.debug().await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body(resp).await,
            json!({"storagedriver_filesystem": STORAGE_FAILING})
        );
    }
}
