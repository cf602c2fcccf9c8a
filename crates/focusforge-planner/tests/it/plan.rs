//! The plan state machine: validation, order, limits, retries and cancellation.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use focusforge_planner::{
    ActionSpec, ActionType, Limits, Outcome, Plan, PlanError, Priority, RetryPolicy, Running,
    Status,
};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 9, 0, 0)
        .single()
        .expect("time")
}

fn action(key: &str, deps: &[&str]) -> ActionSpec {
    let mut a = ActionSpec::new(key, ActionType::TaskManagement);
    a.depends_on = deps.iter().map(|d| d.to_string()).collect();
    a
}

fn unlimited() -> Limits {
    Limits {
        global: usize::MAX,
        per_user: usize::MAX,
        per_type: HashMap::new(),
    }
}

fn fail(kind: &str) -> Outcome {
    Outcome::Failed {
        kind: kind.into(),
        message: "boom".into(),
    }
}

/// Runs the plan to the end, every action succeeding; the start order.
fn run_all(plan: &mut Plan, limits: &Limits) -> Vec<Vec<String>> {
    let mut rounds = Vec::new();
    while !plan.is_done() {
        let mut running = Running::default();
        let started = plan.start(t0(), limits, &mut running);
        assert!(!started.is_empty(), "stuck: {:?}", plan.actions());
        for k in &started {
            plan.finish(k, Outcome::Succeeded, t0(), 0.0)
                .expect("finish");
        }
        rounds.push(started);
    }
    rounds
}

#[test]
fn dependencies_run_first() {
    // d needs b and c, which both need a.
    let mut plan = Plan::new(
        vec![
            action("d", &["b", "c"]),
            action("b", &["a"]),
            action("c", &["a"]),
            action("a", &[]),
        ],
        t0(),
    )
    .expect("plan");
    let rounds = run_all(&mut plan, &unlimited());
    assert_eq!(rounds, vec![vec!["a"], vec!["b", "c"], vec!["d"]]);
    assert!(plan.actions().iter().all(|a| a.status == Status::Succeeded));
}

#[test]
fn cycles_and_unknown_dependencies_are_rejected_by_name() {
    let err = Plan::new(
        vec![
            action("a", &[]),
            action("b", &["a", "d"]),
            action("c", &["b"]),
            action("d", &["c"]),
            action("e", &["d"]),
        ],
        t0(),
    )
    .expect_err("cycle");
    // b -> c -> d -> b; e merely hangs below the cycle, a above it.
    assert_eq!(
        err,
        PlanError::Cycle(vec!["b".into(), "c".into(), "d".into()])
    );
    let err = Plan::new(vec![action("a", &["a"])], t0()).expect_err("self");
    assert_eq!(err, PlanError::Cycle(vec!["a".into()]));
    let err = Plan::new(vec![action("a", &["x", "y"])], t0()).expect_err("unknown");
    assert_eq!(
        err,
        PlanError::UnknownDependency {
            action: "a".into(),
            missing: vec!["x".into(), "y".into()]
        }
    );
    assert_eq!(
        Plan::new(vec![action("a", &[]), action("a", &[])], t0()),
        Err(PlanError::Duplicate("a".into()))
    );
    assert_eq!(Plan::new(vec![], t0()), Err(PlanError::Empty));
    let mut bad = action("a", &[]);
    bad.retry.jitter = 2.0;
    assert!(matches!(
        Plan::new(vec![bad], t0()),
        Err(PlanError::Invalid { field, .. }) if field == "retry.jitter"
    ));
}

#[test]
fn a_critical_action_is_not_starved_by_a_flood_of_background_ones() {
    let mut specs: Vec<ActionSpec> = (0..500)
        .map(|i| {
            let mut a = action(&format!("bg{i}"), &[]);
            a.priority = Priority::Background;
            a
        })
        .collect();
    let mut critical = action("urgent", &[]);
    critical.priority = Priority::Critical;
    specs.push(critical);
    let mut high = action("high", &[]);
    high.priority = Priority::High;
    specs.push(high);
    let mut plan = Plan::new(specs, t0()).expect("plan");
    let limits = Limits {
        global: 1,
        ..unlimited()
    };
    let first = plan.start(t0(), &limits, &mut Running::default());
    assert_eq!(first, vec!["urgent"]);
    plan.finish("urgent", Outcome::Succeeded, t0(), 0.0)
        .expect("finish");
    let second = plan.start(t0(), &limits, &mut Running::default());
    assert_eq!(second, vec!["high"]);
}

