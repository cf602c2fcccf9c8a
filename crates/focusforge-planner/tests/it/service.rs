//! The planner service over a real SQLite store, the embedded job queue
//! and the tasks domain.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use focusforge_core::{Clock, Error, ManualClock, RetryPolicy, SystemClock, UserId};
use focusforge_jobs::{EmbeddedQueue, Handlers, JobFilter, JobState, Jobs, Worker, WorkerSettings};
use focusforge_planner::{
    ADVANCE_JOB, ActionFilter, ActionSpec, ActionType, Executor, Limits, PLANS, Planner,
    PlannerSettings, Priority, Status, TaskExecutor,
};
use focusforge_store::{Precondition, SharedStore, SqliteStore};
use focusforge_tasks::Tasks;
use serde_json::{Value, json};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 9, 0, 0)
        .single()
        .expect("time")
}

fn user(name: &str) -> UserId {
    UserId::parse(name).expect("user")
}

struct Env {
    store: SharedStore,
    jobs: Jobs,
    tasks: Tasks,
    _dir: Option<tempfile::TempDir>,
}

fn env(clock: Arc<dyn Clock>) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env = open(dir.path(), clock);
    env._dir = Some(dir);
    env
}

/// The store and queue files of one process, in `dir`.
fn open(dir: &std::path::Path, clock: Arc<dyn Clock>) -> Env {
    let store: SharedStore =
        Arc::new(SqliteStore::open(&dir.join("store.db"), clock.clone()).expect("store"));
    let queue = EmbeddedQueue::open(&dir.join("jobs.db")).expect("queue");
    Env {
        jobs: Jobs::new(Arc::new(queue), clock.clone()),
        tasks: Tasks::new(store.clone(), clock),
        store,
        _dir: None,
    }
}

fn planner(env: &Env, executor: Arc<dyn Executor>, limits: Limits) -> Planner {
    Planner::new(
        env.store.clone(),
        env.jobs.clone(),
        executor,
        env.jobs.clock().clone(),
        PlannerSettings {
            limits,
            action_timeout: Duration::from_secs(10),
        },
    )
}

fn task_action(key: &str, params: Value, deps: &[&str]) -> ActionSpec {
    let mut a = ActionSpec::new(key, ActionType::TaskManagement);
    a.params = params;
    a.depends_on = deps.iter().map(|d| d.to_string()).collect();
    a
}

fn field_of(e: Error) -> Vec<(String, String)> {
    match e {
        Error::InvalidArgument(v) => v.into_iter().map(|v| (v.field, v.description)).collect(),
        other => panic!("expected invalid argument, got {other:?}"),
    }
}

#[tokio::test]
async fn a_plan_runs_its_dag_through_the_task_executor() {
    let env = env(Arc::new(SystemClock));
    let p = planner(
        &env,
        Arc::new(TaskExecutor::new(env.tasks.clone())),
        Limits::default(),
    );
    let alice = user("alice");
    let plan = p
        .create(
            &alice,
            "write the report",
            vec![
                task_action(
                    "done",
                    json!({"op": "complete", "task_id": "${create.id}", "proof": "sent"}),
                    &["start"],
                ),
                task_action(
                    "start",
                    json!({"op": "start", "task_id": "${create.id}"}),
                    &["create"],
                ),
                task_action(
                    "create",
                    json!({"op": "create", "title": "Report", "priority": "high"}),
                    &[],
                ),
            ],
        )
        .await
        .expect("create");
    assert!(
        plan.plan
            .actions()
            .iter()
            .all(|a| a.status == Status::Pending)
    );

    let ran = p.execute_ready(&alice, None).await.expect("execute");
    let order: Vec<&str> = ran.iter().map(|a| a.action.spec.key.as_str()).collect();
    assert_eq!(order, ["create", "start", "done"]);
    assert!(
        ran.iter().all(|a| a.action.status == Status::Succeeded),
        "{ran:?}"
    );
    let task_id = ran[0].action.output.as_ref().expect("output")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let task = env.tasks.get(&alice, &task_id).await.expect("task");
    assert_eq!(task.status.as_str(), "completed");
    assert_eq!(task.completion_proof, "sent");
    let starts: Vec<_> = ran
        .iter()
        .map(|a| a.action.started_at.expect("started"))
        .collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]));
    let stored = p.get(&alice, &plan.id).await.expect("get");
    assert!(stored.done);
    // Nothing is left to run.
    assert!(
        p.execute_ready(&alice, None)
            .await
            .expect("execute")
            .is_empty()
    );
}

