//! Logging and tracing set-up. Every request runs inside the gateway's `rpc`
//! span, which carries the request id, so each line logged while serving it
//! names the request.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines, for terminals.
    Human,
    /// One JSON object per line, with the current span's fields, for collectors.
    Json,
}

/// Installs the global subscriber, writing to stderr. `filter` uses the
/// `RUST_LOG` syntax (`info`, `focusforge_gateway=debug,info`); `RUST_LOG`
/// itself wins when set. Calling it twice keeps the first subscriber.
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(with_quiet_dependencies(filter)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_span_events(FmtSpan::NONE)
        // Colours only on a terminal: a log file or collector gets plain
        // text that `grep grpc_status=5` finds.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A closed log pipe must not take requests down: the fallback report
        // of a failed write is an `eprintln!`, which panics on a closed stderr.
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Human => builder.with_target(false).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
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