#[test]
fn not_before_holds_an_action_back_and_orders_equals() {
    let mut later = action("later", &[]);
    later.not_before = Some(t0() + chrono::Duration::minutes(10));
    let mut sooner = action("sooner", &[]);
    sooner.not_before = Some(t0() - chrono::Duration::minutes(5));
    let plain = action("plain", &[]);
    let mut plan = Plan::new(vec![later, plain, sooner], t0()).expect("plan");
    let started = plan.start(t0(), &unlimited(), &mut Running::default());
    assert_eq!(started, vec!["sooner", "plain"]);
    assert_eq!(plan.next_due(), Some(t0() + chrono::Duration::minutes(10)));
    let at = t0() + chrono::Duration::minutes(10);
    assert_eq!(
        plan.start(at, &unlimited(), &mut Running::default()),
        vec!["later"]
    );
}

#[test]
fn a_time_from_a_dependency_holds_an_action_back_or_cancels_it_without_one() {
    let schedule = action("schedule", &[]);
    let mut remind = action("remind", &["schedule"]);
    remind.not_before_from = Some("${schedule.first_start}".into());
    remind.not_before_offset_secs = -600;
    let mut focus = action("focus", &["schedule"]);
    focus.not_before_from = Some("${schedule.first_start}".into());
    let mut plan = Plan::new(vec![schedule, remind, focus], t0()).expect("plan");
    let mut running = Running::default();
    assert_eq!(
        plan.start(t0(), &unlimited(), &mut running),
        vec!["schedule"]
    );
    let start = t0() + chrono::Duration::hours(2);
    plan.set_output(
        "schedule",
        serde_json::json!({ "first_start": start.to_rfc3339() }),
    )
    .expect("output");
    plan.finish("schedule", Outcome::Succeeded, t0(), 0.0)
        .expect("finish");
    assert!(plan.start(t0(), &unlimited(), &mut running).is_empty());
    assert_eq!(plan.next_due(), Some(start - chrono::Duration::minutes(10)));
    let at = start - chrono::Duration::minutes(10);
    assert_eq!(plan.start(at, &unlimited(), &mut running), vec!["remind"]);
    assert_eq!(plan.start(start, &unlimited(), &mut running), vec!["focus"]);

    // No time in the output (nothing was placed): cancelled, saying why.
    let schedule = action("schedule", &[]);
    let mut remind = action("remind", &["schedule"]);
    remind.not_before_from = Some("${schedule.first_start}".into());
    let mut plan = Plan::new(vec![schedule, remind], t0()).expect("plan");
    plan.start(t0(), &unlimited(), &mut running);
    plan.set_output("schedule", serde_json::json!({ "first_start": null }))
        .expect("output");
    plan.finish("schedule", Outcome::Succeeded, t0(), 0.0)
        .expect("finish");
    let remind = plan.get("remind").expect("remind");
    assert_eq!(remind.status, Status::Cancelled);
    assert!(
        remind
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("${schedule.first_start} is not a time")),
        "{:?}",
        remind.reason
    );

    // The reference must name an ancestor, like a param's.
    let mut stray = action("stray", &[]);
    stray.not_before_from = Some("${other.time}".into());
    let err = Plan::new(vec![action("other", &[]), stray], t0()).expect_err("not an ancestor");
    assert!(
        matches!(err, PlanError::Invalid { ref field, .. } if field == "not_before_from"),
        "{err:?}"
    );
    let mut bare = action("bare", &[]);
    bare.not_before_from = Some("soon".into());
    let err = Plan::new(vec![bare], t0()).expect_err("not a reference");
    assert!(
        matches!(err, PlanError::Invalid { ref field, .. } if field == "not_before_from"),
        "{err:?}"
    );

    // An offset past a year either way, down to the extremes, is refused
    // rather than overflowing.
    for secs in [i64::MIN, i64::MAX, -366 * 86_400 - 1] {
        let schedule = action("schedule", &[]);
        let mut remind = action("remind", &["schedule"]);
        remind.not_before_from = Some("${schedule.first_start}".into());
        remind.not_before_offset_secs = secs;
        let err = Plan::new(vec![schedule, remind], t0()).expect_err("offset too far");
        assert!(
            matches!(err, PlanError::Invalid { ref field, .. } if field == "not_before_offset"),
            "{secs}: {err:?}"
        );
    }
}

