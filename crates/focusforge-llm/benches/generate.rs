//! The local model's speed, and what the schema constraint buys.
//!
//! `cargo bench -p focusforge-llm --bench generate` prints prompt-processing
//! and generation tokens per second, then generates a 3-5 step breakdown as
//! JSON for 50 fixed task titles (`scripts/bench-titles.txt`) with and without
//! the schema constraint and counts the outputs that parse and validate.
//! When llama-cpp-python is installed, `scripts/bench-llamacpp.py` measures
//! llama.cpp on the same GGUF and thread count the same way.

use std::path::PathBuf;
use std::time::Duration;

use focusforge_llm::{
    GenerateRequest, LanguageModel, LocalModel, MODEL_DIR, MODEL_FILE, Message, Sampling, Schema,
};

/// The fixed task titles, shared with `scripts/bench-llamacpp.py`.
fn titles() -> Vec<&'static str> {
    include_str!("../../../scripts/bench-titles.txt")
        .lines()
        .filter(|l| !l.is_empty())
        .collect()
}

fn schema() -> Schema {
    Schema::object([(
        "steps",
        Schema::array(
            Schema::object([
                ("title", Schema::string(80)),
                ("minutes", Schema::integer(5, 120)),
            ]),
            3,
            5,
        ),
    )])
}

fn request(title: &str, constrained: bool, max_tokens: usize) -> GenerateRequest {
    GenerateRequest {
        messages: vec![
            Message::system(
                "You break tasks into steps. Reply with JSON only, shaped as \
                 {\"steps\": [{\"title\": \"...\", \"minutes\": 25}]} with 3 to 5 steps.",
            ),
            Message::user(format!("Task: {title}")),
        ],
        max_tokens,
        sampling: Sampling::default(),
        schema: constrained.then(schema),
        deadline: None,
    }
}

#[tokio::main]
async fn main() {
    let dir = std::env::var_os("FOCUSFORGE_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    let model =
        LocalModel::load(&dir.join(MODEL_DIR).join(MODEL_FILE)).unwrap_or_else(|e| panic!("{e}"));
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("{} on {threads} cores", model.name());

    // Speed: a long prompt, then free generation of a fixed length.
    let all = titles();
    let long = "Summarise the following notes. ".to_owned() + &all.join(". ").repeat(2);
    let mut prompt_rate = Vec::new();
    let mut gen_rate = Vec::new();
    let mut prompt_tokens = 0;
    for _ in 0..3 {
        let g = model
            .generate(
                GenerateRequest {
                    messages: vec![Message::user(long.clone())],
                    max_tokens: 128,
                    sampling: Sampling::default(),
                    schema: None,
                    deadline: None,
                },
                None,
            )
            .await
            .expect("generate");
        prompt_tokens = g.prompt_tokens;
        prompt_rate.push(g.prompt_tokens as f64 / g.prompt_time.as_secs_f64());
        gen_rate.push(
            g.completion_tokens as f64
                / g.generation_time
                    .max(Duration::from_micros(1))
                    .as_secs_f64(),
        );
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!(
        "prompt processing: {:.0} tokens/s over {prompt_tokens} tokens (best of 3)",
        best(&prompt_rate)
    );
    println!(
        "generation, free: {:.1} tokens/s (best of 3)",
        best(&gen_rate)
    );

    let titles: usize = std::env::var("GENERATE_TITLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(all.len());
    for constrained in [false, true] {
        let mut valid = 0;
        let mut tokens = 0;
        let mut sampled = 0;
        let mut time = Duration::ZERO;
        let mut example = String::new();
        for title in &all[..titles] {
            let g = model
                .generate(request(title, constrained, 256), None)
                .await
                .expect("generate");
            tokens += g.completion_tokens;
            sampled += g.sampled_tokens;
            time += g.generation_time;
            let ok = serde_json::from_str::<serde_json::Value>(&g.text)
                .ok()
                .is_some_and(|v| schema().validate(&v).is_ok());
            valid += usize::from(ok);
            if example.is_empty() && !ok {
                example = g.text.chars().take(160).collect();
            }
        }
        println!(
            "{}: {valid}/{titles} outputs parse and validate; {:.1} tokens/s, of which sampled {:.1}/s",
            if constrained {
                "with the schema constraint"
            } else {
                "without constraint"
            },
            tokens as f64 / time.as_secs_f64(),
            sampled as f64 / time.as_secs_f64()
        );
        if !example.is_empty() {
            println!("  a failing output: {example:?}");
        }
    }
}
