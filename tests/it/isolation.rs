//! Every RPC of every contract, enumerated from the descriptor set, against
//! another user's ids. Each has a case: either it names stored things by id
//! (bob sends alice's ids: the call is refused as if they did not exist, or
//! it succeeds without showing or touching anything of alice's), or it acts
//! on the caller's own data only, with the reason. A new RPC without a case,
//! or an "own data" RPC that grows an id field, fails the test.

use std::collections::BTreeMap;

use bytes::Bytes;
use focusforge_proto::calendar::v1::{CreateEventRequest, Event, GetEventRequest};
use focusforge_proto::focus::v1::{GetSessionRequest, SessionKind, StartSessionRequest};
use focusforge_proto::gamification::v1::{CreateRewardRequest, ListStoreItemsRequest};
use focusforge_proto::jobs::v1::{GetJobRequest, ListJobsRequest};
use focusforge_proto::memory::v1::{MemoryTier, RecallMemoryRequest, RememberRequest};
use focusforge_proto::mood::v1::{GetMoodRequest, LogMoodRequest};
use focusforge_proto::planner::v1::{ActionSpec, ActionType, CreatePlanRequest, GetPlanRequest};
use focusforge_proto::tasks::v1::{CreateTaskRequest, GetTaskRequest};
use focusforge_proto::users::v1::GetProfileRequest;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor};

use crate::harness::{Server, authed, config, token};

enum Case {
    /// Acts on the caller's own data only; `ids` are id fields it has that
    /// name no stored thing of ours (a Spotify playlist, a new block).
    Own {
        why: &'static str,
        ids: &'static [&'static str],
    },
    /// Bob sends alice's ids (`$task`, `$memory`, ... in the JSON): the call
    /// is NOT_FOUND or PERMISSION_DENIED, and alice's own identical call is
    /// not, so the id, and nothing else, is what refused it.
    Refused(&'static [&'static str]),
    /// Bob's call may succeed (the id only filters the caller's own data),
    /// but shows none of alice's ids.
    Contained(&'static [&'static str]),
    /// For FocusForge's own components: every user token, the owner's too,
    /// is PERMISSION_DENIED.
    MeshOnly(&'static [&'static str]),
}

use Case::{Contained, MeshOnly, Own, Refused};