#[test]
fn failures_are_retried_after_backoff_then_die_and_cancel_dependents() {
    let mut flaky = action("flaky", &[]);
    flaky.retry = RetryPolicy {
        max_attempts: 3,
        initial_delay: Duration::from_secs(10),
        multiplier: 2.0,
        max_delay: Duration::from_secs(60),
        jitter: 0.5,
        non_retryable: vec!["invalid_argument".into()],
    };
    let mut plan = Plan::new(
        vec![
            flaky,
            action("after", &["flaky"]),
            action("last", &["after"]),
        ],
        t0(),
    )
    .expect("plan");
    let limits = unlimited();
    let mut now = t0();
    // Attempt 1 fails: the retry waits 10 s less up to half (sample 0.5 -> 7.5 s).
    assert_eq!(
        plan.start(now, &limits, &mut Running::default()),
        vec!["flaky"]
    );
    assert_eq!(
        plan.finish("flaky", fail("unavailable"), now, 0.5),
        Ok(Status::Pending)
    );
    let retry_at = plan.get("flaky").and_then(|a| a.retry_at).expect("retry");
    assert_eq!(retry_at - now, chrono::Duration::milliseconds(7_500));
    // Not before its time.
    now += chrono::Duration::milliseconds(7_499);
    assert!(plan.start(now, &limits, &mut Running::default()).is_empty());
    now += chrono::Duration::milliseconds(1);
    assert_eq!(
        plan.start(now, &limits, &mut Running::default()),
        vec!["flaky"]
    );
    // Attempt 2 fails: 20 s with no jitter drawn.
    assert_eq!(
        plan.finish("flaky", fail("unavailable"), now, 0.0),
        Ok(Status::Pending)
    );
    let retry_at = plan.get("flaky").and_then(|a| a.retry_at).expect("retry");
    assert_eq!(retry_at - now, chrono::Duration::seconds(20));
    now = retry_at;
    assert_eq!(
        plan.start(now, &limits, &mut Running::default()),
        vec!["flaky"]
    );
    // Attempt 3 is the last.
    assert_eq!(
        plan.finish("flaky", fail("unavailable"), now, 0.0),
        Ok(Status::Dead)
    );
    let flaky = plan.get("flaky").expect("flaky");
    assert_eq!(flaky.attempts, 3);
    assert_eq!(flaky.last_error.as_deref(), Some("unavailable: boom"));
    for key in ["after", "last"] {
        let a = plan.get(key).expect(key);
        assert_eq!(a.status, Status::Cancelled, "{key}");
        assert!(
            a.reason
                .as_deref()
                .is_some_and(|r| r.contains("did not succeed"))
        );
        assert_eq!(a.finished_at, Some(now), "{key}");
    }
    assert!(plan.is_done());
}

#[test]
fn a_non_retryable_error_fails_at_once() {
    let mut plan = Plan::new(vec![action("a", &[]), action("b", &["a"])], t0()).expect("plan");
    plan.start(t0(), &unlimited(), &mut Running::default());
    assert_eq!(
        plan.finish("a", fail("invalid_argument"), t0(), 0.0),
        Ok(Status::Failed)
    );
    assert_eq!(plan.get("b").map(|a| a.status), Some(Status::Cancelled));
    assert_eq!(
        plan.finish("a", Outcome::Succeeded, t0(), 0.0),
        Err(PlanError::NotRunning("a".into()))
    );
    assert_eq!(
        plan.finish("zzz", Outcome::Succeeded, t0(), 0.0),
        Err(PlanError::NotFound("zzz".into()))
    );
}

