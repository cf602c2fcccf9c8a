//! Embedding throughput on this machine, side by side with the reference
//! Python stack when it is installed (sentence-transformers on PyTorch,
//! limited to the same number of threads), on the same 2,000 short task
//! descriptions (5-30 words).
//!
//! `cargo bench -p focusforge-embed --bench embed`
//! (FOCUSFORGE_MODELS_DIR chooses the models directory; `--sentences N` and
//! `--no-python` are optional.)

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use focusforge_embed::{Batcher, BatcherSettings, Embedder, MiniLm, cosine};

const VERBS: [&str; 12] = [
    "write",
    "review",
    "refactor",
    "call",
    "plan",
    "prepare",
    "fix",
    "draft",
    "test",
    "email",
    "summarise",
    "organise",
];
const OBJECTS: [&str; 12] = [
    "the quarterly report",
    "the billing service",
    "the dentist",
    "next sprint",
    "slides for Monday",
    "the flaky login test",
    "a launch announcement",
    "the onboarding guide",
    "the budget",
    "customer feedback",
    "the garage",
    "the team offsite",
];
const TAILS: [&str; 10] = [
    "before lunch",
    "and send it to Anna for a first look",
    "so the invoices are generated in batches at night",
    "with a checklist of every open question from the last meeting",
    "then block two hours of focus time on the calendar",
    "because the deadline moved up to Thursday",
    "and write down what slowed us down last time so we can avoid it this round",
    "",
    "after the stand-up",
    "in small steps, committing after each one, and ask for a review when the tests pass and the docs are updated",
];

/// Deterministic task descriptions of 5-30 words.
fn sentences(n: usize) -> Vec<String> {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed as usize
    };
    (0..n)
        .map(|_| {
            let s = format!(
                "{} {} {}",
                VERBS[next() % VERBS.len()],
                OBJECTS[next() % OBJECTS.len()],
                TAILS[next() % TAILS.len()]
            );
            let words: Vec<&str> = s.split_whitespace().take(30).collect();
            let mut s = words.join(" ");
            while s.split_whitespace().count() < 5 {
                s.push_str(" today");
            }
            s
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let n = argv
        .iter()
        .position(|a| a == "--sentences")
        .and_then(|i| argv.get(i + 1)?.parse().ok())
        .unwrap_or(2000);
    let python = !argv.iter().any(|a| a == "--no-python");
    let dir = std::env::var_os("FOCUSFORGE_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"))
        .join("all-MiniLM-L6-v2");
    let model = MiniLm::load(&dir).unwrap_or_else(|e| panic!("{e}"));
    let texts = sentences(n);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("{n} task descriptions, {threads} cores");
    println!(
        "{:<34} {:>12} {:>12}",
        "engine", "sentences/s", "p50 ms/call"
    );

    // Warm-up.
    let _ = model.embed_batch(&texts[..32]);

    let mut single = Vec::with_capacity(n);
    let started = Instant::now();
    for t in &texts {
        let t0 = Instant::now();
        model.embed_batch(std::slice::from_ref(t)).expect("embed");
        single.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    let rate1 = n as f64 / started.elapsed().as_secs_f64();
    single.sort_by(f64::total_cmp);
    println!(
        "{:<34} {:>12.0} {:>12.2}",
        "focusforge candle, batch 1",
        rate1,
        percentile(&single, 0.5)
    );

    let mut batched = Vec::new();
    let started = Instant::now();
    let mut ours = Vec::with_capacity(n);
    for chunk in texts.chunks(32) {
        let t0 = Instant::now();
        ours.extend(model.embed_batch(chunk).expect("embed"));
        batched.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    let rate32 = n as f64 / started.elapsed().as_secs_f64();
    batched.sort_by(f64::total_cmp);
    println!(
        "{:<34} {:>12.0} {:>12.2}",
        "focusforge candle, batch 32",
        rate32,
        percentile(&batched, 0.5)
    );

    // Concurrent single-sentence callers through the micro-batcher.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let batcher = Batcher::new(
        MiniLm::load(&dir).expect("model"),
        BatcherSettings::default(),
    );
    let started = Instant::now();
    rt.block_on(async {
        let calls = texts.iter().map(|t| {
            let (b, t) = (batcher.clone(), t.clone());
            tokio::spawn(async move { b.embed(vec![t]).await })
        });
        for h in futures::future::join_all(calls).await {
            h.expect("join").expect("embed");
        }
    });
    let rate_mb = n as f64 / started.elapsed().as_secs_f64();
    println!(
        "{:<34} {:>12.0} {:>12}",
        "focusforge micro-batcher, n callers", rate_mb, "-"
    );

    if python {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench-embeddings.py");
        let input =
            std::env::temp_dir().join(format!("ff-bench-sentences-{}.txt", std::process::id()));
        std::fs::write(&input, texts.join("\n")).expect("write sentences");
        let out = Command::new("python3")
            .arg(&script)
            .arg(&input)
            .arg(threads.to_string())
            .env("HF_HUB_OFFLINE", "1")
            .output();
        let _ = std::fs::remove_file(&input);
        match out {
            Ok(out) if out.status.success() => {
                let stdout = String::from_utf8_lossy(&out.stdout);
                let mut lines = stdout.lines();
                print!(
                    "{}",
                    lines
                        .by_ref()
                        .take_while(|l| !l.starts_with("VECTORS"))
                        .map(|l| format!("{l}\n"))
                        .collect::<String>()
                );
                // The reference vectors of the first sentences: agreement on this data.
                let theirs: Vec<Vec<f32>> = lines
                    .map(|l| l.split(',').filter_map(|x| x.parse().ok()).collect())
                    .collect();
                let worst = theirs
                    .iter()
                    .zip(&ours)
                    .map(|(a, b)| cosine(a, b))
                    .fold(f32::INFINITY, f32::min);
                println!(
                    "agreement with sentence-transformers over {} vectors: min cosine {worst:.6}",
                    theirs.len()
                );
            }
            Ok(out) => println!(
                "(sentence-transformers not run: {})",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("failed")
            ),
            Err(e) => println!("(sentence-transformers not run: {e})"),
        }
    }
}