fn cases() -> BTreeMap<&'static str, Case> {
    let own = |why| Own { why, ids: &[] };
    BTreeMap::from([
        (
            "focusforge.analytics.v1.AnalyticsService/GetReport",
            own("the caller's report"),
        ),
        (
            "focusforge.calendar.v1.CalendarService/CreateEvent",
            Refused(&[
                r#"{"event":{"title":"x","startTime":"2030-01-07T09:00:00Z","endTime":"2030-01-07T10:00:00Z","taskId":"$task"}}"#,
            ]),
        ),
        (
            "focusforge.calendar.v1.CalendarService/GetEvent",
            Refused(&[r#"{"id":"$event"}"#]),
        ),
        (
            "focusforge.calendar.v1.CalendarService/ListEvents",
            own("the caller's calendar"),
        ),
        (
            "focusforge.calendar.v1.CalendarService/UpdateEvent",
            Refused(&[r#"{"event":{"id":"$event","title":"stolen"},"updateMask":"title"}"#]),
        ),
        (
            "focusforge.calendar.v1.CalendarService/DeleteEvent",
            Refused(&[r#"{"id":"$event"}"#]),
        ),
        (
            "focusforge.calendar.v1.CalendarService/GetFreeBusy",
            own("the caller's calendar"),
        ),
        (
            "focusforge.calendar.v1.CalendarService/AutoSchedule",
            own("the caller's open tasks"),
        ),
        (
            "focusforge.calendar.v1.CalendarService/ExportCalendar",
            own("the caller's calendar"),
        ),
        (
            "focusforge.calendar.v1.CalendarService/ImportCalendar",
            own("into the caller's calendar"),
        ),
        (
            "focusforge.calendar.v1.CalendarService/GetFeed",
            own("the caller's feed URL"),
        ),
        (
            "focusforge.calendar.v1.CalendarService/RevokeFeed",
            own("the caller's feed"),
        ),
        (
            "focusforge.calendar.v1.CalendarService/GetGoogleStatus",
            Own {
                why: "the caller's link; calendar_id is Google's",
                ids: &["calendar_id"],
            },
        ),
        (
            "focusforge.calendar.v1.CalendarService/BeginGoogleLink",
            Own {
                why: "the caller's link; calendar_id is Google's",
                ids: &["calendar_id"],
            },
        ),
        (
            "focusforge.calendar.v1.CalendarService/CompleteGoogleLink",
            own("the caller's link, bound to its state"),
        ),
        (
            "focusforge.calendar.v1.CalendarService/SyncGoogle",
            own("the caller's link"),
        ),
        (
            "focusforge.calendar.v1.CalendarService/UnlinkGoogle",
            own("the caller's link"),
        ),
        (
            "focusforge.chain.v1.ChainService/BreakDownTask",
            own("text in, text out"),
        ),
        (
            "focusforge.chain.v1.ChainService/StreamTaskBreakdown",
            own("text in, text out"),
        ),
        (
            "focusforge.chain.v1.ChainService/AnalyzeTask",
            own("text in, text out"),
        ),
        (
            "focusforge.chain.v1.ChainService/Motivate",
            own("the caller's own progress"),
        ),
        (
            "focusforge.chain.v1.ChainService/ValidateProof",
            own("text in, text out"),
        ),
        (
            "focusforge.chain.v1.ChainService/SuggestRitual",
            own("text in, text out"),
        ),
        (
            "focusforge.events.v1.EventService/Subscribe",
            Own {
                why: "the caller's stream; after_id is a position in it",
                ids: &["after_id"],
            },
        ),
        (
            "focusforge.focus.v1.FocusService/StartSession",
            Refused(&[r#"{"kind":"SESSION_KIND_FOCUS","taskId":"$task","plannedMinutes":25}"#]),
        ),
        (
            "focusforge.focus.v1.FocusService/PauseSession",
            Refused(&[r#"{"id":"$session"}"#]),
        ),
        (
            "focusforge.focus.v1.FocusService/ResumeSession",
            Refused(&[r#"{"id":"$session"}"#]),
        ),
        (
            "focusforge.focus.v1.FocusService/CompleteSession",
            Refused(&[r#"{"id":"$session"}"#]),
        ),
        (
            "focusforge.focus.v1.FocusService/AbandonSession",
            Refused(&[r#"{"id":"$session"}"#]),
        ),
        (
            "focusforge.focus.v1.FocusService/RecordInterruption",
            Refused(&[r#"{"id":"$session","kind":"INTERRUPTION_KIND_INTERNAL"}"#]),
        ),
        (
            "focusforge.focus.v1.FocusService/GetSession",
            Refused(&[r#"{"id":"$session"}"#]),
        ),
        (
            "focusforge.focus.v1.FocusService/GetCurrentSession",
            own("the caller's running session"),
        ),
        (
            "focusforge.focus.v1.FocusService/ListSessions",
            Contained(&[r#"{"taskId":"$task"}"#]),
        ),
        (
            "focusforge.focus.v1.FocusService/SyncSessions",
            own("the caller's sessions"),
        ),
        (
            "focusforge.focus.v1.FocusService/GetFocusStats",
            own("the caller's sessions"),
        ),
        (
            "focusforge.gamification.v1.GamificationService/GetProgress",
            own("the caller's points"),
        ),
        (
            "focusforge.gamification.v1.GamificationService/ListLedgerEntries",
            own("the caller's ledger"),
        ),
        (
            "focusforge.gamification.v1.GamificationService/SyncLedgerEntries",
            own("the caller's ledger"),
        ),
        (
            "focusforge.gamification.v1.GamificationService/Award",
            MeshOnly(&[r#"{"taskId":"$task"}"#, r#"{"focusSessionId":"$session"}"#]),
        ),
        (
            "focusforge.gamification.v1.GamificationService/ListStoreItems",
            own("the store and the caller's rewards"),
        ),
        (
            "focusforge.gamification.v1.GamificationService/CreateReward",
            own("a reward of the caller's"),
        ),
        (
            "focusforge.gamification.v1.GamificationService/UpdateReward",
            Refused(&[r#"{"reward":{"id":"$reward","name":"stolen"},"updateMask":"name"}"#]),
        ),
        (
            "focusforge.gamification.v1.GamificationService/DeleteReward",
            Refused(&[r#"{"id":"$reward"}"#]),
        ),
        (
            "focusforge.gamification.v1.GamificationService/Redeem",
            Refused(&[r#"{"itemId":"$reward"}"#]),
        ),
        (
            "focusforge.gamification.v1.GamificationService/ListInventory",
            own("the caller's inventory"),
        ),
        (
            "focusforge.integrations.v1.IntegrationService/BeginSpotifyLink",
            own("the caller's link"),
        ),
        (
            "focusforge.integrations.v1.IntegrationService/CompleteSpotifyLink",
            own("the caller's link, bound to its state"),
        ),
        (
            "focusforge.integrations.v1.IntegrationService/GetSpotifyLink",
            own("the caller's link"),
        ),
        (
            "focusforge.integrations.v1.IntegrationService/UnlinkSpotify",
            own("the caller's link"),
        ),
        (
            "focusforge.integrations.v1.IntegrationService/ListSpotifyPlaylists",
            own("the caller's Spotify"),
        ),
        (
            "focusforge.integrations.v1.IntegrationService/ListSpotifyPlaylistTracks",
            Own {
                why: "the caller's Spotify; the playlist id is Spotify's",
                ids: &["playlist_id"],
            },
        ),
        (
            "focusforge.integrations.v1.IntegrationService/SetFocusPlaylist",
            Own {
                why: "the caller's Spotify; the playlist id is Spotify's",
                ids: &["playlist_id"],
            },
        ),
        (
            "focusforge.integrations.v1.IntegrationService/ListSpotifyDevices",
            own("the caller's Spotify"),
        ),
        (
            "focusforge.integrations.v1.IntegrationService/PlayFocusMusic",
            Own {
                why: "the caller's Spotify; playlist and device ids are Spotify's",
                ids: &["playlist_id", "device_id"],
            },
        ),
        (
            "focusforge.integrations.v1.IntegrationService/PauseMusic",
            Own {
                why: "the caller's Spotify; the device id is Spotify's",
                ids: &["device_id"],
            },
        ),
        (
            "focusforge.integrations.v1.IntegrationService/GetNowPlaying",
            own("the caller's Spotify"),
        ),
        (
            "focusforge.jobs.v1.JobService/ListJobs",
            own("the caller's jobs"),
        ),
        (
            "focusforge.jobs.v1.JobService/GetJob",
            Refused(&[r#"{"id":"$job"}"#]),
        ),
        (
            "focusforge.jobs.v1.JobService/CancelJob",
            Refused(&[r#"{"id":"$job"}"#]),
        ),
        (
            "focusforge.jobs.v1.JobService/GetJobStats",
            own("the caller's jobs"),
        ),
        (
            "focusforge.mcp.v1.McpService/ListTools",
            own("the tool list"),
        ),
        (
            "focusforge.mcp.v1.McpService/CallTool",
            own("each tool calls the services above as the caller"),
        ),
        (
            "focusforge.mcp.v1.McpService/GetStatus",
            own("the server's status"),
        ),
        (
            "focusforge.memory.v1.MemoryService/Remember",
            own("a memory of the caller's"),
        ),
        (
            "focusforge.memory.v1.MemoryService/RecallMemory",
            Refused(&[r#"{"id":"$memory"}"#]),
        ),
        (
            "focusforge.memory.v1.MemoryService/ForgetMemory",
            Refused(&[r#"{"id":"$memory"}"#]),
        ),
        (
            "focusforge.memory.v1.MemoryService/ForgetTier",
            own("the caller's tier"),
        ),
        (
            "focusforge.memory.v1.MemoryService/ListMemories",
            own("the caller's memories"),
        ),
        (
            "focusforge.memory.v1.MemoryService/SearchMemories",
            own("the caller's memories"),
        ),
        (
            "focusforge.memory.v1.MemoryService/RecordTaskInsight",
            Refused(&[r#"{"taskId":"$task","insight":"it went well"}"#]),
        ),
        (
            "focusforge.memory.v1.MemoryService/GetUserContext",
            own("the caller's context"),
        ),
        (
            "focusforge.mood.v1.MoodService/LogMood",
            own("a mood of the caller's"),
        ),
        (
            "focusforge.mood.v1.MoodService/GetMood",
            Refused(&[r#"{"id":"$mood"}"#]),
        ),
        (
            "focusforge.mood.v1.MoodService/ListMoods",
            own("the caller's moods"),
        ),
        (
            "focusforge.mood.v1.MoodService/SyncMoods",
            own("the caller's moods"),
        ),
        (
            "focusforge.mood.v1.MoodService/UpdateMood",
            Refused(&[r#"{"entry":{"id":"$mood","score":2},"updateMask":"score"}"#]),
        ),
        (
            "focusforge.mood.v1.MoodService/DeleteMood",
            Refused(&[r#"{"id":"$mood"}"#]),
        ),
        (
            "focusforge.mood.v1.MoodService/GetMoodPatterns",
            own("the caller's moods"),
        ),
        (
            "focusforge.orchestrator.v1.OrchestratorService/CreateTaskEnhanced",
            own("a task of the caller's"),
        ),
        (
            "focusforge.orchestrator.v1.OrchestratorService/CompleteTaskEnhanced",
            Refused(&[
                r#"{"taskId":"$task","proof":"I wrote all four sections, checked the figures and sent the report to the team"}"#,
            ]),
        ),
        (
            "focusforge.orchestrator.v1.OrchestratorService/OptimizeDay",
            own("the caller's day"),
        ),
        (
            "focusforge.orchestrator.v1.OrchestratorService/StartFocusSession",
            Refused(&[r#"{"taskId":"$task","plannedMinutes":25}"#]),
        ),
        (
            "focusforge.planner.v1.PlannerService/CreatePlan",
            own("a plan of the caller's"),
        ),
        (
            "focusforge.planner.v1.PlannerService/GetPlan",
            Refused(&[r#"{"planId":"$plan"}"#]),
        ),
        (
            "focusforge.planner.v1.PlannerService/ListActions",
            Refused(&[r#"{"planId":"$plan"}"#]),
        ),
        (
            "focusforge.planner.v1.PlannerService/GetAction",
            Refused(&[r#"{"planId":"$plan","key":"a"}"#]),
        ),
        (
            "focusforge.planner.v1.PlannerService/ExecuteReady",
            Refused(&[r#"{"planId":"$plan"}"#]),
        ),
        (
            "focusforge.planner.v1.PlannerService/CancelAction",
            Refused(&[r#"{"planId":"$plan","key":"a","reason":"mine now"}"#]),
        ),
        (
            "focusforge.tasks.v1.TaskService/CreateTask",
            Own {
                why: "a task of the caller's; block ids name its own new blocks",
                ids: &["blocks.id"],
            },
        ),
        (
            "focusforge.tasks.v1.TaskService/GetTask",
            Refused(&[r#"{"id":"$task"}"#]),
        ),
        (
            "focusforge.tasks.v1.TaskService/ListTasks",
            own("the caller's tasks"),
        ),
        (
            "focusforge.tasks.v1.TaskService/SyncTasks",
            own("the caller's tasks"),
        ),
        (
            "focusforge.tasks.v1.TaskService/UpdateTask",
            Refused(&[r#"{"task":{"id":"$task","title":"stolen"},"updateMask":"title"}"#]),
        ),
        (
            "focusforge.tasks.v1.TaskService/StartTask",
            Refused(&[r#"{"id":"$task"}"#]),
        ),
        (
            "focusforge.tasks.v1.TaskService/CompleteTask",
            Refused(&[
                r#"{"id":"$task","proofText":"I wrote all four sections and sent the report to the team"}"#,
            ]),
        ),
        (
            "focusforge.tasks.v1.TaskService/DeleteTask",
            Refused(&[r#"{"id":"$task"}"#]),
        ),
        (
            "focusforge.tasks.v1.TaskService/RecordFocusSession",
            MeshOnly(&[r#"{"taskId":"$task","sessionId":"$session","minutes":25}"#]),
        ),
        (
            "focusforge.users.v1.UserService/GetProfile",
            own("the caller's profile"),
        ),
        (
            "focusforge.users.v1.UserService/UpdateProfile",
            Contained(&[
                r#"{"profile":{"userId":"$alice","displayName":"stolen"},"updateMask":"displayName"}"#,
            ]),
        ),
    ])
}

/// Id-like fields of a request (`id`, `*_id`, `*_ids`), with their paths,
/// one level into its message fields.
fn id_fields(desc: &MessageDescriptor, prefix: &str, depth: usize, out: &mut Vec<String>) {
    for f in desc.fields() {
        let name = f.name();
        let path = format!("{prefix}{name}");
        if (name == "id" || name.ends_with("_id") || name.ends_with("_ids")) && name != "request_id"
        {
            out.push(path);
        } else if let Kind::Message(m) = f.kind()
            && depth < 1
            && !m.full_name().starts_with("google.")
        {
            id_fields(&m, &format!("{path}."), depth + 1, out);
        }
    }
}

/// Alice's things, made for each case.
struct Fixture {
    user: String,
    ids: BTreeMap<&'static str, String>,
}

/// A new owner for each case, so cases cannot disturb each other (one
/// running focus session per user, say).
async fn fixture(server: &Server, n: usize) -> Fixture {
    let user = format!("alice{n}");
    let a = user.as_str();
    let mut ids = BTreeMap::new();
    ids.insert("$alice", user.clone());
    let task = server
        .tasks()
        .await
        .create_task(authed(
            a,
            CreateTaskRequest {
                title: "Write the quarterly report".into(),
                estimated_minutes: 60,
                ..Default::default()
            },
        ))
        .await
        .expect("task")
        .into_inner()
        .task
        .expect("task");
    ids.insert("$task", task.id);
    let memory = server
        .memory()
        .await
        .remember(authed(
            a,
            RememberRequest {
                tier: MemoryTier::LongTerm as i32,
                kind: "note".into(),
                content: "Alice's private note".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("memory")
        .into_inner()
        .memory
        .expect("memory");
    ids.insert("$memory", memory.id);
    let plan = server
        .planner()
        .await
        .create_plan(authed(
            a,
            CreatePlanRequest {
                title: "alice's plan".into(),
                actions: vec![ActionSpec {
                    key: "a".into(),
                    r#type: ActionType::TaskManagement as i32,
                    params_json: r#"{"op":"create","title":"planned"}"#.into(),
                    not_before: Some(prost_types::Timestamp {
                        seconds: 4_102_444_800,
                        nanos: 0,
                    }),
                    ..Default::default()
                }],
                request_id: String::new(),
            },
        ))
        .await
        .expect("plan")
        .into_inner()
        .plan
        .expect("plan");
    ids.insert("$plan", plan.id);
    let session = server
        .focus()
        .await
        .start_session(authed(
            a,
            StartSessionRequest {
                kind: SessionKind::Focus as i32,
                planned_minutes: 25,
                ..Default::default()
            },
        ))
        .await
        .expect("session")
        .into_inner()
        .session
        .expect("session");
    ids.insert("$session", session.id);
    let mood = server
        .mood()
        .await
        .log_mood(authed(
            a,
            LogMoodRequest {
                score: 4,
                energy: 3,
                ..Default::default()
            },
        ))
        .await
        .expect("mood")
        .into_inner()
        .entry
        .expect("mood");
    ids.insert("$mood", mood.id);
    let start = prost_types::Timestamp {
        seconds: 1_893_920_400,
        nanos: 0,
    };
    let event = server
        .calendar()
        .await
        .create_event(authed(
            a,
            CreateEventRequest {
                event: Some(Event {
                    title: "Alice's dentist".into(),
                    start_time: Some(start),
                    end_time: Some(prost_types::Timestamp {
                        seconds: start.seconds + 3600,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("event")
        .into_inner()
        .event
        .expect("event");
    ids.insert("$event", event.id);
    let reward = server
        .game()
        .await
        .create_reward(authed(
            a,
            CreateRewardRequest {
                name: "Alice's cake".into(),
                description: String::new(),
                cost: 10,
            },
        ))
        .await
        .expect("reward")
        .into_inner()
        .reward
        .expect("reward");
    ids.insert("$reward", reward.id);
    let jobs = server
        .jobs()
        .await
        .list_jobs(authed(a, ListJobsRequest::default()))
        .await
        .expect("jobs")
        .into_inner()
        .jobs;
    let job = jobs.first().expect("the plan's job").id.clone();
    ids.insert("$job", job);
    Fixture { user, ids }
}

/// What bob must not change: alice's things as she reads them.
async fn fingerprint(server: &Server, f: &Fixture) -> Vec<String> {
    let a = f.user.as_str();
    let mut out = Vec::new();
    let task = server
        .tasks()
        .await
        .get_task(authed(
            a,
            GetTaskRequest {
                id: f.ids["$task"].clone(),
            },
        ))
        .await;
    out.push(format!(
        "{:?}",
        task.map(|t| t.into_inner().task.map(|t| (t.title, t.status, t.version)))
    ));
    let memory = server
        .memory()
        .await
        .recall_memory(authed(
            a,
            RecallMemoryRequest {
                id: f.ids["$memory"].clone(),
            },
        ))
        .await;
    out.push(format!(
        "{:?}",
        memory.map(|m| m.into_inner().memory.map(|m| m.content))
    ));
    let plan = server
        .planner()
        .await
        .get_plan(authed(
            a,
            GetPlanRequest {
                plan_id: f.ids["$plan"].clone(),
            },
        ))
        .await;
    out.push(format!(
        "{:?}",
        plan.map(|p| p.into_inner().plan.map(|p| (
            p.title,
            p.actions
                .iter()
                .map(|a| (a.spec.as_ref().map(|s| s.key.clone()), a.status))
                .collect::<Vec<_>>()
        )))
    ));
    let session = server
        .focus()
        .await
        .get_session(authed(
            a,
            GetSessionRequest {
                id: f.ids["$session"].clone(),
            },
        ))
        .await;
    out.push(format!(
        "{:?}",
        session.map(|s| s
            .into_inner()
            .session
            .map(|s| (s.state, s.interruptions.len())))
    ));
    let mood = server
        .mood()
        .await
        .get_mood(authed(
            a,
            GetMoodRequest {
                id: f.ids["$mood"].clone(),
            },
        ))
        .await;
    out.push(format!(
        "{:?}",
        mood.map(|m| m.into_inner().entry.map(|m| (m.score, m.version)))
    ));
    let event = server
        .calendar()
        .await
        .get_event(authed(
            a,
            GetEventRequest {
                id: f.ids["$event"].clone(),
            },
        ))
        .await;
    out.push(format!(
        "{:?}",
        event.map(|e| e
            .into_inner()
            .event
            .map(|e| (e.title, e.task_id, e.version)))
    ));
    let items = server
        .game()
        .await
        .list_store_items(authed(a, ListStoreItemsRequest {}))
        .await;
    out.push(format!(
        "{:?}",
        items.map(|i| i
            .into_inner()
            .items
            .into_iter()
            .filter(|i| i.id == f.ids["$reward"])
            .map(|i| (i.name, i.version))
            .collect::<Vec<_>>())
    ));
    let job = server
        .jobs()
        .await
        .get_job(authed(
            a,
            GetJobRequest {
                id: f.ids["$job"].clone(),
            },
        ))
        .await;
    out.push(format!(
        "{:?}",
        job.map(|j| j.into_inner().job.map(|j| (j.kind, j.cancel_requested)))
    ));
    let profile = server
        .users()
        .await
        .get_profile(authed(a, GetProfileRequest {}))
        .await;
    out.push(format!(
        "{:?}",
        profile.map(|p| p.into_inner().profile.map(|p| (p.user_id, p.display_name)))
    ));
    let progress = server
        .game()
        .await
        .get_progress(authed(a, Default::default()))
        .await;
    out.push(format!(
        "{:?}",
        progress.map(|p| p
            .into_inner()
            .progress
            .map(|p| (p.balance, p.ledger_entries)))
    ));
    out
}

/// One gRPC call through the gateway: (status code, message, response bytes).
async fn call(
    server: &Server,
    path: &str,
    user: &str,
    msg: &DynamicMessage,
) -> (i32, String, Bytes) {
    let payload = msg.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    framed.extend_from_slice(&payload);
    let req = Request::post(format!("http://{}{path}", server.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "20S")
        .header("authorization", format!("Bearer {}", token(user)))
        .body(Full::new(Bytes::from(framed)))
        .expect("set-up");
    let stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("set-up");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("set-up");
    tokio::spawn(conn);
    let res = sender.send_request(req).await.expect("set-up");
    let head = res.headers().clone();
    let collected = res.into_body().collect().await.expect("body");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let body = collected.to_bytes();
    let get = |name: &str| {
        head.get(name)
            .or_else(|| trailers.get(name))
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let code = get("grpc-status").parse().unwrap_or(-1);
    (code, get("grpc-message"), body)
}

#[derive(Clone, Copy, PartialEq)]
enum Expect {
    Refused,
    Contained,
    MeshOnly,
}

const NOT_FOUND: i32 = 5;
const PERMISSION_DENIED: i32 = 7;
const INVALID_ARGUMENT: i32 = 3;

#[tokio::test]
async fn every_rpc_refuses_or_contains_another_users_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.rate_limits.enabled = Some(false);
    let server = Server::start_in(dir, cfg).await;
    let mut pool = DescriptorPool::new();
    pool.decode_file_descriptor_set(focusforge_proto::FILE_DESCRIPTOR_SET)
        .expect("set-up");
    let cases = cases();
    let mut problems = Vec::new();
    let mut checked = 0;
    let mut seen = Vec::new();
    for service in pool
        .services()
        .filter(|s| s.full_name().starts_with("focusforge."))
    {
        for method in service.methods() {
            let name = format!("{}/{}", service.full_name(), method.name());
            let path = format!("/{name}");
            seen.push(name.clone());
            let mut ids = Vec::new();
            id_fields(&method.input(), "", 0, &mut ids);
            let Some(case) = cases.get(name.as_str()) else {
                problems.push(format!("{name}: no case (fields with ids: {ids:?})"));
                continue;
            };
            let (templates, expect) = match case {
                Own { why, ids: allowed } => {
                    let unexplained: Vec<&String> = ids
                        .iter()
                        .filter(|i| !allowed.contains(&i.as_str()))
                        .collect();
                    if !unexplained.is_empty() {
                        problems.push(format!(
                            "{name}: marked as acting on the caller's data ({why}), but takes {unexplained:?}"
                        ));
                    }
                    continue;
                }
                Refused(t) => (*t, Expect::Refused),
                Contained(t) => (*t, Expect::Contained),
                MeshOnly(t) => (*t, Expect::MeshOnly),
            };
            for template in templates {
                let f = fixture(&server, checked).await;
                let mut json = (*template).to_owned();
                for (k, v) in &f.ids {
                    json = json.replace(k, v);
                }
                let value: serde_json::Value = serde_json::from_str(&json).expect("template json");
                let msg = DynamicMessage::deserialize(method.input(), value)
                    .unwrap_or_else(|e| panic!("{name}: template {template}: {e}"));
                let before = fingerprint(&server, &f).await;
                let (code, message, body) = call(&server, &path, "bob", &msg).await;
                checked += 1;
                let after = fingerprint(&server, &f).await;
                if before != after {
                    problems.push(format!(
                        "{name} {template}: bob changed alice's data: {before:?} -> {after:?}"
                    ));
                }
                if code == 0 {
                    let text = String::from_utf8_lossy(&body);
                    if let Some(leak) = f.ids.values().find(|id| text.contains(id.as_str())) {
                        problems.push(format!("{name} {template}: bob was shown alice's {leak}"));
                    }
                    if expect != Expect::Contained {
                        problems.push(format!(
                            "{name} {template}: bob's call with alice's ids succeeded"
                        ));
                    }
                } else if expect == Expect::Refused
                    && code != NOT_FOUND
                    && code != PERMISSION_DENIED
                {
                    problems.push(format!(
                        "{name} {template}: bob got code {code} ({message}), not NOT_FOUND"
                    ));
                } else if expect == Expect::MeshOnly && code != PERMISSION_DENIED {
                    problems.push(format!(
                        "{name} {template}: bob got code {code} ({message}), not PERMISSION_DENIED"
                    ));
                }
                let (owner, message, _) = call(&server, &path, &f.user, &msg).await;
                match expect {
                    // The same call from the owner is not refused: the id is
                    // what made bob's fail, not a malformed request.
                    Expect::Refused
                        if [NOT_FOUND, PERMISSION_DENIED, INVALID_ARGUMENT].contains(&owner) =>
                    {
                        problems.push(format!(
                            "{name} {template}: the owner's own call got code {owner} ({message}): the case proves nothing"
                        ));
                    }
                    Expect::MeshOnly if owner != PERMISSION_DENIED => {
                        problems.push(format!(
                            "{name} {template}: a user's own token got code {owner} ({message}), not PERMISSION_DENIED"
                        ));
                    }
                    _ => {}
                }
            }
        }
    }
    for name in cases.keys() {
        if !seen.iter().any(|s| s == name) {
            problems.push(format!(
                "{name}: a case for an RPC the contracts do not have"
            ));
        }
    }
    assert!(seen.len() >= 90, "only {} RPCs enumerated", seen.len());
    assert!(checked >= 39, "only {checked} foreign-id calls made");
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    server.stop().await;
}
