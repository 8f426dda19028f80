//! Deterministic randomness.
//!
//! Every entity (a customer on a day, an agent on a shift, an attack hour)
//! gets its own generator seeded from the run's seed and the entity's
//! coordinates, so its behaviour does not depend on what was generated
//! before it. That is what lets the simulator stream a day at a time with
//! bounded memory and still give the same bytes for the same seed.

use rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// A generator with the small helpers the simulator needs.
pub struct Dice(Xoshiro256PlusPlus);

/// SplitMix64's finaliser: a good 64-bit mix for deriving seeds.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stable hash of a tuple of coordinates.
pub fn hash(parts: &[u64]) -> u64 {
    parts.iter().fold(0x5157_4d5f_5049_4957, |h, &p| mix(h ^ mix(p)))
}

impl Dice {
    /// A generator for the entity at these coordinates.
    pub fn at(parts: &[u64]) -> Self {
        Self(Xoshiro256PlusPlus::seed_from_u64(hash(parts)))
    }

    /// 64 random bits.
    #[inline]
    pub fn bits(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((u128::from(self.bits()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..hi` (hi > lo).
    #[inline]
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo) as u64) as i64
    }

    /// Uniform in `[0, 1)`.
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.bits() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p`.
    #[inline]
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Exponentially distributed with this mean.
    pub fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }

    /// Poisson with a small mean (Knuth's method; means here are < 30).
    pub fn poisson(&mut self, mean: f64) -> u32 {
        if mean <= 0.0 {
            return 0;
        }
        let limit = (-mean).exp();
        let mut k = 0;
        let mut p = self.unit();
        while p > limit && k < 1000 {
            k += 1;
            p *= self.unit();
        }
        k
    }

    /// An index drawn with the given (unnormalised) weights.
    pub fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.unit() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_coordinates_same_stream() {
        let a: Vec<u64> = (0..4).map(|_| Dice::at(&[1, 2, 3]).bits()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(Dice::at(&[1, 2, 3]).bits(), Dice::at(&[1, 2, 4]).bits());
    }

    #[test]
    fn below_stays_in_range_and_poisson_has_its_mean() {
        let mut d = Dice::at(&[7]);
        assert!((0..10_000).all(|_| d.below(7) < 7));
        let n = 20_000;
        let mean = (0..n).map(|_| f64::from(d.poisson(3.0))).sum::<f64>() / f64::from(n);
        assert!((mean - 3.0).abs() < 0.1, "{mean}");
    }
}
