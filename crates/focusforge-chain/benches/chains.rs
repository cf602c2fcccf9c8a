//! How useful the chains' answers are, and how fast: the usefulness
//! rubric's pass rate of task breakdowns (granularity 3) on a development
//! set of titles, for the local model's own answers (before any repair or
//! fallback), its final answers, the rule-based fallback alone (with the
//! example library found by MiniLM, and by shared words only), and the
//! OpenAI-compatible backend against the local test server (a model that
//! keeps the offered draft, and one whose first answer is sloppy), each
//! asked with a new user's context (25-minute focus blocks); p50
//! latency of each; and the accuracy of proof validation on a labelled set.
//!
//! `cargo bench -p focusforge-chain --bench chains`
//!
//! `FOCUSFORGE_BENCH_TITLES` and `FOCUSFORGE_BENCH_PROOFS` name other
//! sets (same formats as `scripts/bench-titles.txt` and
//! `scripts/bench-proofs.txt`); `FOCUSFORGE_BENCH_SHOW` how many
//! breakdowns to print (10), `FOCUSFORGE_BENCH_LIMIT` how many titles to
//! take, and `FOCUSFORGE_BENCH_RUNS` which runs to make (a comma list of
//! `fallback`, `words`, `local`, `keep-draft`, `sloppy`, `proofs`; all).
//!
//! Another tool's answers to the same requests: `FOCUSFORGE_BENCH_PROMPTS=FILE`
//! writes each title's request (messages and JSON Schema) as a JSON line and
//! stops; `FOCUSFORGE_BENCH_ANSWERS=FILE` scores JSON lines of
//! `{"title", "answer", "ms"}` with the rubric, as the model's own answers
//! (`scripts/bench-gguf.py` makes them with llama.cpp).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use focusforge_chain::{
    Breakdown, ChainSettings, Chains, ContextSource, Info, Library, NoContext, Options, TaskInput,
    UserContext, Verdict,
};
use focusforge_core::{SystemClock, UserId};
use focusforge_embed::{Batcher, BatcherSettings, Embedder, MiniLm};
use focusforge_llm::{LanguageModel, LocalModel, MODEL_DIR, MODEL_FILE, OpenAiConfig, OpenAiModel};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read_set(var: &str, default: &str) -> Vec<String> {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(default));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

