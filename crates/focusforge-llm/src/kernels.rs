//! The arithmetic of the local model: 8-bit block-quantised matrix products
//! and the float kernels of attention, picked at run time for the CPU
//! (AVX-VNNI, AVX-512 VNNI, AVX2 + FMA, or portable code).
//!
//! Weights are held in blocks of 32 values with one f32 scale per block, the
//! values stored offset by +128 so that VNNI's unsigned-by-signed byte dot
//! product applies to them directly. Activations are quantised the same way
//! (signed, per block) on each call; the offset is taken out exactly with
//! each activation block's sum. The result equals, up to float rounding, the
//! dot product of the dequantised weights and the quantised activations.
#![allow(unsafe_code)]

use std::sync::OnceLock;

use half::f16;

use rayon::prelude::*;

/// Values per quantisation block.
pub const BLOCK: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isa {
    #[cfg(target_arch = "x86_64")]
    AvxVnni,
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        if std::env::var_os("FOCUSFORGE_PORTABLE_KERNELS").is_some() {
            return Isa::Portable;
        }
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c");
            if avx2 && is_x86_feature_detected!("avxvnni") {
                return Isa::AvxVnni;
            }
            if avx2
                && is_x86_feature_detected!("avx512vnni")
                && is_x86_feature_detected!("avx512vl")
            {
                return Isa::Avx512Vnni;
            }
            if avx2 {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    })
}

/// The instruction set the kernels use on this machine.
pub fn isa_name() -> &'static str {
    match isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::AvxVnni => "avx-vnni",
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => "avx512-vnni",
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => "avx2",
        Isa::Portable => "portable",
    }
}

/// How a [`QMatrix`] stores its blocks of 32 values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// 8 bits a value and one scale: `d * q`, `q` in -127..=127.
    Q8,
    /// 4 bits a value, a scale and a minimum: `d * q + m`, `q` in 0..=15.
    Q4,
}

impl Format {
    fn row_bytes(self, cols: usize) -> usize {
        match self {
            Format::Q8 => cols,
            Format::Q4 => cols / 2,
        }
    }
}

/// A weight matrix (`rows` x `cols`, `cols` a multiple of [`BLOCK`]) in
/// quantised blocks.
pub struct QMatrix {
    rows: usize,
    cols: usize,
    format: Format,
    /// Row-major. Q8: each value as `q + 128`. Q4: 16 bytes a block, value
    /// `j` in the low nibble of byte `j`, value `j + 16` in its high nibble.
    qs: Vec<u8>,
    /// A scale per block, row-major.
    scales: Vec<f16>,
    /// Q4: a minimum per block, row-major (empty for Q8).
    mins: Vec<f16>,
}

