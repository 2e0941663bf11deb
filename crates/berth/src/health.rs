//! Health: `/healthz` (the process answers), `/readyz` (storage and metadata reachable now) and
//! registry:2's `/debug/health` (the periodic storage check, `{}` when healthy).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_meta::MetaStore;
use berth_storage::{layout, Backend};
use serde_json::json;

use crate::config::HealthSettings;

/// How long one readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Shared health state.
#[derive(Clone)]
pub struct Health {
    storage: Arc<dyn Backend>,
    meta: Arc<dyn MetaStore>,
    /// registry:2's check name, e.g. `storagedriver_filesystem`.
    check_name: String,
    /// Failure message of the periodic check once it crossed the threshold.
    failing: Arc<RwLock<Option<String>>>,
}

impl Health {
    /// Health over these components; `driver` is `filesystem` or `s3`.
    pub fn new(storage: Arc<dyn Backend>, meta: Arc<dyn MetaStore>, driver: &str) -> Self {
        Health {
            storage,
            meta,
            check_name: format!("storagedriver_{driver}"),
            failing: Arc::new(RwLock::new(None)),
        }
    }

    async fn storage_ok(&self) -> Result<(), String> {
        let probe = layout::health_probe();
        match tokio::time::timeout(PROBE_TIMEOUT, self.storage.stat(&probe)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
        }
    }

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

    /// `GET /readyz`: 200, or 503 with OCI error JSON naming what failed.
    pub async fn ready(&self) -> Response {
        let (storage, meta) = tokio::join!(self.storage_ok(), self.meta_ok());
        if storage.is_ok() && meta.is_ok() {
            return (StatusCode::OK, Json(json!({"status": "ready"}))).into_response();
        }
        let detail = json!({
            "storage": storage.err().unwrap_or_else(|| "ok".into()),
            "metadata": meta.err().unwrap_or_else(|| "ok".into()),
        });
        tracing::warn!(%detail, "not ready");
        let body = json!({"errors": [{
            "code": "UNAVAILABLE",
            "message": "storage or metadata database unreachable",
            "detail": detail,
        }]});
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }

    /// `GET /debug/health` in registry:2's shape.
    pub async fn debug(&self) -> Response {
        let failing = self
            .failing
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match failing {
            None => (StatusCode::OK, Json(json!({}))).into_response(),
            Some(msg) => {
                let body = json!({ self.check_name.clone(): msg });
                (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
            }
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
                let result = me.storage_ok().await;
                failures = if result.is_ok() { 0 } else { failures + 1 };
                let state = match result {
                    Err(e) if failures >= threshold => Some(e),
                    _ if failures == 0 => None,
                    _ => continue,
                };
                metrics::gauge!("berth_storage_healthy").set(if state.is_none() {
                    1.0
                } else {
                    0.0
                });
                *me.failing
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = state;
            }
        });
    }
}
