//! Per-user semantic search on 100,000 clustered 384-d vectors of 100 users:
//! FocusForge's exact and IVF search next to Lance's own filtered flat scan
//! and filtered IVF_PQ search on the same dataset, in the same process.
//!
//! `cargo bench -p focusforge-vector --bench search` (set `SEARCH_QUERIES`
//! to change the number of queries, 1,000 by default). Last, loading users'
//! rows from the fragments of 2,000 single-row writes, and again after
//! `VectorTable::optimize`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use lance::Dataset;
use lance::deps::arrow_array::{Array, Float32Array, RecordBatch, StringArray};
use lance::index::DatasetIndexExt;
use lance::index::vector::VectorIndexParams;
use lance_index::IndexType;
use lance_index::scalar::ScalarIndexParams;
use lance_linalg::distance::MetricType;

use focusforge_vector::synthetic::{Rng, Shape, clustered, query_near};
use focusforge_vector::{TableOptions, VectorRecord, VectorTable};

const USERS: usize = 100;
const ROWS_PER_USER: usize = 1_000;
const DIMS: usize = 384;
const K: usize = 10;

struct Stats {
    name: String,
    latencies: Vec<Duration>,
    recall: f64,
}

impl Stats {
    fn print(&mut self) {
        self.latencies.sort();
        let total: Duration = self.latencies.iter().sum();
        let pct = |p: f64| {
            let i = ((self.latencies.len() as f64 * p) as usize).min(self.latencies.len() - 1);
            self.latencies[i].as_secs_f64() * 1e3
        };
        println!(
            "{:<52} {:>9.0} {:>9.3} {:>9.3} {:>10.4}",
            self.name,
            self.latencies.len() as f64 / total.as_secs_f64(),
            pct(0.5),
            pct(0.99),
            self.recall
        );
    }
}

fn recall(truth: &[String], found: &[String]) -> f64 {
    found.iter().filter(|id| truth.contains(id)).count() as f64 / truth.len() as f64
}