fn p50(mut v: Vec<Duration>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

/// What a new user's context holds: the default focus block length.
struct NewUser;

#[async_trait::async_trait]
impl ContextSource for NewUser {
    async fn user_context(&self, _query: &str) -> focusforge_core::Result<UserContext> {
        Ok(new_user())
    }
}

fn new_user() -> UserContext {
    if std::env::var("FOCUSFORGE_BENCH_CONTEXT").is_ok_and(|v| v == "none") {
        return UserContext::default();
    }
    UserContext {
        focus_minutes: Some(25),
        ..UserContext::default()
    }
}

fn task(title: &str) -> TaskInput {
    TaskInput {
        title: title.into(),
        ..TaskInput::default()
    }
}

/// One backend's run over the titles.
struct Run {
    name: String,
    own: usize,
    repaired: usize,
    fell_back: usize,
    passed: usize,
    took: Vec<Duration>,
    answers: Vec<(String, Breakdown, Info, Result<(), String>)>,
    failed_rules: Vec<String>,
}

async fn run(name: &str, chains: &Chains, titles: &[String]) -> Run {
    let user = UserId::parse("bench").expect("user");
    let mut r = Run {
        name: name.to_owned(),
        own: 0,
        repaired: 0,
        fell_back: 0,
        passed: 0,
        took: Vec::new(),
        answers: Vec::new(),
        failed_rules: Vec::new(),
    };
    for t in titles {
        let options = Options {
            no_cache: true,
            ..Options::default()
        };
        let started = Instant::now();
        let (b, info) = chains
            .break_down(&user, &NewUser, task(t), 3, options)
            .await
            .expect("breakdown");
        r.took.push(started.elapsed());
        let verdict = chains
            .judge_breakdown(&task(t), 3, &new_user(), &b)
            .await
            .map_err(|f| f.to_string());
        r.passed += usize::from(verdict.is_ok());
        if info.fallback_used {
            r.fell_back += 1;
        } else if info.repaired {
            r.repaired += 1;
        }
        if !info.fallback_used && !info.repaired {
            r.own += 1;
        }
        if !info.failed_rule.is_empty() {
            r.failed_rules.push(info.failed_rule.clone());
        }
        r.answers.push((t.clone(), b, info, verdict));
    }
    r
}

fn pct(n: usize, of: usize) -> String {
    format!(
        "{n:>2}/{of} ({:>5.1} %)",
        100.0 * n as f64 / of.max(1) as f64
    )
}

fn rules(failed: &[String]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for r in failed {
        match counts.iter_mut().find(|(k, _)| k == r) {
            Some((_, n)) => *n += 1,
            None => counts.push((r.clone(), 1)),
        }
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    counts
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn show(r: &Run, n: usize) {
    println!("\n{}: {n} breakdowns as they came out", r.name);
    for (title, b, info, verdict) in r.answers.iter().take(n) {
        let how = if info.fallback_used {
            format!("fallback ({})", info.fallback_reason)
        } else if info.repaired {
            format!("{}, repaired after {}", info.backend, info.failed_rule)
        } else {
            info.backend.clone()
        };
        let mark = match verdict {
            Ok(()) => "passes".to_owned(),
            Err(e) => format!("FAILS {e}"),
        };
        println!("  {title}  [{how}; {mark}]");
        for block in &b.blocks {
            println!(
                "    - {} ({} min) | done when: {}",
                block.title, block.minutes, block.done_when
            );
        }
    }
}

async fn proofs(chains: &Chains, set: &[(bool, String, String)]) -> (usize, Vec<String>, Duration) {
    let user = UserId::parse("bench").expect("user");
    let mut right = 0;
    let mut wrong = Vec::new();
    let mut took = Vec::new();
    for (accept, title, proof) in set {
        let options = Options {
            no_cache: true,
            ..Options::default()
        };
        let started = Instant::now();
        let (check, _) = chains
            .check_proof(
                &user,
                &NoContext,
                task(title),
                proof.clone(),
                String::new(),
                options,
            )
            .await
            .expect("proof");
        took.push(started.elapsed());
        if (check.verdict == Verdict::Accepted) == *accept {
            right += 1;
        } else {
            wrong.push(format!(
                "{} {title:?} / {proof:?}: {:?} ({})",
                if *accept { "accept" } else { "reject" },
                check.verdict,
                check.reasons.join("; ")
            ));
        }
    }
    let p = Duration::from_secs_f64(p50(took) / 1e3);
    (right, wrong, p)
}

/// Scores another tool's answers: parsed against the chain's schema and
/// held to the rubric as they are.
async fn score_answers(judge: &Chains, path: &Path) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (mut passed, mut n, mut took) = (0, 0, Vec::new());
    let mut failed = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let title = v["title"].as_str().unwrap_or_default().to_owned();
        let answer = v["answer"].as_str().unwrap_or_default();
        took.push(Duration::from_secs_f64(
            v["ms"].as_f64().unwrap_or(0.0) / 1e3,
        ));
        n += 1;
        let (_, schema) = judge
            .breakdown_prompt(task(&title), 3, &new_user())
            .await
            .expect("prompt");
        let verdict = serde_json::from_str::<serde_json::Value>(answer)
            .map_err(|e| format!("schema: not JSON ({e})"))
            .and_then(|value| {
                schema
                    .validate(&value)
                    .map_err(|e| format!("schema: {e}"))?;
                serde_json::from_value::<Breakdown>(value).map_err(|e| format!("schema: {e}"))
            });
        let verdict = match verdict {
            Ok(b) => judge
                .judge_breakdown(&task(&title), 3, &new_user(), &b)
                .await
                .map_err(|f| f.to_string()),
            Err(e) => Err(e),
        };
        match verdict {
            Ok(()) => passed += 1,
            Err(e) => failed.push(format!("{title}: {e}")),
        }
    }
    println!(
        "answers in {}: {} pass the rubric as they are, p50 {:.1} ms",
        path.display(),
        pct(passed, n),
        p50(took)
    );
    for f in failed {
        println!("  fails: {f}");
    }
}

fn models_dir() -> PathBuf {
    std::env::var_os("FOCUSFORGE_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models"))
}