impl QMatrix {
    /// Quantises row-major `data`.
    pub fn quantize(rows: usize, cols: usize, data: &[f32], format: Format) -> Self {
        assert!(cols.is_multiple_of(BLOCK) && data.len() == rows * cols);
        let mut qs = Vec::with_capacity(rows * format.row_bytes(cols));
        let mut scales = Vec::with_capacity(rows * cols / BLOCK);
        let mut mins = Vec::new();
        for block in data.chunks_exact(BLOCK) {
            match format {
                Format::Q8 => {
                    let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let d = f16::from_f32(amax / 127.0);
                    let inv = if d.to_f32() > 0.0 {
                        1.0 / d.to_f32()
                    } else {
                        0.0
                    };
                    qs.extend(
                        block
                            .iter()
                            .map(|v| ((v * inv).round().clamp(-127.0, 127.0) as i32 + 128) as u8),
                    );
                    scales.push(d);
                }
                Format::Q4 => {
                    let (min, max) = block
                        .iter()
                        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                            (lo.min(v), hi.max(v))
                        });
                    let (d, min) = (f16::from_f32((max - min) / 15.0), f16::from_f32(min));
                    let inv = if d.to_f32() > 0.0 {
                        1.0 / d.to_f32()
                    } else {
                        0.0
                    };
                    let q = |v: f32| ((v - min.to_f32()) * inv).round().clamp(0.0, 15.0) as u8;
                    qs.extend((0..BLOCK / 2).map(|j| q(block[j]) | (q(block[j + BLOCK / 2]) << 4)));
                    scales.push(d);
                    mins.push(min);
                }
            }
        }
        Self {
            rows,
            cols,
            format,
            qs,
            scales,
            mins,
        }
    }

    /// The matrices' rows one after another (fused projections).
    pub fn stack(parts: Vec<QMatrix>) -> Self {
        let (cols, format) = (parts[0].cols, parts[0].format);
        assert!(parts.iter().all(|p| p.cols == cols && p.format == format));
        let mut out = Self {
            rows: 0,
            cols,
            format,
            qs: Vec::new(),
            scales: Vec::new(),
            mins: Vec::new(),
        };
        for p in parts {
            out.rows += p.rows;
            out.qs.extend_from_slice(&p.qs);
            out.scales.extend_from_slice(&p.scales);
            out.mins.extend_from_slice(&p.mins);
        }
        out
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn format(&self) -> Format {
        self.format
    }

    fn rows_from(&self, first: usize, count: usize) -> Rows<'_> {
        let (rb, nb) = (self.format.row_bytes(self.cols), self.cols / BLOCK);
        Rows {
            qs: &self.qs[first * rb..(first + count) * rb],
            scales: &self.scales[first * nb..(first + count) * nb],
            mins: match self.format {
                Format::Q8 => &[],
                Format::Q4 => &self.mins[first * nb..(first + count) * nb],
            },
            cols: self.cols,
            format: self.format,
        }
    }

    /// Row `r`, dequantised into `out` (an embedding lookup).
    pub fn row_into(&self, r: usize, out: &mut [f32]) {
        let row = self.rows_from(r, 1);
        for (b, o) in out.chunks_exact_mut(BLOCK).enumerate() {
            match self.format {
                Format::Q8 => {
                    let d = row.scales[b].to_f32();
                    for (o, q) in o.iter_mut().zip(&row.qs[b * BLOCK..(b + 1) * BLOCK]) {
                        *o = (*q as i32 - 128) as f32 * d;
                    }
                }
                Format::Q4 => {
                    let (d, m) = (row.scales[b].to_f32(), row.mins[b].to_f32());
                    let bytes = &row.qs[b * BLOCK / 2..(b + 1) * BLOCK / 2];
                    for (j, byte) in bytes.iter().enumerate() {
                        o[j] = (byte & 0x0F) as f32 * d + m;
                        o[j + BLOCK / 2] = (byte >> 4) as f32 * d + m;
                    }
                }
            }
        }
    }
}

/// `m` rows of activations, quantised per block for one product.
#[derive(Default)]
pub struct QActs {
    m: usize,
    cols: usize,
    qs: Vec<i8>,
    scales: Vec<f32>,
    /// Per block, the dequantised block's sum (for Q4's minimum).
    sums: Vec<f32>,
    /// Per block, a lane vector whose first lane is `-128 * sum(q)`: seeded
    /// into the integer accumulator, it removes Q8 weights' offset.
    offsets: Vec<[i32; 8]>,
}

impl QActs {
    /// Quantises `x` (`m` rows of `cols`).
    pub fn quantize(&mut self, x: &[f32], cols: usize) {
        assert!(cols.is_multiple_of(BLOCK) && x.len().is_multiple_of(cols));
        self.m = x.len() / cols;
        self.cols = cols;
        let nb = x.len() / BLOCK;
        self.qs.resize(x.len(), 0);
        self.scales.resize(nb, 0.0);
        self.sums.resize(nb, 0.0);
        self.offsets.resize(nb, [0; 8]);
        for ((((block, q), scale), sum), offset) in x
            .chunks_exact(BLOCK)
            .zip(self.qs.chunks_exact_mut(BLOCK))
            .zip(self.scales.iter_mut())
            .zip(self.sums.iter_mut())
            .zip(self.offsets.iter_mut())
        {
            let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
            let mut total = 0i32;
            for (q, v) in q.iter_mut().zip(block) {
                let v = round(v * inv);
                *q = v as i8;
                total += v;
            }
            *scale = d;
            *sum = d * total as f32;
            *offset = [-128 * total, 0, 0, 0, 0, 0, 0, 0];
        }
    }

