//! Per-caller rate limits and load shedding.
//!
//! Each call takes from a budget of its caller (the verified user, or the
//! client address when there is no verified user) in its method's class:
//! the AI chains and workflows cost more than a `GetTask`, so they have a
//! class of their own. A budget is a token bucket kept as GCRA (one
//! theoretical arrival time per key): `burst` calls at once, then one every
//! `1 / per_second`. With a shared store (Redis) the budget is one per user
//! across every replica; without it, or while the store is away, each
//! process keeps its own.
//!
//! Shedding bounds the calls in flight in the process: past the bound a
//! call is refused at once instead of queueing without bound.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

/// A budget: `burst` calls at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

impl Rate {
    /// Time between two calls at the sustained rate, in microseconds.
    pub fn interval_us(&self) -> u64 {
        (1_000_000.0 / self.per_second.max(1e-6)).ceil() as u64
    }

    fn tolerance_us(&self) -> u64 {
        self.interval_us()
            .saturating_mul(u64::from(self.burst.max(1)))
    }
}

/// A class of methods sharing one budget per caller.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodClass {
    pub name: String,
    pub rate: Rate,
    /// `package.Service` (every method of it) or `package.Service/Method`.
    pub methods: Vec<String>,
}

/// The limits a gateway applies.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitOptions {
    /// Every method not in a class.
    pub default: Rate,
    /// Calls without a verified user, by client address.
    pub anonymous: Rate,
    pub classes: Vec<MethodClass>,
    /// Callers remembered per process; callers whose budget is full again
    /// are forgotten first.
    pub max_keys: usize,
}

impl Default for RateLimitOptions {
    fn default() -> Self {
        Self {
            default: Rate {
                per_second: 200.0,
                burst: 400,
            },
            anonymous: Rate {
                per_second: 50.0,
                burst: 100,
            },
            classes: vec![MethodClass {
                name: "ai".into(),
                rate: Rate {
                    per_second: 10.0,
                    burst: 40,
                },
                methods: vec![
                    "focusforge.chain.v1.ChainService".into(),
                    "focusforge.orchestrator.v1.OrchestratorService".into(),
                ],
            }],
            max_keys: 100_000,
        }
    }
}

/// A budget store every replica shares. `take` answers `Ok(None)` when the
/// call may go, `Ok(Some(wait))` when the budget is spent, and `Err` when
/// the store cannot answer (the process then uses its own budget).
pub trait SharedBudget: Send + Sync {
    fn take<'a>(
        &'a self,
        key: &'a str,
        rate: Rate,
    ) -> BoxFuture<'a, Result<Option<Duration>, String>>;
}

/// Who a budget belongs to.
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    User(&'a str),
    Address(std::net::IpAddr),
}

/// A call refused by its budget: its class and how long until it may retry.
#[derive(Debug, Clone, PartialEq)]
pub struct Limited {
    pub class: String,
    pub retry_after: Duration,
}

const SHARDS: usize = 16;

/// Rate limits of one gateway.
pub struct RateLimiter {
    options: RateLimitOptions,
    shared: Option<Arc<dyn SharedBudget>>,
    local: Local,
    /// While set and in the future, the shared store is not asked.
    shared_down_until: Mutex<Option<Instant>>,
    retry_shared_after: Duration,
    pub(crate) rejected: AtomicU64,
    pub(crate) fallbacks: AtomicU64,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("options", &self.options)
            .field("shared", &self.shared.is_some())
            .finish()
    }
}

impl RateLimiter {
    pub fn new(options: RateLimitOptions, shared: Option<Arc<dyn SharedBudget>>) -> Self {
        let per_shard = options.max_keys.div_ceil(SHARDS).max(1);
        Self {
            options,
            shared,
            local: Local::new(per_shard),
            shared_down_until: Mutex::new(None),
            retry_shared_after: Duration::from_secs(2),
            rejected: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
        }
    }

