//! The TCP network: one proxy per directed link and peer port. Node i
//! reaches node j's port P at `System::proxy_ip(i, j):P` (its own name
//! resolution sends it there), and the proxy forwards to node j's real
//! address, dialing from node i's own address. Bytes are attributed by the direction they flow, not by who
//! dialed: on a connection node i opened to node j, what i sends crosses
//! link i -> j and what j answers crosses j -> i, each with that link's
//! faults. It implements the same `Links` seam as the stdio router.
//!
//! What a link's faults mean for a byte stream: `cut` and `hold` stall the
//! direction (the bytes wait, as TCP retransmits through a partition, and
//! flow again when it heals); `delay_ms` (with `jitter`) delays each chunk
//! in order; `bandwidth_bytes_per_s` paces it; `corrupt_probability` flips
//! a bit in a chunk; `drop_probability` resets the connection (a stream
//! cannot lose a message and go on). Duplication has no stream analogue
//! and is ignored.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::links::{LinkFaults, Links};
use crate::recorder::Recorder;
use faultline_nemesis::seed::{derive, Stream};
use faultline_rundir::record::Clock;
use faultline_rundir::JournalEntry;

/// Bytes read at a time from one side.
const CHUNK_BYTES: usize = 16 * 1024;
/// Chunks queued in one direction before its reader waits (back-pressure
/// instead of unbounded memory while a link is cut).
const QUEUE_CHUNKS: usize = 64;
/// How long a proxy waits for the real node to accept.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Per directed link: what crossed it and what was done to it.
#[derive(Debug, Default)]
struct LinkCounters {
    connections: AtomicU64,
    bytes: AtomicU64,
    chunks: AtomicU64,
    corrupted: AtomicU64,
    resets: AtomicU64,
}

use faultline_rundir::stats::LinkStats;

/// Where a proxied connection arrives from, as its receiver sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PeerSource {
    /// The dialing node's own address, as a direct connection would: for
    /// servers that filter on it (access lists) or report it.
    #[default]
    Node,
    /// Node i's proxy address (`proxy_addr(i, i)`), the one address by
    /// which every node can reach i through its proxies: connections to it
    /// are told apart by who dialed. For servers that bind their outgoing
    /// connections to their own address and name a peer by the address it
    /// came from, passing that name on to others who dial it (Galera).
    /// With the dialer's own address such a name leads around every
    /// fault; with per-link names a peer has several, and Galera evicts a
    /// peer it knows by two names as a duplicate.
    Proxy,
}