    fn row(&self, t: usize) -> Acts<'_> {
        let nb = self.cols / BLOCK;
        Acts {
            qs: &self.qs[t * self.cols..(t + 1) * self.cols],
            scales: &self.scales[t * nb..(t + 1) * nb],
            sums: &self.sums[t * nb..(t + 1) * nb],
            offsets: &self.offsets[t * nb..(t + 1) * nb],
        }
    }
}

/// The nearest integer (ties to even) of `v`, `|v| < 2^22`, without a
/// library call on CPUs lacking a rounding instruction.
#[inline(always)]
fn round(v: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    ((v + MAGIC).to_bits() as i32) - MAGIC.to_bits() as i32
}

/// `out[t][r] = w[r] . x[t]` for every row of `w` and every quantised
/// activation row, split across the pool.
pub fn matmul(pool: &rayon::ThreadPool, w: &QMatrix, a: &QActs, out: &mut Vec<f32>) {
    assert_eq!(w.cols, a.cols);
    let (rows, m) = (w.rows, a.m);
    let chunk = (rows / (pool.current_num_threads() * 4)).clamp(16, 256) / 4 * 4;
    out.clear();
    out.resize(rows * m, 0.0);
    if m == 1 {
        pool.install(|| {
            out.par_chunks_mut(chunk)
                .enumerate()
                .for_each(|(c, o)| rows_dot(w, a, c * chunk, o, 1))
        });
        return;
    }
    // Weight rows stay in cache while every activation row passes them;
    // the result comes out row-major in `w` and is transposed.
    let mut transposed = vec![0f32; rows * m];
    pool.install(|| {
        transposed
            .par_chunks_mut(chunk * m)
            .enumerate()
            .for_each(|(c, o)| rows_dot(w, a, c * chunk, o, m))
    });
    for (r, col) in transposed.chunks_exact(m).enumerate() {
        for (t, v) in col.iter().enumerate() {
            out[t * rows + r] = *v;
        }
    }
}

/// Rows `first..` of `w` against every activation row; `out` holds
/// `out.len() / m` rows of `m` results (or, for `m == 1`, one per row).
fn rows_dot(w: &QMatrix, a: &QActs, first: usize, out: &mut [f32], m: usize) {
    let n = out.len() / m;
    let mut r = 0;
    while r < n {
        let k = (n - r).min(4);
        let rows = w.rows_from(first + r, k);
        for t in 0..m {
            let mut res = [0f32; 4];
            dot_rows(&rows, &a.row(t), &mut res[..k]);
            for (i, v) in res[..k].iter().enumerate() {
                out[(r + i) * m + t] = *v;
            }
        }
        r += k;
    }
}

struct Rows<'a> {
    qs: &'a [u8],
    scales: &'a [f16],
    mins: &'a [f16],
    cols: usize,
    format: Format,
}

struct Acts<'a> {
    qs: &'a [i8],
    scales: &'a [f32],
    sums: &'a [f32],
    offsets: &'a [[i32; 8]],
}

/// Up to four weight rows against one activation row.
fn dot_rows(w: &Rows, a: &Acts, out: &mut [f32]) {
    match (isa(), w.format) {
        // SAFETY (all x86 arms): the features were detected at run time.
        #[cfg(target_arch = "x86_64")]
        (Isa::AvxVnni, Format::Q8) => unsafe { x86::q8_avxvnni(w, a, out) },
        #[cfg(target_arch = "x86_64")]
        (Isa::AvxVnni, Format::Q4) => unsafe { x86::q4_avxvnni(w, a, out) },
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512Vnni, Format::Q8) => unsafe { x86::q8_avx512vnni(w, a, out) },
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512Vnni, Format::Q4) => unsafe { x86::q4_avx512vnni(w, a, out) },
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, Format::Q8) => unsafe { x86::q8_avx2(w, a, out) },
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, Format::Q4) => unsafe { x86::q4_avx2(w, a, out) },
        (Isa::Portable, _) => dot_rows_portable(w, a, out),
    }
}

