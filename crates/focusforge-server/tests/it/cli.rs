use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use focusforge_auth::{KeyMaterial, Verifier};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const BIN: &str = env!("CARGO_BIN_EXE_focusforge");

fn focusforge(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run focusforge")
}

/// Arguments, environment, and what the error line must mention.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn bad_configuration_exits_non_zero_with_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8 path");
    let cases: &[Case] = &[
        (
            &["serve", "--data-dir", data, "--listen", "nowhere"],
            &[],
            "listen",
        ),
        (
            &["serve", "--data-dir", data, "--services", "tasks,chess"],
            &[],
            "chess",
        ),
        (
            &["serve", "--data-dir", data],
            &[("FOCUSFORGE_LOG_FORMAT", "xml")],
            "log_format",
        ),
        (
            &["serve", "--data-dir", data],
            &[("FOCUSFORGE_JWT_SECRET", "short")],
            "jwt_secret",
        ),
        (
            &["serve", "--data-dir", data],
            &[("FOCUSFORGE_MONGODB_URI", "postgres://db:5432")],
            "mongodb uri",
        ),
        (
            &["serve", "--data-dir", data],
            &[("FOCUSFORGE_REDIS_URL", "cache:6379")],
            "redis url",
        ),
        (
            &["serve", "--config", "/nonexistent/focusforge.toml"],
            &[],
            "cannot read config file",
        ),
    ];
    for (args, env, expected) in cases {
        let out = focusforge(args, env);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
        assert!(
            stderr.contains(expected),
            "{stderr:?} should mention {expected}"
        );
        assert!(
            std::fs::read_dir(dir.path()).expect("dir").next().is_none(),
            "nothing started"
        );
    }
}

#[test]
fn token_prints_a_jwt_signed_with_the_data_dirs_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8 path");
    let out = focusforge(
        &[
            "token",
            "--user",
            "alice",
            "--data-dir",
            data,
            "--ttl",
            "10m",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let token = stdout.trim();
    assert_eq!(stdout.lines().count(), 1);
    assert_eq!(token.split('.').count(), 3, "a bare JWT");
    let secret = focusforge_auth::load_or_create_dev_secret(dir.path()).expect("dev secret");
    let verifier = Verifier::new(&KeyMaterial::Hs256(secret), None).expect("verifier");
    assert_eq!(verifier.verify(token).expect("valid").as_str(), "alice");

    let other = tempfile::tempdir().expect("tempdir");
    let other_secret = focusforge_auth::load_or_create_dev_secret(other.path()).expect("secret");
    let other_verifier = Verifier::new(&KeyMaterial::Hs256(other_secret), None).expect("verifier");
    assert!(
        other_verifier.verify(token).is_err(),
        "each data dir has its own secret"
    );
}

#[tokio::test]
async fn serve_starts_reports_health_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8 path");
    let child = Command::new(BIN)
        .args(["serve", "--data-dir", data, "--listen", "127.0.0.1:0"])
        // Every line must stay JSON, warnings included.
        .env("FOCUSFORGE_LOG_FORMAT", "json")
        .env("FOCUSFORGE_NOT_A_SETTING", "1")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut child = KillOnDrop(Some(child));
    let stderr = child
        .0
        .as_mut()
        .and_then(|c| c.stderr.take())
        .expect("stderr");
    // Stop reading the log once the address is found: a closed log pipe must
    // not break serving.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut warned = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let v: serde_json::Value = serde_json::from_str(&line).expect("json log line");
            if v["level"] == "WARN" {
                let message = v["message"].as_str().unwrap_or_default();
                warned |= message.contains("FOCUSFORGE_NOT_A_SETTING");
            }
            if v["message"] == "focusforge is serving" {
                let _ = tx.send((v["addr"].as_str().expect("addr field").to_owned(), warned));
                return;
            }
        }
    });
    let (addr, warned) =
        tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
            .await
            .expect("join")
            .expect("the server logs its address");
    assert!(
        warned,
        "an unknown FOCUSFORGE_ variable is warned about, as JSON"
    );

    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}")).expect("uri");
    let mut health = HealthClient::new(channel.connect().await.expect("connect"));
    for service in [
        "",
        "focusforge.tasks.v1.TaskService",
        "focusforge.users.v1.UserService",
    ] {
        let res = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("check");
        assert_eq!(res.into_inner().status, 1, "{service:?} is SERVING");
    }
    assert!(
        dir.path().join("auth/dev-secret").exists(),
        "a dev secret was generated"
    );
    assert!(
        dir.path().join(focusforge_server::STORE_FILE).exists(),
        "state lives in the data dir"
    );

    let mut child = child.0.take().expect("child");
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = tokio::time::timeout(
        Duration::from_secs(15),
        tokio::task::spawn_blocking(move || child.wait()),
    )
    .await
    .expect("exits after SIGTERM")
    .expect("join")
    .expect("wait");
    assert!(status.success(), "{status:?}");
}

struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_runs_plans_made_elsewhere_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8 path");
    // An API process with no workers of its own: it only plans.
    let mut config = focusforge_server::Config {
        data_dir: dir.path().to_owned(),
        ..focusforge_server::Config::default()
    };
    config.jobs.workers = 0;
    let backends = focusforge_server::Backends::open(&config)
        .await
        .expect("backends");
    let child = Command::new(BIN)
        .args(["worker", "--data-dir", data, "--concurrency", "2"])
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the worker");
    let mut child = KillOnDrop(Some(child));

    let alice = focusforge_core::UserId::parse("alice").expect("user");
    let mut create = focusforge_planner::ActionSpec::new(
        "create",
        focusforge_planner::ActionType::TaskManagement,
    );
    create.params = serde_json::json!({"op": "create", "title": "Made by the worker"});
    let plan = backends
        .planner
        .create(&alice, "worker", vec![create])
        .await
        .expect("plan");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let done = loop {
        let p = backends.planner.get(&alice, &plan.id).await.expect("get");
        if p.done {
            break p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker process never ran the plan"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let action = done.plan.get("create").expect("action");
    assert_eq!(action.status, focusforge_planner::Status::Succeeded);
    let (jobs, _) = backends
        .jobs
        .list(&alice, &focusforge_jobs::JobFilter::default(), 10, None)
        .await
        .expect("jobs");
    assert!(
        jobs.iter().any(|j| j
            .worker
            .as_deref()
            .is_some_and(|w| w.ends_with(&child.0.as_ref().expect("child").id().to_string()))),
        "the worker process ran it: {jobs:?}"
    );

    let mut child = child.0.take().expect("child");
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::task::spawn_blocking(move || child.wait()),
    )
    .await
    .expect("exits after SIGTERM")
    .expect("join")
    .expect("wait");
    assert!(status.success(), "{status:?}");
}
