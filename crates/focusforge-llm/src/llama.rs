//! A llama-architecture decoder (GGUF weights read with candle) run on the
//! 8-bit kernels in [`crate::kernels`]: fused projections, a key/value
//! cache that grows in place, and every matrix product and attention head
//! split across a thread pool of the model's own.

use std::sync::Arc;

use candle_core::Device;
use candle_core::quantized::{GgmlDType, gguf_file};
use half::f16;

use crate::gguf;
use crate::kernels::{self, Attend, Format, QActs, QMatrix};

#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub layers: usize,
    pub dim: usize,
    pub ffn: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab: usize,
    pub context: usize,
    pub rms_eps: f32,
    pub rope_base: f32,
}

struct Layer {
    attn_norm: Vec<f32>,
    /// Query, key and value projections stacked.
    qkv: QMatrix,
    out: QMatrix,
    ffn_norm: Vec<f32>,
    /// Gate and up projections stacked.
    gate_up: QMatrix,
    down: QMatrix,
    /// Laid out as [`kernels::kv_index`] says.
    keys: Vec<f16>,
    values: Vec<f16>,
}

/// Reusable buffers of one forward pass.
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    normed: Vec<f32>,
    acts: QActs,
    qkv: Vec<f32>,
    q: Vec<f32>,
    attn: Vec<f32>,
    proj: Vec<f32>,
    gate_up: Vec<f32>,
    hidden: Vec<f32>,
    logits: Vec<f32>,
}

pub struct Llama {
    pub config: Config,
    embeddings: QMatrix,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    /// `None` when the output projection is tied to the embeddings.
    output: Option<QMatrix>,
    /// Rotary frequencies, one per pair of a head's dimensions.
    freqs: Vec<f32>,
    len: usize,
    pool: Arc<rayon::ThreadPool>,
    scratch: Scratch,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{0}")]
    Invalid(String),
    #[error("the context holds {max} tokens; this needs {needed}")]
    ContextFull { max: usize, needed: usize },
}

impl From<candle_core::Error> for ModelError {
    fn from(e: candle_core::Error) -> Self {
        Self::Invalid(e.to_string())
    }
}

