//! JSON log lines that carry the request id and trace id of the request
//! they were logged for, found on the nearest span that has them.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The ids a span names, kept in its extensions.
#[derive(Default, Clone)]
struct Ids {
    request_id: Option<String>,
    trace_id: Option<String>,
    method: Option<String>,
}

impl Visit for Ids {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "request_id" => self.request_id = Some(value.to_owned()),
            "trace_id" => self.trace_id = Some(value.to_owned()),
            "method" => self.method = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if matches!(field.name(), "request_id" | "trace_id" | "method") {
            self.record_str(field, format!("{value:?}").trim_matches('"'));
        }
    }
}

thread_local! {
    /// The ids of the spans this thread is in, innermost last. Spans are
    /// entered around each poll of their future, so while an event is
    /// logged the last entry is the request it is logged for, whatever the
    /// log filter let through.
    static ENTERED: std::cell::RefCell<Vec<(Id, Ids)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Keeps each span's `request_id` and `trace_id` where the formatter finds
/// them, including values recorded after the span was made.
pub(crate) struct RequestFields;

impl<S> tracing_subscriber::Layer<S> for RequestFields
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut ids = Ids::default();
        attrs.record(&mut ids);
        if (ids.request_id.is_some() || ids.trace_id.is_some())
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut().insert(ids);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        let mut ids = ext.get_mut::<Ids>().cloned().unwrap_or_default();
        values.record(&mut ids);
        if ids.request_id.is_some() || ids.trace_id.is_some() {
            ENTERED.with(|e| {
                for (entered, kept) in e.borrow_mut().iter_mut() {
                    if entered == id {
                        *kept = ids.clone();
                    }
                }
            });
            ext.replace(ids);
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if let Some(ids) = span.extensions().get::<Ids>() {
            let ids = ids.clone();
            ENTERED.with(|e| e.borrow_mut().push((id.clone(), ids)));
        }
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        ENTERED.with(|e| {
            let mut e = e.borrow_mut();
            if let Some(at) = e.iter().rposition(|(entered, _)| entered == id) {
                e.remove(at);
            }
        });
    }
}

/// The event's own fields as JSON values.
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::from(format!("{value:?}")));
    }
}

/// One JSON object per line: `timestamp`, `level`, `target`, the event's
/// fields (`message` among them), `span` (the innermost span's name) and
/// `request_id` / `trace_id` when the event was logged for a request.
pub(crate) struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert("timestamp".into(), Value::from(now_rfc3339()));
        line.insert("level".into(), Value::from(meta.level().as_str()));
        line.insert("target".into(), Value::from(meta.target()));
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        for (k, v) in fields.0 {
            line.entry(k).or_insert(v);
        }
        if let Some(span) = ctx.event_scope().and_then(|mut s| s.next()) {
            line.insert("span".into(), Value::from(span.name()));
        }
        let ids = ENTERED.with(|e| e.borrow().last().map(|(_, ids)| ids.clone()));
        if let Some(ids) = ids {
            if let Some(id) = ids.request_id {
                line.insert("request_id".into(), Value::from(id));
            }
            if let Some(id) = ids.trace_id {
                line.insert("trace_id".into(), Value::from(id));
            }
            if let Some(method) = ids.method {
                line.entry("method").or_insert(Value::from(method));
            }
        }
        let text = serde_json::to_string(&Value::Object(line)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Now as RFC 3339 in UTC with microseconds.
fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_rfc3339() {
        let t = super::now_rfc3339();
        assert_eq!(t.len(), 27, "{t}");
        assert!(
            t.starts_with("20") && t.ends_with('Z') && t.as_bytes()[10] == b'T',
            "{t}"
        );
    }
}
