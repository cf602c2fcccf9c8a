//! Each user's facts, read from the Task, Focus, Mood and Gamification
//! services through their `Sync*` streams, as the caller, and kept in a
//! bounded in-process cache: the first report of a user reads everything
//! written since the range's start; later ones read only what was written
//! since the last read (with an overlap for writes committed meanwhile),
//! and a full read every `refresh` drops what was deleted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use focusforge_core::{Clock, Error, Result, UserId};
use focusforge_kit::{Caller, Mesh};
use focusforge_proto::focus::v1 as focus_pb;
use focusforge_proto::focus::v1::focus_service_client::FocusServiceClient;
use focusforge_proto::gamification::v1 as game_pb;
use focusforge_proto::gamification::v1::gamification_service_client::GamificationServiceClient;
use focusforge_proto::mood::v1 as mood_pb;
use focusforge_proto::mood::v1::mood_service_client::MoodServiceClient;
use focusforge_proto::tasks::v1 as tasks_pb;
use focusforge_proto::tasks::v1::task_service_client::TaskServiceClient;
use prost_types::Timestamp;
use tokio::sync::Mutex;
use tonic::{Code, Status};

use crate::report::{Ended, Facts, MoodFact, PointFact, SessionFact, TaskFact};

pub const TASKS: &str = tasks_pb::task_service_server::SERVICE_NAME;
pub const FOCUS: &str = focus_pb::focus_service_server::SERVICE_NAME;
pub const MOOD: &str = mood_pb::mood_service_server::SERVICE_NAME;
pub const GAME: &str = game_pb::gamification_service_server::SERVICE_NAME;

/// How far before the latest write seen a catch-up read starts, for writes
/// that were committed during the previous read with an earlier time.
const OVERLAP: Duration = Duration::seconds(10);

/// A user's facts and where each source's reading stands.
#[derive(Default)]
pub struct UserFacts {
    pub facts: Facts,
    /// Everything written since this is held.
    pub since: Option<DateTime<Utc>>,
    /// When the last full read began.
    pub read_at: Option<DateTime<Utc>>,
    /// The latest write time seen, per source (tasks, focus, mood, game).
    marks: [Option<i64>; 4],
    /// Sources this deployment does not run.
    pub unavailable: Vec<&'static str>,
}

struct Entry {
    facts: Mutex<UserFacts>,
}

/// Users' entries by recency, weighed by the facts they hold.
#[derive(Default)]
struct Lru {
    users: HashMap<UserId, (Arc<Entry>, u64, u64)>,
    /// Last use -> user, oldest first.
    order: BTreeMap<u64, UserId>,
    tick: u64,
    weight: u64,
}

impl Lru {
    fn touch(&mut self, user: &UserId) -> Arc<Entry> {
        self.tick += 1;
        let tick = self.tick;
        if let Some((entry, used, _)) = self.users.get_mut(user) {
            self.order.remove(used);
            *used = tick;
            self.order.insert(tick, user.clone());
            return entry.clone();
        }
        let entry = Arc::new(Entry {
            facts: Mutex::new(UserFacts::default()),
        });
        self.users.insert(user.clone(), (entry.clone(), tick, 1));
        self.order.insert(tick, user.clone());
        self.weight += 1;
        entry
    }

    /// Records what a user's entry now weighs, then drops the least
    /// recently used users (never `user` itself) past `max`.
    fn weigh(&mut self, user: &UserId, weight: u64, max: u64) {
        if let Some((_, _, w)) = self.users.get_mut(user) {
            self.weight = self.weight - *w + weight;
            *w = weight;
        }
        while self.weight > max {
            let Some((&used, oldest)) = self.order.iter().find(|(_, u)| *u != user) else {
                break;
            };
            let oldest = oldest.clone();
            self.order.remove(&used);
            if let Some((_, _, w)) = self.users.remove(&oldest) {
                self.weight -= w;
            }
        }
    }
}

/// The per-user facts of this process, bounded by the number of facts held
/// over all users: past it the least recently used users are dropped (and
/// read again at their next report).
#[derive(Clone)]
pub struct FactCache {
    lru: Arc<std::sync::Mutex<Lru>>,
    max_facts: u64,
    refresh: Duration,
    clock: Arc<dyn Clock>,
}

