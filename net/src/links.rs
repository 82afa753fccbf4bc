//! The network seam: what the nemesis may do to the directed link from one
//! node to another, whatever carries it. The stdio router (`router`) is one
//! implementation; a TCP proxy is another. A link's faults are one typed
//! value with units in its field names, and `heal` sets every link back.

/// The faults on one directed link. `LinkFaults::HEALED` is a healthy link.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LinkFaults {
    /// Partitioned: the link carries nothing.
    pub cut: bool,
    /// Messages are kept and delivered when the hold is released.
    pub hold: bool,
    pub drop_probability: f64,
    pub duplicate_probability: f64,
    /// A message's bytes are altered in flight.
    pub corrupt_probability: f64,
    /// Added to the link's base latency.
    pub delay_ms: f64,
    /// The latency is drawn uniformly around its mean, which reorders.
    pub jitter: bool,
    /// What the link carries at most (0: unlimited); messages queue
    /// behind each other.
    pub bandwidth_bytes_per_s: f64,
}

impl LinkFaults {
    pub const HEALED: LinkFaults = LinkFaults {
        cut: false,
        hold: false,
        drop_probability: 0.0,
        duplicate_probability: 0.0,
        corrupt_probability: 0.0,
        delay_ms: 0.0,
        jitter: false,
        bandwidth_bytes_per_s: 0.0,
    };

    /// Asserts what must hold of any fault set: probabilities are
    /// probabilities, delays and bandwidths are not negative.
    pub fn assert_valid(&self) {
        for p in [
            self.drop_probability,
            self.duplicate_probability,
            self.corrupt_probability,
        ] {
            assert!((0.0..=1.0).contains(&p), "a probability of {p} in {self:?}");
        }
        assert!(
            self.delay_ms >= 0.0 && self.bandwidth_bytes_per_s >= 0.0,
            "{self:?}"
        );
    }
}

/// The node-to-node links of a cluster, by node index.
pub trait Links: Send + Sync {
    fn node_count(&self) -> usize;
    /// The faults now on the link from `from` to `to`.
    fn faults(&self, from: usize, to: usize) -> LinkFaults;
    /// Replaces the faults on one directed link. Releasing a hold
    /// delivers what it kept.
    fn set_faults(&self, from: usize, to: usize, faults: LinkFaults);
    /// Every link healthy again.
    fn heal(&self) {
        let n = self.node_count();
        for a in 0..n {
            for b in (0..n).filter(|&b| b != a) {
                self.set_faults(a, b, LinkFaults::HEALED);
            }
        }
    }
}
