use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use focusforge_server::{Config, Overrides};
use focusforge_telemetry::LogFormat;

/// FocusForge: an AI productivity backend served over gRPC and gRPC-web.
#[derive(Parser)]
#[command(name = "focusforge", version)]
struct Cli {
    /// A TOML configuration file (also FOCUSFORGE_CONFIG).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs services and the gateway in one process (the embedded default:
    /// all state under the data directory, no external server needed).
    Serve {
        /// Where state lives.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The gateway's address (native gRPC and gRPC-web on one port).
        #[arg(long)]
        listen: Option<String>,
        /// Comma-separated services to run, e.g. `tasks,users`.
        #[arg(long)]
        services: Option<String>,
        /// The built web app to serve at `/` (default `./web/dist`).
        #[arg(long)]
        web_dir: Option<PathBuf>,
    },
    /// Runs only the gateway, routing to the upstreams of the configuration.
    Gateway {
        #[arg(long)]
        listen: Option<String>,
        /// The built web app to serve at `/` (default `./web/dist`).
        #[arg(long)]
        web_dir: Option<PathBuf>,
    },
    /// Runs background job workers only (no gateway), on the configured
    /// queue and store: scale job processing apart from the API.
    Worker {
        /// Where state lives (the embedded queue and store, when no Redis
        /// or MongoDB is configured).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Jobs run at once (default: `[jobs] workers`, at least 1).
        #[arg(long)]
        concurrency: Option<usize>,
    },
    /// Serves the MCP tools over stdin/stdout for one user (for desktop
    /// assistants and other local MCP clients). Runs the services in this
    /// process, or uses a running FocusForge with `--server`.
    Mcp {
        /// The user the tools act for.
        #[arg(long)]
        user: String,
        /// Where state lives, when the services run in this process.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// A running FocusForge to call instead, e.g. http://127.0.0.1:8080
        /// (it must accept tokens signed with this configuration's key).
        #[arg(long)]
        server: Option<String>,
    },
    /// Asks a running FocusForge for its gRPC health (grpc.health.v1):
    /// exits 0 when it is serving, 1 when not (for `helm test` and
    /// container health checks).
    Health {
        /// The server, e.g. http://127.0.0.1:8080.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        /// One service's health (e.g. focusforge.tasks.v1.TaskService);
        /// empty: the whole server.
        #[arg(long, default_value = "")]
        service: String,
        /// How long to wait for the answer: e.g. 10s, 1m.
        #[arg(long, default_value = "10s")]
        timeout: String,
    },
    /// Prints a bearer token for a user (the bare JWT on stdout).
    Token {
        /// The user id (the token's subject).
        #[arg(long)]
        user: String,
        /// Where the embedded default keeps its dev secret.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// How long the token is valid: e.g. 3600s, 90m, 24h, 7d.
        #[arg(long, default_value = "24h")]
        ttl: String,
    },
}

fn parse_ttl(raw: &str) -> Option<Duration> {
    let unit_at = raw.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = raw.split_at(unit_at);
    let n: u64 = n.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("focusforge: cannot start the runtime: {e}");
            ExitCode::from(1)
        })
}

