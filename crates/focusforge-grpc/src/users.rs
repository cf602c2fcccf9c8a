use focusforge_core::{Error, Violations};
use focusforge_proto::users::v1 as pb;
use focusforge_proto::users::v1::user_service_server::UserService;
use focusforge_users::{Preferences, Profile, ProfilePatch, Users};
use tonic::{Request, Response, Status};

use crate::convert::{mask_paths, timestamp};
use crate::{caller, into_status};

/// The caller's preferences from the Users service, wherever it runs
/// (`None` where it is not deployed or does not answer): what the other
/// services read of a profile.
pub async fn preferences_of(
    mesh: &focusforge_mesh::Mesh,
    caller: &focusforge_mesh::Caller,
) -> Option<pb::Preferences> {
    use focusforge_proto::users::v1::user_service_client::UserServiceClient;
    let conn = mesh
        .conn(focusforge_proto::users::v1::user_service_server::SERVICE_NAME)
        .ok()?;
    let mut req = caller.request(pb::GetProfileRequest {});
    req.set_timeout(std::time::Duration::from_secs(2));
    UserServiceClient::new(conn)
        .get_profile(req)
        .await
        .ok()?
        .into_inner()
        .profile?
        .preferences
}

/// `focusforge.users.v1.UserService` over the users domain.
#[derive(Clone)]
pub struct UserApi(pub Users);

pub(crate) fn preferences_to_pb(p: Preferences) -> pb::Preferences {
    pb::Preferences {
        timezone: p.timezone,
        focus_minutes: p.focus_minutes,
        short_break_minutes: p.short_break_minutes,
        long_break_minutes: p.long_break_minutes,
        daily_goal_minutes: p.daily_goal_minutes,
        day_start_hour: p.day_start_hour,
        rest_days: p.rest_days.into_iter().map(i32::from).collect(),
        long_break_every: p.long_break_every,
        work_start_minute: p.work_start_minute,
        work_end_minute: p.work_end_minute,
        working_days: p.working_days.into_iter().map(i32::from).collect(),
    }
}

/// Weekdays from the wire (`field` names the list): ISO weekday numbers,
/// each a named weekday.
fn weekdays(v: &mut Violations, field: &str, days: &[i32]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, d) in days.iter().enumerate() {
        match pb::Weekday::try_from(*d) {
            Ok(pb::Weekday::Unspecified) | Err(_) => v.add(
                format!("profile.preferences.{field}[{i}]"),
                "must be a weekday (WEEKDAY_MONDAY to WEEKDAY_SUNDAY)",
            ),
            Ok(
                day @ (pb::Weekday::Monday
                | pb::Weekday::Tuesday
                | pb::Weekday::Wednesday
                | pb::Weekday::Thursday
                | pb::Weekday::Friday
                | pb::Weekday::Saturday
                | pb::Weekday::Sunday),
            ) => out.push(day as u8),
        }
    }
    out
}

fn to_pb(p: Profile) -> pb::Profile {
    pb::Profile {
        user_id: p.user_id.to_string(),
        display_name: p.display_name,
        preferences: Some(preferences_to_pb(p.preferences)),
        create_time: Some(timestamp(p.created_at)),
        update_time: Some(timestamp(p.updated_at)),
        version: p.version,
    }
}

const UPDATABLE: &[&str] = &[
    "display_name",
    "preferences",
    "preferences.timezone",
    "preferences.focus_minutes",
    "preferences.short_break_minutes",
    "preferences.long_break_minutes",
    "preferences.daily_goal_minutes",
    "preferences.day_start_hour",
    "preferences.rest_days",
    "preferences.long_break_every",
    "preferences.work_start_minute",
    "preferences.work_end_minute",
    "preferences.working_days",
];

fn patch(req: pb::UpdateProfileRequest) -> Result<ProfilePatch, Error> {
    let mut v = Violations::new();
    let paths = mask_paths(&mut v, &req.update_mask, UPDATABLE);
    let profile = req.profile.unwrap_or_default();
    let prefs = profile.preferences.unwrap_or_default();
    let mut p = ProfilePatch::default();
    for path in paths {
        let all = path == "preferences";
        if path == "display_name" {
            p.display_name = Some(profile.display_name.clone());
        }
        if all || path == "preferences.timezone" {
            p.timezone = Some(prefs.timezone.clone());
        }
        if all || path == "preferences.focus_minutes" {
            p.focus_minutes = Some(prefs.focus_minutes);
        }
        if all || path == "preferences.short_break_minutes" {
            p.short_break_minutes = Some(prefs.short_break_minutes);
        }
        if all || path == "preferences.long_break_minutes" {
            p.long_break_minutes = Some(prefs.long_break_minutes);
        }
        if all || path == "preferences.daily_goal_minutes" {
            p.daily_goal_minutes = Some(prefs.daily_goal_minutes);
        }
        if all || path == "preferences.day_start_hour" {
            p.day_start_hour = Some(prefs.day_start_hour);
        }
        if all || path == "preferences.rest_days" {
            p.rest_days = Some(weekdays(&mut v, "rest_days", &prefs.rest_days));
        }
        if all || path == "preferences.long_break_every" {
            p.long_break_every = Some(prefs.long_break_every);
        }
        if all || path == "preferences.work_start_minute" {
            p.work_start_minute = Some(prefs.work_start_minute);
        }
        if all || path == "preferences.work_end_minute" {
            p.work_end_minute = Some(prefs.work_end_minute);
        }
        if all || path == "preferences.working_days" {
            p.working_days = Some(weekdays(&mut v, "working_days", &prefs.working_days));
        }
    }
    v.finish()?;
    Ok(p)
}

#[tonic::async_trait]
impl UserService for UserApi {
    async fn get_profile(
        &self,
        req: Request<pb::GetProfileRequest>,
    ) -> Result<Response<pb::GetProfileResponse>, Status> {
        let user = caller(&req)?;
        let profile = self.0.get(&user).await.map_err(into_status)?;
        Ok(Response::new(pb::GetProfileResponse {
            profile: Some(to_pb(profile)),
        }))
    }

    async fn update_profile(
        &self,
        req: Request<pb::UpdateProfileRequest>,
    ) -> Result<Response<pb::UpdateProfileResponse>, Status> {
        let user = caller(&req)?;
        let p = patch(req.into_inner()).map_err(into_status)?;
        let profile = self.0.update(&user, p).await.map_err(into_status)?;
        Ok(Response::new(pb::UpdateProfileResponse {
            profile: Some(to_pb(profile)),
        }))
    }
}
