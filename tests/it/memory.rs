use std::time::Duration;

use focusforge_proto::memory::v1::{
    ForgetMemoryRequest, ForgetTierRequest, ListMemoriesRequest, MemoryTier, RecallMemoryRequest,
    RememberRequest, SearchMemoriesRequest, SearchMode,
};
use tonic::Code;
use tonic_types::StatusExt;

use crate::harness::{Server, authed, config};

fn remember(tier: MemoryTier, content: &str) -> RememberRequest {
    RememberRequest {
        tier: tier as i32,
        kind: "note".into(),
        content: content.into(),
        tags: vec!["focus".into()],
        ..Default::default()
    }
}

#[tokio::test]
async fn remember_recall_list_and_forget_in_each_tier() {
    let server = Server::start().await;
    let mut memory = server.memory().await;
    let mut ids = Vec::new();
    for (tier, ttl) in [
        (MemoryTier::ShortTerm, Some(3600)),
        (MemoryTier::Working, Some(86_400)),
        (MemoryTier::LongTerm, None),
    ] {
        let m = memory
            .remember(authed(
                "alice",
                remember(tier, &format!("{tier:?} thought")),
            ))
            .await
            .expect("remember")
            .into_inner()
            .memory
            .expect("memory");
        assert_eq!(m.tier, tier as i32);
        match (ttl, m.create_time, m.expire_time) {
            (Some(secs), Some(created), Some(expires)) => {
                // The expiry is set just before the store stamps the creation.
                let lifetime = (expires.seconds - created.seconds) as f64
                    + f64::from(expires.nanos - created.nanos) / 1e9;
                assert!(
                    (lifetime - secs as f64).abs() < 1.0,
                    "{tier:?}: {lifetime}s"
                )
            }
            (None, Some(_), None) => {}
            other => panic!("unexpected expiry for {tier:?}: {other:?}"),
        }
        let recalled = memory
            .recall_memory(authed("alice", RecallMemoryRequest { id: m.id.clone() }))
            .await
            .expect("recall")
            .into_inner()
            .memory
            .expect("memory");
        assert_eq!(recalled, m);
        let listed = memory
            .list_memories(authed(
                "alice",
                ListMemoriesRequest {
                    tier: tier as i32,
                    ..Default::default()
                },
            ))
            .await
            .expect("list")
            .into_inner();
        assert_eq!(listed.memories, std::slice::from_ref(&m));
        ids.push(m.id);
    }

    let other = memory
        .recall_memory(authed("bob", RecallMemoryRequest { id: ids[2].clone() }))
        .await;
    assert_eq!(other.expect_err("bob").code(), Code::NotFound);
    let bob_forgets = memory
        .forget_tier(authed(
            "bob",
            ForgetTierRequest {
                tier: MemoryTier::LongTerm as i32,
            },
        ))
        .await
        .expect("bob's tier")
        .into_inner();
    assert_eq!(bob_forgets.forgotten_count, 0);

    memory
        .forget_memory(authed("alice", ForgetMemoryRequest { id: ids[0].clone() }))
        .await
        .expect("forget");
    let gone = memory
        .recall_memory(authed("alice", RecallMemoryRequest { id: ids[0].clone() }))
        .await;
    assert_eq!(gone.expect_err("forgotten").code(), Code::NotFound);
    let forgotten = memory
        .forget_tier(authed(
            "alice",
            ForgetTierRequest {
                tier: MemoryTier::LongTerm as i32,
            },
        ))
        .await
        .expect("forget tier")
        .into_inner();
    assert_eq!(forgotten.forgotten_count, 1);
    assert!(
        memory
            .recall_memory(authed("alice", RecallMemoryRequest { id: ids[1].clone() }))
            .await
            .is_ok()
    );
    server.stop().await;
}

