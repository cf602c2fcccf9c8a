//! The decoder against candle-transformers' quantized llama on the same
//! GGUF: the same next-token choices, near-identical logits.

use std::path::PathBuf;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use focusforge_llm::llama::{Llama, ModelError};
use focusforge_llm::{MODEL_DIR, MODEL_FILE};

fn path() -> PathBuf {
    std::env::var_os("FOCUSFORGE_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"))
        .join(MODEL_DIR)
        .join(MODEL_FILE)
}

fn ours() -> Llama {
    let mut file = std::fs::File::open(path()).expect("model file");
    let content = gguf_file::Content::read(&mut file).expect("gguf");
    Llama::load(&content, &mut file, 2).expect("load")
}

fn reference() -> ModelWeights {
    let mut file = std::fs::File::open(path()).expect("model file");
    let content = gguf_file::Content::read(&mut file).expect("gguf");
    ModelWeights::from_gguf(content, &mut file, &Device::Cpu).expect("load")
}

/// "<|im_start|>user\nBreak my essay on river ecology into focused work
/// blocks.<|im_end|>\n<|im_start|>assistant\n" in the model's vocabulary.
const PROMPT: [u32; 20] = [
    1, 4093, 198, 39945, 957, 3794, 335, 4626, 14269, 618, 4782, 746, 6703, 30, 2, 198, 1, 520,
    9531, 198,
];

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .expect("logits")
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

fn rank_of(v: &[f32], token: usize) -> usize {
    v.iter().filter(|&&x| x > v[token]).count()
}

#[test]
fn greedy_decoding_follows_candle_transformers() {
    let mut ours = ours();
    let mut theirs = reference();
    let mut input = PROMPT.to_vec();
    let mut pos = 0;
    let mut same = 0;
    let mut lowest = 1f32;
    let steps = 12;
    for step in 0..steps {
        let mine = ours.forward(&input).expect("forward").to_vec();
        let t = Tensor::new(input.as_slice(), &Device::Cpu)
            .and_then(|t| t.unsqueeze(0))
            .expect("tensor");
        let reference: Vec<f32> = theirs
            .forward(&t, pos)
            .and_then(|l| l.squeeze(0))
            .and_then(|l| l.to_vec1())
            .expect("reference forward");
        pos += input.len();
        assert_eq!(mine.len(), reference.len());
        let c = cosine(&mine, &reference);
        assert!(c > 0.995, "step {step}: cosine {c}");
        lowest = lowest.min(c);
        let (a, b) = (argmax(&mine), argmax(&reference));
        // Near-ties may flip; our choice is always among the reference's best.
        assert!(rank_of(&reference, a) < 3, "step {step}: {a} vs {b}");
        same += usize::from(a == b);
        // Both continue from the reference's choice.
        input = vec![b as u32];
    }
    eprintln!("{same} of {steps} greedy choices agree; lowest logits cosine {lowest:.5}");
    assert!(same >= steps - 2, "{same} of {steps} choices agree");
    assert_eq!(ours.len(), PROMPT.len() + steps - 1);
}

#[test]
fn a_prompt_in_chunks_or_tokens_gives_the_logits_of_one_pass() {
    // Longer than a cache run, so the second run is exercised.
    let ids: Vec<u32> = PROMPT.iter().copied().cycle().take(300).collect();
    let mut model = ours();
    let whole = model.forward(&ids).expect("forward").to_vec();
    model.clear();
    assert!(model.is_empty());
    let mut chunked = Vec::new();
    for chunk in ids.chunks(128) {
        chunked = model.forward(chunk).expect("forward").to_vec();
    }
    model.clear();
    let mut single = Vec::new();
    for id in &ids {
        single = model.forward(&[*id]).expect("forward").to_vec();
    }
    for other in [&chunked, &single] {
        let c = cosine(&whole, other);
        assert!(c > 0.9999, "cosine {c}");
        assert_eq!(argmax(&whole), argmax(other));
    }
}

#[test]
fn bad_tokens_and_a_full_context_are_errors() {
    let mut model = ours();
    let vocab = model.config.vocab as u32;
    assert!(matches!(
        model.forward(&[vocab]),
        Err(ModelError::Invalid(_))
    ));
    assert!(matches!(model.forward(&[]), Err(ModelError::Invalid(_))));
    // Nothing was appended by the failed calls.
    assert!(model.is_empty());
    let context = model.config.context;
    let too_long = vec![1u32; context + 1];
    assert!(matches!(
        model.forward(&too_long),
        Err(ModelError::ContextFull { max, needed }) if max == context && needed == context + 1
    ));
    assert!(model.is_empty());
}