pub struct TcpLinks {
    ids: Vec<String>,
    /// Node k's address, to tell which node dialed a proxy (`None` if it
    /// is not an IP address).
    node_ips: Vec<Option<std::net::IpAddr>>,
    /// `sources[i]`: the address node i's proxied connections arrive from,
    /// whichever node they reach (see `PeerSource`).
    sources: Vec<Option<std::net::IpAddr>>,
    /// Where connection events are journaled, with the run's clock.
    journal: Option<(Arc<Recorder>, Clock)>,
    faults: RwLock<Vec<LinkFaults>>,
    /// Bumped on every change, so stalled directions look again.
    changed: watch::Sender<u64>,
    counters: Vec<LinkCounters>,
    seed: u64,
    next_conn: AtomicU64,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl TcpLinks {
    /// Binds every proxy (link i -> j, each peer port) and starts serving.
    /// `node_addr(j)` and `proxy_addr(i, j)` are 0-based.
    pub async fn start(
        ids: Vec<String>,
        peer_ports: &[u16],
        node_addr: impl Fn(usize) -> String,
        proxy_addr: impl Fn(usize, usize) -> String,
        peer_source: PeerSource,
        seed: u64,
        journal: Option<(Arc<Recorder>, Clock)>,
    ) -> anyhow::Result<Arc<TcpLinks>> {
        let n = ids.len();
        let source = |i: usize| match peer_source {
            PeerSource::Node => node_addr(i).parse().ok(),
            PeerSource::Proxy => proxy_addr(i, i).parse().ok(),
        };
        let links = Arc::new(TcpLinks {
            node_ips: (0..n).map(|k| node_addr(k).parse().ok()).collect(),
            sources: (0..n).map(source).collect(),
            journal,
            faults: RwLock::new(vec![LinkFaults::HEALED; n * n]),
            changed: watch::channel(0).0,
            counters: (0..n * n).map(|_| LinkCounters::default()).collect(),
            next_conn: AtomicU64::new(0),
            tasks: Mutex::new(Vec::new()),
            ids,
            seed,
        });
        // Where each proxy listens, and the link it carries when the
        // dialer's address does not say (a program that does not bind its
        // outgoing connections dials from 127.0.0.1).
        let mut listeners: Vec<(String, Option<usize>, usize)> = Vec::new();
        for j in 0..n {
            listeners.extend(
                (0..n)
                    .filter(|&i| i != j)
                    .map(|i| (proxy_addr(i, j), Some(i), j)),
            );
            if peer_source == PeerSource::Proxy {
                listeners.push((proxy_addr(j, j), None, j));
            }
        }
        for (addr, dialer, j) in listeners {
            for &port in peer_ports {
                let at = format!("{addr}:{port}");
                let listener = TcpListener::bind(&at).await.map_err(|e| {
                    let whose = match dialer {
                        Some(i) => format!("link {} -> {}", links.ids[i], links.ids[j]),
                        None => format!("every link to {}", links.ids[j]),
                    };
                    anyhow::anyhow!("cannot listen on {at} for the proxy of {whose}: {e}")
                })?;
                let target = format!("{}:{port}", node_addr(j));
                let task = tokio::spawn(links.clone().serve(listener, dialer, j, target));
                links
                    .tasks
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(task);
            }
        }
        Ok(links)
    }

    /// Closes every listener and connection (the pumps end with them).
    pub fn stop(&self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }

    fn index(&self, from: usize, to: usize) -> usize {
        let n = self.ids.len();
        assert!(from < n && to < n, "no link {from} -> {to} among {n} nodes");
        from * n + to
    }

    /// Every directed link's figures.
    pub fn stats(&self) -> Vec<LinkStats> {
        let n = self.ids.len();
        let mut out = Vec::new();
        for i in 0..n {
            for j in (0..n).filter(|&j| j != i) {
                let c = &self.counters[self.index(i, j)];
                out.push(LinkStats {
                    from: self.ids[i].clone(),
                    to: self.ids[j].clone(),
                    connections: c.connections.load(Relaxed),
                    bytes: c.bytes.load(Relaxed),
                    chunks: c.chunks.load(Relaxed),
                    corrupted: c.corrupted.load(Relaxed),
                    resets: c.resets.load(Relaxed),
                });
            }
        }
        out
    }

    /// Journals a connection event on link `from -> to`.
    fn event(&self, from: usize, to: usize, what: &str) {
        if let Some((rec, clock)) = &self.journal {
            rec.journal_entry(&JournalEntry {
                time: clock.now_ns(),
                src: self.ids[from].clone(),
                dest: self.ids[to].clone(),
                ty: Some(format!("tcp-{what}")),
                msg_id: None,
                in_reply_to: None,
                fate: what.to_string(),
                delay_us: 0,
            });
        }
    }

    async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        listener_dialer: Option<usize>,
        j: usize,
        target: String,
    ) {
        loop {
            let Ok((dialer, from)) = listener.accept().await else {
                continue;
            };
            // A node that binds its outgoing connections to its own
            // address says which link it dials on, whichever proxy
            // address it learnt (Galera passes on the addresses its peers
            // came from).
            let i = match self.node_ips.iter().position(|ip| *ip == Some(from.ip())) {
                Some(k) if k != j => k,
                _ => match listener_dialer {
                    Some(i) => i,
                    // A node's own proxy, dialed by no node: no link to
                    // carry it, so the dialer sees its connection close.
                    None => continue,
                },
            };
            let source = self.sources[i];
            let upstream =
                match tokio::time::timeout(CONNECT_TIMEOUT, dial_from(source, &target)).await {
                    Ok(Ok(s)) => s,
                    // The node is down: the dialer sees its connection close.
                    _ => {
                        self.event(i, j, "refused");
                        continue;
                    }
                };
            self.event(i, j, "connect");
            let _ = dialer.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            self.counters[self.index(i, j)]
                .connections
                .fetch_add(1, Relaxed);
            let conn = self.next_conn.fetch_add(1, Relaxed);
            let (dr, dw) = dialer.into_split();
            let (ur, uw) = upstream.into_split();
            let me = self.clone();
            let task = tokio::spawn(async move {
                let a = me.clone().pipe(i, j, dr, uw, conn * 2);
                let b = me.pipe(j, i, ur, dw, conn * 2 + 1);
                tokio::pin!(a, b);
                // A direction that ended cleanly (its sender closed, every
                // byte delivered, the close passed on) leaves the other
                // running, as TCP's half-close does; one that failed (a
                // reset, a write error) ends the connection.
                tokio::select! {
                    clean = &mut a => if clean { b.await; },
                    clean = &mut b => if clean { a.await; },
                }
            });
            let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
            // Finished connections leave the list, so it stays bounded.
            tasks.retain(|t| !t.is_finished());
            tasks.push(task);
        }
    }