/// The records read of each kind on a refresh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Read {
    pub tasks: u32,
    pub sessions: u32,
    pub moods: u32,
    pub points: u32,
}

impl FactCache {
    /// A cache holding at most `max_facts` facts over all users.
    pub fn new(max_facts: u64, refresh: Duration, clock: Arc<dyn Clock>) -> Self {
        FactCache {
            lru: Arc::default(),
            max_facts,
            refresh,
            clock,
        }
    }

    fn lru(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The users whose facts are held, and the facts over all of them.
    pub fn held(&self) -> (usize, u64) {
        let lru = self.lru();
        (lru.users.len(), lru.weight)
    }

    /// Brings the caller's facts up to date for a report starting at
    /// `from`, then hands them to `f`.
    pub async fn with<R>(
        &self,
        mesh: &Mesh,
        caller: &Caller,
        from: DateTime<Utc>,
        f: impl FnOnce(&UserFacts) -> R,
    ) -> Result<R> {
        let user = caller.user.clone();
        let entry = self.lru().touch(&user);
        let mut held = entry.facts.lock().await;
        let now = self.clock.now();
        let full = match (held.since, held.read_at) {
            (Some(since), Some(read_at)) => since > from || now - read_at > self.refresh,
            _ => true,
        };
        if full {
            let since = held.since.map_or(from, |s| s.min(from));
            let mut fresh = UserFacts {
                since: Some(since),
                read_at: Some(now),
                ..UserFacts::default()
            };
            refresh(mesh, caller, &mut fresh, None).await?;
            *held = fresh;
        } else {
            let marks = held.marks;
            refresh(mesh, caller, &mut held, Some(marks)).await?;
        }
        let out = f(&held);
        let weight = held.facts.len() as u64 + 1;
        drop(held);
        self.lru().weigh(&user, weight, self.max_facts);
        Ok(out)
    }
}

fn ms(t: Option<Timestamp>) -> Option<i64> {
    let t = t?;
    DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32).map(|d| d.timestamp_millis())
}

fn since_ts(at: DateTime<Utc>) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    })
}

/// `None` when the service is not deployed here; other failures are the
/// report's failure, naming the service: a range the source will not send
/// (too many records) or refuses is not worth retrying, a source that is
/// down or slow is.
fn source_error(service: &str, s: Status) -> Option<Error> {
    let m = s.message();
    match s.code() {
        Code::Unimplemented => None,
        Code::OutOfRange | Code::FailedPrecondition | Code::InvalidArgument => Some(
            Error::FailedPrecondition(format!("{service} will not send this range: {m}")),
        ),
        Code::Unauthenticated | Code::PermissionDenied => Some(Error::Internal(format!(
            "{service} refused the caller's identity: {m}"
        ))),
        Code::DeadlineExceeded => Some(Error::Unavailable(format!(
            "{service} did not answer in time"
        ))),
        _ => Some(Error::Unavailable(format!("{service}: {m}"))),
    }
}

/// Where reading a source starts: its mark less the overlap on a catch-up,
/// else the facts' start.
fn start(facts: &UserFacts, mark: Option<Option<i64>>) -> DateTime<Utc> {
    let since = facts.since.unwrap_or(DateTime::UNIX_EPOCH);
    match mark {
        Some(Some(m)) => DateTime::from_timestamp_millis(m).unwrap_or(since) - OVERLAP,
        _ => since,
    }
}

