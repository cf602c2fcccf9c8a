//! The MCP tool of the Analytics service.

use chrono::{DateTime, Duration, Utc};
use focusforge_mcp::tools::{missing, pb_ts};
use focusforge_mcp::{Caller, Category, Mesh, Tool, ToolError};
use focusforge_proto::analytics::v1 as pb;
use focusforge_proto::analytics::v1::analytics_service_client::AnalyticsServiceClient;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const ANALYTICS: &str = pb::analytics_service_server::SERVICE_NAME;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportInput {
    /// How many days back from now, 1-400; default 30.
    #[serde(default)]
    #[schemars(range(min = 1, max = 400))]
    pub days: Option<i64>,
    /// `day`, `week` or `month`; default `week`.
    #[serde(default)]
    pub bucket: Option<BucketName>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BucketName {
    Day,
    Week,
    Month,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Figures {
    pub tasks_created: i32,
    pub tasks_completed: i32,
    /// Of the tasks created, the share completed (0-1).
    pub completion_rate: f64,
    pub focus_sessions_completed: i32,
    pub focus_minutes_completed: f64,
    pub focus_sessions_abandoned: i32,
    /// Median of actual over estimated minutes, and the tasks it rests on.
    pub estimate_ratio_median: f64,
    pub estimate_ratio_tasks: i32,
    pub points_earned: i64,
    pub mood_average: f64,
    pub mood_entries: i32,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Period {
    pub label: String,
    pub figures: Figures,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ReportOut {
    pub time_zone: String,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub total: Figures,
    pub periods: Vec<Period>,
    /// Local hours (0-23) with the most completed focus minutes, best first.
    pub best_hours: Vec<i32>,
    pub current_streak_days: i32,
    pub longest_streak_days: i32,
    /// Findings in words, each with the records it rests on.
    pub insights: Vec<String>,
    pub unavailable_services: Vec<String>,
}

fn figures(f: Option<pb::Figures>) -> Figures {
    let f = f.unwrap_or_default();
    let e = f.estimate_accuracy.unwrap_or_default();
    Figures {
        tasks_created: f.tasks_created,
        tasks_completed: f.tasks_completed,
        completion_rate: f.completion_rate.map(|r| r.value).unwrap_or_default(),
        focus_sessions_completed: f.focus_sessions_completed,
        focus_minutes_completed: f.focus_minutes_completed,
        focus_sessions_abandoned: f.focus_sessions_abandoned,
        estimate_ratio_median: e.median,
        estimate_ratio_tasks: e.n,
        points_earned: f.points_earned,
        mood_average: f.mood_average,
        mood_entries: f.mood_entries,
    }
}

async fn report(mesh: Mesh, caller: Caller, i: ReportInput) -> Result<ReportOut, ToolError> {
    let now = Utc::now();
    let bucket = match i.bucket.unwrap_or(BucketName::Week) {
        BucketName::Day => pb::Bucket::Day,
        BucketName::Week => pb::Bucket::Week,
        BucketName::Month => pb::Bucket::Month,
    };
    let r = AnalyticsServiceClient::new(mesh.conn(ANALYTICS)?)
        .get_report(caller.request(pb::GetReportRequest {
            start_time: Some(pb_ts(now - Duration::days(i.days.unwrap_or(30)))),
            end_time: Some(pb_ts(now)),
            bucket: bucket as i32,
        }))
        .await?
        .into_inner()
        .report
        .ok_or_else(|| missing("report"))?;
    let streak = r.streaks.unwrap_or_default();
    Ok(ReportOut {
        time_zone: r.time_zone,
        start_time: focusforge_mcp::tools::ts(r.start_time),
        end_time: focusforge_mcp::tools::ts(r.end_time),
        total: figures(r.total),
        periods: r
            .periods
            .into_iter()
            .map(|p| Period {
                label: p.label,
                figures: figures(p.figures),
            })
            .collect(),
        best_hours: r.best_hours,
        current_streak_days: streak.current_days,
        longest_streak_days: streak.longest_days,
        insights: r.insights.into_iter().map(|i| i.text).collect(),
        unavailable_services: r.unavailable_services,
    })
}

/// `analytics.report`.
pub fn tools() -> Vec<Tool> {
    vec![Tool::new::<ReportInput, ReportOut, _, _>(
        "analytics.report",
        "Productivity report",
        "The user's completion rate, focus minutes, estimate accuracy, best hours, streaks, mood against productivity and points over the last days, by day, week or month, with findings in words.",
        Category::Analytics,
        ANALYTICS,
        report,
    )]
}
