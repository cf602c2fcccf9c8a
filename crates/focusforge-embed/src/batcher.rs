use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::oneshot;

use crate::{EmbedError, Embedder, MiniLm};

#[derive(Debug, Clone)]
pub struct BatcherSettings {
    /// Most texts in one model call.
    pub max_batch: usize,
    /// How long the first request of a batch waits for company.
    pub max_wait: Duration,
}

impl Default for BatcherSettings {
    fn default() -> Self {
        Self {
            max_batch: 32,
            max_wait: Duration::from_millis(2),
        }
    }
}

struct Job {
    texts: Vec<String>,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>, EmbedError>>,
}

/// Runs a model on a thread of its own and groups concurrent requests into
/// batches: the first request waits at most `max_wait` for others, and a
/// batch holds at most `max_batch` texts (a larger request runs on its own,
/// in chunks). Dropping the batcher stops the thread once it is idle.
#[derive(Clone)]
pub struct Batcher {
    tx: std_mpsc::Sender<Job>,
    dimensions: usize,
}

impl Batcher {
    pub fn new(model: MiniLm, settings: BatcherSettings) -> Self {
        let dimensions = model.dimensions();
        let (tx, rx) = std_mpsc::channel::<Job>();
        let model = Arc::new(model);
        std::thread::Builder::new()
            .name("focusforge-embed".into())
            .spawn(move || run(&model, &rx, &settings))
            .ok();
        Self { tx, dimensions }
    }
}

fn run(model: &MiniLm, rx: &std_mpsc::Receiver<Job>, settings: &BatcherSettings) {
    while let Ok(first) = rx.recv() {
        let deadline = Instant::now() + settings.max_wait;
        let mut jobs = vec![first];
        let mut count = jobs[0].texts.len();
        while count < settings.max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(job) => {
                    count += job.texts.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let texts: Vec<String> = jobs.iter().flat_map(|j| j.texts.iter().cloned()).collect();
        let mut vectors = Vec::with_capacity(texts.len());
        let mut failed = None;
        for chunk in texts.chunks(settings.max_batch.max(1)) {
            match model.embed_batch(chunk) {
                Ok(v) => vectors.extend(v),
                Err(e) => {
                    tracing::error!(error = %e, "embedding batch failed");
                    failed = Some(e);
                    break;
                }
            }
        }
        let mut vectors = vectors.into_iter();
        for job in jobs {
            let result = match &failed {
                Some(e) => Err(e.clone()),
                None => Ok(vectors.by_ref().take(job.texts.len()).collect()),
            };
            let _ = job.reply.send(result);
        }
    }
}

#[async_trait]
impl Embedder for Batcher {
    fn dimensions(&self) -> usize {
        self.dimensions
    }

    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { texts, reply })
            .map_err(|_| EmbedError::Stopped)?;
        rx.await.map_err(|_| EmbedError::Stopped)?
    }
}