impl Llama {
    /// Reads a llama-architecture GGUF, whatever its tensors' quantisation.
    pub fn load<R: std::io::Read + std::io::Seek>(
        content: &gguf_file::Content,
        reader: &mut R,
        threads: usize,
    ) -> Result<Self, ModelError> {
        let arch = gguf::string(content, "general.architecture").unwrap_or_default();
        if arch != "llama" {
            return Err(ModelError::Invalid(format!(
                "architecture {arch:?}: only llama models are supported"
            )));
        }
        let int = |key: &str| {
            gguf::u32_value(content, &format!("llama.{key}"))
                .map(|v| v as usize)
                .ok_or_else(|| ModelError::Invalid(format!("metadata llama.{key} is missing")))
        };
        let float = |key: &str, default: f32| {
            content
                .metadata
                .get(&format!("llama.{key}"))
                .and_then(|v| v.to_f32().ok())
                .unwrap_or(default)
        };
        let dim = int("embedding_length")?;
        let heads = int("attention.head_count")?;
        let kv_heads = int("attention.head_count_kv").unwrap_or(heads);
        let head_dim = int("rope.dimension_count").unwrap_or(dim / heads);
        let embeddings_info = content
            .tensor_infos
            .get("token_embd.weight")
            .ok_or_else(|| ModelError::Invalid("no token_embd.weight".into()))?;
        let vocab = embeddings_info.shape.dims()[0];
        let config = Config {
            layers: int("block_count")?,
            dim,
            ffn: int("feed_forward_length")?,
            heads,
            kv_heads,
            head_dim,
            vocab,
            context: int("context_length").unwrap_or(4096).min(8192),
            rms_eps: float("attention.layer_norm_rms_epsilon", 1e-5),
            rope_base: float("rope.freq_base", 10_000.0),
        };
        if heads * head_dim != dim || heads % kv_heads != 0 || head_dim % 2 != 0 {
            return Err(ModelError::Invalid(format!(
                "unsupported attention shape: {heads} heads of {head_dim} over {dim}, {kv_heads} key/value heads"
            )));
        }
        let embeddings = matrix(content, reader, "token_embd.weight")?;
        let output = if content.tensor_infos.contains_key("output.weight") {
            Some(matrix(content, reader, "output.weight")?)
        } else {
            None
        };
        let mut layers = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let p = format!("blk.{i}");
            layers.push(Layer {
                qkv: fused(
                    content,
                    reader,
                    &[
                        &format!("{p}.attn_q.weight"),
                        &format!("{p}.attn_k.weight"),
                        &format!("{p}.attn_v.weight"),
                    ],
                )?,
                out: matrix(content, reader, &format!("{p}.attn_output.weight"))?,
                gate_up: fused(
                    content,
                    reader,
                    &[
                        &format!("{p}.ffn_gate.weight"),
                        &format!("{p}.ffn_up.weight"),
                    ],
                )?,
                down: matrix(content, reader, &format!("{p}.ffn_down.weight"))?,
                attn_norm: vector(content, reader, &format!("{p}.attn_norm.weight"))?,
                ffn_norm: vector(content, reader, &format!("{p}.ffn_norm.weight"))?,
                keys: Vec::new(),
                values: Vec::new(),
            });
        }
        let norm = vector(content, reader, "output_norm.weight")?;
        let freqs = (0..head_dim / 2)
            .map(|i| config.rope_base.powf(-((2 * i) as f32) / head_dim as f32))
            .collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("focusforge-llm-{i}"))
            .build()
            .map(Arc::new)
            .map_err(|e| ModelError::Invalid(format!("thread pool: {e}")))?;
        Ok(Self {
            config,
            embeddings,
            layers,
            norm,
            output,
            freqs,
            len: 0,
            pool,
            scratch: Scratch::default(),
        })
    }

    /// Forgets the cached context.
    pub fn clear(&mut self) {
        self.len = 0;
        for l in &mut self.layers {
            l.keys.clear();
            l.values.clear();
        }
    }

    /// Tokens in the cached context.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `ids` to the context and returns the next-token logits after
    /// the last of them.
    pub fn forward(&mut self, ids: &[u32]) -> Result<&[f32], ModelError> {
        let c = self.config;
        let m = ids.len();
        if m == 0 {
            return Err(ModelError::Invalid("no tokens to run".into()));
        }
        if self.len + m > c.context {
            return Err(ModelError::ContextFull {
                max: c.context,
                needed: self.len + m,
            });
        }
        if let Some(&bad) = ids.iter().find(|&&t| t as usize >= c.vocab) {
            return Err(ModelError::Invalid(format!(
                "token {bad} is outside the vocabulary"
            )));
        }
        // The pass runs on the pool, so its parallel steps fork and join
        // there instead of waking the pool from outside at every step.
        let pool = Arc::clone(&self.pool);
        pool.install(|| self.run(ids));
        Ok(&self.scratch.logits)
    }

    fn run(&mut self, ids: &[u32]) {
        let c = self.config;
        let m = ids.len();
        let s = &mut self.scratch;
        s.x.resize(m * c.dim, 0.0);
        for (row, &t) in s.x.chunks_exact_mut(c.dim).zip(ids) {
            self.embeddings.row_into(t as usize, row);
        }
        let (q_len, kv_len) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
        let positions: Vec<usize> = (self.len..self.len + m).collect();
        // Rotations per position: cos and sin for each frequency.
        let rot: Vec<(f32, f32)> = positions
            .iter()
            .flat_map(|&p| self.freqs.iter().map(move |f| (p as f32 * f).sin_cos()))
            .map(|(s, c)| (c, s))
            .collect();
        let scale = 1.0 / (c.head_dim as f32).sqrt();
        for layer in &mut self.layers {
            rms_norm(&s.x, &layer.attn_norm, c.rms_eps, &mut s.normed);
            s.acts.quantize(&s.normed, c.dim);
            kernels::matmul(&self.pool, &layer.qkv, &s.acts, &mut s.qkv);
            let width = q_len + 2 * kv_len;
            s.q.clear();
            for (t, row) in s.qkv.chunks_exact_mut(width).enumerate() {
                let pos = self.len + t;
                if pos.is_multiple_of(kernels::KV_RUN) {
                    let run = kernels::KV_RUN * kv_len;
                    layer.keys.resize(layer.keys.len() + run, f16::ZERO);
                    layer.values.resize(layer.values.len() + run, f16::ZERO);
                }
                let r = &rot[t * c.head_dim / 2..(t + 1) * c.head_dim / 2];
                let (q, kv) = row.split_at_mut(q_len);
                let (k, v) = kv.split_at_mut(kv_len);
                for head in q
                    .chunks_exact_mut(c.head_dim)
                    .chain(k.chunks_exact_mut(c.head_dim))
                {
                    rotate(head, r);
                }
                s.q.extend_from_slice(q);
                for h in 0..c.kv_heads {
                    let at = kernels::kv_index(pos, h, c.kv_heads, c.head_dim);
                    let span = h * c.head_dim..(h + 1) * c.head_dim;
                    for ((kc, vc), (kn, vn)) in layer.keys[at..at + c.head_dim]
                        .iter_mut()
                        .zip(&mut layer.values[at..at + c.head_dim])
                        .zip(k[span.clone()].iter().zip(&v[span]))
                    {
                        *kc = f16::from_f32(*kn);
                        *vc = f16::from_f32(*vn);
                    }
                }
            }
            // Every (token, head) pair attends on its own.
            s.attn.resize(m * q_len, 0.0);
            let group = c.heads / c.kv_heads;
            let (keys, values, q, base) = (&layer.keys, &layer.values, &s.q, self.len);
            self.pool.install(|| {
                use rayon::prelude::*;
                s.attn.par_chunks_mut(c.head_dim).enumerate().for_each_init(
                    Vec::new,
                    |scores, (i, out)| {
                        let (t, h) = (i / c.heads, i % c.heads);
                        let job = Attend {
                            q: &q[i * c.head_dim..(i + 1) * c.head_dim],
                            keys,
                            values,
                            head: h / group,
                            kv_heads: c.kv_heads,
                            len: base + t + 1,
                            scale,
                        };
                        kernels::attend(&job, out, scores);
                    },
                )
            });
            s.acts.quantize(&s.attn, q_len);
            kernels::matmul(&self.pool, &layer.out, &s.acts, &mut s.proj);
            add(&mut s.x, &s.proj);

            rms_norm(&s.x, &layer.ffn_norm, c.rms_eps, &mut s.normed);
            s.acts.quantize(&s.normed, c.dim);
            kernels::matmul(&self.pool, &layer.gate_up, &s.acts, &mut s.gate_up);
            s.hidden.clear();
            for row in s.gate_up.chunks_exact(2 * c.ffn) {
                let (gate, up) = row.split_at(c.ffn);
                s.hidden
                    .extend(gate.iter().zip(up).map(|(g, u)| g / (1.0 + (-g).exp()) * u));
            }
            s.acts.quantize(&s.hidden, c.ffn);
            kernels::matmul(&self.pool, &layer.down, &s.acts, &mut s.proj);
            add(&mut s.x, &s.proj);
        }
        self.len += m;
        let last = &s.x[(m - 1) * c.dim..];
        rms_norm(last, &self.norm, c.rms_eps, &mut s.normed);
        s.acts.quantize(&s.normed, c.dim);
        let head = self.output.as_ref().unwrap_or(&self.embeddings);
        kernels::matmul(&self.pool, head, &s.acts, &mut s.logits);
    }
}