#[tokio::test]
async fn bad_plans_are_rejected_naming_the_actions() {
    let env = env(Arc::new(SystemClock));
    let p = planner(
        &env,
        Arc::new(TaskExecutor::new(env.tasks.clone())),
        Limits::default(),
    );
    let alice = user("alice");
    let op = json!({"op": "get", "task_id": "x"});
    let cycle = p
        .create(
            &alice,
            "",
            vec![
                task_action("a", op.clone(), &["c"]),
                task_action("b", op.clone(), &["a"]),
                task_action("c", op.clone(), &["b"]),
                task_action("d", op.clone(), &[]),
            ],
        )
        .await
        .expect_err("cycle");
    let v = field_of(cycle);
    assert_eq!(v[0].0, "actions");
    assert!(v[0].1.contains("a, b, c"), "{v:?}");

    let unknown = p
        .create(
            &alice,
            "",
            vec![task_action("a", op.clone(), &["ghost", "phantom"])],
        )
        .await
        .expect_err("unknown");
    assert_eq!(
        field_of(unknown),
        [(
            "actions[a].depends_on".to_owned(),
            "unknown actions: ghost, phantom".to_owned()
        )]
    );

    let dangling = p
        .create(
            &alice,
            "",
            vec![
                task_action("a", op.clone(), &[]),
                task_action("b", json!({"op": "start", "task_id": "${a.id}"}), &[]),
            ],
        )
        .await
        .expect_err("reference to a non-dependency");
    assert_eq!(field_of(dangling)[0].0, "actions[b].params");

    let mut bad_retry = task_action("a", op.clone(), &[]);
    bad_retry.retry.jitter = 2.0;
    assert_eq!(
        field_of(
            p.create(&alice, "", vec![bad_retry])
                .await
                .expect_err("retry")
        )[0]
        .0,
        "actions[a].retry.jitter"
    );
    assert_eq!(
        field_of(p.create(&alice, "", vec![]).await.expect_err("empty"))[0].0,
        "actions"
    );
    let (all, _) = p
        .list_actions(&alice, &ActionFilter::default(), 0, "")
        .await
        .expect("list");
    assert!(all.is_empty(), "nothing was stored");
}

/// Fails each action's first `fail` runs with `kind`, then succeeds;
/// tracks how many run at once.
struct Scripted {
    fail: u32,
    kind: &'static str,
    runs: Mutex<HashMap<String, u32>>,
    now: AtomicUsize,
    peak: AtomicUsize,
    pause: Duration,
}

impl Scripted {
    fn new(fail: u32, kind: &'static str) -> Self {
        Self {
            fail,
            kind,
            runs: Mutex::default(),
            now: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            pause: Duration::ZERO,
        }
    }
}

#[async_trait]
impl Executor for Scripted {
    async fn execute(&self, _: &UserId, action: &ActionSpec, _: Value) -> Result<Value, Error> {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(n, Ordering::SeqCst);
        tokio::time::sleep(self.pause).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        let run = {
            let mut runs = self.runs.lock().expect("lock");
            let r = runs.entry(action.key.clone()).or_default();
            *r += 1;
            *r
        };
        if run <= self.fail {
            return Err(match self.kind {
                "invalid_argument" => Error::invalid("x", "bad"),
                _ => Error::Unavailable(format!("run {run}")),
            });
        }
        Ok(json!({"run": run}))
    }
}

/// What an observer was told, in order.
#[derive(Default)]
struct Told(Mutex<Vec<(String, Status)>>);

