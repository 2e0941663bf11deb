//! Log output: text or JSON lines, with registry:2's `log.fields` on every line.
//!
//! A small formatter of our own rather than tracing-subscriber's `json` feature: `log.fields` are
//! operator-chosen names that tracing's static field sets cannot carry, and registry:2 users'
//! log pipelines expect flat objects (`time`, `level`, `msg`, fields) rather than nested spans.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogSettings;

/// Installs the global subscriber. `BERTH_LOG` (a tracing filter) overrides `log.level`.
pub fn init(log: &LogSettings) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log.level));
    let format = LineFormat {
        json: log.json,
        fields: log.fields.clone(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal() && !log.json)
        .with_writer(std::io::stderr)
        .event_format(format)
        .init();
}

/// One line per event.
struct LineFormat {
    json: bool,
    fields: Vec<(String, String)>,
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut v = Collect::default();
        event.record(&mut v);
        let meta = event.metadata();
        let time = humantime::format_rfc3339_micros(SystemTime::now());
        let level = meta.level().as_str().to_ascii_lowercase();
        if self.json {
            let mut map = serde_json::Map::new();
            map.insert("time".into(), time.to_string().into());
            map.insert("level".into(), level.into());
            map.insert("target".into(), meta.target().into());
            map.insert("msg".into(), v.message.into());
            for (k, val) in &self.fields {
                map.insert(k.clone(), val.clone().into());
            }
            for (k, val) in v.fields {
                map.insert(k, val);
            }
            let line = serde_json::to_string(&map).map_err(|_| fmt::Error)?;
            writeln!(w, "{line}")
        } else {
            let mut line = format!(
                "{time} {:>5} {}: {}",
                meta.level(),
                meta.target(),
                v.message
            );
            for (k, val) in &self.fields {
                let _ = write!(line, " {k}={val}");
            }
            for (k, val) in v.fields {
                match val {
                    serde_json::Value::String(s) => {
                        let _ = write!(line, " {k}={s}");
                    }
                    other => {
                        let _ = write!(line, " {k}={other}");
                    }
                }
            }
            writeln!(w, "{line}")
        }
    }
}

/// The message and the fields of one event.
#[derive(Default)]
struct Collect {
    message: String,
    fields: Vec<(String, serde_json::Value)>,
}

impl Visit for Collect {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.fields.push((field.name().into(), text.into()));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.into();
        } else {
            self.fields.push((field.name().into(), value.into()));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.push((field.name().into(), value.into()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.push((field.name().into(), value.into()));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.fields.push((field.name().into(), value.into()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.push((field.name().into(), value.into()));
    }
}
