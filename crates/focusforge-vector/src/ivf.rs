//! An inverted-file (IVF-Flat) index over one user's unit vectors: spherical
//! k-means partitions, a query scans the rows of the `nprobe` partitions
//! whose centroids are closest, scored exactly (no quantisation, so recall is
//! lost only to rows outside the probed partitions).

/// Dot product written so the compiler vectorises it.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    for (x, y) in ca.iter().zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// How an index is shaped and searched.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IvfParams {
    /// Partitions per square root of the rows (`nlist = ceil(f * sqrt(n))`).
    pub lists_per_sqrt_rows: f32,
    /// Share of the partitions a query scans, at least `min_probes`.
    pub probe_fraction: f32,
    pub min_probes: usize,
    /// Lloyd iterations of the k-means training.
    pub iterations: usize,
}

impl Default for IvfParams {
    fn default() -> Self {
        Self {
            lists_per_sqrt_rows: 1.0,
            probe_fraction: 0.1,
            min_probes: 8,
            iterations: 10,
        }
    }
}

/// The partitions of the first `rows` rows of a user.
#[derive(Debug)]
pub struct Ivf {
    dims: usize,
    rows: usize,
    centroids: Vec<f32>,
    lists: Vec<Vec<u32>>,
    nprobe: usize,
}

/// Scales `v` to unit length (a zero vector stays zero).
pub(crate) fn normalise(v: &mut [f32]) {
    let norm = dot(v, v).sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// `v` scaled to unit length.
pub(crate) fn unit(v: &[f32]) -> Vec<f32> {
    let mut v = v.to_vec();
    normalise(&mut v);
    v
}

fn nearest_centroid(centroids: &[f32], dims: usize, v: &[f32]) -> usize {
    let mut best = (f32::NEG_INFINITY, 0);
    for (c, centroid) in centroids.chunks_exact(dims).enumerate() {
        let s = dot(centroid, v);
        if s > best.0 {
            best = (s, c);
        }
    }
    best.1
}

impl Ivf {
    /// Trains partitions on `vectors` (unit vectors of `dims`, row after
    /// row). Deterministic: the same rows give the same index.
    pub fn build(vectors: &[f32], dims: usize, params: IvfParams) -> Self {
        let n = vectors.len() / dims;
        if n == 0 {
            return Self {
                dims,
                rows: 0,
                centroids: Vec::new(),
                lists: Vec::new(),
                nprobe: 0,
            };
        }
        let nlist =
            ((params.lists_per_sqrt_rows * (n as f32).sqrt()).ceil() as usize).clamp(1, n.max(1));
        // Initial centroids: rows spread evenly over the table.
        let mut centroids: Vec<f32> = (0..nlist)
            .flat_map(|c| {
                let row = c * n / nlist;
                vectors[row * dims..(row + 1) * dims].iter().copied()
            })
            .collect();
        // Train on a sample of at most 64 rows per partition.
        let step = (n / (64 * nlist)).max(1);
        let sample: Vec<usize> = (0..n).step_by(step).collect();
        let mut assignment = vec![0usize; sample.len()];
        for _ in 0..params.iterations {
            for (slot, &row) in assignment.iter_mut().zip(&sample) {
                *slot = nearest_centroid(&centroids, dims, &vectors[row * dims..(row + 1) * dims]);
            }
            let mut sums = vec![0.0f32; nlist * dims];
            let mut counts = vec![0usize; nlist];
            for (&c, &row) in assignment.iter().zip(&sample) {
                counts[c] += 1;
                let v = &vectors[row * dims..(row + 1) * dims];
                sums[c * dims..(c + 1) * dims]
                    .iter_mut()
                    .zip(v)
                    .for_each(|(s, x)| *s += x);
            }
            for c in 0..nlist {
                // An empty partition keeps its centroid.
                if counts[c] > 0 {
                    let centroid = &mut sums[c * dims..(c + 1) * dims];
                    normalise(centroid);
                    centroids[c * dims..(c + 1) * dims].copy_from_slice(centroid);
                }
            }
        }
        let mut lists = vec![Vec::new(); nlist];
        for (row, v) in vectors.chunks_exact(dims).enumerate() {
            lists[nearest_centroid(&centroids, dims, v)].push(row as u32);
        }
        let nprobe = ((params.probe_fraction * nlist as f32).ceil() as usize)
            .max(params.min_probes)
            .min(nlist);
        Self {
            dims,
            rows: n,
            centroids,
            lists,
            nprobe,
        }
    }

    /// How many rows the index covers (rows added later are not in it).
    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn partitions(&self) -> usize {
        self.lists.len()
    }

    /// The row positions to score for `query`: the members of the closest
    /// partitions.
    pub fn candidates(&self, query: &[f32]) -> impl Iterator<Item = usize> + '_ {
        let mut scored: Vec<(f32, usize)> = self
            .centroids
            .chunks_exact(self.dims)
            .enumerate()
            .map(|(c, centroid)| (dot(centroid, query), c))
            .collect();
        let nprobe = self.nprobe.min(scored.len());
        if nprobe > 0 && nprobe < scored.len() {
            scored.select_nth_unstable_by(nprobe - 1, |a, b| b.0.total_cmp(&a.0));
        }
        scored.truncate(nprobe);
        scored
            .into_iter()
            .flat_map(move |(_, c)| self.lists[c].iter().map(|&r| r as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_the_plain_sum_for_any_length() {
        for len in [0, 1, 7, 8, 9, 384] {
            let a: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 3.0).collect();
            let b: Vec<f32> = (0..len).map(|i| 1.0 - i as f32 * 0.25).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() <= 1e-3 * plain.abs().max(1.0));
        }
    }

    #[test]
    fn an_empty_index_has_no_candidates() {
        let ivf = Ivf::build(&[], 4, IvfParams::default());
        assert_eq!((ivf.rows(), ivf.partitions()), (0, 0));
        assert_eq!(ivf.candidates(&[1.0, 0.0, 0.0, 0.0]).count(), 0);
    }

    #[test]
    fn every_row_lands_in_exactly_one_partition() {
        let dims = 4;
        let mut vectors = Vec::new();
        for i in 0..100 {
            let mut v = vec![(i % 4) as f32 + 1.0, (i % 3) as f32, (i % 5) as f32, 1.0];
            normalise(&mut v);
            vectors.extend(v);
        }
        let ivf = Ivf::build(&vectors, dims, IvfParams::default());
        assert_eq!(ivf.rows(), 100);
        assert_eq!(ivf.partitions(), 10);
        let mut all: Vec<u32> = ivf.lists.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<u32>>());
        // Probing every partition yields every row.
        let wide = Ivf {
            nprobe: ivf.partitions(),
            ..ivf
        };
        assert_eq!(wide.candidates(&vectors[..dims]).count(), 100);
    }
}