fn dot_rows_portable(w: &Rows, a: &Acts, out: &mut [f32]) {
    let nb = w.cols / BLOCK;
    let rb = w.format.row_bytes(w.cols);
    for (i, o) in out.iter_mut().enumerate() {
        let qs = &w.qs[i * rb..(i + 1) * rb];
        let scales = &w.scales[i * nb..(i + 1) * nb];
        let mut acc = 0f32;
        for b in 0..nb {
            let x = &a.qs[b * BLOCK..(b + 1) * BLOCK];
            match w.format {
                Format::Q8 => {
                    let y = &qs[b * BLOCK..(b + 1) * BLOCK];
                    let sum: i32 = y
                        .iter()
                        .zip(x)
                        .map(|(&y, &x)| (y as i32 - 128) * x as i32)
                        .sum();
                    acc += sum as f32 * scales[b].to_f32() * a.scales[b];
                }
                Format::Q4 => {
                    let y = &qs[b * BLOCK / 2..(b + 1) * BLOCK / 2];
                    let sum: i32 = y
                        .iter()
                        .enumerate()
                        .map(|(j, &y)| {
                            (y & 0x0F) as i32 * x[j] as i32
                                + (y >> 4) as i32 * x[j + BLOCK / 2] as i32
                        })
                        .sum();
                    acc += sum as f32 * scales[b].to_f32() * a.scales[b]
                        + w.mins[i * nb + b].to_f32() * a.sums[b];
                }
            }
        }
        *o = acc;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Acts, BLOCK, Rows};

    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// 32 nibbles from 16 bytes: low nibbles first, then high ones.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn nibbles(p: *const u8) -> __m256i {
        // SAFETY: the caller points at 16 readable bytes.
        let bytes = unsafe { _mm256_broadcastsi128_si256(_mm_loadu_si128(p as *const __m128i)) };
        // The upper copy shifted down a nibble.
        let both = _mm256_srlv_epi64(bytes, _mm256_set_epi64x(4, 4, 0, 0));
        _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,avxvnni")]
    fn dpbusd_avxvnni(seed: __m256i, u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_avx_epi32(seed, u, s)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,avx512f,avx512vl,avx512vnni")]
    fn dpbusd_avx512vnni(seed: __m256i, u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(seed, u, s)
    }

    /// Q8 weights (offset by 128) times signed activations without VNNI:
    /// back to signed weights, then `|w| * (x with w's sign)`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn q8_dot_avx2(_seed: __m256i, y: __m256i, x: __m256i) -> __m256i {
        let y = _mm256_xor_si256(y, _mm256_set1_epi8(-128));
        let pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(y, y), _mm256_sign_epi8(x, y));
        _mm256_madd_epi16(pairs, _mm256_set1_epi16(1))
    }

    /// Small unsigned weights (0..=15) times signed activations: the 16-bit
    /// pair sums cannot saturate.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn q4_dot_avx2(seed: __m256i, y: __m256i, x: __m256i) -> __m256i {
        let pairs = _mm256_maddubs_epi16(y, x);
        _mm256_add_epi32(seed, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }

    /// Blocks whose combined scales are computed together.
    const GROUP: usize = 8;

    /// Weight scale times activation scale for blocks `g..g + GROUP` of
    /// up to four rows (0 past the end). A macro, so it expands inside each
    /// kernel and is compiled for its features.
    macro_rules! combined {
        ($w:expr, $a:expr, $g:expr, $k:expr) => {{
            let (w, a, g, k): (&Rows, &Acts, usize, usize) = ($w, $a, $g, $k);
            let nb = w.cols / BLOCK;
            let mut out = [[0f32; GROUP]; 4];
            if g + GROUP <= nb {
                // SAFETY: blocks `g..g + 8` exist in every row and activation.
                unsafe {
                    let da = _mm256_loadu_ps(a.scales.as_ptr().add(g));
                    for (i, row) in out.iter_mut().enumerate().take(k) {
                        let p = w.scales.as_ptr().add(i * nb + g);
                        let dw = _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i));
                        _mm256_storeu_ps(row.as_mut_ptr(), _mm256_mul_ps(dw, da));
                    }
                }
            } else {
                for (i, row) in out.iter_mut().enumerate().take(k) {
                    for b in g..nb {
                        row[b - g] = w.scales[i * nb + b].to_f32() * a.scales[b];
                    }
                }
            }
            out
        }};
    }

    /// Weight minimums against activation block sums (Q4's offset term).
    macro_rules! min_terms {
        ($w:expr, $a:expr, $k:expr) => {{
            let (w, a, k): (&Rows, &Acts, usize) = ($w, $a, $k);
            let nb = w.cols / BLOCK;
            let mut out = [0f32; 4];
            for (i, o) in out.iter_mut().enumerate().take(k) {
                let mins = &w.mins[i * nb..(i + 1) * nb];
                let mut acc = _mm256_setzero_ps();
                let mut b = 0;
                while b + GROUP <= nb {
                    // SAFETY: blocks `b..b + 8` exist.
                    unsafe {
                        let m = _mm256_cvtph_ps(_mm_loadu_si128(
                            mins.as_ptr().add(b) as *const __m128i
                        ));
                        acc = _mm256_fmadd_ps(m, _mm256_loadu_ps(a.sums.as_ptr().add(b)), acc);
                    }
                    b += GROUP;
                }
                *o = hsum(acc)
                    + mins[b..]
                        .iter()
                        .zip(&a.sums[b..])
                        .map(|(m, s)| m.to_f32() * s)
                        .sum::<f32>();
            }
            out
        }};
    }

    macro_rules! kernels {
        ($q8:ident, $q4:ident, $features:literal, $q8dot:ident, $q4dot:ident) => {
            /// # Safety
            /// The CPU must have the named features.
            #[target_feature(enable = $features)]
            pub(super) unsafe fn $q8(w: &Rows, a: &Acts, out: &mut [f32]) {
                let nb = w.cols / BLOCK;
                let k = out.len();
                let mut acc = [_mm256_setzero_ps(); 4];
                let (wq, aq) = (w.qs.as_ptr(), a.qs.as_ptr());
                for g in (0..nb).step_by(GROUP) {
                    let scales = combined!(w, a, g, k);
                    for b in g..(g + GROUP).min(nb) {
                        // SAFETY: block `b` lies inside the activation row
                        // and each of the `k` weight rows.
                        unsafe {
                            let x = _mm256_loadu_si256(aq.add(b * BLOCK) as *const __m256i);
                            let seed =
                                _mm256_loadu_si256(a.offsets.as_ptr().add(b) as *const __m256i);
                            for i in 0..k {
                                let y = _mm256_loadu_si256(
                                    wq.add(i * w.cols + b * BLOCK) as *const __m256i
                                );
                                let dot = $q8dot(seed, y, x);
                                let d = _mm256_set1_ps(*scales[i].get_unchecked(b - g));
                                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), d, acc[i]);
                            }
                        }
                    }
                }
                for (o, v) in out.iter_mut().zip(acc) {
                    *o = hsum(v);
                }
            }

            /// # Safety
            /// The CPU must have the named features.
            #[target_feature(enable = $features)]
            pub(super) unsafe fn $q4(w: &Rows, a: &Acts, out: &mut [f32]) {
                let nb = w.cols / BLOCK;
                let k = out.len();
                let mut acc = [_mm256_setzero_ps(); 4];
                let (wq, aq) = (w.qs.as_ptr(), a.qs.as_ptr());
                let zero = _mm256_setzero_si256();
                for g in (0..nb).step_by(GROUP) {
                    let scales = combined!(w, a, g, k);
                    for b in g..(g + GROUP).min(nb) {
                        // SAFETY: as for Q8, with 16 bytes a weight block.
                        unsafe {
                            let x = _mm256_loadu_si256(aq.add(b * BLOCK) as *const __m256i);
                            for i in 0..k {
                                let y = nibbles(wq.add(i * w.cols / 2 + b * BLOCK / 2));
                                let dot = $q4dot(zero, y, x);
                                let d = _mm256_set1_ps(*scales[i].get_unchecked(b - g));
                                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), d, acc[i]);
                            }
                        }
                    }
                }
                let mins = min_terms!(w, a, k);
                for ((o, v), m) in out.iter_mut().zip(acc).zip(mins) {
                    *o = hsum(v) + m;
                }
            }
        };
    }

    kernels!(
        q8_avxvnni,
        q4_avxvnni,
        "avx2,fma,f16c,avxvnni",
        dpbusd_avxvnni,
        dpbusd_avxvnni
    );
    kernels!(
        q8_avx512vnni,
        q4_avx512vnni,
        "avx2,fma,f16c,avx512f,avx512vl,avx512vnni",
        dpbusd_avx512vnni,
        dpbusd_avx512vnni
    );
    kernels!(q8_avx2, q4_avx2, "avx2,fma,f16c", q8_dot_avx2, q4_dot_avx2);

    /// Attention for 64-wide heads: four keys scored at a time, the output
    /// kept in registers, each run of the cache read front to back.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; the job passed [`super::attend`]'s
    /// checks and its heads are 64 wide.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn attend64(job: &super::Attend, out: &mut [f32], scores: &mut Vec<f32>) {
        const D: usize = 64;
        const R: usize = super::KV_RUN;
        scores.clear();
        scores.resize(job.len, 0.0);
        // Eight halves from `p`, widened.
        // SAFETY (all uses below): `p` points into a run of the cache that
        // holds the position read (checked by `attend`).
        let load =
            |p: *const half::f16| _mm256_cvtph_ps(unsafe { _mm_loadu_si128(p as *const __m128i) });
        let run_start = |r: usize| r * R * job.kv_heads * D + job.head * R * D;
        let q = job.q.as_ptr();
        for r in 0..job.len.div_ceil(R) {
            let n = (job.len - r * R).min(R);
            let keys = job.keys[run_start(r)..].as_ptr();
            let scores = &mut scores[r * R..r * R + n];
            let mut j = 0;
            while j + 4 <= n {
                let mut acc = [_mm256_setzero_ps(); 4];
                for c in 0..D / 8 {
                    // SAFETY: q holds 64 floats; keys `j..j + 4` are in the run.
                    unsafe {
                        let qc = _mm256_loadu_ps(q.add(8 * c));
                        for (i, acc) in acc.iter_mut().enumerate() {
                            *acc = _mm256_fmadd_ps(qc, load(keys.add((j + i) * D + 8 * c)), *acc);
                        }
                    }
                }
                // Four horizontal sums at once.
                let s01 = _mm256_hadd_ps(acc[0], acc[1]);
                let s23 = _mm256_hadd_ps(acc[2], acc[3]);
                let s = _mm256_hadd_ps(s01, s23);
                let s = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
                let s = _mm_mul_ps(s, _mm_set1_ps(job.scale));
                // SAFETY: `j + 4 <= n`.
                unsafe { _mm_storeu_ps(scores.as_mut_ptr().add(j), s) };
                j += 4;
            }
            while j < n {
                let mut acc = _mm256_setzero_ps();
                for c in 0..D / 8 {
                    // SAFETY: as above, one key.
                    unsafe {
                        acc = _mm256_fmadd_ps(
                            _mm256_loadu_ps(q.add(8 * c)),
                            load(keys.add(j * D + 8 * c)),
                            acc,
                        );
                    }
                }
                scores[j] = hsum(acc) * job.scale;
                j += 1;
            }
        }
        let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
        for s in scores.iter_mut() {
            *s -= max;
        }
        super::exp_in_place(scores);
        let inv = 1.0 / scores.iter().sum::<f32>();
        let mut o = [_mm256_setzero_ps(); 8];
        for r in 0..job.len.div_ceil(R) {
            let n = (job.len - r * R).min(R);
            let values = job.values[run_start(r)..].as_ptr();
            for (j, s) in scores[r * R..r * R + n].iter().enumerate() {
                let p = _mm256_set1_ps(s * inv);
                for (c, o) in o.iter_mut().enumerate() {
                    // SAFETY: value `j` is in the run.
                    *o = _mm256_fmadd_ps(p, load(unsafe { values.add(j * D + 8 * c) }), *o);
                }
            }
        }
        for (c, o) in o.iter().enumerate() {
            // SAFETY: out holds 64 floats.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(8 * c), *o) };
        }
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn attend_avx2(job: &super::Attend, out: &mut [f32], scores: &mut Vec<f32>) {
        super::attend_generic(job, out, scores)
    }
}

