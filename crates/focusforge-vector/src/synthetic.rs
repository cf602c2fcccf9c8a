//! Synthetic clustered vectors, for tests and benchmarks: each user writes
//! about a few topics, and each row is a topic's direction plus noise, the
//! way a person's memories gather around what they work on.

/// A small deterministic generator (SplitMix64), so data sets repeat.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u = self.unit().max(f32::MIN_POSITIVE);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    crate::ivf::normalise(&mut v);
    v
}

/// One user's topics and rows.
#[derive(Debug, Clone)]
pub struct SyntheticUser {
    pub topics: Vec<Vec<f32>>,
    pub rows: Vec<Vec<f32>>,
}

/// How clustered data is shaped.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub users: usize,
    pub rows_per_user: usize,
    pub dims: usize,
    pub topics_per_user: usize,
    /// Standard deviation of the noise per dimension, relative to a unit
    /// topic direction (0.05 on 384 dimensions gives rows a cosine of about
    /// 0.7 to their topic).
    pub noise: f32,
}

/// Users with rows clustered around their topics, unit length.
pub fn clustered(shape: Shape, seed: u64) -> Vec<SyntheticUser> {
    let mut rng = Rng::new(seed);
    (0..shape.users)
        .map(|_| {
            let topics: Vec<Vec<f32>> = (0..shape.topics_per_user)
                .map(|_| normalised((0..shape.dims).map(|_| rng.normal()).collect()))
                .collect();
            let rows = (0..shape.rows_per_user)
                .map(|_| {
                    let topic = &topics[rng.below(topics.len())];
                    normalised(
                        topic
                            .iter()
                            .map(|t| t + shape.noise * rng.normal())
                            .collect(),
                    )
                })
                .collect();
            SyntheticUser { topics, rows }
        })
        .collect()
}

/// A query near one of the user's topics.
pub fn query_near(user: &SyntheticUser, noise: f32, rng: &mut Rng) -> Vec<f32> {
    let topic = &user.topics[rng.below(user.topics.len())];
    normalised(topic.iter().map(|t| t + noise * rng.normal()).collect())
}