/// Reads what each source wrote since its start, then, only when no
/// source failed, applies every source's records and marks together, so a
/// failed read leaves the facts and their marks as they were.
async fn refresh(
    mesh: &Mesh,
    caller: &Caller,
    held: &mut UserFacts,
    marks: Option<[Option<i64>; 4]>,
) -> Result<Read> {
    let at = |i: usize| start(held, marks.map(|m| m[i]));
    let (tasks, sessions, moods, points) = tokio::join!(
        read_tasks(mesh, caller, at(0)),
        read_sessions(mesh, caller, at(1)),
        read_moods(mesh, caller, at(2)),
        read_points(mesh, caller, at(3)),
    );
    let mut unavailable = Vec::new();
    let mut check = |service: &'static str, r: Option<&Status>| -> Result<()> {
        match r.map(|s| source_error(service, s.clone())) {
            None => Ok(()),
            Some(None) => {
                unavailable.push(service);
                Ok(())
            }
            Some(Some(e)) => Err(e),
        }
    };
    check(TASKS, tasks.as_ref().err())?;
    check(FOCUS, sessions.as_ref().err())?;
    check(MOOD, moods.as_ref().err())?;
    check(GAME, points.as_ref().err())?;
    held.unavailable = unavailable;
    let mut read = Read::default();
    if let Ok(b) = tasks {
        read.tasks = b.records.len() as u32;
        held.marks[0] = held.marks[0].max(b.mark);
        held.facts.tasks.extend(b.records);
    }
    if let Ok(b) = sessions {
        read.sessions = b.records.len() as u32;
        held.marks[1] = held.marks[1].max(b.mark);
        for (id, s) in b.records {
            match s {
                Some(s) => {
                    held.facts.sessions.insert(id, s);
                }
                None => {
                    held.facts.sessions.remove(&id);
                }
            }
        }
    }
    if let Ok(b) = moods {
        read.moods = b.records.len() as u32;
        held.marks[2] = held.marks[2].max(b.mark);
        held.facts.moods.extend(b.records);
    }
    if let Ok(b) = points {
        read.points = b.records.len() as u32;
        held.marks[3] = held.marks[3].max(b.mark);
        held.facts.points.extend(b.records);
    }
    Ok(read)
}

/// What one source's read brought: records by id and the latest write time.
struct Batch<K, V> {
    records: Vec<(K, V)>,
    mark: Option<i64>,
}

impl<K, V> Batch<K, V> {
    fn new() -> Self {
        Batch {
            records: Vec::new(),
            mark: None,
        }
    }

    fn push(&mut self, id: K, fact: V, written: Option<i64>) {
        self.records.push((id, fact));
        self.mark = self.mark.max(written);
    }
}

type Fetched<K, V> = std::result::Result<Batch<K, V>, Status>;

async fn read_tasks(
    mesh: &Mesh,
    caller: &Caller,
    since: DateTime<Utc>,
) -> Fetched<String, TaskFact> {
    let mut client = TaskServiceClient::new(mesh.conn(TASKS)?);
    let mut stream = client
        .sync_tasks(caller.request(tasks_pb::SyncTasksRequest {
            changed_since: since_ts(since),
        }))
        .await?
        .into_inner();
    let mut out = Batch::new();
    while let Some(msg) = stream.message().await? {
        for t in msg.tasks {
            let completed = (t.status == tasks_pb::TaskStatus::Completed as i32)
                .then(|| ms(t.complete_time))
                .flatten();
            let fact = TaskFact {
                created: ms(t.create_time).unwrap_or_default(),
                started: ms(t.start_time),
                completed,
                estimated_minutes: t.estimated_minutes,
                focus_minutes: t.focus_minutes,
            };
            out.push(t.id, fact, ms(t.update_time));
        }
    }
    Ok(out)
}

/// Sessions by id; breaks come as `None` (a session's kind never changes,
/// so this only keeps them out).
async fn read_sessions(
    mesh: &Mesh,
    caller: &Caller,
    since: DateTime<Utc>,
) -> Fetched<String, Option<SessionFact>> {
    let mut client = FocusServiceClient::new(mesh.conn(FOCUS)?);
    let mut stream = client
        .sync_sessions(caller.request(focus_pb::SyncSessionsRequest {
            changed_since: since_ts(since),
        }))
        .await?
        .into_inner();
    let mut out = Batch::new();
    while let Some(msg) = stream.message().await? {
        for s in msg.sessions {
            let fact = (s.kind == focus_pb::SessionKind::Focus as i32).then(|| SessionFact {
                started: ms(s.start_time).unwrap_or_default(),
                ended: match focus_pb::SessionState::try_from(s.state) {
                    Ok(focus_pb::SessionState::Completed) => Ended::Completed,
                    Ok(focus_pb::SessionState::Abandoned) => Ended::Abandoned,
                    _ => Ended::Open,
                },
                focused_minutes: s.focused_seconds as f64 / 60.0,
            });
            out.push(s.id, fact, ms(s.update_time));
        }
    }
    Ok(out)
}

