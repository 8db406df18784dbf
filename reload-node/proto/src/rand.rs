//! Randomness of the core, always from a seed the shell gives (the core reads no OS
//! source):
//! - [`Csprng`] (ChaCha20) for what RFC 6940 wants unpredictable: transaction IDs
//!   (§6.3.2: "MUST be randomly generated"), the PingAns `response_id`;
//! - [`Prng`], a small fast generator for timer jitter, finger probes, simulated latency and
//!   loss — deterministic for a seed, so a simulation replays exactly, and never used where
//!   unpredictability matters.

use chacha20::ChaCha20Rng;
use rand_core::{Rng as _, SeedableRng as _};

/// The 32-byte seed of a node's [`Csprng`]: from the operating system on a real peer (the
/// shell fails to start without it), from the run seed in a simulation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Seed(pub [u8; 32]);

impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seed(..)")
    }
}

impl Seed {
    /// A seed expanded from a 64-bit number: predictable, for simulations and tests only.
    pub fn from_u64(v: u64) -> Seed {
        let mut p = Prng::new(v);
        let mut b = [0u8; 32];
        for chunk in b.chunks_mut(8) {
            chunk.copy_from_slice(&p.next_u64().to_be_bytes());
        }
        Seed(b)
    }
}

/// ChaCha20 keyed by a [`Seed`]: its outputs reveal nothing about later ones.
pub struct Csprng(ChaCha20Rng);

impl std::fmt::Debug for Csprng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Csprng(..)")
    }
}

impl Csprng {
    pub fn new(seed: &Seed) -> Self {
        Csprng(ChaCha20Rng::from_seed(seed.0))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
}

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
    fn the_csprng_is_reproducible_for_a_seed_and_differs_between_seeds() {
        use super::{Csprng, Seed};
        let a: Vec<u64> = {
            let mut c = Csprng::new(&Seed::from_u64(1));
            (0..4).map(|_| c.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut c = Csprng::new(&Seed::from_u64(1));
            (0..4).map(|_| c.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut c = Csprng::new(&Seed([7; 32]));
            (0..4).map(|_| c.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.windows(2).all(|w| w[0] != w[1]));
    }

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
