use focusforge_core::Violations;
use focusforge_planner::{
    Action, ActionFilter, ActionSpec, ActionType, ActionView, PlanView, Planner, Status,
};
use focusforge_proto::planner::v1 as pb;
use focusforge_proto::planner::v1::planner_service_server::PlannerService;
use tonic::{Request, Response, Status as GrpcStatus};

use crate::convert::{
    enum_value, from_timestamp, opt_timestamp, priority, priority_pb, retry, retry_pb, timestamp,
};
use crate::{caller, into_status};

/// `focusforge.planner.v1.PlannerService` over the planner.
#[derive(Clone)]
pub struct PlannerApi(pub Planner);

type Reply<T> = Result<Response<T>, GrpcStatus>;

const PARAMS_MAX_BYTES: usize = 64 * 1024;
const REASON_MAX: usize = 500;

fn action_type(v: &mut Violations, field: &str, raw: i32) -> Option<ActionType> {
    match enum_value::<pb::ActionType>(v, field, raw)? {
        pb::ActionType::Unspecified => {
            v.add(field, "must be specified");
            None
        }
        pb::ActionType::TaskManagement => Some(ActionType::TaskManagement),
        pb::ActionType::MoodTracking => Some(ActionType::MoodTracking),
        pb::ActionType::Gamification => Some(ActionType::Gamification),
        pb::ActionType::Integration => Some(ActionType::Integration),
        pb::ActionType::Calendar => Some(ActionType::Calendar),
        pb::ActionType::Memory => Some(ActionType::Memory),
        pb::ActionType::Notification => Some(ActionType::Notification),
        pb::ActionType::Focus => Some(ActionType::Focus),
    }
}

fn action_type_pb(t: ActionType) -> i32 {
    let v = match t {
        ActionType::TaskManagement => pb::ActionType::TaskManagement,
        ActionType::MoodTracking => pb::ActionType::MoodTracking,
        ActionType::Gamification => pb::ActionType::Gamification,
        ActionType::Integration => pb::ActionType::Integration,
        ActionType::Calendar => pb::ActionType::Calendar,
        ActionType::Memory => pb::ActionType::Memory,
        ActionType::Notification => pb::ActionType::Notification,
        ActionType::Focus => pb::ActionType::Focus,
    };
    v as i32
}

fn status(v: &mut Violations, field: &str, raw: i32) -> Option<Status> {
    match enum_value::<pb::ActionStatus>(v, field, raw)? {
        pb::ActionStatus::Unspecified => {
            v.add(field, "must be specified");
            None
        }
        pb::ActionStatus::Pending => Some(Status::Pending),
        pb::ActionStatus::Ready => Some(Status::Ready),
        pb::ActionStatus::Running => Some(Status::Running),
        pb::ActionStatus::Succeeded => Some(Status::Succeeded),
        pb::ActionStatus::Failed => Some(Status::Failed),
        pb::ActionStatus::Cancelled => Some(Status::Cancelled),
        pb::ActionStatus::Dead => Some(Status::Dead),
    }
}

fn status_pb(s: Status) -> i32 {
    let v = match s {
        Status::Pending => pb::ActionStatus::Pending,
        Status::Ready => pb::ActionStatus::Ready,
        Status::Running => pb::ActionStatus::Running,
        Status::Succeeded => pb::ActionStatus::Succeeded,
        Status::Failed => pb::ActionStatus::Failed,
        Status::Cancelled => pb::ActionStatus::Cancelled,
        Status::Dead => pb::ActionStatus::Dead,
    };
    v as i32
}

