use focusforge_core::{Error, Violations};
use focusforge_proto::users::v1 as pb;
use focusforge_proto::users::v1::user_service_server::UserService;
use focusforge_users::{Preferences, Profile, ProfilePatch, Users};
use tonic::{Request, Response, Status};

use crate::convert::{mask_paths, timestamp};
use crate::{caller, into_status};

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
    }
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
