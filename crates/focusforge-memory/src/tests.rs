use chrono::Duration as Span;
use focusforge_core::ManualClock;
use focusforge_store::SqliteStore;

use super::*;

struct Fixture {
    memories: Memories,
    clock: ManualClock,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default());
    let store = SqliteStore::open(&dir.path().join("db"), Arc::new(clock.clone())).expect("open");
    Fixture {
        memories: Memories::new(
            Arc::new(store),
            Arc::new(clock.clone()),
            MemoryPolicy::default(),
            None,
        ),
        clock,
        _dir: dir,
    }
}

fn user(name: &str) -> UserId {
    UserId::parse(name).expect("user")
}

fn note(content: &str) -> NewMemory {
    NewMemory {
        kind: "note".into(),
        content: content.into(),
        ..NewMemory::default()
    }
}

fn fields(err: Error) -> Vec<String> {
    match err {
        Error::InvalidArgument(v) => v.into_iter().map(|f| f.field).collect(),
        other => panic!("expected invalid argument, got {other:?}"),
    }
}

#[tokio::test]
async fn tiers_expire_on_their_own_schedules() {
    let f = fixture();
    let alice = user("alice");
    let short = f
        .memories
        .remember(&alice, Tier::ShortTerm, note("short"))
        .await
        .expect("short");
    let working = f
        .memories
        .remember(&alice, Tier::Working, note("working"))
        .await
        .expect("working");
    let long = f
        .memories
        .remember(&alice, Tier::LongTerm, note("long"))
        .await
        .expect("long");
    assert_eq!(short.expires_at, Some(f.clock.now() + Span::hours(1)));
    assert_eq!(working.expires_at, Some(f.clock.now() + Span::hours(24)));
    assert_eq!(long.expires_at, None);

    f.clock.advance(Span::minutes(59));
    assert_eq!(
        f.memories
            .recall(&alice, &short.id)
            .await
            .expect("still there")
            .content,
        "short"
    );
    f.clock.advance(Span::minutes(1));
    assert!(matches!(
        f.memories.recall(&alice, &short.id).await,
        Err(Error::NotFound(_))
    ));
    assert!(f.memories.recall(&alice, &working.id).await.is_ok());
    let listed = f
        .memories
        .list(&alice, Tier::ShortTerm, MemoryFilter::default(), 0, "")
        .await;
    assert!(
        listed.expect("list").memories.is_empty(),
        "expired memories are not listed"
    );

    f.clock.advance(Span::hours(23));
    assert!(matches!(
        f.memories.recall(&alice, &working.id).await,
        Err(Error::NotFound(_))
    ));
    f.clock.advance(Span::days(3650));
    assert_eq!(
        f.memories
            .recall(&alice, &long.id)
            .await
            .expect("kept")
            .tier,
        Tier::LongTerm
    );
}

#[tokio::test]
async fn ttl_overrides_stay_within_the_tier_range() {
    let f = fixture();
    let alice = user("alice");
    let custom = NewMemory {
        ttl: Some(Duration::from_secs(600)),
        ..note("ten minutes")
    };
    let m = f
        .memories
        .remember(&alice, Tier::ShortTerm, custom)
        .await
        .expect("remember");
    assert_eq!(m.expires_at, Some(f.clock.now() + Span::minutes(10)));

    for (tier, ttl) in [
        (Tier::ShortTerm, 10),
        (Tier::ShortTerm, 25 * 3600),
        (Tier::Working, 8 * 24 * 3600),
        (Tier::LongTerm, 3600),
    ] {
        let bad = NewMemory {
            ttl: Some(Duration::from_secs(ttl)),
            ..note("x")
        };
        let err = f
            .memories
            .remember(&alice, tier, bad)
            .await
            .expect_err("out of range");
        assert_eq!(fields(err), ["ttl_seconds"], "{tier:?} {ttl}");
    }
}

#[tokio::test]
async fn bad_memories_name_their_fields() {
    let f = fixture();
    let bad = NewMemory {
        kind: "Not A Kind".into(),
        content: "x".repeat(8001),
        tags: vec![String::new()],
        ..NewMemory::default()
    };
    let err = f
        .memories
        .remember(&user("alice"), Tier::LongTerm, bad)
        .await
        .expect_err("bad");
    assert_eq!(fields(err), ["kind", "content", "tags[0]"]);
    let empty = f
        .memories
        .remember(&user("alice"), Tier::LongTerm, note("  "))
        .await;
    assert_eq!(fields(empty.expect_err("empty")), ["content"]);
    let semantic = f
        .memories
        .remember(&user("alice"), Tier::Semantic, note("x"))
        .await;
    assert!(matches!(semantic, Err(Error::Unimplemented(_))));
}

