//! A log-linear latency histogram (HDR-like): 128 linear sub-buckets per power of two, so any
//! recorded value is reported within 1/128 (< 0.8 %) of itself. Recording is an index
//! computation and an increment; threads keep their own and merge at the end.

/// Sub-bucket bits: 2^SUB buckets per power of two.
const SUB: u32 = 7;
const SUB_COUNT: usize = 1 << SUB;
/// Buckets for the whole u64 range: values below 2^SUB are exact, then (64 - SUB) octaves.
const BUCKETS: usize = (64 - SUB as usize + 1) * SUB_COUNT;

/// Latency histogram over `u64` values (nanoseconds here).
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

fn index(v: u64) -> usize {
    if v < SUB_COUNT as u64 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // >= SUB
    let block = (e - SUB + 1) as usize;
    let mantissa = ((v >> (e - SUB)) as usize) & (SUB_COUNT - 1);
    block * SUB_COUNT + mantissa
}

/// Lowest and highest value of bucket `i`.
fn bounds(i: usize) -> (u64, u64) {
    if i < SUB_COUNT {
        return (i as u64, i as u64);
    }
    let block = (i / SUB_COUNT) as u32;
    let shift = block - 1;
    let low = ((SUB_COUNT + i % SUB_COUNT) as u64) << shift;
    (low, low.saturating_add((1u64 << shift) - 1))
}

impl Histogram {
    /// Records one value.
    pub fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.count += 1;
        self.sum += u128::from(v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// Adds every value recorded in `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Largest value recorded (0 when empty).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Mean of the values recorded (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        self.sum as f64 / self.count as f64
    }

    /// The value at quantile `q` in 0..=1 (0 when empty): the middle of the bucket holding the
    /// rank-`ceil(q * count)` value, clamped to the recorded min and max (the max itself for
    /// the last rank).
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        if rank >= self.count {
            return self.max;
        }
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, hi) = bounds(i);
                return (lo + (hi - lo) / 2).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values() {
        for v in [
            0,
            1,
            127,
            128,
            129,
            255,
            256,
            1000,
            123_456,
            u64::MAX / 3,
            u64::MAX,
        ] {
            let (lo, hi) = bounds(index(v));
            assert!(lo <= v && v <= hi, "{v} not in [{lo}, {hi}]");
            assert!(
                (hi - lo) as f64 <= v as f64 / 100.0 + 1.0,
                "{v}: [{lo}, {hi}] too wide"
            );
        }
        assert!(index(u64::MAX) < BUCKETS);
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), 0);
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 / 5_000_000.0 - 1.0).abs() < 0.01, "{p50}");
        assert!((p99 / 9_900_000.0 - 1.0).abs() < 0.01, "{p99}");
        assert_eq!(h.quantile(1.0), 10_000_000);
        let mut g = Histogram::default();
        g.record(50_000_000);
        h.merge(&g);
        assert_eq!(h.max(), 50_000_000);
        assert_eq!(h.count(), 10_001);
    }
}
