//! End-to-end latency of a task breakdown (granularity 3) in the chain
//! layer: with the local model, with the rule-based fallback, and as a
//! cache hit. `cargo bench -p focusforge-chain --bench chains`

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use focusforge_cache::{MemoryCache, NamedCache};
use focusforge_chain::{ChainSettings, Chains, NoContext, Options, TaskInput};
use focusforge_core::{SystemClock, UserId};
use focusforge_llm::{LanguageModel, LocalModel, MODEL_DIR, MODEL_FILE};

const TITLES: [&str; 10] = [
    "Write the quarterly report",
    "Clean the garage",
    "Prepare slides for the conference talk",
    "File the tax return",
    "Plan the team offsite",
    "Fix the flaky login test",
    "Refactor the billing service",
    "Organise the photo library",
    "Renew the passport",
    "Set up the new laptop",
];

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    let dir = std::env::var_os("FOCUSFORGE_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    let model: Arc<dyn LanguageModel> = Arc::new(
        LocalModel::load(&dir.join(MODEL_DIR).join(MODEL_FILE)).unwrap_or_else(|e| panic!("{e}")),
    );
    let cache = NamedCache::new(
        Arc::new(MemoryCache::new(64 * 1024 * 1024)),
        "chain",
        Duration::from_secs(1800),
    );
    let user = UserId::parse("bench").expect("user");
    let task = |t: &str| TaskInput {
        title: t.into(),
        ..TaskInput::default()
    };
    let with_model = Chains::new(
        Some(model),
        Some(cache),
        Arc::new(SystemClock),
        ChainSettings::default(),
    );
    let rules = Chains::new(None, None, Arc::new(SystemClock), ChainSettings::default());

    let (mut local, mut hit, mut fallback) = (Vec::new(), Vec::new(), Vec::new());
    let mut fell_back = 0;
    for t in TITLES {
        let started = Instant::now();
        let (_, info) = with_model
            .break_down(&user, &NoContext, task(t), 3, Options::default())
            .await
            .expect("breakdown");
        local.push(started.elapsed());
        fell_back += usize::from(info.fallback_used);
        // Fallback answers are not cached: a hit needs a model answer.
        if !info.fallback_used {
            let started = Instant::now();
            let (_, info) = with_model
                .break_down(&user, &NoContext, task(t), 3, Options::default())
                .await
                .expect("breakdown");
            hit.push(started.elapsed());
            assert!(info.cached, "{t}: {info:?}");
        }
        let started = Instant::now();
        rules
            .break_down(&user, &NoContext, task(t), 3, Options::default())
            .await
            .expect("breakdown");
        fallback.push(started.elapsed());
    }
    println!(
        "task breakdown, granularity 3, {} titles, median latency:",
        TITLES.len()
    );
    println!(
        "  local model (SmolLM2-135M, constrained): {:>9.1} ms ({fell_back} fell back)",
        median(local)
    );
    println!(
        "  cache hit:                               {:>9.3} ms",
        median(hit)
    );
    println!(
        "  rule-based fallback:                     {:>9.3} ms",
        median(fallback)
    );
}