async fn lance_search(ds: &Dataset, user: &str, q: &[f32], nprobes: Option<usize>) -> Vec<String> {
    let mut scan = ds.scan();
    scan.project(&["id"]).expect("project");
    scan.filter(&format!("user_id = '{user}'")).expect("filter");
    scan.prefilter(true);
    scan.nearest("vector", &Float32Array::from(q.to_vec()), K)
        .expect("nearest");
    scan.distance_metric(MetricType::Cosine);
    match nprobes {
        Some(n) => {
            scan.nprobes(n);
            scan.refine(10);
        }
        None => {
            scan.use_index(false);
        }
    }
    let batches: Vec<RecordBatch> = scan
        .try_into_stream()
        .await
        .expect("stream")
        .try_collect()
        .await
        .expect("collect");
    batches
        .iter()
        .flat_map(|b| {
            let ids = b
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("ids")
                .clone();
            (0..ids.len()).map(move |i| ids.value(i).to_owned())
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let queries: usize = std::env::var("SEARCH_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let uri = dir
        .path()
        .join("bench.lance")
        .to_string_lossy()
        .into_owned();
    println!(
        "data: {USERS} users x {ROWS_PER_USER} rows = {} vectors of {DIMS} dimensions, 20 topics per user; {queries} queries, top-{K}",
        USERS * ROWS_PER_USER
    );

    let users = clustered(
        Shape {
            users: USERS,
            rows_per_user: ROWS_PER_USER,
            dims: DIMS,
            topics_per_user: 20,
            noise: 0.05,
        },
        42,
    );
    let options = TableOptions {
        // Only explicit builds: the exact rows come first.
        ann_min_rows: usize::MAX,
        ..TableOptions::default()
    };
    let table = Arc::new(
        VectorTable::open_with(&uri, DIMS, options)
            .await
            .expect("open"),
    );
    let started = Instant::now();
    for (u, user) in users.iter().enumerate() {
        let rows = user
            .rows
            .iter()
            .enumerate()
            .map(|(i, v)| VectorRecord {
                id: format!("u{u}-{i}"),
                user_id: format!("u{u}"),
                text: String::new(),
                vector: v.clone(),
                created_at_ms: 0,
            })
            .collect();
        table.add(rows).await.expect("add");
    }
    println!(
        "write: {:.1} s (one commit per user)",
        started.elapsed().as_secs_f64()
    );

    let mut rng = Rng::new(7);
    let work: Vec<(String, Vec<f32>)> = (0..queries)
        .map(|_| {
            let u = rng.below(USERS);
            (format!("u{u}"), query_near(&users[u], 0.05, &mut rng))
        })
        .collect();

    // First touch of each user: its rows read from Lance through the filter.
    let mut loads = Vec::new();
    for (u, user) in users.iter().enumerate() {
        let t = Instant::now();
        table
            .search_exact(&format!("u{u}"), &user.rows[0], K)
            .await
            .expect("load");
        loads.push(t.elapsed());
    }
    loads.sort();
    println!(
        "first search of a user (rows read from Lance): p50 {:.1} ms, p99 {:.1} ms",
        loads[USERS / 2].as_secs_f64() * 1e3,
        loads[USERS * 99 / 100].as_secs_f64() * 1e3
    );

    let mut truth = Vec::with_capacity(queries);
    let mut exact = Stats {
        name: "focusforge exact, per-user rows in memory".into(),
        latencies: Vec::new(),
        recall: 0.0,
    };
    for (user, q) in &work {
        let t = Instant::now();
        let hits = table.search_exact(user, q, K).await.expect("search");
        exact.latencies.push(t.elapsed());
        truth.push(hits.into_iter().map(|h| h.id).collect::<Vec<_>>());
    }
    exact.recall = 1.0;

    let started = Instant::now();
    for u in 0..USERS {
        table.build_index(&format!("u{u}")).await.expect("build");
    }
    println!(
        "ivf build: {:.2} s for {USERS} users",
        started.elapsed().as_secs_f64()
    );
    let mut ivf = Stats {
        name: "focusforge IVF-Flat per user (32 lists, 8 probed)".into(),
        latencies: Vec::new(),
        recall: 0.0,
    };
    let mut sum = 0.0;
    for ((user, q), truth) in work.iter().zip(&truth) {
        let t = Instant::now();
        let hits = table.search(user, q, K).await.expect("search");
        ivf.latencies.push(t.elapsed());
        let ids: Vec<String> = hits.into_iter().map(|h| h.id).collect();
        sum += recall(truth, &ids);
    }
    ivf.recall = sum / queries as f64;

    // Lance on its own, on the same dataset.
    let mut ds = Dataset::open(&uri).await.expect("open dataset");
    let started = Instant::now();
    ds.create_index(
        &["user_id"],
        IndexType::Bitmap,
        None,
        &ScalarIndexParams::new("bitmap".into()),
        true,
    )
    .await
    .expect("bitmap index");
    println!(
        "lance bitmap index on user_id: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let lance_queries = queries.min(300);
    let mut flat = Stats {
        name: "lance flat scan, user_id prefilter (bitmap index)".into(),
        latencies: Vec::new(),
        recall: 0.0,
    };
    let mut sum = 0.0;
    for ((user, q), truth) in work.iter().zip(&truth).take(lance_queries) {
        let t = Instant::now();
        let ids = lance_search(&ds, user, q, None).await;
        flat.latencies.push(t.elapsed());
        sum += recall(truth, &ids);
    }
    flat.recall = sum / lance_queries as f64;

    let started = Instant::now();
    ds.create_index(
        &["vector"],
        IndexType::Vector,
        None,
        &VectorIndexParams::ivf_pq(256, 8, 48, MetricType::Cosine, 25),
        true,
    )
    .await
    .expect("ivf_pq index");
    println!(
        "lance IVF_PQ index (256 partitions, 48 sub-vectors): {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut pq = Stats {
        name: "lance IVF_PQ, user_id prefilter, 20 probes, refine 10".into(),
        latencies: Vec::new(),
        recall: 0.0,
    };
    let mut sum = 0.0;
    for ((user, q), truth) in work.iter().zip(&truth).take(lance_queries) {
        let t = Instant::now();
        let ids = lance_search(&ds, user, q, Some(20)).await;
        pq.latencies.push(t.elapsed());
        sum += recall(truth, &ids);
    }
    pq.recall = sum / lance_queries as f64;

    let (mut big_exact, mut big_ivf) = one_large_user(&dir, queries.min(300)).await;
    fragments_and_compaction(&dir).await;

    println!();
    println!(
        "{:<52} {:>9} {:>9} {:>9} {:>10}",
        "search (one query at a time)", "q/s", "p50 ms", "p99 ms", "recall@10"
    );
    for stats in [
        &mut exact,
        &mut ivf,
        &mut flat,
        &mut pq,
        &mut big_exact,
        &mut big_ivf,
    ] {
        stats.print();
    }
}

/// One user with 100,000 rows over 200 topics: where the IVF index (built
/// by the table itself, past `ann_min_rows`) earns its keep.
async fn one_large_user(dir: &tempfile::TempDir, queries: usize) -> (Stats, Stats) {
    let uri = dir
        .path()
        .join("large.lance")
        .to_string_lossy()
        .into_owned();
    let rows = 100_000;
    let data = clustered(
        Shape {
            users: 1,
            rows_per_user: rows,
            dims: DIMS,
            topics_per_user: 200,
            noise: 0.05,
        },
        43,
    );
    let table = VectorTable::open(&uri, DIMS).await.expect("open");
    for (c, chunk) in data[0].rows.chunks(10_000).enumerate() {
        let records = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| VectorRecord {
                id: format!("r{}", c * 10_000 + i),
                user_id: "big".into(),
                text: String::new(),
                vector: v.clone(),
                created_at_ms: 0,
            })
            .collect();
        table.add(records).await.expect("add");
    }
    let started = Instant::now();
    // The first search loads the rows and starts the background build.
    table
        .search("big", &data[0].rows[0], K)
        .await
        .expect("load");
    while table.indexed_rows("big").is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "one user with {rows} rows: load and background IVF build {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let mut rng = Rng::new(8);
    let mut exact = Stats {
        name: format!("focusforge exact, one user of {rows} rows"),
        latencies: Vec::new(),
        recall: 1.0,
    };
    let mut ivf = Stats {
        name: format!("focusforge IVF-Flat, one user of {rows} rows"),
        latencies: Vec::new(),
        recall: 0.0,
    };
    let mut sum = 0.0;
    for _ in 0..queries {
        let q = query_near(&data[0], 0.05, &mut rng);
        let t = Instant::now();
        let truth: Vec<String> = table
            .search_exact("big", &q, K)
            .await
            .expect("exact")
            .into_iter()
            .map(|h| h.id)
            .collect();
        exact.latencies.push(t.elapsed());
        let t = Instant::now();
        let found: Vec<String> = table
            .search("big", &q, K)
            .await
            .expect("ivf")
            .into_iter()
            .map(|h| h.id)
            .collect();
        ivf.latencies.push(t.elapsed());
        sum += recall(&truth, &found);
    }
    ivf.recall = sum / queries as f64;
    (exact, ivf)
}

/// The files single writes leave: every remembered memory is one commit, so
/// one fragment. Loading users' rows from 2,000 such fragments against the
/// same rows after `optimize`, and the disk they take.
async fn fragments_and_compaction(dir: &tempfile::TempDir) {
    let path = dir.path().join("small-writes.lance");
    let uri = path.to_string_lossy().into_owned();
    let (users, per_user) = (20, 100);
    let data = clustered(
        Shape {
            users,
            rows_per_user: per_user,
            dims: DIMS,
            topics_per_user: 10,
            noise: 0.05,
        },
        44,
    );
    let table = VectorTable::open(&uri, DIMS).await.expect("open");
    let started = Instant::now();
    for i in 0..per_user {
        for (u, user) in data.iter().enumerate() {
            let record = VectorRecord {
                id: format!("u{u}-{i}"),
                user_id: format!("u{u}"),
                text: format!("note {i} of user {u}"),
                vector: user.rows[i].clone(),
                created_at_ms: 0,
            };
            table.add(vec![record]).await.expect("add");
        }
    }
    let writes = users * per_user;
    let wrote = started.elapsed();
    let disk = |p: &std::path::Path| -> u64 {
        fn walk(p: &std::path::Path) -> u64 {
            std::fs::read_dir(p).map_or(0, |d| {
                d.flatten()
                    .map(|e| match e.metadata() {
                        Ok(m) if m.is_dir() => walk(&e.path()),
                        Ok(m) => m.len(),
                        Err(_) => 0,
                    })
                    .sum()
            })
        }
        walk(p)
    };
    // Every user's first search after opening reads their rows from Lance.
    let load_all = || async {
        let fresh = VectorTable::open(&uri, DIMS).await.expect("reopen");
        let t = Instant::now();
        for (u, user) in data.iter().enumerate() {
            fresh
                .search(&format!("u{u}"), &user.rows[0], K)
                .await
                .expect("search");
        }
        t.elapsed() / users as u32
    };
    let (before_fragments, before_disk) = (table.fragments().await, disk(&path));
    let before = load_all().await;
    let t = Instant::now();
    let done = table.optimize(Duration::ZERO).await.expect("optimize");
    let took = t.elapsed();
    let after = load_all().await;
    println!();
    println!(
        "{writes} single-row writes by {users} users ({:.1} ms a write), then optimize ({:.0} ms)",
        wrote.as_secs_f64() * 1e3 / writes as f64,
        took.as_secs_f64() * 1e3
    );
    println!(
        "{:<40} {:>10} {:>16} {:>10}",
        "table", "fragments", "user load ms", "disk MB"
    );
    println!(
        "{:<40} {:>10} {:>16.2} {:>10.1}",
        "as written",
        before_fragments,
        before.as_secs_f64() * 1e3,
        before_disk as f64 / 1e6
    );
    println!(
        "{:<40} {:>10} {:>16.2} {:>10.1}",
        "optimized (compacted, old versions gone)",
        done.fragments_after,
        after.as_secs_f64() * 1e3,
        disk(&path) as f64 / 1e6
    );
}
