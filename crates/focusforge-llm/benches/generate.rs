//! The local model's speed, and what the schema constraint buys.
//!
//! `cargo bench -p focusforge-llm --bench generate` prints prompt-processing
//! and generation tokens per second, then generates a 3-5 step breakdown as
//! JSON for 50 fixed task titles with and without the schema constraint and
//! counts the outputs that parse and validate.

use std::path::PathBuf;
use std::time::Duration;

use focusforge_llm::{
    GenerateRequest, LanguageModel, LocalModel, MODEL_DIR, MODEL_FILE, Message, Sampling, Schema,
};

const TITLES: [&str; 50] = [
    "Write the quarterly report",
    "Clean the garage",
    "Prepare slides for the conference talk",
    "File the tax return",
    "Plan the team offsite",
    "Fix the flaky login test",
    "Refactor the billing service",
    "Write a blog post about focus",
    "Organise the photo library",
    "Learn the basics of Rust",
    "Draft the product launch email",
    "Review the pull request backlog",
    "Prepare for the job interview",
    "Renew the passport",
    "Paint the bedroom",
    "Set up the new laptop",
    "Write unit tests for the parser",
    "Plan meals for the week",
    "Study for the statistics exam",
    "Update the onboarding guide",
    "Migrate the database to Postgres",
    "Write a cover letter",
    "Declutter the kitchen",
    "Prepare the budget for next year",
    "Record a podcast episode",
    "Build a birdhouse",
    "Read the book for the book club",
    "Plan a birthday party",
    "Design the new logo",
    "Write documentation for the API",
    "Train for a 5k run",
    "Fix the leaking faucet",
    "Back up the family computer",
    "Write thank-you notes",
    "Organise the team retrospective",
    "Prepare the grant application",
    "Translate the user manual",
    "Sort out the insurance claim",
    "Create a monthly newsletter",
    "Practice the piano piece",
    "Set up continuous integration",
    "Plan the vegetable garden",
    "Write the research summary",
    "Apply for the mortgage",
    "Clean out the email inbox",
    "Prepare the quarterly sales review",
    "Write a short story",
    "Reorganise the bookshelf",
    "Move to the new apartment",
    "Plan the holiday trip",
];

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
    let long = "Summarise the following notes. ".to_owned() + &TITLES.join(". ").repeat(2);
    let mut prompt_rate = Vec::new();
    let mut gen_rate = Vec::new();
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
        "prompt processing: {:.0} tokens/s (best of 3)",
        best(&prompt_rate)
    );
    println!(
        "generation, free: {:.1} tokens/s (best of 3)",
        best(&gen_rate)
    );

    let titles: usize = std::env::var("GENERATE_TITLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(TITLES.len());
    for constrained in [false, true] {
        let mut valid = 0;
        let mut tokens = 0;
        let mut time = Duration::ZERO;
        let mut example = String::new();
        for title in &TITLES[..titles] {
            let g = model
                .generate(request(title, constrained, 256), None)
                .await
                .expect("generate");
            tokens += g.completion_tokens;
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
            "{}: {valid}/{titles} outputs parse and validate; {:.1} tokens/s",
            if constrained {
                "with the schema constraint"
            } else {
                "without constraint"
            },
            tokens as f64 / time.as_secs_f64()
        );
        if !example.is_empty() {
            println!("  a failing output: {example:?}");
        }
    }
}
