//! How a workflow calls a step: with what is left of the caller's deadline,
//! timed, and reported whatever happens.

use std::future::Future;
use std::time::{Duration, Instant};

use focusforge_proto::orchestrator::v1 as pb;
use tonic::{Code, Status};

/// Time kept back from each step for the steps after it and the answer.
const MARGIN: Duration = Duration::from_millis(50);
/// A step's time when the caller set no deadline.
const DEFAULT_STEP: Duration = Duration::from_secs(30);

/// The steps of one call.
pub struct Steps {
    deadline: Option<Instant>,
    pub list: Vec<pb::Step>,
}

impl Steps {
    pub fn new(deadline: Option<Instant>) -> Self {
        Self {
            deadline,
            list: Vec::new(),
        }
    }

    /// What a step may take: the rest of the deadline less a margin.
    pub fn budget(&self) -> Duration {
        match self.deadline {
            None => DEFAULT_STEP,
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .saturating_sub(MARGIN),
        }
    }

    /// A request with the step's deadline on it.
    pub fn timed<T>(&self, mut req: tonic::Request<T>) -> tonic::Request<T> {
        req.set_timeout(self.budget().max(Duration::from_millis(1)));
        req
    }

    /// Runs a step whose failure ends the workflow: its status is the
    /// call's. Recorded either way.
    pub async fn required<T, F>(&mut self, name: &str, service: &str, call: F) -> Result<T, Status>
    where
        F: Future<Output = Result<T, Status>>,
    {
        let started = Instant::now();
        let result = self.bounded(call).await;
        match &result {
            Ok(_) => self.ran(name, service, started),
            Err(s) => self.failed(name, service, started, s),
        }
        result
    }

    /// Runs a step the workflow can go on without: a failure is recorded
    /// and `None` returned.
    pub async fn optional<T, F>(&mut self, name: &str, service: &str, call: F) -> Option<T>
    where
        F: Future<Output = Result<T, Status>>,
    {
        let started = Instant::now();
        match self.bounded(call).await {
            Ok(v) => {
                self.ran(name, service, started);
                Some(v)
            }
            Err(s) => {
                tracing::warn!(step = name, code = ?s.code(), message = s.message(), "step failed");
                self.failed(name, service, started, &s);
                None
            }
        }
    }

    /// Runs a step and returns its result with its record, for steps run
    /// side by side; [`Steps::record`] keeps the record.
    pub async fn measure<T, F>(
        &self,
        name: &str,
        service: &str,
        call: F,
    ) -> (Result<T, Status>, pb::Step)
    where
        F: Future<Output = Result<T, Status>>,
    {
        let started = Instant::now();
        let result = self.bounded(call).await;
        let mut probe = Steps::new(None);
        match &result {
            Ok(_) => probe.ran(name, service, started),
            Err(s) => probe.failed(name, service, started, s),
        }
        let step = probe.list.pop().unwrap_or_default();
        (result, step)
    }

    /// Keeps the record of a measured step; the value when it ran.
    pub fn record<T>(&mut self, (result, step): (Result<T, Status>, pb::Step)) -> Option<T> {
        self.list.push(step);
        result.ok()
    }

    async fn bounded<T, F>(&self, call: F) -> Result<T, Status>
    where
        F: Future<Output = Result<T, Status>>,
    {
        let budget = self.budget();
        if budget.is_zero() {
            return Err(Status::deadline_exceeded("no time was left for this step"));
        }
        // A remote service that hangs is cut off here too, not only by its
        // own reading of the deadline.
        match tokio::time::timeout(budget, call).await {
            Ok(r) => r,
            Err(_) => Err(Status::deadline_exceeded("the step ran out of time")),
        }
    }

    fn ran(&mut self, name: &str, service: &str, started: Instant) {
        self.push(
            name,
            service,
            pb::StepOutcome::Ran,
            String::new(),
            "",
            started,
        );
    }

    fn failed(&mut self, name: &str, service: &str, started: Instant, s: &Status) {
        let message: String = s.message().chars().take(300).collect();
        self.push(
            name,
            service,
            pb::StepOutcome::Failed,
            message,
            code_name(s.code()),
            started,
        );
    }

    /// Marks the last step, which ran, as answered by its fallback.
    pub fn fell_back(&mut self, reason: &str) {
        if let Some(last) = self.list.last_mut() {
            last.outcome = pb::StepOutcome::FellBack as i32;
            last.reason = reason.chars().take(300).collect();
        }
    }

    /// Reports the last step as skipped when it failed with `code`: the
    /// service said there is nothing to do (e.g. an integration that is not
    /// set up), which is not a fault.
    pub fn skip_if_failed_with(&mut self, code: Code) {
        if let Some(last) = self.list.last_mut()
            && last.outcome == pb::StepOutcome::Failed as i32
            && last.status == code_name(code)
        {
            last.outcome = pb::StepOutcome::Skipped as i32;
            last.status.clear();
        }
    }

    /// Records a step that did not run.
    pub fn skipped(&mut self, name: &str, service: &str, reason: &str) {
        self.push(
            name,
            service,
            pb::StepOutcome::Skipped,
            reason.to_owned(),
            "",
            Instant::now(),
        );
    }

    fn push(
        &mut self,
        name: &str,
        service: &str,
        outcome: pb::StepOutcome,
        reason: String,
        status: &str,
        started: Instant,
    ) {
        self.list.push(pb::Step {
            name: name.to_owned(),
            service: service.to_owned(),
            outcome: outcome as i32,
            reason,
            status: status.to_owned(),
            took: prost_types::Duration::try_from(started.elapsed()).ok(),
        });
    }
}

/// The canonical name of a status code, as gRPC spells it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
