use focusforge_core::{Violations, check_id};
use focusforge_jobs::{Job, JobFilter, JobState, Jobs, Stats};
use focusforge_proto::jobs::v1 as pb;
use focusforge_proto::jobs::v1::job_service_server::JobService;
use tonic::{Request, Response, Status as GrpcStatus};

use crate::convert::{enum_value, opt_timestamp, priority_pb, retry_pb, timestamp};
use crate::{caller, into_status};

/// `focusforge.jobs.v1.JobService` over the job queue.
#[derive(Clone)]
pub struct JobApi(pub Jobs);

type Reply<T> = Result<Response<T>, GrpcStatus>;

fn state(v: &mut Violations, field: &str, raw: i32) -> Option<JobState> {
    match enum_value::<pb::JobState>(v, field, raw)? {
        pb::JobState::Unspecified => {
            v.add(field, "must be specified");
            None
        }
        pb::JobState::Queued => Some(JobState::Queued),
        pb::JobState::Running => Some(JobState::Running),
        pb::JobState::Succeeded => Some(JobState::Succeeded),
        pb::JobState::Failed => Some(JobState::Failed),
        pb::JobState::Dead => Some(JobState::Dead),
        pb::JobState::Cancelled => Some(JobState::Cancelled),
    }
}

/// The contract's name of a state, `JOB_STATE_SUCCEEDED` say.
pub(crate) fn state_name(s: JobState) -> &'static str {
    pb::JobState::try_from(state_pb(s)).map_or("JOB_STATE_UNSPECIFIED", |v| v.as_str_name())
}

fn state_pb(s: JobState) -> i32 {
    let v = match s {
        JobState::Queued => pb::JobState::Queued,
        JobState::Running => pb::JobState::Running,
        JobState::Succeeded => pb::JobState::Succeeded,
        JobState::Failed => pb::JobState::Failed,
        JobState::Dead => pb::JobState::Dead,
        JobState::Cancelled => pb::JobState::Cancelled,
    };
    v as i32
}

fn job_pb(j: Job) -> pb::Job {
    pb::Job {
        id: j.id,
        kind: j.spec.kind.clone(),
        state: state_pb(j.state),
        priority: priority_pb(j.spec.priority),
        payload_json: j.spec.payload.to_string(),
        attempts: i32::try_from(j.attempts).unwrap_or(i32::MAX),
        retry: Some(retry_pb(&j.spec.retry)),
        idempotency_key: j.spec.idempotency_key.clone().unwrap_or_default(),
        create_time: Some(timestamp(j.created_at)),
        run_time: Some(timestamp(j.run_at)),
        start_time: opt_timestamp(j.started_at),
        finish_time: opt_timestamp(j.finished_at),
        last_error: j.last_error.unwrap_or_default(),
        cancel_requested: j.cancel_requested,
        worker: j.worker.unwrap_or_default(),
    }
}

fn counts(by_state: impl Fn(JobState) -> u64) -> pb::JobCounts {
    let n = |s| i64::try_from(by_state(s)).unwrap_or(i64::MAX);
    pb::JobCounts {
        queued: n(JobState::Queued),
        running: n(JobState::Running),
        succeeded: n(JobState::Succeeded),
        failed: n(JobState::Failed),
        dead: n(JobState::Dead),
        cancelled: n(JobState::Cancelled),
    }
}

fn stats_pb(s: &Stats) -> pb::GetJobStatsResponse {
    pb::GetJobStatsResponse {
        total: Some(counts(|state| s.count(state))),
        by_kind: s
            .by_kind
            .iter()
            .map(|(kind, m)| {
                (
                    kind.clone(),
                    counts(|state| m.get(&state).copied().unwrap_or(0)),
                )
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl JobService for JobApi {
    async fn list_jobs(&self, req: Request<pb::ListJobsRequest>) -> Reply<pb::ListJobsResponse> {
        let user = caller(&req)?;
        let req = req.into_inner();
        let mut v = Violations::new();
        let filter = JobFilter {
            states: req
                .states
                .iter()
                .enumerate()
                .filter_map(|(i, s)| state(&mut v, &format!("states[{i}]"), *s))
                .collect(),
            kind: (!req.kind.is_empty()).then_some(req.kind),
        };
        v.finish().map_err(into_status)?;
        let (jobs, next) = self
            .0
            .list_page(&user, &filter, req.page_size, &req.page_token)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::ListJobsResponse {
            jobs: jobs.into_iter().map(job_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn get_job(&self, req: Request<pb::GetJobRequest>) -> Reply<pb::GetJobResponse> {
        let user = caller(&req)?;
        check_id(&req.get_ref().id).map_err(into_status)?;
        let job = self
            .0
            .get(&user, &req.get_ref().id)
            .await
            .map_err(|e| into_status(e.into()))?
            .ok_or_else(|| into_status(focusforge_core::Error::NotFound("job".into())))?;
        Ok(Response::new(pb::GetJobResponse {
            job: Some(job_pb(job)),
        }))
    }

    async fn cancel_job(&self, req: Request<pb::CancelJobRequest>) -> Reply<pb::CancelJobResponse> {
        let user = caller(&req)?;
        check_id(&req.get_ref().id).map_err(into_status)?;
        let job = self
            .0
            .cancel(&user, &req.get_ref().id)
            .await
            .map_err(|e| into_status(e.into()))?;
        Ok(Response::new(pb::CancelJobResponse {
            job: Some(job_pb(job)),
        }))
    }

    async fn get_job_stats(
        &self,
        req: Request<pb::GetJobStatsRequest>,
    ) -> Reply<pb::GetJobStatsResponse> {
        let user = caller(&req)?;
        let stats = self
            .0
            .stats(&user)
            .await
            .map_err(|e| into_status(e.into()))?;
        Ok(Response::new(stats_pb(&stats)))
    }
}