#[test]
fn cancelling_cascades_to_dependents_and_leaves_the_rest() {
    let mut plan = Plan::new(
        vec![
            action("a", &[]),
            action("b", &["a"]),
            action("c", &["b"]),
            action("side", &[]),
        ],
        t0(),
    )
    .expect("plan");
    plan.start(t0(), &unlimited(), &mut Running::default());
    let later = t0() + chrono::Duration::seconds(90);
    let mut cancelled = plan
        .cancel("a", "user changed their mind", later)
        .expect("cancel");
    cancelled.sort();
    assert_eq!(cancelled, vec!["a", "b", "c"]);
    // Each cancelled action finished when it was cancelled, run or not.
    for k in ["a", "b", "c"] {
        assert_eq!(plan.get(k).and_then(|a| a.finished_at), Some(later), "{k}");
    }
    assert_eq!(
        plan.get("a").and_then(|a| a.reason.clone()).as_deref(),
        Some("user changed their mind")
    );
    // A running action that was cancelled stays cancelled when it reports.
    assert_eq!(
        plan.finish("a", Outcome::Succeeded, t0(), 0.0),
        Ok(Status::Cancelled)
    );
    assert_eq!(plan.get("side").map(|a| a.status), Some(Status::Running));
    assert_eq!(
        plan.cancel("nope", "x", later),
        Err(PlanError::NotFound("nope".into()))
    );
}

#[test]
fn concurrency_caps_are_never_exceeded() {
    // Many independent actions of mixed types, finished in a scrambled
    // order; the caps hold at every step.
    let types = ActionType::ALL;
    let specs: Vec<ActionSpec> = (0..300)
        .map(|i| {
            let mut a = ActionSpec::new(format!("a{i}"), types[i % types.len()]);
            a.priority = [Priority::Low, Priority::High, Priority::Background][i % 3];
            a
        })
        .collect();
    let mut plan = Plan::new(specs, t0()).expect("plan");
    let limits = Limits {
        global: 100,
        per_user: 7,
        per_type: HashMap::from([(ActionType::Integration, 1), (ActionType::Memory, 2)]),
    };
    let mut running = Running::default();
    let mut in_flight: Vec<(String, ActionType)> = Vec::new();
    let mut seed = 7u64;
    let mut peak = 0;
    while !plan.is_done() {
        for k in plan.start(t0(), &limits, &mut running) {
            let t = plan.get(&k).expect("started").spec.action_type;
            in_flight.push((k, t));
        }
        assert!(running.user <= 7 && running.global <= 100);
        for (t, cap) in &limits.per_type {
            let n = in_flight.iter().filter(|(_, x)| x == t).count();
            assert!(n <= *cap, "{t:?}: {n}");
            assert_eq!(running.per_type.get(t).copied().unwrap_or(0), n);
        }
        peak = peak.max(in_flight.len());
        // Finish one or two at random.
        for _ in 0..2 {
            if in_flight.is_empty() {
                break;
            }
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let (k, t) = in_flight.swap_remove((seed >> 33) as usize % in_flight.len());
            plan.finish(&k, Outcome::Succeeded, t0(), 0.0)
                .expect("finish");
            running.global -= 1;
            running.user -= 1;
            *running.per_type.get_mut(&t).expect("type") -= 1;
        }
    }
    assert_eq!(peak, 7);
    assert!(plan.actions().iter().all(|a| a.status == Status::Succeeded));
}

#[test]
fn a_plan_survives_serialisation() {
    let mut plan = Plan::new(vec![action("a", &[]), action("b", &["a"])], t0()).expect("plan");
    plan.start(t0(), &unlimited(), &mut Running::default());
    let json = serde_json::to_string(&plan).expect("serialise");
    let back: Plan = serde_json::from_str(&json).expect("deserialise");
    assert_eq!(back, plan);
    assert_eq!(back.get("a").map(|a| a.status), Some(Status::Running));
}