/// Positions per run of the key/value cache. The cache grows a run at a
/// time; inside a run each key/value head's rows are contiguous, so a head
/// is read as a few long streams.
pub const KV_RUN: usize = 256;

/// Where position `pos` of key/value head `head` starts in a cache of
/// `kv_heads` heads of `d` values.
pub fn kv_index(pos: usize, head: usize, kv_heads: usize, d: usize) -> usize {
    (pos / KV_RUN) * KV_RUN * kv_heads * d + head * KV_RUN * d + (pos % KV_RUN) * d
}

/// One query head's attention over the cached keys and values.
pub struct Attend<'a> {
    pub q: &'a [f32],
    /// Laid out as [`kv_index`] says, in halves.
    pub keys: &'a [half::f16],
    pub values: &'a [half::f16],
    /// The key/value head this query head reads, of `kv_heads`.
    pub head: usize,
    pub kv_heads: usize,
    /// Positions attended to: `0..len`.
    pub len: usize,
    pub scale: f32,
}

/// Writes the attention output for `job` into `out` (one head).
pub fn attend(job: &Attend, out: &mut [f32], scores: &mut Vec<f32>) {
    let d = job.q.len();
    let cache = job.len.div_ceil(KV_RUN) * KV_RUN * job.kv_heads * d;
    assert!(
        job.len > 0
            && out.len() == d
            && job.head < job.kv_heads
            && job.keys.len() >= cache
            && job.values.len() >= cache
    );
    match isa() {
        #[cfg(target_arch = "x86_64")]
        Isa::AvxVnni | Isa::Avx512Vnni | Isa::Avx2 => {
            if d == 64 {
                // SAFETY: AVX2, FMA and F16C were detected at run time; the
                // cache and the head were checked above.
                unsafe { x86::attend64(job, out, scores) }
            } else {
                // SAFETY: AVX2 and FMA were detected at run time.
                unsafe { x86::attend_avx2(job, out, scores) }
            }
        }
        Isa::Portable => attend_generic(job, out, scores),
    }
}