#[tokio::test]
async fn memories_are_the_callers_alone() {
    let f = fixture();
    let m = f
        .memories
        .remember(&user("alice"), Tier::LongTerm, note("secret"))
        .await
        .expect("m");
    let bob = user("bob");
    assert!(matches!(
        f.memories.recall(&bob, &m.id).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        f.memories.forget(&bob, &m.id).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(
        f.memories
            .forget_tier(&bob, Tier::LongTerm)
            .await
            .expect("forget tier"),
        0
    );
    let page = f
        .memories
        .list(&bob, Tier::LongTerm, MemoryFilter::default(), 0, "")
        .await;
    assert!(page.expect("list").memories.is_empty());
    assert_eq!(
        f.memories
            .recall(&user("alice"), &m.id)
            .await
            .expect("kept")
            .content,
        "secret"
    );
}

#[tokio::test]
async fn forgetting_one_or_a_whole_tier() {
    let f = fixture();
    let alice = user("alice");
    let a = f
        .memories
        .remember(&alice, Tier::Working, note("a"))
        .await
        .expect("a");
    f.memories
        .remember(&alice, Tier::Working, note("b"))
        .await
        .expect("b");
    let kept = f
        .memories
        .remember(&alice, Tier::LongTerm, note("c"))
        .await
        .expect("c");
    f.memories.forget(&alice, &a.id).await.expect("forget");
    assert!(matches!(
        f.memories.forget(&alice, &a.id).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(
        f.memories
            .forget_tier(&alice, Tier::Working)
            .await
            .expect("tier"),
        1
    );
    assert!(
        f.memories.recall(&alice, &kept.id).await.is_ok(),
        "other tiers are untouched"
    );
}

#[tokio::test]
async fn listing_filters_and_pages() {
    let f = fixture();
    let alice = user("alice");
    let start = f.clock.now();
    for i in 0..9 {
        let new = NewMemory {
            kind: if i % 3 == 0 {
                "task_insight".into()
            } else {
                "note".into()
            },
            content: format!("memory {i}"),
            tags: if i < 4 { vec!["focus".into()] } else { vec![] },
            ..NewMemory::default()
        };
        f.memories
            .remember(&alice, Tier::LongTerm, new)
            .await
            .expect("remember");
        f.clock.advance(Span::minutes(1));
    }
    let contents = |p: &MemoryPage| {
        p.memories
            .iter()
            .map(|m| m.content.clone())
            .collect::<Vec<_>>()
    };
    let first = f
        .memories
        .list(&alice, Tier::LongTerm, MemoryFilter::default(), 4, "")
        .await
        .expect("p1");
    assert_eq!(
        contents(&first),
        ["memory 8", "memory 7", "memory 6", "memory 5"]
    );
    let second = f
        .memories
        .list(
            &alice,
            Tier::LongTerm,
            MemoryFilter::default(),
            4,
            &first.next_page_token,
        )
        .await
        .expect("p2");
    assert_eq!(
        contents(&second),
        ["memory 4", "memory 3", "memory 2", "memory 1"]
    );

    let insights = MemoryFilter {
        kind: Some("task_insight".into()),
        ..MemoryFilter::default()
    };
    let page = f
        .memories
        .list(&alice, Tier::LongTerm, insights.clone(), 0, "")
        .await
        .expect("kind");
    assert_eq!(contents(&page), ["memory 6", "memory 3", "memory 0"]);
    let tagged = MemoryFilter {
        tag: Some("focus".into()),
        ..MemoryFilter::default()
    };
    assert_eq!(
        f.memories
            .list(&alice, Tier::LongTerm, tagged, 0, "")
            .await
            .expect("tag")
            .memories
            .len(),
        4
    );
    let window = MemoryFilter {
        created_after: Some(start + Span::minutes(2)),
        created_before: Some(start + Span::minutes(4)),
        ..MemoryFilter::default()
    };
    let page = f
        .memories
        .list(&alice, Tier::LongTerm, window, 0, "")
        .await
        .expect("time");
    assert_eq!(contents(&page), ["memory 3", "memory 2"]);

    let err = f
        .memories
        .list(&alice, Tier::LongTerm, insights, 4, &first.next_page_token)
        .await
        .expect_err("token of another query");
    assert_eq!(fields(err), ["page_token"]);
    let err = f
        .memories
        .list(
            &alice,
            Tier::Working,
            MemoryFilter::default(),
            4,
            &first.next_page_token,
        )
        .await;
    assert_eq!(
        fields(err.expect_err("token of another tier")),
        ["page_token"]
    );
}