    /// The class of `/package.Service/Method`: the longest matching entry.
    pub fn class_of(&self, path: &str) -> (&str, Rate) {
        let method = path.trim_start_matches('/');
        let service = method.split_once('/').map_or(method, |(s, _)| s);
        let mut best: Option<(&MethodClass, usize)> = None;
        for class in &self.options.classes {
            for entry in &class.methods {
                let hit = entry == method || entry == service;
                if hit && best.is_none_or(|(_, len)| entry.len() > len) {
                    best = Some((class, entry.len()));
                }
            }
        }
        match best {
            Some((class, _)) => (&class.name, class.rate),
            None => ("default", self.options.default),
        }
    }

    /// Takes one call from the caller's budget for `path` (a gRPC method
    /// path, or a plain HTTP route, which is in the default class).
    pub async fn check(&self, caller: Caller<'_>, path: &str) -> Result<(), Limited> {
        let (class, rate) = match caller {
            Caller::User(_) => self.class_of(path),
            Caller::Address(_) => ("anonymous", self.options.anonymous),
        };
        let key = match caller {
            Caller::User(user) => format!("{class}:u:{user}"),
            Caller::Address(ip) => format!("{class}:a:{ip}"),
        };
        let wait = match self.shared_take(&key, rate).await {
            Some(answer) => answer,
            None => self.local.take(&key, rate, Instant::now()),
        };
        match wait {
            None => Ok(()),
            Some(retry_after) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                Err(Limited {
                    class: class.to_owned(),
                    retry_after,
                })
            }
        }
    }

    /// The shared store's answer, or `None` when there is none or it is away.
    async fn shared_take(&self, key: &str, rate: Rate) -> Option<Option<Duration>> {
        let shared = self.shared.as_ref()?;
        {
            let mut down = self
                .shared_down_until
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match *down {
                Some(until) if Instant::now() < until => {
                    self.fallbacks.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                Some(_) => *down = None,
                None => {}
            }
        }
        match shared.take(key, rate).await {
            Ok(answer) => Some(answer),
            Err(error) => {
                tracing::warn!(%error, "rate limit store unavailable: limits are per process for now");
                *self
                    .shared_down_until
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) =
                    Some(Instant::now() + self.retry_shared_after);
                self.fallbacks.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Calls refused by a budget since start.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Checks answered by the process's own budgets because the shared
    /// store was away.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }
}

/// The process's own budgets: GCRA arrival times by key, in shards.
struct Local {
    epoch: Instant,
    shards: Vec<Mutex<HashMap<String, u64>>>,
    per_shard: usize,
    hasher: std::collections::hash_map::RandomState,
}

impl Local {
    fn new(per_shard: usize) -> Self {
        Self {
            epoch: Instant::now(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard,
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// `None` when the call may go, else how long until it may.
    fn take(&self, key: &str, rate: Rate, now: Instant) -> Option<Duration> {
        let now_us = now.saturating_duration_since(self.epoch).as_micros() as u64;
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
        let (interval, tolerance) = (rate.interval_us(), rate.tolerance_us());
        let tat = map.get(key).copied().unwrap_or(now_us).max(now_us);
        let next = tat + interval;
        if next - now_us > tolerance {
            return Some(Duration::from_micros(next - now_us - tolerance));
        }
        if !map.contains_key(key) && map.len() >= self.per_shard {
            // A key whose arrival time has passed has its whole budget:
            // forgetting it changes nothing.
            map.retain(|_, t| *t > now_us);
            if map.len() >= self.per_shard {
                // Every remembered caller is active: this one goes
                // unrecorded rather than pushing out a caller's spent budget.
                return None;
            }
        }
        map.insert(key.to_owned(), next);
        None
    }
}

/// A bound on calls in flight in the process.
#[derive(Debug)]
pub struct InFlight {
    max: usize,
    now: AtomicUsize,
    pub(crate) shed: AtomicU64,
}

/// Held while a call is in flight.
#[derive(Debug)]
pub struct Permit(Arc<InFlight>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project_lite::pin_project! {
    /// A response body that holds its call's place in flight until it ends.
    pub struct Holding<B> {
        #[pin]
        inner: B,
        permit: Option<Permit>,
    }
}

impl<B> Holding<B> {
    pub fn new(inner: B, permit: Permit) -> Self {
        Self {
            inner,
            permit: Some(permit),
        }
    }
}

impl<B: http_body::Body> http_body::Body for Holding<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let out = this.inner.poll_frame(cx);
        if let std::task::Poll::Ready(None) = out {
            *this.permit = None;
        }
        out
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl InFlight {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            now: AtomicUsize::new(0),
            shed: AtomicU64::new(0),
        })
    }

    /// A permit, or `None` when the process is at its bound.
    pub fn try_enter(self: &Arc<Self>) -> Option<Permit> {
        let mut current = self.now.load(Ordering::Acquire);
        loop {
            if current >= self.max {
                self.shed.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            match self.now.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(Permit(self.clone())),
                Err(seen) => current = seen,
            }
        }
    }

    pub fn current(&self) -> usize {
        self.now.load(Ordering::Acquire)
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_second: f64, burst: u32) -> Rate {
        Rate { per_second, burst }
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let local = Local::new(100);
        let t0 = Instant::now();
        let r = rate(10.0, 5);
        for i in 0..5 {
            assert_eq!(local.take("k", r, t0), None, "call {i} of the burst");
        }
        let wait = local.take("k", r, t0).expect("the sixth waits");
        assert_eq!(wait, Duration::from_millis(100));
        assert_eq!(local.take("k", r, t0 + Duration::from_millis(100)), None);
        assert!(
            local
                .take("k", r, t0 + Duration::from_millis(100))
                .is_some()
        );
        // After a long quiet spell the budget is full again, not more.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..5 {
            assert_eq!(local.take("k", r, later), None);
        }
        assert!(local.take("k", r, later).is_some());
    }

    #[test]
    fn one_callers_budget_is_not_anothers() {
        let local = Local::new(100);
        let t0 = Instant::now();
        let r = rate(1.0, 1);
        assert_eq!(local.take("a", r, t0), None);
        assert!(local.take("a", r, t0).is_some());
        assert_eq!(local.take("b", r, t0), None);
    }

    #[test]
    fn remembered_callers_are_bounded() {
        let local = Local::new(10);
        let t0 = Instant::now();
        let r = rate(1.0, 1);
        for i in 0..1000 {
            let _ = local.take(&format!("k{i}"), r, t0 + Duration::from_secs(i));
        }
        let total: usize = local
            .shards
            .iter()
            .map(|s| s.lock().expect("shard").len())
            .sum();
        assert!(total <= 10 * SHARDS, "{total} keys kept");
    }

    #[test]
    fn the_longest_class_entry_wins() {
        let limiter = RateLimiter::new(
            RateLimitOptions {
                classes: vec![
                    MethodClass {
                        name: "ai".into(),
                        rate: rate(1.0, 1),
                        methods: vec!["pkg.Chain".into()],
                    },
                    MethodClass {
                        name: "cheap".into(),
                        rate: rate(100.0, 100),
                        methods: vec!["pkg.Chain/Ping".into()],
                    },
                ],
                ..RateLimitOptions::default()
            },
            None,
        );
        assert_eq!(limiter.class_of("/pkg.Chain/Analyse").0, "ai");
        assert_eq!(limiter.class_of("/pkg.Chain/Ping").0, "cheap");
        assert_eq!(limiter.class_of("/pkg.Tasks/Get").0, "default");
        assert_eq!(limiter.class_of("/pkg.ChainX/Get").0, "default");
    }

    #[test]
    fn in_flight_is_bounded_and_released() {
        let f = InFlight::new(2);
        let a = f.try_enter().expect("first");
        let _b = f.try_enter().expect("second");
        assert!(f.try_enter().is_none());
        assert_eq!(f.shed(), 1);
        drop(a);
        assert!(f.try_enter().is_some());
    }
}