/// One health check, printed as the server answered it.
fn health(server: &str, service: &str, timeout: Duration) -> ExitCode {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let check = async {
        let channel = tonic::transport::Endpoint::from_shared(server.to_owned())
            .map_err(|e| format!("bad --server {server:?}: {e}"))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect()
            .await
            .map_err(|e| format!("cannot reach {server}: {e}"))?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .map_err(|e| format!("{server}: {} {}", e.code(), e.message()))?;
        Ok::<_, String>(answer.into_inner().status())
    };
    match runtime.block_on(check) {
        Ok(ServingStatus::Serving) => {
            println!("SERVING");
            ExitCode::SUCCESS
        }
        Ok(other) => {
            println!("{}", other.as_str_name());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("focusforge: {e}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let mut flags = Overrides::default();
    match &cli.command {
        Command::Serve {
            data_dir,
            listen,
            services,
            web_dir,
        } => {
            flags.data_dir.clone_from(data_dir);
            flags.listen.clone_from(listen);
            flags.services.clone_from(services);
            flags.web_dir.clone_from(web_dir);
        }
        Command::Gateway { listen, web_dir } => {
            flags.listen.clone_from(listen);
            flags.web_dir.clone_from(web_dir);
            flags.services = Some(String::new());
        }
        Command::Health {
            server,
            service,
            timeout,
        } => {
            let Some(timeout) = parse_ttl(timeout) else {
                eprintln!("focusforge: --timeout must look like 10s or 1m");
                return ExitCode::from(2);
            };
            return health(server, service, timeout);
        }
        Command::Token { data_dir, .. }
        | Command::Worker { data_dir, .. }
        | Command::Mcp { data_dir, .. } => {
            flags.data_dir.clone_from(data_dir);
        }
    }
    let config = match Config::load(cli.config.as_deref(), &env, &flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("focusforge: configuration error: {e}");
            return ExitCode::from(2);
        }
    };

    if let Command::Token { user, ttl, .. } = &cli.command {
        let Some(ttl) = parse_ttl(ttl) else {
            eprintln!("focusforge: --ttl must look like 3600s, 90m, 24h or 7d");
            return ExitCode::from(2);
        };
        return match focusforge_server::mint_token(&config, user, ttl) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("focusforge: {e:#}");
                ExitCode::from(1)
            }
        };
    }

    let format = if config.log_format == "json" {
        LogFormat::Json
    } else {
        LogFormat::Human
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    // The span exporter's connection lives on the runtime.
    let traces = focusforge_telemetry::Traces {
        otlp_endpoint: (!config.otlp_endpoint.is_empty()).then(|| config.otlp_endpoint.clone()),
        service_name: config.trace_service_name(),
    };
    let telemetry = {
        let _entered = runtime.enter();
        focusforge_telemetry::init_with(format, &config.log_level, &traces)
    };
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let work = async {
        match &cli.command {
            Command::Worker { concurrency, .. } => {
                let workers = concurrency.unwrap_or(config.jobs.workers).max(1);
                run_worker(config, workers).await
            }
            Command::Mcp { user, server, .. } => run_mcp(config, user, server.as_deref()).await,
            _ => run(config).await,
        }
    };
    let result = runtime.block_on(work);
    {
        // Spans still queued are sent before the process ends.
        let _entered = runtime.enter();
        drop(telemetry);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("focusforge: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let addr = config.listen_addr()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let mut running = focusforge_server::start(&config, listener).await?;
    tokio::select! {
        () = shutdown_signal() => {
            tracing::info!("shutting down");
            running.shutdown().await;
        }
        () = running.wait() => {}
    }
    Ok(())
}

async fn run_worker(config: Config, workers: usize) -> anyhow::Result<()> {
    let backends = focusforge_server::Backends::open(&config).await?;
    let worker = focusforge_server::start_worker(&config, &backends, workers).await?;
    tracing::info!(
        queue = backends.jobs.queue().backend(),
        concurrency = workers,
        "focusforge worker is running"
    );
    shutdown_signal().await;
    tracing::info!("stopping: finishing running jobs");
    worker.shutdown(focusforge_server::WORKER_GRACE).await;
    Ok(())
}

/// MCP over stdio: stdout carries only the protocol; logs go to stderr.
async fn run_mcp(config: Config, user: &str, server: Option<&str>) -> anyhow::Result<()> {
    let token = focusforge_server::mint_token(&config, user, Duration::from_secs(30 * 86_400))?;
    let caller = focusforge_mcp::Caller::with_token(
        focusforge_auth::Principal {
            user: focusforge_core::UserId::parse(user)
                .map_err(|_| anyhow::anyhow!("bad user id {user:?}"))?,
            acting: None,
        },
        token,
    );
    let (addr, running) = match server {
        Some(url) => (url.trim_end_matches('/').to_owned(), None),
        None => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let running = focusforge_server::start(&config, listener).await?;
            (format!("http://{}", running.local_addr), Some(running))
        }
    };
    let registry = focusforge_server::mcp_registry(&config, &addr)?;
    tracing::info!(user = %caller.user, "serving MCP on stdio");
    let served = focusforge_mcp::McpServer::for_caller(registry, caller)
        .serve_stdio()
        .await;
    if let Some(running) = running {
        running.shutdown().await;
    }
    served.map_err(Into::into)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_parse() {
        assert_eq!(parse_ttl("90m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_ttl("24h"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_ttl("0s"), None);
        assert_eq!(parse_ttl("h"), None);
        assert_eq!(parse_ttl("10"), None);
        assert_eq!(parse_ttl("10y"), None);
    }
}
