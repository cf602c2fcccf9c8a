//! A BERT encoder over packed sequences: the tokens of every text in a batch
//! are laid end to end (no padding), so the dense layers (query, key and
//! value fused into one matrix, attention output, feed-forward) run as one
//! matrix product over exactly the real tokens, and attention runs per text.
//! A batch of short texts of mixed lengths costs what its tokens cost, not
//! its longest text times the batch size.

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{Config, HiddenAct};

/// A dense layer: `x W^T + b`, with `W^T` stored contiguous.
struct Dense {
    weight_t: Tensor,
    bias: Tensor,
}

impl Dense {
    fn load(vb: &VarBuilder, inputs: usize, outputs: usize, name: &str) -> Result<Self> {
        let weight = vb.get((outputs, inputs), &format!("{name}.weight"))?;
        let bias = vb.get(outputs, &format!("{name}.bias"))?;
        Ok(Self {
            weight_t: weight.t()?.contiguous()?,
            bias,
        })
    }

    /// Query, key and value as one layer of three times the width.
    fn load_fused(vb: &VarBuilder, hidden: usize, names: [&str; 3]) -> Result<Self> {
        let mut weights = Vec::new();
        let mut biases = Vec::new();
        for name in names {
            weights.push(vb.get((hidden, hidden), &format!("{name}.weight"))?);
            biases.push(vb.get(hidden, &format!("{name}.bias"))?);
        }
        Ok(Self {
            weight_t: Tensor::cat(&weights, 0)?.t()?.contiguous()?,
            bias: Tensor::cat(&biases, 0)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.weight_t)?.broadcast_add(&self.bias)
    }
}

struct Norm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl Norm {
    fn load(vb: &VarBuilder, hidden: usize, name: &str, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: vb.get(hidden, &format!("{name}.weight"))?,
            bias: vb.get(hidden, &format!("{name}.bias"))?,
            eps: eps as f32,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::layer_norm(&x.contiguous()?, &self.weight, &self.bias, self.eps)
    }
}

struct Layer {
    qkv: Dense,
    attention_out: Dense,
    attention_norm: Norm,
    intermediate: Dense,
    output: Dense,
    output_norm: Norm,
}

pub struct PackedBert {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    embeddings_norm: Norm,
    layers: Vec<Layer>,
    heads: usize,
    head_size: usize,
    hidden: usize,
    act: HiddenAct,
    max_positions: usize,
}

impl PackedBert {
    pub fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let h = config.hidden_size;
        let eps = config.layer_norm_eps;
        let e = vb.pp("embeddings");
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let l = vb.pp(format!("encoder.layer.{i}"));
                Ok(Layer {
                    qkv: Dense::load_fused(
                        &l,
                        h,
                        [
                            "attention.self.query",
                            "attention.self.key",
                            "attention.self.value",
                        ],
                    )?,
                    attention_out: Dense::load(&l, h, h, "attention.output.dense")?,
                    attention_norm: Norm::load(&l, h, "attention.output.LayerNorm", eps)?,
                    intermediate: Dense::load(
                        &l,
                        h,
                        config.intermediate_size,
                        "intermediate.dense",
                    )?,
                    output: Dense::load(&l, config.intermediate_size, h, "output.dense")?,
                    output_norm: Norm::load(&l, h, "output.LayerNorm", eps)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            word: e.get((config.vocab_size, h), "word_embeddings.weight")?,
            position: e.get(
                (config.max_position_embeddings, h),
                "position_embeddings.weight",
            )?,
            token_type: e.get((config.type_vocab_size, h), "token_type_embeddings.weight")?,
            embeddings_norm: Norm::load(&e, h, "LayerNorm", eps)?,
            layers,
            heads: config.num_attention_heads,
            head_size: h / config.num_attention_heads,
            hidden: h,
            act: config.hidden_act,
            max_positions: config.max_position_embeddings,
        })
    }

    fn activate(&self, x: &Tensor) -> Result<Tensor> {
        match self.act {
            HiddenAct::Gelu => x.gelu_erf(),
            HiddenAct::GeluApproximate => x.gelu(),
            HiddenAct::Relu => x.relu(),
        }
    }

    /// Mean-pooled, L2-normalised sentence vectors of tokenised texts
    /// (token ids and type ids per text, no padding).
    pub fn embed(&self, texts: &[(&[u32], &[u32])], device: &Device) -> Result<Vec<Vec<f32>>> {
        let mut ids = Vec::new();
        let mut types = Vec::new();
        let mut positions = Vec::new();
        let mut spans = Vec::with_capacity(texts.len());
        for (tokens, type_ids) in texts {
            let len = tokens.len().min(self.max_positions);
            spans.push((ids.len(), len));
            ids.extend_from_slice(&tokens[..len]);
            types.extend_from_slice(&type_ids[..len]);
            positions.extend(0..len as u32);
        }
        let total = ids.len();
        if total == 0 {
            return Ok(vec![vec![0.0; self.hidden]; texts.len()]);
        }
        let index = |v: Vec<u32>| Tensor::from_vec(v, total, device);
        let x = (self.word.index_select(&index(ids)?, 0)?
            + self.position.index_select(&index(positions)?, 0)?)?
        .add(&self.token_type.index_select(&index(types)?, 0)?)?;
        let mut x = self.embeddings_norm.forward(&x)?;
        let scale = 1.0 / (self.head_size as f64).sqrt();
        for layer in &self.layers {
            let qkv = layer.qkv.forward(&x)?;
            let mut contexts = Vec::with_capacity(spans.len());
            for &(offset, len) in &spans {
                if len == 0 {
                    continue;
                }
                // [len, 3 * hidden] -> [3, heads, len, head_size]
                let s = qkv
                    .narrow(0, offset, len)?
                    .reshape((len, 3, self.heads, self.head_size))?
                    .permute((1, 2, 0, 3))?
                    .contiguous()?;
                let (q, k, v) = (s.get(0)?, s.get(1)?, s.get(2)?);
                let scores = (q.matmul(&k.t()?)? * scale)?;
                let probs = candle_nn::ops::softmax_last_dim(&scores)?;
                let context = probs
                    .matmul(&v)?
                    .transpose(0, 1)?
                    .contiguous()?
                    .reshape((len, self.hidden))?;
                contexts.push(context);
            }
            let context = Tensor::cat(&contexts, 0)?;
            let attended = layer
                .attention_norm
                .forward(&(layer.attention_out.forward(&context)? + &x)?)?;
            let inner = self.activate(&layer.intermediate.forward(&attended)?)?;
            x = layer
                .output_norm
                .forward(&(layer.output.forward(&inner)? + &attended)?)?;
        }
        let mut out = Vec::with_capacity(spans.len());
        for &(offset, len) in &spans {
            if len == 0 {
                out.push(vec![0.0; self.hidden]);
                continue;
            }
            let mean = x.narrow(0, offset, len)?.mean(0)?;
            let norm = mean
                .sqr()?
                .sum_all()?
                .sqrt()?
                .to_scalar::<f32>()?
                .max(1e-12);
            out.push((mean / f64::from(norm))?.to_dtype(DType::F32)?.to_vec1()?);
        }
        Ok(out)
    }
}
