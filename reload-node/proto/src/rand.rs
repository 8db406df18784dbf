//! The one seeded pseudo-random generator of the core: timer jitter, finger probes,
//! simulated latency and loss. Deterministic for a seed, so that a simulation replays
//! exactly. Never used where the RFC asks for unpredictability (transaction IDs, §6.3.2).

/// xorshift64*, its state from splitmix64 of the seed: seeds that differ in one bit give
/// unrelated streams, and no seed gives the all-zero state.
#[derive(Clone, Debug)]
pub struct Prng(u64);

impl Prng {
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Prng((z ^ (z >> 31)) | 1)
    }

    /// A generator seeded from bytes (a Node-ID): their 64-bit words folded together.
    pub fn from_bytes(seed: &[u8]) -> Self {
        let folded = seed.chunks(8).fold(0u64, |acc, c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            acc.rotate_left(17) ^ u64::from_be_bytes(w)
        });
        Prng::new(folded)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn next_u128(&mut self) -> u128 {
        ((self.next_u64() as u128) << 64) | self.next_u64() as u128
    }

    /// Uniform in `0..n` (0 for n ≤ 1), by rejection so there is no modulo bias; the
    /// rejection loop is bounded (each round rejects with probability < 1/2).
    pub fn below(&mut self, n: u64) -> u64 {
        if n <= 1 {
            return 0;
        }
        let zone = u64::MAX - (u64::MAX % n);
        let mut v = self.next_u64();
        for _ in 0..64 {
            if v < zone {
                break;
            }
            v = self.next_u64();
        }
        v % n
    }

    pub fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::Prng;

    #[test]
    fn seeds_give_distinct_reproducible_streams() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut p = Prng::new(2);
                move |_| p.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..4)
            .map({
                let mut p = Prng::new(2);
                move |_| p.next_u64()
            })
            .collect();
        let c: Vec<u64> = (0..4)
            .map({
                let mut p = Prng::new(3);
                move |_| p.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut p = Prng::new(0);
        assert_ne!(p.next_u64(), 0, "seed 0 still runs");
        for n in [1u64, 2, 3, 7, 1000, u64::MAX] {
            assert!((0..100).all(|_| p.below(n) < n && (0.0..1.0).contains(&p.unit())));
        }
    }
}