#[inline(always)]
fn attend_generic(job: &Attend, out: &mut [f32], scores: &mut Vec<f32>) {
    let d = job.q.len();
    scores.clear();
    scores.resize(job.len, 0.0);
    let mut row = vec![0f32; d];
    let widen = |src: &[half::f16], row: &mut [f32]| {
        for (r, h) in row.iter_mut().zip(src) {
            *r = h.to_f32();
        }
    };
    for (j, s) in scores.iter_mut().enumerate() {
        let start = kv_index(j, job.head, job.kv_heads, d);
        widen(&job.keys[start..start + d], &mut row);
        *s = dot(job.q, &row) * job.scale;
    }
    let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
    for s in scores.iter_mut() {
        *s -= max;
    }
    exp_in_place(scores);
    let sum: f32 = scores.iter().sum();
    let inv = 1.0 / sum;
    out.fill(0.0);
    for (j, s) in scores.iter().enumerate() {
        let start = kv_index(j, job.head, job.kv_heads, d);
        let p = s * inv;
        widen(&job.values[start..start + d], &mut row);
        for (o, v) in out.iter_mut().zip(&row) {
            *o += p * v;
        }
    }
}

/// A float dot product in eight lanes (vectorises without reassociation).
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `e^x` for every `x <= 0` (larger values are clamped to 0), within about
/// two float steps; branch-free so it vectorises.
#[inline(always)]
pub fn exp_in_place(xs: &mut [f32]) {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: rounds to an integer
    for x in xs.iter_mut() {
        let v = x.clamp(-87.0, 0.0);
        let t = v * LOG2E + MAGIC;
        let n = t - MAGIC;
        let r = v - n * LN2_HI - n * LN2_LO;
        // exp(r) for |r| <= ln2/2, degree-6 Taylor/minimax polynomial.
        let p = 1.0
            + r * (1.0
                + r * (0.5
                    + r * (0.166_666_67
                        + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_889)))));
        let bits = ((t.to_bits() as i32 - MAGIC.to_bits() as i32 + 127) as u32) << 23;
        *x = p * f32::from_bits(bits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn products_match_the_dequantised_weights() {
        let (rows, cols, m) = (37, 320, 3);
        let w = pseudo(rows * cols, 1);
        let x = pseudo(m * cols, 2);
        let mut a = QActs::default();
        a.quantize(&x, cols);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("pool");
        for format in [Format::Q8, Format::Q4] {
            let q = QMatrix::quantize(rows, cols, &w, format);
            let mut out = Vec::new();
            matmul(&pool, &q, &a, &mut out);
            let mut row = vec![0f32; cols];
            for t in 0..m {
                // The dequantised activations, as the kernels see them.
                let xq: Vec<f32> = (0..cols)
                    .map(|j| a.qs[t * cols + j] as f32 * a.scales[(t * cols + j) / BLOCK])
                    .collect();
                for r in 0..rows {
                    q.row_into(r, &mut row);
                    let exact = dot(&row, &xq);
                    let got = out[t * rows + r];
                    assert!(
                        (got - exact).abs() < 1e-3,
                        "{format:?} {t},{r}: {got} vs {exact}"
                    );
                    // Quantisation error stays small against the float weights.
                    let float = dot(&w[r * cols..(r + 1) * cols], &x[t * cols..(t + 1) * cols]);
                    let tolerance = if format == Format::Q8 { 0.2 } else { 2.0 };
                    assert!(
                        (got - float).abs() < tolerance,
                        "{format:?} {t},{r}: {got} vs {float}"
                    );
                }
            }
            // The portable kernel agrees with the one picked for this CPU.
            let mut portable = [0f32; 4];
            dot_rows_portable(&q.rows_from(0, 4), &a.row(1), &mut portable);
            for (r, p) in portable.iter().enumerate() {
                assert!((p - out[rows + r]).abs() < 1e-4, "{format:?} {r}");
            }
        }
    }

    #[test]
    fn attention_kernels_agree() {
        let (kv_heads, len) = (3, KV_RUN + 77);
        let size = len.div_ceil(KV_RUN) * KV_RUN * kv_heads * 64;
        let half = |v: Vec<f32>| v.into_iter().map(half::f16::from_f32).collect::<Vec<_>>();
        let keys = half(pseudo(size, 3));
        let values = half(pseudo(size, 4));
        let q = pseudo(64, 5);
        for head in 0..kv_heads {
            for len in [1, 5, KV_RUN, len] {
                let job = Attend {
                    q: &q,
                    keys: &keys,
                    values: &values,
                    head,
                    kv_heads,
                    len,
                    scale: 0.125,
                };
                let (mut fast, mut plain) = (vec![0f32; 64], vec![0f32; 64]);
                attend(&job, &mut fast, &mut Vec::new());
                attend_generic(&job, &mut plain, &mut Vec::new());
                for (f, p) in fast.iter().zip(&plain) {
                    assert!((f - p).abs() < 1e-5, "{head} {len}: {f} vs {p}");
                }
                // A softmax-weighted mean stays within the values' range.
                assert!(plain.iter().all(|v| v.abs() <= 1.0));
            }
        }
        // One position: the output is that position's value row.
        let job = Attend {
            q: &q,
            keys: &keys,
            values: &values,
            head: 1,
            kv_heads,
            len: 1,
            scale: 0.125,
        };
        let mut out = vec![0f32; 64];
        attend(&job, &mut out, &mut Vec::new());
        let start = kv_index(0, 1, kv_heads, 64);
        for (o, v) in out.iter().zip(&values[start..start + 64]) {
            assert!((o - v.to_f32()).abs() < 1e-6);
        }
    }

    #[test]
    fn exp_is_close_to_std() {
        let mut xs: Vec<f32> = (0..1700).map(|i| -(i as f32) * 0.05).collect();
        let want: Vec<f32> = xs.iter().map(|x| x.exp()).collect();
        exp_in_place(&mut xs);
        for (g, w) in xs.iter().zip(&want) {
            assert!((g - w).abs() <= w * 2e-6 + 1e-38, "{g} vs {w}");
        }
    }
}
