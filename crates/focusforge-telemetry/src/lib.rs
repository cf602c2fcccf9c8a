//! Logging and tracing set-up. Every request runs inside the gateway's `rpc`
//! span, which carries the request id and the trace id, so each line logged
//! while serving it names both. Spans are OpenTelemetry spans: the gateway
//! adopts an incoming W3C `traceparent`, every call to another process
//! carries one, and with an OTLP endpoint configured the spans are exported
//! there, so one request is one trace across the mesh.

mod json;

use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines, for terminals.
    Human,
    /// One JSON object per line, with the request id and trace id of the
    /// request it was logged for, for collectors.
    Json,
}

/// Where spans go.
#[derive(Debug, Clone, Default)]
pub struct Traces {
    /// An OTLP/gRPC collector, e.g. `http://otel-collector:4317`; `None`
    /// keeps spans in the process (their ids still reach logs and upstreams).
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of this process's spans.
    pub service_name: String,
}

/// Flushes exported spans when dropped (at shutdown).
pub struct Guard(Option<SdkTracerProvider>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global subscriber, writing to stderr. `filter` uses the
/// `RUST_LOG` syntax (`info`, `focusforge_gateway=debug,info`); `RUST_LOG`
/// itself wins when set. Calling it twice keeps the first subscriber.
pub fn init(format: LogFormat, filter: &str) {
    std::mem::forget(init_with(format, filter, &Traces::default()));
}

/// [`init`], with spans exported as `traces` says. An OTLP exporter must be
/// set up inside a Tokio runtime; the guard flushes it.
pub fn init_with(format: LogFormat, filter: &str, traces: &Traces) -> Guard {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(with_quiet_dependencies(filter)));
    let mut builder = SdkTracerProvider::builder().with_resource(
        opentelemetry_sdk::Resource::builder()
            .with_service_name(if traces.service_name.is_empty() {
                "focusforge".to_owned()
            } else {
                traces.service_name.clone()
            })
            .build(),
    );
    let mut exporting = false;
    if let Some(endpoint) = &traces.otlp_endpoint {
        use opentelemetry_otlp::WithExportConfig;
        match opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .with_timeout(Duration::from_secs(5))
            .build()
        {
            Ok(exporter) => {
                let processor = opentelemetry_sdk::trace::BatchSpanProcessor::builder(exporter)
                    .with_batch_config(
                        opentelemetry_sdk::trace::BatchConfigBuilder::default()
                            .with_scheduled_delay(Duration::from_secs(1))
                            .with_max_queue_size(8192)
                            .build(),
                    )
                    .build();
                builder = builder.with_span_processor(processor);
                exporting = true;
            }
            Err(e) => eprintln!("focusforge: traces are not exported: {e}"),
        }
    }
    let provider = builder.build();
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("focusforge"))
        .with_tracked_inactivity(false);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // Spans of FocusForge's own code become OpenTelemetry spans whatever the
    // log level, so a quiet log still has whole traces; events do not.
    let ours = || {
        tracing_subscriber::filter::filter_fn(|m| {
            m.is_span()
                && m.target().starts_with("focusforge")
                && *m.level() <= tracing::Level::INFO
        })
    };
    let registry = tracing_subscriber::registry()
        .with(otel.with_filter(ours()))
        .with(json::RequestFields.with_filter(ours()));
    // A closed log pipe must not take requests down: the fallback report of
    // a failed write is an `eprintln!`, which panics on a closed stderr.
    let installed = match format {
        LogFormat::Human => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_target(false)
                    // Colours only on a terminal: a log file or collector
                    // gets plain text that `grep grpc_status=5` finds.
                    .with_ansi(ansi)
                    .log_internal_errors(false)
                    .with_filter(filter),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .event_format(json::JsonLines)
                    .log_internal_errors(false)
                    .with_filter(filter),
            )
            .try_init(),
    };
    if installed.is_err() {
        return Guard(None);
    }
    Guard(exporting.then_some(provider))
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeadersMut<'a>(&'a mut http::HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Makes `span` (a request's first span in this process) a child of the
/// caller's span named by a W3C `traceparent` header, when there is a valid
/// one, and records its trace id in the span's `trace_id` field.
pub fn adopt_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    let id = span.context().span().span_context().trace_id();
    if id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(id));
    }
}

/// Writes the current span's `traceparent` into the headers of a call to
/// another process, replacing any there (a client's own is only adopted at
/// the gateway, as the parent).
pub fn inject_current(headers: &mut http::HeaderMap) {
    headers.remove("traceparent");
    headers.remove("tracestate");
    let cx = tracing::Span::current().context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut HeadersMut(headers));
    }
}

/// Lance reports every dataset load, write, file and plan as an INFO event
/// of its own (a load that finds no table yet reads `status="error"`):
/// trace material, kept at WARN unless the filter names Lance itself.
const QUIET: &[&str] = &[
    "lance::dataset_events=warn",
    "lance::file_audit=warn",
    "lance::io_events=warn",
    "lance::execution=warn",
];

fn with_quiet_dependencies(filter: &str) -> String {
    if filter.contains("lance") {
        return filter.to_owned();
    }
    std::iter::once(filter)
        .chain(QUIET.iter().copied())
        .filter(|d| !d.is_empty())
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether `filter` is a valid directive string.
pub fn valid_filter(filter: &str) -> bool {
    EnvFilter::try_new(filter).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lance_event_streams_are_quiet_unless_asked_for() {
        let f = with_quiet_dependencies("info");
        assert!(f.starts_with("info,lance::dataset_events=warn"));
        assert!(valid_filter(&f));
        assert_eq!(
            with_quiet_dependencies("lance=debug,info"),
            "lance=debug,info"
        );
    }
}
