//! Keyword, hybrid and indexed search on real Lance tables.

use std::time::{Duration, Instant};

use focusforge_vector::synthetic::{Rng, Shape, clustered, query_near};
use focusforge_vector::{IvfParams, TableOptions, VectorRecord, VectorTable};

fn uri(dir: &tempfile::TempDir) -> String {
    dir.path().join("t.lance").to_string_lossy().into_owned()
}

fn row(user: &str, id: &str, text: &str, vector: Vec<f32>) -> VectorRecord {
    VectorRecord {
        id: id.into(),
        user_id: user.into(),
        text: text.into(),
        vector,
        created_at_ms: 0,
    }
}

/// Axis-aligned vectors: the `i`-th unit vector of 4 dimensions, nudged.
fn axis(i: usize, nudge: f32) -> Vec<f32> {
    let mut v = vec![nudge; 4];
    v[i] = 1.0;
    v
}

#[tokio::test]
async fn keyword_search_ranks_by_bm25_within_the_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = VectorTable::open(&uri(&dir), 4).await.expect("open");
    table
        .add(vec![
            row("alice", "a1", "File the quarterly tax report", axis(0, 0.0)),
            row("alice", "a2", "Buy oat milk", axis(1, 0.0)),
            row("alice", "a3", "Report the broken printer", axis(2, 0.0)),
            row("bob", "b1", "Tax report for bob", axis(0, 0.0)),
        ])
        .await
        .expect("add");
    let hits = table
        .keyword_search("alice", "tax reports", 10)
        .await
        .expect("search");
    let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids, ["a1", "a3"], "both terms first, no row without a term");
    let first = hits[0].parts.keyword.as_ref().expect("keyword part");
    assert_eq!(first.rank, 1);
    assert_eq!(first.matched_terms, ["report", "tax"]);
    assert_eq!(hits[0].score, first.bm25);
    assert!(hits[0].parts.vector.is_none());
    assert!(
        table
            .keyword_search("alice", "nothing matches", 10)
            .await
            .expect("search")
            .is_empty()
    );
    assert!(
        table
            .keyword_search("carol", "tax", 10)
            .await
            .expect("search")
            .is_empty()
    );
}

#[tokio::test]
async fn hybrid_search_fuses_ranks_and_explains_every_hit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = VectorTable::open(&uri(&dir), 4).await.expect("open");
    table
        .add(vec![
            // Closest in meaning, no shared word.
            row(
                "alice",
                "meaning",
                "purchase dairy at the shop",
                axis(0, 0.05),
            ),
            // Shares the words, far in meaning.
            row("alice", "words", "oat milk latte art contest", axis(3, 0.0)),
            // Both: close and sharing a word.
            row("alice", "both", "oat milk from the store", axis(0, 0.2)),
            row("alice", "neither", "quarterly tax report", axis(2, 0.0)),
        ])
        .await
        .expect("add");
    let q = axis(0, 0.0);
    let hits = table
        .hybrid_search("alice", &q, "oat milk", 10)
        .await
        .expect("search");
    let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids[0], "both", "ranked high in both lists: {ids:?}");
    for hit in &hits {
        let v = hit
            .parts
            .vector
            .as_ref()
            .expect("every row has a vector rank");
        let fused = hit.parts.fused.expect("fused score");
        let expected = 1.0 / (60.0 + v.rank as f32)
            + hit
                .parts
                .keyword
                .as_ref()
                .map_or(0.0, |k| 1.0 / (60.0 + k.rank as f32));
        assert!((fused - expected).abs() < 1e-6, "{hit:?}");
        assert_eq!(hit.score, fused);
    }
    let both = &hits[0].parts;
    assert_eq!(
        both.keyword.as_ref().expect("keyword").matched_terms,
        ["milk", "oat"]
    );
    let meaning = hits.iter().find(|h| h.id == "meaning").expect("meaning");
    assert!(
        meaning.parts.keyword.is_none(),
        "shares no word with the query"
    );
    assert_eq!(meaning.parts.vector.as_ref().expect("vector").rank, 1);
    assert!(
        hits.windows(2).all(|w| w[0].score >= w[1].score),
        "best first"
    );
}

fn recall(truth: &[String], found: &[String]) -> f64 {
    found.iter().filter(|id| truth.contains(id)).count() as f64 / truth.len() as f64
}

#[tokio::test]
async fn a_large_user_gets_an_ivf_index_in_the_background_that_keeps_recall() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = TableOptions {
        ann_min_rows: 1_500,
        ivf: IvfParams::default(),
    };
    let dims = 64;
    let table = VectorTable::open_with(&uri(&dir), dims, options)
        .await
        .expect("open");
    let users = clustered(
        Shape {
            users: 2,
            rows_per_user: 2_000,
            dims,
            topics_per_user: 20,
            noise: 0.1,
        },
        7,
    );
    let mut rows = Vec::new();
    for (u, user) in users.iter().enumerate() {
        for (i, v) in user.rows.iter().enumerate() {
            rows.push(row(&format!("u{u}"), &format!("u{u}-{i}"), "", v.clone()));
        }
    }
    table.add(rows).await.expect("add");
    assert_eq!(
        table.indexed_rows("u0"),
        None,
        "no index before the first read"
    );
    // The first search loads the user and starts the build.
    table
        .search("u0", &users[0].rows[0], 10)
        .await
        .expect("search");
    let deadline = Instant::now() + Duration::from_secs(30);
    while table.indexed_rows("u0").is_none() {
        assert!(Instant::now() < deadline, "the index was never built");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(table.indexed_rows("u0"), Some(2_000));

    let mut rng = Rng::new(11);
    let mut total = 0.0;
    let queries = 200;
    for _ in 0..queries {
        let q = query_near(&users[0], 0.1, &mut rng);
        let exact: Vec<String> = table
            .search_exact("u0", &q, 10)
            .await
            .expect("exact")
            .into_iter()
            .map(|h| h.id)
            .collect();
        let approx: Vec<String> = table
            .search("u0", &q, 10)
            .await
            .expect("approx")
            .into_iter()
            .map(|h| h.id)
            .collect();
        assert!(approx.iter().all(|id| id.starts_with("u0-")));
        total += recall(&exact, &approx);
    }
    let mean = total / f64::from(queries);
    assert!(mean >= 0.95, "recall@10 through the index: {mean}");

    // Rows written after the build are found at once.
    let fresh = users[1].rows[5].clone();
    table
        .add(vec![row("u0", "fresh", "", fresh.clone())])
        .await
        .expect("add");
    let hits = table.search("u0", &fresh, 1).await.expect("search");
    assert_eq!(hits[0].id, "fresh");
    // A deleted row is gone from indexed search too.
    assert!(table.delete("u0", "u0-3").await.expect("delete"));
    let hits = table
        .search("u0", &users[0].rows[3], 10)
        .await
        .expect("search");
    assert!(hits.iter().all(|h| h.id != "u0-3"));
}

#[tokio::test]
async fn an_index_can_be_built_on_demand_for_a_small_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = VectorTable::open(&uri(&dir), 4).await.expect("open");
    table
        .add(
            (0..40)
                .map(|i| row("alice", &format!("a{i}"), "", axis(i % 4, 0.01 * i as f32)))
                .collect(),
        )
        .await
        .expect("add");
    assert_eq!(table.build_index("alice").await.expect("build"), 40);
    assert_eq!(table.indexed_rows("alice"), Some(40));
    assert_eq!(table.build_index("nobody").await.expect("build"), 0);
}
