//! The Mood domain on a real embedded store with a manual clock: the
//! back-dating window's edges, idempotent logs, pages, patches and deletes,
//! each scoped to its user.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use focusforge_core::{Error, ManualClock, UserId};
use focusforge_mood::domain::{MoodFilter, MoodPatch, NewMood, NoFacts};
use focusforge_mood::{Moods, Settings};
use focusforge_store::SqliteStore;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0)
        .single()
        .expect("time")
}

fn moods(dir: &tempfile::TempDir, days: u32) -> (Moods, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(now()));
    let store = SqliteStore::open(&dir.path().join("s.db"), clock.clone()).expect("store");
    let moods = Moods::new(
        Arc::new(store),
        clock.clone(),
        Settings {
            backdate_days: days,
        },
    );
    (moods, clock)
}

fn user(name: &str) -> UserId {
    UserId::parse(name).expect("user")
}

fn mood(score: i32) -> NewMood {
    NewMood {
        score,
        ..NewMood::default()
    }
}

fn field(e: Error) -> String {
    match e {
        Error::InvalidArgument(v) => v[0].field.clone(),
        other => panic!("expected invalid argument, got {other:?}"),
    }
}

#[tokio::test]
async fn the_back_dating_window_is_the_configured_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (moods, _) = moods(&dir, 7);
    let alice = user("alice");
    let inside = NewMood {
        at: Some(now() - Duration::days(7) + Duration::minutes(1)),
        ..mood(3)
    };
    moods.log(&alice, inside).await.expect("inside the window");
    let outside = NewMood {
        at: Some(now() - Duration::days(7) - Duration::minutes(1)),
        ..mood(3)
    };
    assert_eq!(
        field(moods.log(&alice, outside).await.expect_err("outside")),
        "at"
    );
    let future = NewMood {
        at: Some(now() + Duration::minutes(5)),
        ..mood(3)
    };
    assert_eq!(
        field(moods.log(&alice, future).await.expect_err("future")),
        "at"
    );
    assert!(Settings { backdate_days: 0 }.check().is_err());
}

#[tokio::test]
async fn a_request_id_logs_once_per_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (moods, clock) = moods(&dir, 30);
    let first = moods
        .log(
            &user("alice"),
            NewMood {
                request_id: "r-1".into(),
                ..mood(4)
            },
        )
        .await
        .expect("log");
    clock.advance(Duration::seconds(5));
    let again = moods
        .log(
            &user("alice"),
            NewMood {
                request_id: "r-1".into(),
                ..mood(2)
            },
        )
        .await
        .expect("retry");
    assert_eq!((again.id.as_str(), again.score), (first.id.as_str(), 4));
    // Bob's request id of the same text is his own entry.
    let bob = moods
        .log(
            &user("bob"),
            NewMood {
                request_id: "r-1".into(),
                ..mood(1)
            },
        )
        .await
        .expect("bob");
    assert_eq!(bob.score, 1);
    let page = moods
        .list(&user("alice"), MoodFilter::default(), 0, "")
        .await
        .expect("list");
    assert_eq!(page.entries.len(), 1);
}

#[tokio::test]
async fn pages_filters_patches_and_deletes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (moods, clock) = moods(&dir, 30);
    let alice = user("alice");
    for i in 0..5 {
        clock.advance(Duration::seconds(1));
        let tags = if i % 2 == 0 {
            vec!["Work".to_owned()]
        } else {
            Vec::new()
        };
        moods
            .log(
                &alice,
                NewMood {
                    tags,
                    ..mood(i % 5 + 1)
                },
            )
            .await
            .expect("log");
    }
    let work = MoodFilter {
        tags: vec!["work".into()],
        ..MoodFilter::default()
    };
    let first = moods
        .list(&alice, work.clone(), 2, "")
        .await
        .expect("page 1");
    assert_eq!(first.entries.len(), 2);
    assert!(!first.next_page_token.is_empty());
    let second = moods
        .list(&alice, work.clone(), 2, &first.next_page_token)
        .await
        .expect("page 2");
    assert_eq!(second.entries.len(), 1);
    assert!(second.next_page_token.is_empty());
    // A token is valid only with the filters it was issued for.
    let other = moods
        .list(&alice, MoodFilter::default(), 2, &first.next_page_token)
        .await
        .expect_err("other filters");
    assert_eq!(field(other), "page_token");

    let id = first.entries[0].id.clone();
    let patched = moods
        .update(
            &alice,
            &id,
            MoodPatch {
                energy: Some(5),
                tags: Some(vec!["deep-work".into()]),
                ..MoodPatch::default()
            },
        )
        .await
        .expect("patch");
    assert_eq!(
        (patched.energy, patched.tags.clone()),
        (Some(5), vec!["deep-work".to_owned()])
    );
    let bad = moods
        .update(
            &alice,
            &id,
            MoodPatch {
                score: Some(0),
                ..MoodPatch::default()
            },
        )
        .await
        .expect_err("score 0");
    assert_eq!(field(bad), "entry.score");
    let not_hers = moods
        .update(&user("bob"), &id, MoodPatch::default())
        .await
        .expect_err("bob");
    assert!(matches!(not_hers, Error::NotFound(_)), "{not_hers:?}");
    moods.delete(&alice, &id).await.expect("delete");
    assert!(matches!(
        moods.get(&alice, &id).await.expect_err("gone"),
        Error::NotFound(_)
    ));

    let p = moods
        .patterns(&alice, None, None, &NoFacts)
        .await
        .expect("patterns");
    assert_eq!(p.entries, 4);
    assert_eq!(p.time_zone, "UTC");
}