    /// One direction of one connection, over link `from -> to`. Returns
    /// whether it ended cleanly: its sender closed and every byte it sent
    /// was delivered before the close was passed on. (Ending at the
    /// sender's close dropped what was still queued: a peer that sends and
    /// closes at once, as rsync and one-shot RPCs do, lost its last bytes.)
    async fn pipe(
        self: Arc<Self>,
        from: usize,
        to: usize,
        mut r: OwnedReadHalf,
        w: OwnedWriteHalf,
        stream: u64,
    ) -> bool {
        let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUE_CHUNKS);
        let reader = async move {
            let mut buf = vec![0u8; CHUNK_BYTES];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) => return true,
                    Err(_) => return false,
                    Ok(k) => {
                        if tx.send((Instant::now(), buf[..k].to_vec())).await.is_err() {
                            return false;
                        }
                    }
                }
            }
        };
        let rng = ChaCha8Rng::seed_from_u64(derive(self.seed, Stream::TcpStream { stream }));
        let writer = self.forward(self.index(from, to), rx, w, rng);
        tokio::pin!(writer);
        // The writer ends first only when it failed: the channel is open
        // while the reader runs.
        let read_clean = tokio::select! {
            clean = reader => clean,
            _ = &mut writer => return false,
        };
        // The reader is done and its sender dropped: the writer drains.
        writer.await && read_clean
    }

    /// Writes each chunk when its link lets it: after a stall, its delay
    /// and its turn on the wire; corrupts or resets as the faults say.
    /// Returns true once every chunk was written and the close passed on.
    async fn forward(
        &self,
        link: usize,
        mut rx: mpsc::Receiver<(Instant, Vec<u8>)>,
        mut w: OwnedWriteHalf,
        mut rng: ChaCha8Rng,
    ) -> bool {
        let mut changed = self.changed.subscribe();
        let mut last_due = Instant::now();
        while let Some((read_at, mut chunk)) = rx.recv().await {
            let faults = loop {
                let f = self.faults.read().unwrap_or_else(|e| e.into_inner())[link];
                if !(f.cut || f.hold) {
                    break f;
                }
                if changed.changed().await.is_err() {
                    return false;
                }
            };
            let c = &self.counters[link];
            if faults.drop_probability > 0.0 && rng.gen_bool(faults.drop_probability.min(1.0)) {
                c.resets.fetch_add(1, Relaxed);
                let n = self.ids.len();
                self.event(link / n, link % n, "reset");
                // Linger 0: the close is a reset, as a crashed peer's would
                // be. (tokio deprecates SO_LINGER because a positive linger
                // blocks on drop; zero does not.)
                #[allow(deprecated)]
                let _ = w.as_ref().set_linger(Some(Duration::ZERO));
                return false;
            }
            let mut due = read_at + sample_delay(&faults, &mut rng);
            if faults.bandwidth_bytes_per_s > 0.0 {
                due = due.max(last_due)
                    + Duration::from_secs_f64(chunk.len() as f64 / faults.bandwidth_bytes_per_s);
            }
            // In order: a chunk never overtakes the one before it.
            due = due.max(last_due);
            last_due = due;
            // tokio's timer ticks in milliseconds: a due time already
            // passed must not wait for the next tick.
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
            if faults.corrupt_probability > 0.0 && rng.gen_bool(faults.corrupt_probability.min(1.0))
            {
                let at = rng.gen_range(0..chunk.len());
                chunk[at] ^= 1 << rng.gen_range(0..8);
                c.corrupted.fetch_add(1, Relaxed);
            }
            if w.write_all(&chunk).await.is_err() {
                return false;
            }
            c.bytes.fetch_add(chunk.len() as u64, Relaxed);
            c.chunks.fetch_add(1, Relaxed);
        }
        // The sender closed: so does this side, after its last byte.
        w.shutdown().await.is_ok()
    }
}

/// A chunk's added delay: the link's extra latency, drawn uniformly around
/// its mean when it has jitter.
fn sample_delay(f: &LinkFaults, rng: &mut ChaCha8Rng) -> Duration {
    if f.delay_ms <= 0.0 {
        return Duration::ZERO;
    }
    let ms = if f.jitter {
        rng.gen_range(0.0..2.0 * f.delay_ms)
    } else {
        f.delay_ms
    };
    Duration::from_secs_f64(ms.min(60_000.0) / 1e3)
}

