use chrono::Duration;
use focusforge_core::ManualClock;
use focusforge_store::SqliteStore;

use super::*;

struct Fixture {
    tasks: Tasks,
    clock: ManualClock,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default());
    let store = SqliteStore::open(&dir.path().join("db"), Arc::new(clock.clone())).expect("open");
    Fixture {
        tasks: Tasks::new(Arc::new(store), Arc::new(clock.clone())),
        clock,
        _dir: dir,
    }
}

fn user(name: &str) -> UserId {
    UserId::parse(name).expect("user")
}

fn block(title: &str, minutes: i32, order: i32) -> WorkBlock {
    WorkBlock {
        title: title.into(),
        minutes,
        order,
        done: false,
        id: String::new(),
    }
}

fn fields(err: Error) -> Vec<String> {
    match err {
        Error::InvalidArgument(v) => v.into_iter().map(|f| f.field).collect(),
        other => panic!("expected invalid argument, got {other:?}"),
    }
}

#[tokio::test]
async fn lifecycle_pending_started_completed() {
    let f = fixture();
    let alice = user("alice");
    let new = NewTask {
        title: "  Write the report  ".into(),
        tags: vec!["work".into(), "work".into(), " deep ".into()],
        blocks: vec![block("draft", 25, 1), block("outline", 15, 0)],
        ..NewTask::default()
    };
    let task = f.tasks.create(&alice, new).await.expect("create");
    assert_eq!(task.title, "Write the report");
    assert_eq!(task.status, Status::Pending);
    assert_eq!(task.priority, Priority::Medium);
    assert_eq!(
        task.estimated_minutes, 40,
        "sum of the blocks when not given"
    );
    assert_eq!(task.tags, ["work", "deep"]);
    let orders: Vec<_> = task.blocks.iter().map(|b| b.title.as_str()).collect();
    assert_eq!(orders, ["outline", "draft"]);

    f.clock.advance(Duration::minutes(1));
    let started = f.tasks.start(&alice, &task.id).await.expect("start");
    assert_eq!(started.status, Status::InProgress);
    assert_eq!(started.started_at, Some(f.clock.now()));
    let again = f.tasks.start(&alice, &task.id).await.expect("start again");
    assert_eq!(
        again.version, started.version,
        "starting twice changes nothing"
    );

    f.clock.advance(Duration::minutes(30));
    let done = f
        .tasks
        .complete(&alice, &task.id, "pushed to repo".into())
        .await
        .expect("done");
    assert_eq!(done.status, Status::Completed);
    assert_eq!(done.completion_proof, "pushed to repo");
    assert!(done.blocks.iter().all(|b| b.done));
    assert!(matches!(
        f.tasks.complete(&alice, &task.id, String::new()).await,
        Err(Error::FailedPrecondition(_))
    ));
    assert!(matches!(
        f.tasks.start(&alice, &task.id).await,
        Err(Error::FailedPrecondition(_))
    ));

    f.tasks.delete(&alice, &task.id).await.expect("delete");
    assert!(matches!(
        f.tasks.get(&alice, &task.id).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        f.tasks.delete(&alice, &task.id).await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn validation_names_every_bad_field() {
    let f = fixture();
    let new = NewTask {
        title: " ".into(),
        description: "d".repeat(10_001),
        estimated_minutes: -5,
        tags: vec![String::new()],
        blocks: vec![block("", 0, 0), block("b", 481, 0), block("c", 10, -1)],
        ..NewTask::default()
    };
    let err = f
        .tasks
        .create(&user("alice"), new)
        .await
        .expect_err("invalid");
    assert_eq!(
        fields(err),
        [
            "title",
            "description",
            "estimated_minutes",
            "tags[0]",
            "blocks[0].title",
            "blocks[0].minutes",
            "blocks[1].minutes",
            "blocks[1].order",
            "blocks[2].order",
        ]
    );
    let long = NewTask {
        title: "x".repeat(501),
        ..NewTask::default()
    };
    assert_eq!(
        fields(
            f.tasks
                .create(&user("alice"), long)
                .await
                .expect_err("long")
        ),
        ["title"]
    );
    let ok = NewTask {
        title: "x".repeat(500),
        ..NewTask::default()
    };
    assert!(f.tasks.create(&user("alice"), ok).await.is_ok());
}

#[tokio::test]
async fn other_users_tasks_are_not_found() {
    let f = fixture();
    let task = f
        .tasks
        .create(
            &user("alice"),
            NewTask {
                title: "mine".into(),
                ..NewTask::default()
            },
        )
        .await
        .expect("create");
    let bob = user("bob");
    assert!(matches!(
        f.tasks.get(&bob, &task.id).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        f.tasks.start(&bob, &task.id).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        f.tasks.delete(&bob, &task.id).await,
        Err(Error::NotFound(_))
    ));
    let patch = TaskPatch {
        title: Some("stolen".into()),
        ..TaskPatch::default()
    };
    assert!(matches!(
        f.tasks.update(&bob, &task.id, patch, None).await,
        Err(Error::NotFound(_))
    ));
    let page = f
        .tasks
        .list(&bob, TaskFilter::default(), 0, "")
        .await
        .expect("list");
    assert!(page.tasks.is_empty());
    assert_eq!(
        f.tasks
            .get(&user("alice"), &task.id)
            .await
            .expect("get")
            .title,
        "mine"
    );
}

#[tokio::test]
async fn update_applies_only_the_patch_and_checks_versions() {
    let f = fixture();
    let alice = user("alice");
    let new = NewTask {
        title: "t".into(),
        description: "keep".into(),
        due_at: Some(f.clock.now() + Duration::days(1)),
        ..NewTask::default()
    };
    let task = f.tasks.create(&alice, new).await.expect("create");
    let patch = TaskPatch {
        title: Some("renamed".into()),
        priority: Some(Priority::Urgent),
        due_at: Some(None),
        ..TaskPatch::default()
    };
    let updated = f
        .tasks
        .update(&alice, &task.id, patch.clone(), Some(1))
        .await
        .expect("update");
    assert_eq!(updated.title, "renamed");
    assert_eq!(updated.description, "keep");
    assert_eq!(updated.priority, Priority::Urgent);
    assert_eq!(updated.due_at, None);
    assert_eq!(updated.version, 2);
    let stale = f.tasks.update(&alice, &task.id, patch, Some(1)).await;
    assert!(
        matches!(
            stale,
            Err(Error::VersionMismatch {
                expected: 1,
                actual: 2
            })
        ),
        "{stale:?}"
    );
    let empty = f
        .tasks
        .update(&alice, &task.id, TaskPatch::default(), None)
        .await;
    assert_eq!(fields(empty.expect_err("empty patch")), ["update_mask"]);
}

#[tokio::test]
async fn list_filters_and_pages() {
    let f = fixture();
    let alice = user("alice");
    let base = f.clock.now();
    for i in 0..7 {
        let new = NewTask {
            title: format!("task {i}"),
            priority: Some(if i % 2 == 0 {
                Priority::High
            } else {
                Priority::Low
            }),
            tags: if i < 3 { vec!["home".into()] } else { vec![] },
            due_at: Some(base + Duration::days(i)),
            ..NewTask::default()
        };
        let t = f.tasks.create(&alice, new).await.expect("create");
        if i == 6 {
            f.tasks.start(&alice, &t.id).await.expect("start");
        }
        f.clock.advance(Duration::seconds(1));
    }
    let titles = |page: &TaskPage| {
        page.tasks
            .iter()
            .map(|t| t.title.clone())
            .collect::<Vec<_>>()
    };

    let first = f
        .tasks
        .list(&alice, TaskFilter::default(), 3, "")
        .await
        .expect("list");
    assert_eq!(titles(&first), ["task 6", "task 5", "task 4"]);
    let second = f
        .tasks
        .list(&alice, TaskFilter::default(), 3, &first.next_page_token)
        .await
        .expect("p2");
    assert_eq!(titles(&second), ["task 3", "task 2", "task 1"]);
    let third = f
        .tasks
        .list(&alice, TaskFilter::default(), 3, &second.next_page_token)
        .await
        .expect("p3");
    assert_eq!(titles(&third), ["task 0"]);
    assert!(third.next_page_token.is_empty());

    let high = TaskFilter {
        priority: Some(Priority::High),
        ..TaskFilter::default()
    };
    let page = f
        .tasks
        .list(&alice, high.clone(), 0, "")
        .await
        .expect("high");
    assert_eq!(titles(&page), ["task 6", "task 4", "task 2", "task 0"]);
    let home = TaskFilter {
        tag: Some("home".into()),
        ..TaskFilter::default()
    };
    assert_eq!(
        titles(&f.tasks.list(&alice, home, 0, "").await.expect("tag")).len(),
        3
    );
    let started = TaskFilter {
        statuses: vec![Status::InProgress],
        ..TaskFilter::default()
    };
    assert_eq!(
        titles(&f.tasks.list(&alice, started, 0, "").await.expect("st")),
        ["task 6"]
    );
    let due = TaskFilter {
        due_after: Some(base + Duration::days(2)),
        due_before: Some(base + Duration::days(4)),
        ..TaskFilter::default()
    };
    assert_eq!(
        titles(&f.tasks.list(&alice, due, 0, "").await.expect("due")),
        ["task 3", "task 2"]
    );

    // A token only works with the filters it was issued for.
    let err = f
        .tasks
        .list(&alice, high, 3, &first.next_page_token)
        .await
        .expect_err("mismatch");
    assert_eq!(fields(err), ["page_token"]);
    let err = f
        .tasks
        .list(&alice, TaskFilter::default(), 3, "garbage")
        .await
        .expect_err("junk");
    assert_eq!(fields(err), ["page_token"]);
    let err = f
        .tasks
        .list(&alice, TaskFilter::default(), 201, "")
        .await
        .expect_err("size");
    assert_eq!(fields(err), ["page_size"]);
}

#[tokio::test]
async fn concurrent_updates_all_land() {
    let f = fixture();
    let alice = user("alice");
    let task = f
        .tasks
        .create(
            &alice,
            NewTask {
                title: "t".into(),
                ..NewTask::default()
            },
        )
        .await
        .expect("create");
    let mut handles = Vec::new();
    for i in 0..16 {
        let (tasks, alice, id) = (f.tasks.clone(), alice.clone(), task.id.clone());
        handles.push(tokio::spawn(async move {
            let patch = TaskPatch {
                estimated_minutes: Some(i + 1),
                ..TaskPatch::default()
            };
            tasks.update(&alice, &id, patch, None).await
        }));
    }
    for h in handles {
        h.await.expect("join").expect("update");
    }
    assert_eq!(
        f.tasks.get(&alice, &task.id).await.expect("get").version,
        17
    );
}