#[async_trait]
impl focusforge_planner::ActionObserver for Told {
    async fn finished(&self, _: &UserId, _: &str, key: &str, status: Status) {
        self.0.lock().expect("lock").push((key.to_owned(), status));
    }
}

#[tokio::test]
async fn failures_back_off_on_the_clock_then_cancel_dependents() {
    let clock = ManualClock::new(t0());
    let env = env(Arc::new(clock.clone()));
    let exec = Arc::new(Scripted::new(5, "unavailable"));
    let p = planner(&env, exec.clone(), Limits::default());
    let told = Arc::new(Told::default());
    p.observe(told.clone());
    let alice = user("alice");
    let mut flaky = ActionSpec::new("flaky", ActionType::Notification);
    flaky.retry = RetryPolicy {
        max_attempts: 3,
        initial_delay: Duration::from_secs(10),
        multiplier: 2.0,
        max_delay: Duration::from_secs(60),
        jitter: 0.0,
        non_retryable: vec![],
    };
    let mut after = ActionSpec::new("after", ActionType::Notification);
    after.depends_on = vec!["flaky".into()];
    let plan = p
        .create(&alice, "", vec![flaky, after])
        .await
        .expect("create");

    let ran = p.execute_ready(&alice, None).await.expect("run");
    assert_eq!(ran.len(), 1);
    let a = &ran[0].action;
    assert_eq!((a.status, a.attempts), (Status::Pending, 1));
    assert_eq!(a.retry_at, Some(t0() + chrono::Duration::seconds(10)));
    assert!(
        a.last_error
            .as_deref()
            .expect("error")
            .starts_with("unavailable")
    );

    clock.advance(chrono::Duration::milliseconds(9_999));
    assert!(
        p.execute_ready(&alice, None).await.expect("run").is_empty(),
        "too early"
    );
    clock.advance(chrono::Duration::milliseconds(1));
    let ran = p.execute_ready(&alice, None).await.expect("run");
    assert_eq!(ran[0].action.attempts, 2);
    assert_eq!(
        ran[0].action.retry_at,
        Some(t0() + chrono::Duration::seconds(30)),
        "the second wait is twice the first"
    );
    clock.advance(chrono::Duration::seconds(20));
    let ran = p.execute_ready(&alice, None).await.expect("run");
    assert_eq!(ran[0].action.status, Status::Dead);
    let stored = p.get(&alice, &plan.id).await.expect("get");
    let after = stored.plan.get("after").expect("after");
    assert_eq!(after.status, Status::Cancelled);
    assert!(after.reason.as_deref().expect("reason").contains("flaky"));
    assert!(stored.done);
    // The observer heard of both ends: the death, and the cancellation it
    // caused; of the retries, nothing.
    assert_eq!(
        *told.0.lock().expect("lock"),
        vec![
            ("flaky".to_owned(), Status::Dead),
            ("after".to_owned(), Status::Cancelled)
        ]
    );

    // The advance jobs were queued for the retry times.
    let (jobs, _) = env
        .jobs
        .list(
            &alice,
            &JobFilter {
                kind: Some(ADVANCE_JOB.into()),
                states: vec![],
            },
            50,
            None,
        )
        .await
        .expect("jobs");
    let due: HashSet<_> = jobs.iter().map(|j| j.run_at).collect();
    assert!(
        due.contains(&(t0() + chrono::Duration::seconds(10))),
        "{due:?}"
    );
    assert!(
        due.contains(&(t0() + chrono::Duration::seconds(30))),
        "{due:?}"
    );
}

