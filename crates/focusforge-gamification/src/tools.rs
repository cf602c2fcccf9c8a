//! The MCP tools of the Gamification service. There is no tool that awards
//! points: points come from finished work only.

use chrono::{DateTime, Utc};
use focusforge_mcp::tools::{missing, ts};
use focusforge_mcp::{Caller, Category, Mesh, Tool, ToolError};
use focusforge_proto::gamification::v1 as pb;
use focusforge_proto::gamification::v1::gamification_service_client::GamificationServiceClient;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::SERVICE;
use crate::domain::limits;

fn client(mesh: &Mesh) -> Result<GamificationServiceClient<focusforge_kit::Conn>, ToolError> {
    Ok(GamificationServiceClient::new(mesh.conn(SERVICE)?))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoInput {}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Achievement {
    pub id: String,
    pub name: String,
    pub unlocked: bool,
    pub progress: i64,
    pub threshold: i64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ProgressOut {
    pub balance: i64,
    pub lifetime_points: i64,
    pub level: i32,
    /// Lifetime points at which the next level starts.
    pub next_level_points: i64,
    pub streak_days: i32,
    pub longest_streak_days: i32,
    pub active_today: bool,
    pub freezes_available: i32,
    pub achievements: Vec<Achievement>,
}

async fn progress(mesh: Mesh, caller: Caller, _: NoInput) -> Result<ProgressOut, ToolError> {
    let p = client(&mesh)?
        .get_progress(caller.request(pb::GetProgressRequest {}))
        .await?
        .into_inner()
        .progress
        .ok_or_else(|| missing("progress"))?;
    let streak = p.streak.unwrap_or_default();
    Ok(ProgressOut {
        balance: p.balance,
        lifetime_points: p.lifetime_points,
        level: p.level,
        next_level_points: p.next_level_points,
        streak_days: streak.current_days,
        longest_streak_days: streak.longest_days,
        active_today: streak.active_today,
        freezes_available: streak.freezes_available,
        achievements: p
            .achievements
            .into_iter()
            .map(|a| Achievement {
                id: a.id,
                name: a.name,
                unlocked: a.unlock_time.is_some(),
                progress: a.progress,
                threshold: a.threshold,
            })
            .collect(),
    })
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Item {
    pub id: String,
    /// `store`, `reward` (the user's own) or `streak_freeze`.
    pub kind: String,
    pub name: String,
    pub description: String,
    pub cost: i64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct StoreOut {
    pub balance: i64,
    pub items: Vec<Item>,
}

fn kind_name(k: i32) -> String {
    match pb::ItemKind::try_from(k) {
        Ok(pb::ItemKind::Store) => "store",
        Ok(pb::ItemKind::Reward) => "reward",
        Ok(pb::ItemKind::StreakFreeze) => "streak_freeze",
        Ok(pb::ItemKind::Unspecified) | Err(_) => "unknown",
    }
    .to_owned()
}

async fn store(mesh: Mesh, caller: Caller, _: NoInput) -> Result<StoreOut, ToolError> {
    let mut c = client(&mesh)?;
    let items = c
        .list_store_items(caller.request(pb::ListStoreItemsRequest {}))
        .await?
        .into_inner()
        .items;
    let balance = c
        .get_progress(caller.request(pb::GetProgressRequest {}))
        .await?
        .into_inner()
        .progress
        .map(|p| p.balance)
        .unwrap_or_default();
    Ok(StoreOut {
        balance,
        items: items
            .into_iter()
            .map(|i| Item {
                id: i.id,
                kind: kind_name(i.kind),
                name: i.name,
                description: i.description,
                cost: i.cost,
            })
            .collect(),
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemInput {
    /// An item's id from `gamification.store`.
    #[schemars(length(min = 1, max = 100))]
    pub item_id: String,
    /// Repeat a call with the same id to retry without buying twice.
    #[serde(default)]
    #[schemars(length(max = limits::REQUEST_ID_CHARS))]
    pub request_id: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct RedeemOut {
    pub item_id: String,
    pub name: String,
    pub cost: i64,
    /// The balance after paying.
    pub balance: i64,
    pub redeemed_at: Option<DateTime<Utc>>,
}

async fn redeem(mesh: Mesh, caller: Caller, i: RedeemInput) -> Result<RedeemOut, ToolError> {
    let r = client(&mesh)?
        .redeem(caller.request(pb::RedeemRequest {
            item_id: i.item_id,
            request_id: i.request_id,
        }))
        .await?
        .into_inner();
    let item = r.item.ok_or_else(|| missing("item"))?;
    Ok(RedeemOut {
        item_id: item.item_id,
        name: item.name,
        cost: item.cost,
        balance: r.balance,
        redeemed_at: ts(item.redeem_time),
    })
}

/// `gamification.progress`, `gamification.store` and `gamification.redeem`.
pub fn tools() -> Vec<Tool> {
    vec![
        Tool::new::<NoInput, ProgressOut, _, _>(
            "gamification.progress",
            "Points, level and streak",
            "The user's points, level, streak (with freezes) and achievements.",
            Category::Gamification,
            SERVICE,
            progress,
        ),
        Tool::new::<NoInput, StoreOut, _, _>(
            "gamification.store",
            "The store",
            "What the user can buy with points: the deployment's items and their own rewards, with the balance.",
            Category::Gamification,
            SERVICE,
            store,
        ),
        Tool::new::<RedeemInput, RedeemOut, _, _>(
            "gamification.redeem",
            "Redeem an item",
            "Buys an item from the store with points; refused when the balance is too low.",
            Category::Gamification,
            SERVICE,
            redeem,
        ),
    ]
}
