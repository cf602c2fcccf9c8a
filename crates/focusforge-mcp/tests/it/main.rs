//! The registry on its own: names, schemas, order, and arguments checked
//! against the schemas before any handler runs.

use std::collections::HashSet;

use focusforge_core::UserId;
use focusforge_mcp::{Caller, Category, Mesh, Registry, ToolError, tools, valid_name};
use serde_json::json;

/// A registry whose services are at an address nothing listens on.
fn registry() -> Registry {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect_timeout(std::time::Duration::from_millis(500))
        .connect_lazy();
    Registry::new(Mesh::builder().fallback(channel).build(), tools::all())
}

fn alice() -> Caller {
    Caller::with_token(
        focusforge_auth::Principal {
            user: UserId::parse("alice").expect("user"),
            acting: None,
        },
        "t".into(),
    )
}

#[tokio::test]
async fn every_tool_of_the_design_is_registered_with_object_schemas() {
    let r = registry();
    let names: Vec<&str> = r.list(None).iter().map(|t| t.name.as_str()).collect();
    // The engine's services' tools; other services bring their own.
    assert_eq!(names.len(), 15);
    assert_eq!(
        names.iter().collect::<HashSet<_>>().len(),
        15,
        "unique names"
    );
    for t in r.list(None) {
        assert!(valid_name(&t.name), "{}", t.name);
        assert!(
            !t.title.is_empty() && !t.description.is_empty(),
            "{}",
            t.name
        );
        assert_eq!(t.input_schema["type"], "object", "{}", t.name);
        assert_eq!(t.output_schema["type"], "object", "{}", t.name);
        assert_eq!(
            t.input_schema["additionalProperties"],
            json!(false),
            "{} refuses unknown parameters",
            t.name
        );
        assert!(
            t.name.starts_with(&format!("{}.", t.category.as_str()))
                || (t.category == Category::Ai && t.name.starts_with("ai.")),
            "{} is named after its category",
            t.name
        );
    }
    // The engine's categories; mood's tools come with the mood crate, and
    // gamification and integrations with their services.
    for c in [
        Category::Ai,
        Category::Tasks,
        Category::Memory,
        Category::Planner,
    ] {
        assert!(!r.list(Some(c)).is_empty(), "{c:?} has tools");
    }
    for c in Category::ALL {
        assert!(r.list(Some(c)).iter().all(|t| t.category == c));
    }
    // Category order, then names.
    let keys: Vec<_> = r
        .list(None)
        .iter()
        .map(|t| (t.category, t.name.clone()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(names[0], "ai.analyze_task");
    assert!(!valid_name("Tasks.Create") && !valid_name("a b") && !valid_name(""));
}

#[tokio::test]
async fn arguments_are_checked_before_the_handler_runs() {
    let r = registry();
    let cases = [
        ("tasks.create", json!({}), "title", "is required"),
        ("tasks.create", json!({"title": ""}), "title", "at least 1"),
        (
            "tasks.create",
            json!({"title": "x", "priority": "asap"}),
            "priority",
            "one of",
        ),
        (
            "tasks.create",
            json!({"title": "x", "blocks": [{"title": "b", "minutes": 0}]}),
            "blocks[0].minutes",
            "at least 1",
        ),
        (
            "tasks.create",
            json!({"title": "x", "due_time": "tomorrow"}),
            "due_time",
            "RFC 3339",
        ),
        (
            "tasks.create",
            json!({"title": "x", "colour": "red"}),
            "colour",
            "not a known parameter",
        ),
        (
            "ai.break_down_task",
            json!({"title": "x", "granularity": 6}),
            "granularity",
            "at most 5",
        ),
        (
            "planner.plan",
            json!({"actions": []}),
            "actions",
            "at least 1",
        ),
        (
            "planner.plan",
            json!({"actions": [{"key": "a", "type": "teleport"}]}),
            "actions[0].type",
            "one of",
        ),
        (
            "memory.search",
            json!({"query": "x", "top_k": "ten"}),
            "top_k",
            "must be integer",
        ),
    ];
    for (tool, args, path, rule) in cases {
        match r.call(&alice(), tool, args.clone()).await {
            Err(ToolError::Invalid(v)) => {
                assert!(
                    v.iter().any(|v| v.path == path && v.rule.contains(rule)),
                    "{tool} {args}: {v:?}"
                );
            }
            other => panic!("{tool} {args}: expected invalid arguments, got {other:?}"),
        }
    }
    match r.call(&alice(), "tasks.create", json!([1])).await {
        Err(ToolError::Invalid(v)) => assert_eq!(v[0].path, ""),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn unknown_tools_and_missing_services_are_told_apart() {
    let r = registry();
    assert!(matches!(
        r.call(&alice(), "tasks.destroy", json!({})).await,
        Err(ToolError::NotFound(name)) if name == "tasks.destroy"
    ));
    // Valid arguments reach the handler, whose service does not answer.
    assert!(matches!(
        r.call(&alice(), "tasks.get", json!({"id": "t1"})).await,
        Err(ToolError::Unavailable(_))
    ));
    // A mesh that has no route to the service: not deployed here.
    let nowhere = Registry::new(Mesh::builder().build(), tools::all());
    assert!(matches!(
        nowhere.call(&alice(), "tasks.get", json!({"id": "t1"})).await,
        Err(ToolError::Unavailable(m)) if m.contains("focusforge.tasks.v1.TaskService is not deployed here")
    ));
    let status = r.status().await;
    assert_eq!(status.len(), 15);
    assert!(
        status.iter().all(|s| !s.available && !s.detail.is_empty()),
        "{status:?}"
    );
}