#[tokio::test]
async fn a_retried_create_of_a_plan_that_lost_its_first_run_schedules_it_again() {
    let clock = ManualClock::new(t0());
    let env = env(Arc::new(clock.clone()));
    let p = planner(&env, Arc::new(Scripted::new(0, "")), Limits::default());
    let alice = user("alice");
    let advances = || async {
        env.jobs
            .list(
                &alice,
                &JobFilter {
                    kind: Some(ADVANCE_JOB.into()),
                    states: vec![JobState::Queued],
                },
                50,
                None,
            )
            .await
            .expect("jobs")
            .0
    };
    let create = || {
        p.create_once(
            &alice,
            "",
            vec![ActionSpec::new("a", ActionType::Notification)],
            Some("req-1"),
        )
    };
    let first = create().await.expect("create");
    // The first run is lost (as when the process died between the insert
    // and the enqueue).
    let queued = advances().await;
    assert_eq!(queued.len(), 1);
    env.jobs
        .cancel(&alice, &queued[0].id)
        .await
        .expect("cancel");
    assert!(advances().await.is_empty());
    clock.advance(chrono::Duration::seconds(1));
    let again = create().await.expect("retry");
    assert_eq!(again.id, first.id, "the same plan");
    assert_eq!(
        advances().await.len(),
        1,
        "and its run is back in the queue"
    );
    // Once it ran, a retry leaves the queue alone.
    p.execute_ready(&alice, None).await.expect("run");
    let before = advances().await.len();
    create().await.expect("retry");
    assert_eq!(advances().await.len(), before);
}

#[tokio::test]
async fn non_retryable_failures_fail_at_once() {
    let env = env(Arc::new(SystemClock));
    let p = planner(
        &env,
        Arc::new(Scripted::new(1, "invalid_argument")),
        Limits::default(),
    );
    let alice = user("alice");
    p.create(&alice, "", vec![ActionSpec::new("a", ActionType::Memory)])
        .await
        .expect("create");
    let ran = p.execute_ready(&alice, None).await.expect("run");
    assert_eq!(
        (ran[0].action.status, ran[0].action.attempts),
        (Status::Failed, 1)
    );
}

#[tokio::test]
async fn cancellation_cascades_and_is_scoped_to_the_owner() {
    let env = env(Arc::new(SystemClock));
    let p = planner(&env, Arc::new(Scripted::new(0, "")), Limits::default());
    let alice = user("alice");
    let mut specs = vec![ActionSpec::new("root", ActionType::Memory)];
    for (k, d) in [("mid", "root"), ("leaf", "mid")] {
        let mut a = ActionSpec::new(k, ActionType::Memory);
        a.depends_on = vec![d.into()];
        specs.push(a);
    }
    specs.push(ActionSpec::new("other", ActionType::Memory));
    let plan = p.create(&alice, "", specs).await.expect("create");

    let bob = user("bob");
    assert!(matches!(
        p.get(&bob, &plan.id).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        p.cancel(&bob, &plan.id, Some("root"), "").await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        p.cancel(&alice, &plan.id, Some("ghost"), "").await,
        Err(Error::NotFound(_))
    ));
    let (after, cancelled) = p
        .cancel(&alice, &plan.id, Some("root"), "changed my mind")
        .await
        .expect("cancel");
    let mut cancelled = cancelled;
    cancelled.sort();
    assert_eq!(cancelled, ["leaf", "mid", "root"]);
    assert_eq!(
        after.plan.get("root").expect("root").reason.as_deref(),
        Some("changed my mind")
    );
    assert_eq!(
        after.plan.get("other").expect("other").status,
        Status::Pending
    );
    let ran = p.execute_ready(&alice, Some(&plan.id)).await.expect("run");
    assert_eq!(ran.len(), 1);
    assert_eq!(ran[0].action.spec.key, "other");
    assert!(p.execute_ready(&bob, None).await.expect("run").is_empty());
}

