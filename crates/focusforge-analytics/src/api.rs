//! The gRPC edge of the Analytics service.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use focusforge_core::{Clock, Error, Violations};
use focusforge_grpc::convert::{enum_value, from_timestamp, timestamp};
use focusforge_grpc::{identity, into_status};
use focusforge_kit::Mesh;
use focusforge_proto::analytics::v1 as pb;
use focusforge_proto::analytics::v1::analytics_service_server::AnalyticsService as AnalyticsRpc;
use tonic::{Request, Response, Status};

use crate::facts::{FactCache, streaks};
use crate::report::{self, Bucket, Figures, Report};

/// The longest range a report covers.
pub const MAX_RANGE_DAYS: i64 = 400;
/// The range of a report that names none.
pub const DEFAULT_RANGE_DAYS: i64 = 30;

#[derive(Clone)]
pub struct AnalyticsApi {
    pub cache: FactCache,
    pub mesh: Mesh,
    pub clock: Arc<dyn Clock>,
}

/// The range and bucket of a request, checked.
pub fn range(
    now: DateTime<Utc>,
    start: Option<prost_types::Timestamp>,
    end: Option<prost_types::Timestamp>,
    bucket: i32,
) -> Result<(DateTime<Utc>, DateTime<Utc>, Bucket), Error> {
    let mut v = Violations::new();
    let to = from_timestamp(&mut v, "end_time", end);
    let from = from_timestamp(&mut v, "start_time", start);
    let b = enum_value::<pb::Bucket>(&mut v, "bucket", bucket);
    v.finish()?;
    let to = to.unwrap_or(now);
    let from = from.unwrap_or(to - Duration::days(DEFAULT_RANGE_DAYS));
    let mut v = Violations::new();
    v.check(from < to, "end_time", "must be later than start_time");
    v.check(
        to - from <= Duration::days(MAX_RANGE_DAYS),
        "end_time",
        format!("must be at most {MAX_RANGE_DAYS} days after start_time"),
    );
    v.finish()?;
    let bucket = match b {
        Some(pb::Bucket::Week) => Bucket::Week,
        Some(pb::Bucket::Month) => Bucket::Month,
        _ => Bucket::Day,
    };
    Ok((from, to, bucket))
}

fn figures_pb(f: Figures) -> pb::Figures {
    pb::Figures {
        tasks_created: f.tasks_created as i32,
        tasks_completed: f.tasks_completed as i32,
        completion_rate: Some(pb::Rate {
            value: f.completion_rate.value,
            n: f.completion_rate.n as i32,
        }),
        focus_sessions_completed: f.focus_sessions_completed as i32,
        focus_minutes_completed: f.focus_minutes_completed,
        focus_sessions_abandoned: f.focus_sessions_abandoned as i32,
        focus_minutes_abandoned: f.focus_minutes_abandoned,
        estimate_accuracy: Some(pb::Distribution {
            median: f.estimate_accuracy.median,
            p25: f.estimate_accuracy.p25,
            p75: f.estimate_accuracy.p75,
            n: f.estimate_accuracy.n as i32,
        }),
        points_earned: f.points_earned,
        points_earned_entries: f.points_earned_entries as i32,
        points_spent: f.points_spent,
        points_spent_entries: f.points_spent_entries as i32,
        mood_average: f.mood_average,
        mood_entries: f.mood_entries as i32,
    }
}

fn correlation_pb(c: report::Correlation) -> pb::Correlation {
    pb::Correlation {
        r: c.r,
        days: c.days as i32,
        reported: c.reported,
    }
}

pub fn report_pb(r: Report) -> pb::Report {
    let bucket = match r.bucket {
        Bucket::Day => pb::Bucket::Day,
        Bucket::Week => pb::Bucket::Week,
        Bucket::Month => pb::Bucket::Month,
    };
    let m = r.mood_productivity;
    pb::Report {
        time_zone: r.time_zone,
        start_time: Some(timestamp(r.start)),
        end_time: Some(timestamp(r.end)),
        bucket: bucket as i32,
        total: Some(figures_pb(r.total)),
        periods: r
            .periods
            .into_iter()
            .map(|p| pb::Period {
                label: p.label,
                start_time: Some(timestamp(p.start)),
                end_time: Some(timestamp(p.end)),
                figures: Some(figures_pb(p.figures)),
            })
            .collect(),
        hours: r
            .hours
            .into_iter()
            .map(|h| pb::HourOfDay {
                hour: h.hour as i32,
                sessions_completed: h.completed as i32,
                sessions_abandoned: h.abandoned as i32,
                focus_minutes_completed: h.minutes_completed,
                completion_rate: h.completion_rate,
            })
            .collect(),
        best_hours: r.best_hours.into_iter().map(|h| h as i32).collect(),
        streaks: r.streaks.map(|s| pb::Streaks {
            current_days: s.current_days,
            longest_days: s.longest_days,
            last_active_day: s.last_active_day,
        }),
        mood_productivity: Some(pb::MoodProductivity {
            days_with_mood: m.days_with_mood as i32,
            days_with_mood_and_work: m.days_with_mood_and_work as i32,
            with_focus_minutes: Some(correlation_pb(m.with_focus_minutes)),
            with_tasks_completed: Some(correlation_pb(m.with_tasks_completed)),
            bands: m
                .bands
                .into_iter()
                .map(|b| pb::MoodBand {
                    band: b.band.to_owned(),
                    days: b.days as i32,
                    average_focus_minutes: b.average_focus_minutes,
                    average_tasks_completed: b.average_tasks_completed,
                })
                .collect(),
        }),
        insights: r
            .insights
            .into_iter()
            .map(|i| pb::Insight {
                kind: i.kind.to_owned(),
                text: i.text,
                n: i.n as i32,
            })
            .collect(),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl AnalyticsRpc for AnalyticsApi {
    async fn get_report(
        &self,
        req: Request<pb::GetReportRequest>,
    ) -> Result<Response<pb::GetReportResponse>, Status> {
        let who = identity(&req)?;
        let r = req.into_inner();
        let (from, to, bucket) =
            range(self.clock.now(), r.start_time, r.end_time, r.bucket).map_err(into_status)?;
        let (prefs, streaks) = tokio::join!(
            focusforge_grpc::preferences_of(&self.mesh, &who),
            streaks(&self.mesh, &who)
        );
        let tz: Tz = prefs
            .and_then(|p| p.timezone.parse().ok())
            .unwrap_or(chrono_tz::UTC);
        let streaks = streaks.map_err(into_status)?;
        let report = self
            .cache
            .with(&self.mesh, &who, from, |held| {
                let mut out = report_pb(report::report(&held.facts, tz, from, to, bucket, streaks));
                out.unavailable_services =
                    held.unavailable.iter().map(|s| (*s).to_owned()).collect();
                out.tasks_read = held.facts.tasks.len() as i32;
                out.sessions_read = held.facts.sessions.len() as i32;
                out.moods_read = held.facts.moods.len() as i32;
                out.ledger_entries_read = held.facts.points.len() as i32;
                out
            })
            .await
            .map_err(into_status)?;
        Ok(Response::new(pb::GetReportResponse {
            report: Some(report),
        }))
    }
}