fn spec(v: &mut Violations, i: usize, s: pb::ActionSpec) -> ActionSpec {
    let at = |f: &str| format!("actions[{i}].{f}");
    let action_type = action_type(v, &at("type"), s.r#type).unwrap_or(ActionType::TaskManagement);
    let mut out = ActionSpec::new(s.key, action_type);
    out.priority = priority(v, &at("priority"), s.priority);
    out.params = if s.params_json.trim().is_empty() {
        serde_json::json!({})
    } else if s.params_json.len() > PARAMS_MAX_BYTES {
        v.add(at("params_json"), "must be at most 64 KiB");
        serde_json::Value::Null
    } else {
        match serde_json::from_str::<serde_json::Value>(&s.params_json) {
            Ok(p) if p.is_object() => p,
            Ok(_) => {
                v.add(at("params_json"), "must be a JSON object");
                serde_json::Value::Null
            }
            Err(e) => {
                v.add(at("params_json"), format!("is not JSON: {e}"));
                serde_json::Value::Null
            }
        }
    };
    out.not_before = from_timestamp(v, &at("not_before"), s.not_before);
    out.not_before_from = (!s.not_before_from.is_empty()).then_some(s.not_before_from);
    out.not_before_offset_secs = match s.not_before_offset {
        None => 0,
        Some(d) if d.nanos == 0 => d.seconds,
        Some(_) => {
            v.add(at("not_before_offset"), "must be whole seconds");
            0
        }
    };
    out.depends_on = s.depends_on;
    out.retry = retry(v, &at("retry"), s.retry);
    out.idempotency_key = (!s.idempotency_key.is_empty()).then_some(s.idempotency_key);
    out
}

fn spec_pb(s: &ActionSpec) -> pb::ActionSpec {
    pb::ActionSpec {
        key: s.key.clone(),
        r#type: action_type_pb(s.action_type),
        priority: priority_pb(s.priority),
        params_json: s.params.to_string(),
        not_before: opt_timestamp(s.not_before),
        depends_on: s.depends_on.clone(),
        retry: Some(retry_pb(&s.retry)),
        idempotency_key: s.idempotency_key.clone().unwrap_or_default(),
        not_before_from: s.not_before_from.clone().unwrap_or_default(),
        not_before_offset: (s.not_before_offset_secs != 0).then_some(prost_types::Duration {
            seconds: s.not_before_offset_secs,
            nanos: 0,
        }),
    }
}

fn action_pb(plan_id: &str, a: &Action) -> pb::Action {
    pb::Action {
        plan_id: plan_id.to_owned(),
        spec: Some(spec_pb(&a.spec)),
        status: status_pb(a.status),
        attempts: i32::try_from(a.attempts).unwrap_or(i32::MAX),
        create_time: Some(timestamp(a.created_at)),
        retry_time: opt_timestamp(a.retry_at),
        start_time: opt_timestamp(a.started_at),
        finish_time: opt_timestamp(a.finished_at),
        last_error: a.last_error.clone().unwrap_or_default(),
        cancel_reason: a.reason.clone().unwrap_or_default(),
        output_json: a
            .output
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    }
}

fn view_pb(a: &ActionView) -> pb::Action {
    action_pb(&a.plan_id, &a.action)
}

fn plan_pb(p: &PlanView) -> pb::Plan {
    pb::Plan {
        id: p.id.clone(),
        title: p.title.clone(),
        actions: p
            .plan
            .actions()
            .iter()
            .map(|a| action_pb(&p.id, a))
            .collect(),
        done: p.done,
        create_time: Some(timestamp(p.created_at)),
        update_time: Some(timestamp(p.updated_at)),
    }
}

fn required(v: &mut Violations, field: &str, value: &str) {
    v.check(!value.is_empty(), field, "must not be empty");
}

#[tonic::async_trait]
impl PlannerService for PlannerApi {
    async fn create_plan(
        &self,
        req: Request<pb::CreatePlanRequest>,
    ) -> Reply<pb::CreatePlanResponse> {
        let user = caller(&req)?;
        let req = req.into_inner();
        let mut v = Violations::new();
        let specs: Vec<ActionSpec> = req
            .actions
            .into_iter()
            .enumerate()
            .map(|(i, s)| spec(&mut v, i, s))
            .collect();
        v.finish().map_err(into_status)?;
        let plan = self
            .0
            .create_once(
                &user,
                &req.title,
                specs,
                (!req.request_id.is_empty()).then_some(req.request_id.as_str()),
            )
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::CreatePlanResponse {
            plan: Some(plan_pb(&plan)),
        }))
    }

    async fn get_plan(&self, req: Request<pb::GetPlanRequest>) -> Reply<pb::GetPlanResponse> {
        let user = caller(&req)?;
        let mut v = Violations::new();
        required(&mut v, "plan_id", &req.get_ref().plan_id);
        v.finish().map_err(into_status)?;
        let plan = self
            .0
            .get(&user, &req.get_ref().plan_id)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::GetPlanResponse {
            plan: Some(plan_pb(&plan)),
        }))
    }

    async fn list_actions(
        &self,
        req: Request<pb::ListActionsRequest>,
    ) -> Reply<pb::ListActionsResponse> {
        let user = caller(&req)?;
        let req = req.into_inner();
        let mut v = Violations::new();
        let filter = ActionFilter {
            plan_id: (!req.plan_id.is_empty()).then(|| req.plan_id.clone()),
            statuses: req
                .statuses
                .iter()
                .enumerate()
                .filter_map(|(i, s)| status(&mut v, &format!("statuses[{i}]"), *s))
                .collect(),
            types: req
                .types
                .iter()
                .enumerate()
                .filter_map(|(i, t)| action_type(&mut v, &format!("types[{i}]"), *t))
                .collect(),
        };
        v.finish().map_err(into_status)?;
        let (actions, next) = self
            .0
            .list_actions(&user, &filter, req.page_size, &req.page_token)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::ListActionsResponse {
            actions: actions.iter().map(view_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn get_action(&self, req: Request<pb::GetActionRequest>) -> Reply<pb::GetActionResponse> {
        let user = caller(&req)?;
        let req = req.into_inner();
        let mut v = Violations::new();
        required(&mut v, "plan_id", &req.plan_id);
        required(&mut v, "key", &req.key);
        v.finish().map_err(into_status)?;
        let action = self
            .0
            .get_action(&user, &req.plan_id, &req.key)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::GetActionResponse {
            action: Some(view_pb(&action)),
        }))
    }

    async fn execute_ready(
        &self,
        req: Request<pb::ExecuteReadyRequest>,
    ) -> Reply<pb::ExecuteReadyResponse> {
        let user = caller(&req)?;
        let plan_id = &req.get_ref().plan_id;
        let ran = self
            .0
            .execute_ready(&user, (!plan_id.is_empty()).then_some(plan_id.as_str()))
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::ExecuteReadyResponse {
            actions: ran.iter().map(view_pb).collect(),
        }))
    }

    async fn cancel_action(
        &self,
        req: Request<pb::CancelActionRequest>,
    ) -> Reply<pb::CancelActionResponse> {
        let user = caller(&req)?;
        let req = req.into_inner();
        let mut v = Violations::new();
        required(&mut v, "plan_id", &req.plan_id);
        v.optional_text("reason", &req.reason, REASON_MAX);
        v.finish().map_err(into_status)?;
        let key = (!req.key.is_empty()).then_some(req.key.as_str());
        let (plan, cancelled) = self
            .0
            .cancel(&user, &req.plan_id, key, &req.reason)
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::CancelActionResponse {
            plan: Some(plan_pb(&plan)),
            cancelled_keys: cancelled,
        }))
    }
}