#[tokio::test]
async fn listing_pages_through_every_plan_with_filters() {
    let env = env(Arc::new(SystemClock));
    let p = planner(&env, Arc::new(Scripted::new(0, "")), Limits::default());
    let alice = user("alice");
    let mut expected = HashSet::new();
    for plan in 0..3 {
        let specs: Vec<ActionSpec> = (0..5)
            .map(|i| {
                let t = if i % 2 == 0 {
                    ActionType::Memory
                } else {
                    ActionType::Notification
                };
                ActionSpec::new(format!("p{plan}a{i}"), t)
            })
            .collect();
        let created = p
            .create(&alice, &format!("plan {plan}"), specs)
            .await
            .expect("create");
        for i in 0..5 {
            expected.insert((created.id.clone(), format!("p{plan}a{i}")));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    p.create(
        &user("bob"),
        "",
        vec![ActionSpec::new("bobs", ActionType::Memory)],
    )
    .await
    .expect("create");
    for size in [1, 4, 5, 7, 200] {
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let (page, next) = p
                .list_actions(&alice, &ActionFilter::default(), size, &token)
                .await
                .expect("list");
            assert!(page.len() <= size as usize);
            seen.extend(page.into_iter().map(|a| (a.plan_id, a.action.spec.key)));
            if next.is_empty() {
                break;
            }
            token = next;
        }
        assert_eq!(seen.len(), 15, "page size {size}: {seen:?}");
        assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), expected);
        assert!(seen[0].1.starts_with("p2"), "newest plan first");
    }
    let memory = ActionFilter {
        types: vec![ActionType::Memory],
        ..ActionFilter::default()
    };
    let (page, _) = p
        .list_actions(&alice, &memory, 200, "")
        .await
        .expect("list");
    assert_eq!(page.len(), 9);
    let (_, token) = p.list_actions(&alice, &memory, 2, "").await.expect("list");
    let err = p
        .list_actions(&alice, &ActionFilter::default(), 2, &token)
        .await
        .expect_err("a token of another query");
    assert_eq!(field_of(err)[0].0, "page_token");
    assert_eq!(
        field_of(
            p.list_actions(&alice, &memory, 500, "")
                .await
                .expect_err("size")
        )[0]
        .0,
        "page_size"
    );
}