/// A weight tensor dequantised, with the format it keeps here: four-bit
/// sources keep four bits; anything finer gets eight.
struct Weights {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
    format: Format,
}

fn weights<R: std::io::Read + std::io::Seek>(
    content: &gguf_file::Content,
    reader: &mut R,
    name: &str,
) -> Result<Weights, ModelError> {
    let t = content.tensor(reader, name, &Device::Cpu)?;
    let (rows, cols) = t.shape().dims2()?;
    let format = match t.dtype() {
        GgmlDType::Q4_0 | GgmlDType::Q4_1 | GgmlDType::Q4K => Format::Q4,
        _ => Format::Q8,
    };
    if cols % kernels::BLOCK != 0 {
        return Err(ModelError::Invalid(format!(
            "{name}: {cols} columns is not a multiple of {}",
            kernels::BLOCK
        )));
    }
    let data = t
        .dequantize(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    Ok(Weights {
        rows,
        cols,
        data,
        format,
    })
}

fn matrix<R: std::io::Read + std::io::Seek>(
    content: &gguf_file::Content,
    reader: &mut R,
    name: &str,
) -> Result<QMatrix, ModelError> {
    let w = weights(content, reader, name)?;
    Ok(QMatrix::quantize(w.rows, w.cols, &w.data, w.format))
}

/// Projections fused into one matrix, their rows one after another. Mixed
/// sources (a Q6_K value projection beside Q4_K ones, say) all get the
/// finer format.
fn fused<R: std::io::Read + std::io::Seek>(
    content: &gguf_file::Content,
    reader: &mut R,
    names: &[&str],
) -> Result<QMatrix, ModelError> {
    let parts = names
        .iter()
        .map(|n| weights(content, reader, n))
        .collect::<Result<Vec<_>, _>>()?;
    let format = if parts.iter().all(|w| w.format == Format::Q4) {
        Format::Q4
    } else {
        Format::Q8
    };
    if parts.iter().any(|w| w.cols != parts[0].cols) {
        return Err(ModelError::Invalid(format!(
            "{} do not have the same number of columns",
            names.join(", ")
        )));
    }
    Ok(QMatrix::stack(
        parts
            .iter()
            .map(|w| QMatrix::quantize(w.rows, w.cols, &w.data, format))
            .collect(),
    ))
}

fn vector<R: std::io::Read + std::io::Seek>(
    content: &gguf_file::Content,
    reader: &mut R,
    name: &str,
) -> Result<Vec<f32>, ModelError> {
    Ok(content
        .tensor(reader, name, &Device::Cpu)?
        .dequantize(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

/// Root-mean-square normalisation of each row of `x`, scaled by `w`.
fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut Vec<f32>) {
    out.clear();
    for row in x.chunks_exact(w.len()) {
        let ms = kernels::dot(row, row) / row.len() as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        out.extend(row.iter().zip(w).map(|(v, w)| v * inv * w));
    }
}

/// Rotary position embedding on interleaved pairs (GGUF's llama layout).
fn rotate(head: &mut [f32], rot: &[(f32, f32)]) {
    for (pair, &(cos, sin)) in head.chunks_exact_mut(2).zip(rot) {
        let (a, b) = (pair[0], pair[1]);
        pair[0] = a * cos - b * sin;
        pair[1] = a * sin + b * cos;
    }
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