impl Links for TcpLinks {
    fn node_count(&self) -> usize {
        self.ids.len()
    }

    fn faults(&self, from: usize, to: usize) -> LinkFaults {
        self.faults.read().unwrap_or_else(|e| e.into_inner())[self.index(from, to)]
    }

    fn set_faults(&self, from: usize, to: usize, faults: LinkFaults) {
        faults.assert_valid();
        let link = self.index(from, to);
        self.faults.write().unwrap_or_else(|e| e.into_inner())[link] = faults;
        self.changed.send_modify(|v| *v += 1);
    }
}

impl Drop for TcpLinks {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Connects to `target` from `source` (any free port) when given.
async fn dial_from(source: Option<std::net::IpAddr>, target: &str) -> std::io::Result<TcpStream> {
    let Some(ip) = source else {
        return TcpStream::connect(target).await;
    };
    let addr = tokio::net::lookup_host(target)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{target} has no address")))?;
    let socket = match ip {
        std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(std::net::SocketAddr::new(ip, 0))?;
    socket.connect(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_proxied_connection_arrives_from_the_dialers_own_address() {
        let (_n1, n2, _links) = pair().await;
        assert_eq!(
            n2.peer_addr().unwrap().ip().to_string(),
            "127.0.1.1",
            "n2 sees n1's address, not the proxy's or 127.0.0.1"
        );
    }

    /// Galera's case: every node reaches n1 at n1's own proxy address and
    /// binds its connections to its own address; n1 sees each peer at that
    /// peer's proxy address, which is also where anyone reaches it. The
    /// dialer's address picks the link; a dialer that says nothing (from
    /// 127.0.0.1) has no link there and is hung up on.
    #[tokio::test]
    async fn one_proxy_address_per_node_tells_links_apart_by_the_dialer() {
        let probe = std::net::TcpListener::bind("127.0.2.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let n1 = TcpListener::bind(format!("127.0.2.1:{port}"))
            .await
            .unwrap();
        let links = TcpLinks::start(
            vec!["n1".into(), "n2".into(), "n3".into()],
            &[port],
            |j| format!("127.0.2.{}", j + 1),
            |i, j| format!("127.{}.{}.2", 150 + i, j + 1),
            PeerSource::Proxy,
            7,
            None,
        )
        .await
        .unwrap();
        let accept = || async {
            tokio::time::timeout(Duration::from_secs(5), n1.accept())
                .await
                .expect("accepted in time")
                .unwrap()
                .0
        };
        let n1_proxy = format!("127.150.1.2:{port}");
        let from_n2 = dial(&n1_proxy, "127.0.2.2").await;
        let at_n1 = accept().await;
        assert_eq!(at_n1.peer_addr().unwrap().ip().to_string(), "127.151.2.2");
        let from_n3 = dial(&n1_proxy, "127.0.2.3").await;
        let at_n1_again = accept().await;
        assert_eq!(
            at_n1_again.peer_addr().unwrap().ip().to_string(),
            "127.152.3.2",
            "n1 sees n3 at the address anyone reaches n3 at"
        );
        let connections = |from: &str| {
            links
                .stats()
                .iter()
                .find(|l| l.from == from && l.to == "n1")
                .unwrap()
                .connections
        };
        // The proxy counts a connection just after n1 accepts it.
        for _ in 0..100 {
            if connections("n3") > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!((connections("n2"), connections("n3")), (1, 1));
        let mut anonymous = dial(&n1_proxy, "127.0.0.1").await;
        let mut buf = [0u8; 16];
        let ended = tokio::time::timeout(Duration::from_secs(2), anonymous.read(&mut buf)).await;
        assert!(
            matches!(ended, Ok(Ok(0)) | Ok(Err(_))),
            "hung up on without a byte: {ended:?}"
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(300), n1.accept())
                .await
                .is_err(),
            "n1 never sees it"
        );
        drop((from_n2, from_n3, at_n1, at_n1_again));
        links.stop();
    }

    /// A connection to `to` from the local address `from`.
    async fn dial(to: &str, from: &str) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        socket.connect(to.parse().unwrap()).await.unwrap()
    }

    /// Two "nodes" (plain listeners on 127.0.1.1 and .2) behind proxies; n1
    /// dials n2 through the proxy of link n1 -> n2. Returns (n1's end, n2's
    /// accepted end, the links).
    async fn pair() -> (TcpStream, TcpStream, Arc<TcpLinks>) {
        let probe = std::net::TcpListener::bind("127.0.1.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let n2 = TcpListener::bind(format!("127.0.1.2:{port}"))
            .await
            .unwrap();
        let links = TcpLinks::start(
            vec!["n1".into(), "n2".into()],
            &[port],
            |j| format!("127.0.1.{}", j + 1),
            |i, j| format!("127.{}.{}.1", 150 + i, j + 1),
            PeerSource::Node,
            7,
            None,
        )
        .await
        .unwrap();
        let dialer = TcpStream::connect(format!("127.150.2.1:{port}"))
            .await
            .unwrap();
        let (accepted, _) = tokio::time::timeout(Duration::from_secs(5), n2.accept())
            .await
            .unwrap()
            .unwrap();
        (dialer, accepted, links)
    }

    async fn read_some(s: &mut TcpStream, wait: Duration) -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Ok(Ok(k)) => buf[..k].to_vec(),
            _ => Vec::new(),
        }
    }

    /// A sender that writes and closes at once (rsync, a one-shot RPC)
    /// has every byte delivered, then the close; a half-closed request
    /// still gets its answer back.
    #[tokio::test]
    async fn bytes_sent_just_before_a_close_arrive_and_a_half_close_is_passed_on() {
        let (mut n1, mut at_n2, links) = pair().await;
        let sent: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        n1.write_all(&sent).await.unwrap();
        n1.shutdown().await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), at_n2.read_to_end(&mut got))
            .await
            .expect("the close arrives")
            .unwrap();
        assert_eq!(got.len(), sent.len(), "every byte before the close");
        assert!(got == sent);
        // The other direction still runs after the half-close.
        at_n2.write_all(b"answer").await.unwrap();
        at_n2.shutdown().await.unwrap();
        let mut back = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), n1.read_to_end(&mut back))
            .await
            .expect("the answer and its close arrive")
            .unwrap();
        assert_eq!(back, b"answer");
        links.stop();
    }

    #[tokio::test]
    async fn a_one_way_cut_stalls_one_direction_and_heal_delivers_it() {
        let (mut n1, mut n2, links) = pair().await;
        links.set_faults(
            0,
            1,
            LinkFaults {
                cut: true,
                ..LinkFaults::HEALED
            },
        );
        n1.write_all(b"to n2").await.unwrap();
        n2.write_all(b"to n1").await.unwrap();
        assert_eq!(
            read_some(&mut n1, Duration::from_secs(2)).await,
            b"to n1",
            "n2 -> n1 still carries"
        );
        assert!(
            read_some(&mut n2, Duration::from_millis(300))
                .await
                .is_empty(),
            "n1 -> n2 carries nothing"
        );
        links.heal();
        assert_eq!(
            read_some(&mut n2, Duration::from_secs(2)).await,
            b"to n2",
            "held bytes flow after heal"
        );
        let stats = links.stats();
        let (a, b) = (&stats[0], &stats[1]);
        assert_eq!((a.from.as_str(), a.bytes, a.connections), ("n1", 5, 1));
        assert_eq!(
            (b.from.as_str(), b.bytes, b.connections),
            ("n2", 5, 0),
            "bytes counted by direction, not dialer"
        );
    }

    #[tokio::test]
    async fn corrupted_bytes_arrive_altered_and_a_drop_resets() {
        let (mut n1, mut n2, links) = pair().await;
        links.set_faults(
            0,
            1,
            LinkFaults {
                corrupt_probability: 1.0,
                ..LinkFaults::HEALED
            },
        );
        let sent = b"the quick brown fox".to_vec();
        n1.write_all(&sent).await.unwrap();
        let got = read_some(&mut n2, Duration::from_secs(2)).await;
        assert_eq!(got.len(), sent.len());
        assert_ne!(got, sent, "the bytes arrived altered");
        assert_eq!(
            got.iter().zip(&sent).filter(|(a, b)| a != b).count(),
            1,
            "one byte flipped"
        );
        links.set_faults(
            0,
            1,
            LinkFaults {
                drop_probability: 1.0,
                ..LinkFaults::HEALED
            },
        );
        n1.write_all(b"x").await.unwrap();
        let mut buf = [0u8; 8];
        let r = tokio::time::timeout(Duration::from_secs(2), n2.read(&mut buf))
            .await
            .unwrap();
        assert!(
            matches!(r, Ok(0) | Err(_)),
            "the connection is reset: {r:?}"
        );
        assert_eq!(links.stats()[0].resets, 1);
    }
}