#[tokio::test]
async fn memories_survive_a_restart() {
    let server = Server::start().await;
    let id = server
        .memory()
        .await
        .remember(authed("alice", remember(MemoryTier::LongTerm, "keep me")))
        .await
        .expect("remember")
        .into_inner()
        .memory
        .expect("memory")
        .id;
    let dir = server.stop().await;
    let cfg = config(&dir);
    let server = Server::start_in(dir, cfg).await;
    let m = server
        .memory()
        .await
        .recall_memory(authed("alice", RecallMemoryRequest { id }))
        .await;
    assert_eq!(
        m.expect("recall")
            .into_inner()
            .memory
            .expect("memory")
            .content,
        "keep me"
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_memories_are_invalid_with_field_names() {
    let server = Server::start().await;
    let mut memory = server.memory().await;
    let cases = [
        (
            RememberRequest {
                tier: 0,
                ..remember(MemoryTier::LongTerm, "x")
            },
            "tier",
        ),
        (
            RememberRequest {
                tier: 42,
                ..remember(MemoryTier::LongTerm, "x")
            },
            "tier",
        ),
        (remember(MemoryTier::LongTerm, ""), "content"),
        (
            RememberRequest {
                ttl_seconds: 5,
                ..remember(MemoryTier::ShortTerm, "x")
            },
            "ttl_seconds",
        ),
        (
            RememberRequest {
                ttl_seconds: 3600,
                ..remember(MemoryTier::LongTerm, "x")
            },
            "ttl_seconds",
        ),
        (
            RememberRequest {
                kind: "Bad Kind".into(),
                ..remember(MemoryTier::LongTerm, "x")
            },
            "kind",
        ),
    ];
    for (req, field) in cases {
        let err = memory
            .remember(authed("alice", req))
            .await
            .expect_err(field);
        assert_eq!(err.code(), Code::InvalidArgument, "{field}");
        let bad = err.get_details_bad_request().expect("details");
        assert_eq!(bad.field_violations[0].field, field);
    }
    for (req, field) in [
        (
            SearchMemoriesRequest {
                query: String::new(),
                top_k: 3,
                ..Default::default()
            },
            "query",
        ),
        (
            SearchMemoriesRequest {
                query: "milk".into(),
                top_k: 101,
                ..Default::default()
            },
            "top_k",
        ),
    ] {
        let err = memory
            .search_memories(authed("alice", req))
            .await
            .expect_err(field);
        let bad = err.get_details_bad_request().expect("details");
        assert_eq!(bad.field_violations[0].field, field);
    }
    server.stop().await;
}

async fn search(server: &Server, user: &str, query: &str) -> Vec<(String, f32)> {
    let hits = server
        .memory()
        .await
        .search_memories(authed(
            user,
            SearchMemoriesRequest {
                query: query.into(),
                top_k: 10,
                ..Default::default()
            },
        ))
        .await
        .expect("search")
        .into_inner()
        .hits;
    hits.into_iter()
        .map(|h| (h.memory.expect("memory").content, h.score))
        .collect()
}

#[tokio::test]
async fn semantic_search_finds_related_memories_of_the_caller_only_and_survives_a_restart() {
    let server = Server::start().await;
    let mut memory = server.memory().await;
    for text in [
        "quarterly tax report",
        "purchase milk at the store",
        "book flights to Lisbon",
    ] {
        memory
            .remember(authed("alice", remember(MemoryTier::Semantic, text)))
            .await
            .expect("alice");
    }
    memory
        .remember(authed(
            "bob",
            remember(MemoryTier::Semantic, "buy oat milk and bread"),
        ))
        .await
        .expect("bob");

    let hits = search(&server, "alice", "buy oat milk").await;
    let order: Vec<&str> = hits.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(order[0], "purchase milk at the store", "{hits:?}");
    let tax = order
        .iter()
        .position(|t| *t == "quarterly tax report")
        .expect("listed");
    assert!(tax > 0);
    assert!(
        hits.windows(2).all(|w| w[0].1 >= w[1].1),
        "best first: {hits:?}"
    );
    assert!(
        !order.contains(&"buy oat milk and bread"),
        "never another user's memory"
    );
    let bobs = search(&server, "bob", "quarterly tax report").await;
    assert_eq!(bobs.len(), 1, "bob only sees his own: {bobs:?}");

    let dir = server.stop().await;
    let cfg = config(&dir);
    let server = Server::start_in(dir, cfg).await;
    let hits = search(&server, "alice", "milk").await;
    assert_eq!(hits.len(), 3, "the vectors are still there after a restart");
    assert_eq!(hits[0].0, "purchase milk at the store");

    let list = ListMemoriesRequest {
        tier: MemoryTier::Semantic as i32,
        ..Default::default()
    };
    let listed = server
        .memory()
        .await
        .list_memories(authed("alice", list))
        .await
        .expect("list");
    let milk = listed
        .into_inner()
        .memories
        .into_iter()
        .find(|m| m.content.contains("milk"));
    let forget = ForgetMemoryRequest {
        id: milk.expect("milk").id,
    };
    server
        .memory()
        .await
        .forget_memory(authed("alice", forget))
        .await
        .expect("forget");
    let hits = search(&server, "alice", "milk").await;
    assert!(
        hits.iter().all(|(t, _)| !t.contains("milk")),
        "a forgotten memory is not found: {hits:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn near_duplicate_semantic_memories_are_merged_not_stored_twice() {
    let server = Server::start().await;
    let mut memory = server.memory().await;
    let first = memory
        .remember(authed(
            "alice",
            remember(MemoryTier::Semantic, "Buy oat milk"),
        ))
        .await
        .expect("first")
        .into_inner()
        .memory
        .expect("memory");
    assert_eq!(first.times_remembered, 1);
    // Cosine 0.955 with the first (sentence-transformers gives the same).
    let mut again = remember(MemoryTier::Semantic, "purchase oat milk");
    again.tags = vec!["groceries".into()];
    let merged = memory
        .remember(authed("alice", again))
        .await
        .expect("again")
        .into_inner()
        .memory
        .expect("memory");
    assert_eq!(merged.id, first.id, "merged into the first memory");
    assert_eq!(merged.times_remembered, 2);
    assert_eq!(merged.content, "Buy oat milk", "the first wording is kept");
    assert_eq!(merged.tags, ["focus", "groceries"]);

    let other = memory
        .remember(authed(
            "alice",
            remember(MemoryTier::Semantic, "file the quarterly tax report"),
        ))
        .await
        .expect("different")
        .into_inner()
        .memory
        .expect("memory");
    assert_ne!(
        other.id, first.id,
        "an unrelated memory is stored on its own"
    );
    // Another user's identical memory is never merged into alice's.
    let bobs = memory
        .remember(authed(
            "bob",
            remember(MemoryTier::Semantic, "Buy oat milk"),
        ))
        .await
        .expect("bob")
        .into_inner()
        .memory
        .expect("memory");
    assert_ne!(bobs.id, first.id);
    assert_eq!(bobs.times_remembered, 1);

    let list = ListMemoriesRequest {
        tier: MemoryTier::Semantic as i32,
        ..Default::default()
    };
    let listed = memory
        .list_memories(authed("alice", list))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.memories.len(), 2);
    assert_eq!(
        search(&server, "alice", "oat milk").await.len(),
        2,
        "no duplicate vector either"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_expired_memory_is_gone_before_any_sweep() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.memory.min_ttl_secs = 1;
    let server = Server::start_in(dir, cfg).await;
    let mut memory = server.memory().await;
    let short = memory
        .remember(authed(
            "alice",
            RememberRequest {
                ttl_seconds: 3,
                ..remember(MemoryTier::ShortTerm, "gone in seconds")
            },
        ))
        .await
        .expect("remember")
        .into_inner()
        .memory
        .expect("memory");
    let recall = |id: &str| authed("alice", RecallMemoryRequest { id: id.into() });
    memory
        .recall_memory(recall(&short.id))
        .await
        .expect("fresh");
    let kept = memory
        .remember(authed(
            "alice",
            remember(MemoryTier::ShortTerm, "kept for an hour"),
        ))
        .await
        .expect("remember")
        .into_inner()
        .memory
        .expect("memory");
    tokio::time::sleep(Duration::from_millis(4_100)).await;
    let err = memory
        .recall_memory(recall(&short.id))
        .await
        .expect_err("expired");
    assert_eq!(err.code(), Code::NotFound);
    memory.recall_memory(recall(&kept.id)).await.expect("kept");
    let listed = memory
        .list_memories(authed(
            "alice",
            ListMemoriesRequest {
                tier: MemoryTier::ShortTerm as i32,
                ..Default::default()
            },
        ))
        .await
        .expect("list")
        .into_inner()
        .memories;
    let ids: Vec<&str> = listed.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, [kept.id.as_str()]);
    server.stop().await;
}

#[tokio::test]
async fn keyword_and_hybrid_search_explain_their_scores() {
    let server = Server::start().await;
    let mut memory = server.memory().await;
    for text in [
        "purchase milk at the store",
        "oat milk latte art contest on friday",
        "quarterly tax report",
    ] {
        memory
            .remember(authed("alice", remember(MemoryTier::Semantic, text)))
            .await
            .expect("remember");
    }
    memory
        .remember(authed(
            "bob",
            remember(MemoryTier::Semantic, "oat milk for bob"),
        ))
        .await
        .expect("bob");
    let search = |mode: SearchMode| {
        authed(
            "alice",
            SearchMemoriesRequest {
                query: "buy oat milk".into(),
                top_k: 10,
                mode: mode as i32,
            },
        )
    };

    let keyword = memory
        .search_memories(search(SearchMode::Keyword))
        .await
        .expect("keyword")
        .into_inner()
        .hits;
    let texts: Vec<String> = keyword
        .iter()
        .map(|h| h.memory.clone().expect("memory").content)
        .collect();
    assert_eq!(
        texts,
        [
            "oat milk latte art contest on friday",
            "purchase milk at the store"
        ],
        "only memories sharing a word, most shared first"
    );
    let first = keyword[0]
        .explanation
        .clone()
        .expect("explanation")
        .keyword
        .expect("keyword part");
    assert_eq!(
        (first.rank, first.matched_terms.clone()),
        (1, vec!["milk".to_owned(), "oat".to_owned()])
    );
    assert_eq!(keyword[0].score, first.bm25);

    let hybrid = memory
        .search_memories(search(SearchMode::Hybrid))
        .await
        .expect("hybrid")
        .into_inner()
        .hits;
    assert_eq!(
        hybrid.len(),
        3,
        "every one of alice's memories, none of bob's"
    );
    for hit in &hybrid {
        let e = hit.explanation.clone().expect("explanation");
        let v = e.vector.expect("every memory is ranked by meaning");
        let expected = 1.0 / (60.0 + v.rank as f32)
            + e.keyword
                .as_ref()
                .map_or(0.0, |k| 1.0 / (60.0 + k.rank as f32));
        assert!((e.fused_score - expected).abs() < 1e-6, "{e:?}");
        assert_eq!(hit.score, e.fused_score);
        let content = hit.memory.clone().expect("memory").content;
        assert_eq!(e.keyword.is_some(), content.contains("milk"), "{content}");
    }
    let last = hybrid.last().expect("last").memory.clone().expect("memory");
    assert_eq!(
        last.content, "quarterly tax report",
        "no shared word, far in meaning"
    );

    let semantic = memory
        .search_memories(search(SearchMode::Unspecified))
        .await
        .expect("semantic")
        .into_inner()
        .hits;
    let e = semantic[0].explanation.clone().expect("explanation");
    assert_eq!(e.vector.expect("vector").rank, 1);
    assert!(e.keyword.is_none() && e.fused_score == 0.0);

    let err = memory
        .search_memories(authed(
            "alice",
            SearchMemoriesRequest {
                query: "milk".into(),
                mode: 9,
                ..Default::default()
            },
        ))
        .await
        .expect_err("unknown mode");
    assert_eq!(err.code(), Code::InvalidArgument);
    let bad = err.get_details_bad_request().expect("details");
    assert_eq!(bad.field_violations[0].field, "mode");
    server.stop().await;
}

#[tokio::test]
async fn the_memory_process_compacts_its_vector_tables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.memory.maintenance_interval_secs = 1;
    let server = Server::start_in(dir, cfg).await;
    let mut memory = server.memory().await;
    let notes = [
        "quarterly tax report",
        "purchase milk at the store",
        "book flights to Lisbon",
        "renew the passport",
        "call the plumber about the leak",
        "water the garden on Sunday",
    ];
    for text in notes {
        memory
            .remember(authed("alice", remember(MemoryTier::Semantic, text)))
            .await
            .expect("remember");
    }
    // Each remembered memory was its own write; a fresh look at the table
    // sees the compacted version once maintenance has run.
    let table = server
        .dir
        .path()
        .join("vectors")
        .join("memory_semantic.lance");
    let fragments = || async {
        focusforge_vector::VectorTable::open(&table.to_string_lossy(), 384)
            .await
            .expect("open")
            .fragments()
            .await
    };
    let mut seen = fragments().await;
    for _ in 0..300 {
        if seen == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = fragments().await;
    }
    assert_eq!(seen, 1, "the table was compacted into one fragment");
    // The files of the single writes stay for an hour beside the rewrite.
    let data_files = std::fs::read_dir(table.join("data"))
        .expect("data")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "lance"))
        })
        .count();
    assert!(data_files > notes.len(), "{data_files} data files");
    let hits = memory
        .search_memories(authed(
            "alice",
            SearchMemoriesRequest {
                query: "flying to Portugal".into(),
                top_k: 6,
                ..Default::default()
            },
        ))
        .await
        .expect("search")
        .into_inner()
        .hits;
    assert_eq!(hits.len(), notes.len(), "every memory is still there");
    assert_eq!(
        hits[0].memory.as_ref().expect("memory").content,
        "book flights to Lisbon"
    );
    server.stop().await;
}