#[tokio::test]
async fn limits_cap_actions_running_at_once() {
    let env = env(Arc::new(SystemClock));
    let mut exec = Scripted::new(0, "");
    exec.pause = Duration::from_millis(5);
    let exec = Arc::new(exec);
    let limits = Limits {
        global: 64,
        per_user: 3,
        per_type: HashMap::new(),
    };
    let p = planner(&env, exec.clone(), limits);
    let alice = user("alice");
    let specs: Vec<ActionSpec> = (0..20)
        .map(|i| {
            let mut a = ActionSpec::new(format!("a{i}"), ActionType::Memory);
            a.priority = if i == 19 {
                Priority::Critical
            } else {
                Priority::Background
            };
            a
        })
        .collect();
    p.create(&alice, "", specs).await.expect("create");
    let ran = p.execute_ready(&alice, None).await.expect("run");
    assert_eq!(ran.len(), 20);
    assert_eq!(ran[0].action.spec.key, "a19", "critical first");
    let peak = exec.peak.load(Ordering::SeqCst);
    assert!(peak <= 3, "per-user cap exceeded: {peak}");
    assert_eq!(peak, 3, "the cap is used");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_plans_from_the_store_and_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let alice = user("alice");
    let plan_id = {
        let env = open(dir.path(), Arc::new(SystemClock));
        let p = planner(
            &env,
            Arc::new(TaskExecutor::new(env.tasks.clone())),
            Limits::default(),
        );
        let mut later = task_action("later", json!({"op": "create", "title": "Later"}), &[]);
        later.not_before = Some(Utc::now() + chrono::Duration::milliseconds(1500));
        // The process stops before the action is due.
        p.create(&alice, "", vec![later]).await.expect("create").id
    };
    // A new process over the same files.
    let env = open(dir.path(), Arc::new(SystemClock));
    let tasks = env.tasks.clone();
    let p = planner(
        &env,
        Arc::new(TaskExecutor::new(tasks.clone())),
        Limits::default(),
    );
    let mut handlers = Handlers::new();
    handlers.register(ADVANCE_JOB, p.advance_handler());
    let worker = Worker::spawn(
        env.jobs.clone(),
        handlers,
        WorkerSettings {
            poll: Duration::from_millis(20),
            ..WorkerSettings::default()
        },
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let plan = p.get(&alice, &plan_id).await.expect("get");
        if plan.done {
            let a = plan.plan.get("later").expect("action");
            assert_eq!(a.status, Status::Succeeded);
            let started = a.started_at.expect("started");
            assert!(
                started >= a.spec.not_before.expect("not before"),
                "not before its time"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the plan never resumed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown(Duration::from_secs(5)).await;
    let (jobs, _) = env
        .jobs
        .list(&alice, &JobFilter::default(), 10, None)
        .await
        .expect("jobs");
    assert!(
        jobs.iter()
            .any(|j| j.state == JobState::Succeeded && j.spec.kind == ADVANCE_JOB)
    );
    let listed = tasks
        .list(&alice, focusforge_tasks::TaskFilter::default(), 10, "")
        .await
        .expect("tasks")
        .tasks;
    assert_eq!(listed.len(), 1, "the action ran once");
}

#[tokio::test]
async fn a_run_cut_short_by_a_crash_is_retried() {
    let clock = ManualClock::new(t0());
    let env = env(Arc::new(clock.clone()));
    let exec = Arc::new(Scripted::new(0, ""));
    let p = planner(&env, exec.clone(), Limits::default());
    let alice = user("alice");
    let plan = p
        .create(&alice, "", vec![ActionSpec::new("a", ActionType::Memory)])
        .await
        .expect("create");
    // As a process that died mid-run would leave it: running, started
    // at t0, never finished.
    let doc = env
        .store
        .get(PLANS, &alice, &plan.id)
        .await
        .expect("get")
        .expect("doc");
    let mut body = doc.body.clone();
    body["plan"]["actions"][0]["status"] = json!("running");
    body["plan"]["actions"][0]["attempts"] = json!(1);
    body["plan"]["actions"][0]["started_at"] = serde_json::to_value(t0()).expect("time");
    env.store
        .replace(
            PLANS,
            &alice,
            &plan.id,
            body,
            None,
            Precondition::Version(doc.version),
        )
        .await
        .expect("replace");
    assert!(
        p.execute_ready(&alice, None).await.expect("run").is_empty(),
        "it may still be running"
    );
    clock.advance(chrono::Duration::seconds(41));
    p.execute_ready(&alice, None).await.expect("run");
    let a = p
        .get(&alice, &plan.id)
        .await
        .expect("get")
        .plan
        .get("a")
        .cloned()
        .expect("a");
    assert_eq!(a.attempts, 1);
    assert_eq!(a.status, Status::Pending, "waiting for its retry");
    assert!(
        a.last_error
            .as_deref()
            .expect("error")
            .starts_with("interrupted")
    );
    clock.advance(chrono::Duration::seconds(5));
    let ran = p.execute_ready(&alice, None).await.expect("run");
    assert_eq!(
        (ran[0].action.status, ran[0].action.attempts),
        (Status::Succeeded, 2)
    );
}

/// Holds the action `slow` until the action `next` has started (or, with
/// `release`, until the test says); `fast` answers `{"x": "one"}`.
#[derive(Default)]
struct Gate {
    started: Mutex<Vec<(String, Value)>>,
    next_started: tokio::sync::Notify,
    release: Option<Arc<tokio::sync::Notify>>,
}

#[async_trait]
impl Executor for Gate {
    async fn execute(
        &self,
        _: &UserId,
        action: &ActionSpec,
        params: Value,
    ) -> Result<Value, Error> {
        self.started
            .lock()
            .expect("lock")
            .push((action.key.clone(), params));
        match (action.key.as_str(), &self.release) {
            ("slow", Some(release)) => release.notified().await,
            ("slow", None) => self.next_started.notified().await,
            ("next", _) => self.next_started.notify_one(),
            ("fast", _) => return Ok(json!({"x": "one"})),
            _ => {}
        }
        Ok(json!({}))
    }
}

#[tokio::test]
async fn a_dependent_starts_when_its_dependency_ends_not_when_its_siblings_do() {
    let env = env(Arc::new(SystemClock));
    let gate = Arc::new(Gate::default());
    // Two at a time: `next` gets the slot `fast` gives back.
    let limits = Limits {
        per_user: 2,
        ..Limits::default()
    };
    let p = planner(&env, gate.clone(), limits);
    let alice = user("alice");
    let mut next = ActionSpec::new("next", ActionType::Notification);
    next.depends_on = vec!["fast".into()];
    next.params = json!({"v": "${fast.x}"});
    let plan = p
        .create(
            &alice,
            "",
            vec![
                ActionSpec::new("fast", ActionType::Notification),
                ActionSpec::new("slow", ActionType::Notification),
                next,
            ],
        )
        .await
        .expect("create");
    // `slow` ends only once `next` has started, so the plan finishes only
    // if `fast` is recorded, and `next` started, while `slow` still runs.
    let ran = tokio::time::timeout(
        Duration::from_secs(5),
        p.execute_ready(&alice, Some(&plan.id)),
    )
    .await
    .expect("next did not wait for its dependency's sibling")
    .expect("run");
    assert_eq!(ran.len(), 3);
    let view = p.get(&alice, &plan.id).await.expect("get");
    for key in ["fast", "slow", "next"] {
        assert_eq!(
            view.plan.get(key).expect(key).status,
            Status::Succeeded,
            "{key}"
        );
    }
    let started = gate.started.lock().expect("lock").clone();
    assert_eq!(
        started.last(),
        Some(&("next".to_owned(), json!({"v": "one"}))),
        "next ran last, with fast's recorded output: {started:?}"
    );
}

#[tokio::test]
async fn runs_outlive_a_caller_that_stops_waiting_and_give_their_slots_back() {
    let env = env(Arc::new(SystemClock));
    let release = Arc::new(tokio::sync::Notify::new());
    let gate = Arc::new(Gate {
        release: Some(release.clone()),
        ..Gate::default()
    });
    // One at a time: a slot not given back would stop `after` for good.
    let limits = Limits {
        per_user: 1,
        ..Limits::default()
    };
    let p = planner(&env, gate.clone(), limits);
    let alice = user("alice");
    let mut after = ActionSpec::new("after", ActionType::Notification);
    after.depends_on = vec!["slow".into()];
    let plan = p
        .create(
            &alice,
            "",
            vec![ActionSpec::new("slow", ActionType::Notification), after],
        )
        .await
        .expect("create");
    // The caller gives up once `slow` runs.
    {
        let call = p.execute_ready(&alice, Some(&plan.id));
        tokio::pin!(call);
        loop {
            tokio::select! {
                _ = &mut call => panic!("the call ended while slow was held"),
                () = tokio::time::sleep(Duration::from_millis(10)) => {
                    if gate.started.lock().expect("lock").iter().any(|(k, _)| k == "slow") {
                        break;
                    }
                }
            }
        }
    }
    release.notify_one();
    // The run carries on without its caller and records its outcome.
    let mut status = Status::Running;
    for _ in 0..100 {
        let view = p.get(&alice, &plan.id).await.expect("get");
        status = view.plan.get("slow").expect("slow").status;
        if status == Status::Succeeded {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, Status::Succeeded);
    // Its slot is free again, and a job is queued to carry the plan on.
    let ran = p.execute_ready(&alice, Some(&plan.id)).await.expect("run");
    assert_eq!(
        ran.iter()
            .map(|a| a.action.spec.key.as_str())
            .collect::<Vec<_>>(),
        ["after"]
    );
    let queued = env
        .jobs
        .list(&alice, &JobFilter::default(), 100, None)
        .await
        .expect("jobs")
        .0;
    assert!(
        queued
            .iter()
            .filter(|j| j.spec.payload["plan_id"] == plan.id)
            .count()
            >= 2,
        "the first advance and the one queued after the dropped caller: {queued:?}"
    );
}
