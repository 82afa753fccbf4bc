//! Every random stream of a run is seeded from the test seed through
//! `derive`, so one number reproduces the whole run and no two streams
//! share a sequence by accident. The tags are the values these streams have
//! always used: changing one changes what every recorded seed does.

/// One independent random stream of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The workload's op generator.
    Workload,
    /// The fault schedule.
    Schedule,
    /// Choices the executor makes when a fault applies (a leader-targeted
    /// fault with no known leader).
    Executor,
    /// Releasing the messages held on directed link `index` (from * n + to).
    HeldLink { index: usize },
    /// The router's fault draws for messages one incarnation of a node
    /// sends (`generation` counts attachments across the run).
    NodeReader { node: usize, generation: u64 },
    /// A TCP proxy's fault draws for one direction of one connection.
    TcpStream { stream: u64 },
}

/// The seed of `stream` in a run seeded with `seed`.
pub fn derive(seed: u64, stream: Stream) -> u64 {
    match stream {
        Stream::Workload => seed,
        Stream::Schedule => seed ^ 0x6E65_6D65_7369_7321,
        Stream::Executor => seed ^ 0x5EED,
        Stream::HeldLink { index } => seed ^ index as u64,
        Stream::NodeReader { node, generation } => {
            seed ^ (0xA5A5_0000 + node as u64) ^ (generation << 32)
        }
        Stream::TcpStream { stream } => {
            seed ^ 0x7463_7000_0000_0000 ^ stream.wrapping_mul(0x9E37_79B9)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_from_each_other() {
        let s = 42;
        let all = [
            derive(s, Stream::Workload),
            derive(s, Stream::Schedule),
            derive(s, Stream::Executor),
            derive(
                s,
                Stream::NodeReader {
                    node: 0,
                    generation: 1,
                },
            ),
            derive(
                s,
                Stream::NodeReader {
                    node: 0,
                    generation: 2,
                },
            ),
            derive(
                s,
                Stream::NodeReader {
                    node: 1,
                    generation: 1,
                },
            ),
        ];
        for i in 0..all.len() {
            for j in 0..i {
                assert_ne!(all[i], all[j], "streams {i} and {j}");
            }
        }
    }
}