async fn read_moods(
    mesh: &Mesh,
    caller: &Caller,
    since: DateTime<Utc>,
) -> Fetched<String, MoodFact> {
    let mut client = MoodServiceClient::new(mesh.conn(MOOD)?);
    let mut stream = client
        .sync_moods(caller.request(mood_pb::SyncMoodsRequest {
            changed_since: since_ts(since),
        }))
        .await?
        .into_inner();
    let mut out = Batch::new();
    while let Some(msg) = stream.message().await? {
        for e in msg.entries {
            let fact = MoodFact {
                at: ms(e.at).unwrap_or_default(),
                score: e.score.clamp(0, 5) as u8,
            };
            out.push(e.id, fact, ms(e.update_time));
        }
    }
    Ok(out)
}

async fn read_points(
    mesh: &Mesh,
    caller: &Caller,
    since: DateTime<Utc>,
) -> Fetched<i64, PointFact> {
    let mut client = GamificationServiceClient::new(mesh.conn(GAME)?);
    let mut stream = client
        .sync_ledger_entries(caller.request(game_pb::SyncLedgerEntriesRequest {
            changed_since: since_ts(since),
        }))
        .await?
        .into_inner();
    let mut out = Batch::new();
    while let Some(msg) = stream.message().await? {
        for e in msg.entries {
            let at = ms(e.create_time);
            let fact = PointFact {
                at: at.unwrap_or_default(),
                points: e.points,
            };
            out.push(e.sequence, fact, at);
        }
    }
    Ok(out)
}

/// The streak as Gamification keeps it; `None` where it is not deployed.
pub async fn streaks(mesh: &Mesh, caller: &Caller) -> Result<Option<crate::report::Streaks>> {
    let conn = match mesh.conn(GAME) {
        Ok(c) => c,
        Err(_) => return Ok(None),
    };
    match GamificationServiceClient::new(conn)
        .get_progress(caller.request(game_pb::GetProgressRequest {}))
        .await
    {
        Ok(r) => {
            Ok(r.into_inner()
                .progress
                .and_then(|p| p.streak)
                .map(|s| crate::report::Streaks {
                    current_days: s.current_days,
                    longest_days: s.longest_days,
                    last_active_day: s.last_active_day,
                }))
        }
        Err(s) => match source_error(GAME, s) {
            None => Ok(None),
            Some(e) => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserId {
        UserId::parse(name).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_least_recently_used_users_go_first_and_never_the_one_in_use() {
        let mut lru = Lru::default();
        let (a, b, c) = (user("a"), user("b"), user("c"));
        lru.touch(&a);
        lru.weigh(&a, 4, 10);
        lru.touch(&b);
        lru.weigh(&b, 4, 10);
        lru.touch(&a);
        lru.touch(&c);
        lru.weigh(&c, 4, 10);
        assert!(lru.users.contains_key(&a), "used after b");
        assert!(!lru.users.contains_key(&b), "the least recently used");
        assert_eq!(lru.weight, 8);
        // `a` is in use while `b` is touched, so `a` is the least recently
        // used when it weighs in: `b` and `c` go, never `a`.
        let mut lru = Lru::default();
        lru.touch(&a);
        lru.weigh(&a, 1, 10);
        lru.touch(&b);
        lru.weigh(&b, 5, 10);
        lru.weigh(&a, 9, 10);
        assert!(lru.users.contains_key(&a) && !lru.users.contains_key(&b));
        assert_eq!(lru.weight, 9);
        lru.weigh(&a, 50, 10);
        assert_eq!(lru.users.len(), 1, "only the user in use stays");
        assert_eq!(lru.weight, 50);
        assert_eq!(lru.order.len(), 1);
    }
}