fn embedder(dir: &Path) -> Arc<dyn Embedder> {
    let model = MiniLm::load(&dir.join("all-MiniLM-L6-v2")).unwrap_or_else(|e| panic!("{e}"));
    Arc::new(Batcher::new(model, BatcherSettings::default()))
}

#[tokio::main]
async fn main() {
    let mut titles = read_set("FOCUSFORGE_BENCH_TITLES", "scripts/bench-titles.txt");
    if let Some(limit) = std::env::var("FOCUSFORGE_BENCH_LIMIT")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        titles.truncate(limit);
    }
    let proof_set: Vec<(bool, String, String)> =
        read_set("FOCUSFORGE_BENCH_PROOFS", "scripts/bench-proofs.txt")
            .iter()
            .map(|l| {
                let parts: Vec<&str> = l.splitn(3, '|').map(str::trim).collect();
                let [label, title, proof] = parts[..] else {
                    panic!("not 'label | task | proof': {l}");
                };
                (label == "accept", title.to_owned(), proof.to_owned())
            })
            .collect();
    let shown: usize = std::env::var("FOCUSFORGE_BENCH_SHOW")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let dir = models_dir();
    let library = Library::new(Some(embedder(&dir)));
    let local: Arc<dyn LanguageModel> = Arc::new(
        LocalModel::load(&dir.join(MODEL_DIR).join(MODEL_FILE)).unwrap_or_else(|e| panic!("{e}")),
    );
    let clock = Arc::new(SystemClock);
    let settings = ChainSettings::default();
    let chains = |model: Option<Arc<dyn LanguageModel>>, library: Library| {
        Chains::new(model, None, clock.clone(), settings.clone()).with_library(library)
    };
    let server = focusforge_llm::testing::server().await;
    let openai = |name: &str| -> Arc<dyn LanguageModel> {
        Arc::new(
            OpenAiModel::new(OpenAiConfig {
                base_url: server.base_url(),
                model: name.into(),
                api_key: Some(focusforge_llm::testing::KEY.into()),
                timeout: Duration::from_secs(10),
            })
            .expect("client"),
        )
    };
    // Warm the library's embeddings before timing anything.
    let _ = chains(None, library.clone())
        .break_down(
            &UserId::parse("bench").expect("user"),
            &NoContext,
            task("warm up"),
            3,
            Options::default(),
        )
        .await;

    if let Some(path) = std::env::var_os("FOCUSFORGE_BENCH_PROMPTS") {
        let c = chains(None, library.clone());
        let mut out = String::new();
        for t in &titles {
            let (messages, schema) = c
                .breakdown_prompt(task(t), 3, &new_user())
                .await
                .expect("prompt");
            let messages: Vec<serde_json::Value> = messages
                .iter()
                .map(|m| serde_json::json!({"role": m.role.as_str(), "content": m.content}))
                .collect();
            out.push_str(
                &serde_json::json!({"title": t, "messages": messages, "schema": schema.to_json_schema()})
                    .to_string(),
            );
            out.push('\n');
        }
        std::fs::write(&path, out).expect("prompts");
        println!(
            "{} requests written to {}",
            titles.len(),
            PathBuf::from(path).display()
        );
        return;
    }
    if let Some(path) = std::env::var_os("FOCUSFORGE_BENCH_ANSWERS") {
        score_answers(&chains(None, library.clone()), &PathBuf::from(path)).await;
        return;
    }
    let n = titles.len();
    println!("task breakdowns, granularity 3, {n} titles, usefulness rubric:");
    println!(
        "  {:<44} {:>16} {:>16} {:>8} {:>8}",
        "backend", "own answers pass", "final answers", "p50 ms", "fell back"
    );
    let wanted = |key: &str| {
        std::env::var("FOCUSFORGE_BENCH_RUNS")
            .map(|v| v.split(',').any(|k| k.trim() == key))
            .unwrap_or(true)
    };
    let mut runs: Vec<(&str, Run)> = Vec::new();
    for (key, name, c) in [
        (
            "fallback",
            "rule-based fallback (library by MiniLM)",
            chains(None, library.clone()),
        ),
        (
            "words",
            "rule-based fallback (library by words)",
            chains(None, Library::new(None)),
        ),
        (
            "local",
            "local SmolLM2-135M, constrained",
            chains(Some(local.clone()), library.clone()),
        ),
        (
            "keep-draft",
            "OpenAI-compatible, test server keeps draft",
            chains(Some(openai("keep-draft")), library.clone()),
        ),
        (
            "sloppy",
            "OpenAI-compatible, test server sloppy first",
            chains(Some(openai("sloppy")), library.clone()),
        ),
    ] {
        if !wanted(key) {
            continue;
        }
        let r = run(name, &c, &titles).await;
        let model = !r.name.starts_with("rule-based");
        let own = if model { pct(r.own, n) } else { "-".to_owned() };
        println!(
            "  {:<44} {:>16} {:>16} {:>8.1} {:>8}",
            r.name,
            own,
            pct(r.passed, n),
            p50(r.took.clone()),
            if model {
                r.fell_back.to_string()
            } else {
                "-".into()
            }
        );
        if model && !r.failed_rules.is_empty() {
            println!(
                "      rules the rejected answers broke: {}; repaired: {}",
                rules(&r.failed_rules),
                r.repaired
            );
        }
        runs.push((key, r));
    }
    for (_, r) in &runs {
        for (title, _, _, verdict) in &r.answers {
            if let Err(e) = verdict {
                println!("  {} fails on {title:?}: {e}", r.name);
            }
        }
    }
    let find = |key: &str| runs.iter().find(|(k, _)| *k == key).map(|(_, r)| r);
    if let (Some(local_run), Some(rules_run)) = (find("local"), find("fallback")) {
        let same = local_run
            .answers
            .iter()
            .zip(&rules_run.answers)
            .filter(|((_, b, info, _), (_, f, _, _))| !info.fallback_used && b == f)
            .count();
        println!(
            "  local model answers identical to the fallback's: {same} of {}",
            n - local_run.fell_back
        );
    }
    if let Some(local_run) = find("local") {
        show(local_run, shown);
    }
    if !wanted("proofs") {
        return;
    }
    let m = proof_set.len();
    println!("\nproof validation, {m} labelled proofs (accepted vs not):");
    let mut real = Vec::new();
    let mut unrelated = Vec::new();
    for (accept, title, proof) in &proof_set {
        let s = library.similarity(title, proof).await.unwrap_or(f32::NAN);
        if *accept {
            real.push(s)
        } else {
            unrelated.push(s)
        }
    }
    let range = |v: &[f32]| {
        let lo = v.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        format!("{lo:.2}-{hi:.2}")
    };
    println!(
        "  MiniLM similarity of proof and task: real {}, unrelated {}",
        range(&real),
        range(&unrelated)
    );
    for (name, c) in [
        ("rule-based, with MiniLM", chains(None, library.clone())),
        ("rule-based, words only", chains(None, Library::new(None))),
        (
            "local SmolLM2-135M + rules",
            chains(Some(local.clone()), library.clone()),
        ),
    ] {
        let (right, wrong, took) = proofs(&c, &proof_set).await;
        println!(
            "  {name:<28} {} correct, p50 {:.1} ms",
            pct(right, m),
            took.as_secs_f64() * 1e3
        );
        for w in wrong {
            println!("      wrong: {w}");
        }
    }
}
