use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use focusforge_embed::{Batcher, BatcherSettings, EmbedError, Embedder, MiniLm, cosine};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    sentences: Vec<Sentence>,
}

#[derive(Deserialize)]
struct Sentence {
    text: String,
    vector: Vec<f32>,
}

fn reference() -> Reference {
    let text = include_str!("../fixtures/minilm-reference.json");
    serde_json::from_str(text).expect("fixture")
}

/// Where the model files are: FOCUSFORGE_MODELS_DIR, else ./models at the
/// workspace root.
fn model_dir() -> PathBuf {
    let root = std::env::var_os("FOCUSFORGE_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    root.join("all-MiniLM-L6-v2")
}

fn model() -> &'static Arc<MiniLm> {
    static MODEL: OnceLock<Arc<MiniLm>> = OnceLock::new();
    MODEL.get_or_init(|| match MiniLm::load(&model_dir()) {
        Ok(m) => Arc::new(m),
        Err(e) => panic!("{e}"),
    })
}

#[test]
fn embeddings_agree_with_sentence_transformers() {
    let reference = reference();
    let texts: Vec<String> = reference.sentences.iter().map(|s| s.text.clone()).collect();
    let batch = model().embed_batch(&texts).expect("embed");
    assert_eq!(batch.len(), texts.len());
    for (got, want) in batch.iter().zip(&reference.sentences) {
        assert_eq!(got.len(), 384);
        let similarity = cosine(got, &want.vector);
        assert!(similarity >= 0.999, "{:?}: cosine {similarity}", want.text);
        let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "unit length, got {norm}");
    }
}

#[test]
fn padding_in_a_batch_does_not_change_a_vector() {
    let texts = vec![
        "A".to_owned(),
        "a much longer sentence that forces padding of the short one".to_owned(),
    ];
    let batch = model().embed_batch(&texts).expect("batch");
    let alone = model().embed_batch(&texts[..1]).expect("single");
    assert!(cosine(&batch[0], &alone[0]) > 0.99999);
}

#[test]
fn related_texts_are_closer_than_unrelated_ones() {
    let texts: Vec<String> = [
        "buy oat milk",
        "purchase milk at the store",
        "quarterly tax report",
    ]
    .map(String::from)
    .to_vec();
    let v = model().embed_batch(&texts).expect("embed");
    assert!(cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]) + 0.2);
}

#[test]
fn a_missing_model_names_the_fetch_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    match MiniLm::load(dir.path()) {
        Err(e @ EmbedError::ModelMissing { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("scripts/fetch-models"), "{msg}");
            assert!(msg.contains("model.safetensors"), "{msg}");
        }
        Err(other) => panic!("expected a missing model, got {other}"),
        Ok(_) => panic!("an empty directory cannot hold a model"),
    }
    std::fs::write(dir.path().join("config.json"), "{not json").expect("write");
    std::fs::write(dir.path().join("tokenizer.json"), "{}").expect("write");
    std::fs::write(dir.path().join("model.safetensors"), b"junk").expect("write");
    assert!(matches!(
        MiniLm::load(dir.path()),
        Err(EmbedError::ModelInvalid { .. })
    ));
}

#[tokio::test]
async fn the_batcher_groups_concurrent_requests_and_keeps_their_order() {
    let loaded = MiniLm::load(&model_dir()).expect("model");
    let batcher = Batcher::new(loaded, BatcherSettings::default());
    let reference = reference();
    let calls = reference.sentences.iter().map(|s| {
        let batcher = batcher.clone();
        let text = s.text.clone();
        async move { batcher.embed(vec![text]).await }
    });
    let results = futures::future::join_all(calls).await;
    for (result, want) in results.into_iter().zip(&reference.sentences) {
        let got = result.expect("embed");
        assert_eq!(got.len(), 1);
        assert!(cosine(&got[0], &want.vector) >= 0.999, "{}", want.text);
    }
    let many: Vec<String> = (0..70).map(|i| format!("task number {i}")).collect();
    let out = batcher
        .embed(many.clone())
        .await
        .expect("more than one batch");
    assert_eq!(out.len(), 70);
    let direct = model().embed_batch(&many[69..]).expect("direct");
    assert!(
        cosine(&out[69], &direct[0]) > 0.9999,
        "results stay in request order"
    );
    assert!(batcher.embed(Vec::new()).await.expect("empty").is_empty());
}
