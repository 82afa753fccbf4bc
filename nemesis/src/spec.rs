//! What a user asks for on the command line: fault kinds, each optionally
//! narrowed to some of its variants (`partition:isolate-leader`,
//! `kill:all`, `clock:strobe+leader`, `messages:corrupt`). Every name is
//! spelled once, in the `names!` tables below.

use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// A closed set of named values with one spelling each.
pub trait Named: Copy + Eq + 'static {
    const ALL: &'static [Self];
    fn name(self) -> &'static str;
    fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.name() == s)
    }
}

/// Declares an enum whose variants each have one name.
macro_rules! names {
    ($(#[$m:meta])* $ty:ident { $($(#[$vm:meta])* $v:ident = $n:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $ty { $($(#[$vm])* $v),+ }
        impl Named for $ty {
            const ALL: &'static [Self] = &[$($ty::$v),+];
            fn name(self) -> &'static str { match self { $($ty::$v => $n),+ } }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

names!(
    /// A family of faults, as named on the command line.
    Kind {
        Partition = "partition",
        Pause = "pause",
        Kill = "kill",
        Messages = "messages",
        Clock = "clock",
        Overload = "overload",
        /// A power loss: SIGKILL, then what was never fsynced is dropped
        /// (needs the durability layer).
        Crash = "crash",
        /// A down node's file has bits flipped, is cut short or zeroed in
        /// part; the node is then restarted on it.
        Disk = "disk",
        /// The leader is cut off from every peer and its wall clock set
        /// back at the same instant (a clock fault composed with a
        /// partition, as Jepsen composes them).
        Strand = "strand",
        /// The cluster's membership changes through the system's own
        /// means: a server added, removed, or replaced (under a new name,
        /// or wiped and added back under its own).
        Membership = "membership",
    }
);

names!(
    /// One membership change. A replace moves two servers in one change
    /// (remove one, add a new one), where only joint consensus is safe.
    MemberChange {
        Add = "add",
        Remove = "remove",
        Replace = "replace",
    }
);

names!(
    /// The shape of a network partition.
    Shape {
        Halves = "halves",
        RandomHalves = "random-halves",
        MajoritiesRing = "majorities-ring",
        Bridge = "bridge",
        IsolateOne = "isolate-one",
        IsolateLeader = "isolate-leader",
        OneWay = "one-way",
    }
);

names!(
    /// Whom a process or clock fault hits, as Jepsen's db nemesis chooses:
    /// the primary, one, a minority, a majority, or the whole cluster.
    Who {
        /// Resolved from trace events when the fault applies.
        Leader = "leader",
        One = "one",
        Minority = "minority",
        Majority = "majority",
        /// A power loss.
        All = "all",
    }
);

names!(
    /// What a message fault does to the messages on every link.
    MessageFault {
        Drop = "drop",
        Duplicate = "duplicate",
        Corrupt = "corrupt",
        Delay = "delay",
    }
);

names!(
    /// How much of what a crashed node never fsynced survives.
    LossKind {
        /// Everything unsynced is lost.
        Lose = "lose",
        /// A random subset of the unsynced writes reached the disk.
        Subset = "subset",
        /// The unsynced writes reached the disk in order up to a point,
        /// the last of them torn.
        Torn = "torn",
    }
);

names!(
    /// What a disk fault does to one file of a down node.
    DiskFault {
        /// Bits flip in a few bytes.
        Flip = "flip",
        /// The file is cut short.
        Truncate = "truncate",
        /// A range of the file reads back as zeros.
        Zero = "zero",
    }
);

names!(
    /// The protocol moment a fault is aimed at: it is armed at its time
    /// and fires at the next such trace event (or, if none comes within
    /// its wait, by the clock). `on-time` fires by the clock alone.
    Moment {
        /// A node became leader (`leader` trace): the new leader.
        Elect = "on-elect",
        /// The leader advanced its commit index (`commit` trace).
        Commit = "on-commit",
        /// A node granted its vote (`vote` trace): an election is on.
        Vote = "on-vote",
        /// A commit by a leader that has led for a while (200 ms): past
        /// its first heartbeat rounds, so it holds a lease if it keeps one.
        Lease = "on-lease",
        Time = "on-time",
    }
);

impl Moment {
    /// The trace event that fires this moment.
    pub fn event(self) -> Option<&'static str> {
        match self {
            Moment::Elect => Some("leader"),
            Moment::Commit => Some("commit"),
            Moment::Vote => Some("vote"),
            Moment::Lease => Some("commit"),
            Moment::Time => None,
        }
    }
}

names!(
    /// How a clock fault moves a wall clock.
    ClockFault {
        Bump = "bump",
        Strobe = "strobe",
        Drift = "drift",
    }
);

/// Serde for a `Named` type as its name (test.json spells it so).
macro_rules! serde_by_name {
    ($ty:ident, $what:literal) => {
        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $ty::from_name(&s).ok_or_else(|| {
                    serde::de::Error::custom(format!(concat!("unknown ", $what, " {:?}"), s))
                })
            }
        }
    };
}

serde_by_name!(Shape, "partition shape");
serde_by_name!(Moment, "moment");

impl Shape {
    /// Whether the shape parts the cluster into sides that may each act
    /// on their own (as opposed to cutting off one node): two halves, or
    /// sides that meet only through a bridge node.
    pub fn splits(self) -> bool {
        matches!(self, Shape::Halves | Shape::RandomHalves | Shape::Bridge)
    }

    /// Whether the shape leaves some nodes cut off from the leader but not
    /// from the voters: in a ring of overlapping majorities the leader
    /// keeps its two neighbours and commits without the nodes across the
    /// ring, which still reach a majority among themselves. Lose the
    /// leader then and only a node that lags can win an election.
    pub fn lags(self) -> bool {
        self == Shape::MajoritiesRing
    }

    /// Whether the shape cuts any link on `n` nodes. On three nodes every
    /// pair is a majority, so a ring of majorities is the full mesh; a
    /// bridge needs a node on each side and one between; one node has no
    /// links at all.
    pub fn cuts_at(self, n: usize) -> bool {
        match self {
            _ if n < 2 => false,
            Shape::MajoritiesRing => n >= 4,
            Shape::Bridge => n >= 3,
            _ => true,
        }
    }

    /// Why the shape cuts nothing on `n` nodes, for a refusal.
    pub fn why_no_cut(self, n: usize) -> String {
        match self {
            _ if n < 2 => format!("one node has no links to cut ({n} node)"),
            Shape::MajoritiesRing => format!(
                "on {n} nodes every node already sees every majority, so the ring cuts nothing (it needs 4 or more)"
            ),
            _ => format!("{} needs 3 or more nodes", self.name()),
        }
    }

    /// `drawn()`, less the shapes that cut nothing on `n` nodes (on 4 or
    /// more, all of them, in the same order, so the draws are unchanged).
    pub fn drawn_at(n: usize) -> Vec<Shape> {
        Shape::drawn()
            .iter()
            .copied()
            .filter(|s| s.cuts_at(n))
            .collect()
    }

    /// The shapes an unnarrowed partition is drawn from, uniformly: the
    /// shapes into sides, and the ring, twice each. Only sides that each
    /// act on their own show a split brain (a quorum counted wrong, an
    /// election won twice), only a ring that loses its leader shows a
    /// lagging node elected, and of the partitions drawn uniformly, most
    /// ended up cutting off one node: partitions aimed at a leader's
    /// moment isolated it (now only those aimed at an election do), and a
    /// split beside a stale leader was cut to one node (under `all`, 102
    /// of 472 partitions over 30 seeds of 60 s split the cluster; 209 of
    /// 505 drawn this way).
    pub fn drawn() -> &'static [Shape] {
        &[
            Shape::Halves,
            Shape::Halves,
            Shape::RandomHalves,
            Shape::RandomHalves,
            Shape::MajoritiesRing,
            Shape::MajoritiesRing,
            Shape::Bridge,
            Shape::Bridge,
            Shape::IsolateOne,
            Shape::IsolateLeader,
            Shape::OneWay,
        ]
    }
}

impl Kind {
    /// What `all` means: every kind a correct system survives without an
    /// operator. `crash` needs each node's data directory served through
    /// the durability layer (FUSE): where that cannot mount, the harness
    /// leaves it out of `all` and says why. `disk` leaves a correct node
    /// that finds its files corrupt down for good (fail-stop), so it is
    /// named on its own.
    pub const IN_ALL: &'static [Kind] = &[
        Kind::Partition,
        Kind::Pause,
        Kind::Kill,
        Kind::Messages,
        Kind::Clock,
        Kind::Overload,
        Kind::Crash,
        Kind::Strand,
        Kind::Membership,
    ];

    /// Whom faults of this kind may hit (empty: they hit links, not nodes).
    pub fn whom(self) -> &'static [Who] {
        match self {
            Kind::Pause => &[Who::Leader, Who::One, Who::Minority],
            Kind::Kill | Kind::Crash => Who::ALL,
            Kind::Clock => &[Who::Leader, Who::One, Who::Minority, Who::All],
            Kind::Overload => &[Who::Leader, Who::One],
            // At most a minority: a correct node refuses to start on a
            // damaged disk, so damage to a majority ends the cluster.
            Kind::Disk => &[Who::One, Who::Minority],
            // Always the leader: its lease is what a stranding exposes.
            // A membership change picks its servers when it applies.
            Kind::Partition | Kind::Messages | Kind::Strand | Kind::Membership => &[],
        }
    }

    /// Whom an unnarrowed fault of this kind hits, as a list drawn from
    /// uniformly. A crash hits what shares the power, a rack or a room, more
    /// often than one machine, and only a crash of a majority or of every
    /// node can lose what a quorum acknowledged but never synced (a
    /// forgotten vote, a forgotten log tail): drawn uniformly, 2 in 5
    /// crashes did, and no-fsync went 20 to 50 s uncaught. Every other kind
    /// draws its targets uniformly.
    pub fn whom_drawn(self) -> &'static [Who] {
        match self {
            Kind::Crash => &[
                Who::Leader,
                Who::One,
                Who::Minority,
                Who::Majority,
                Who::Majority,
                Who::All,
                Who::All,
                Who::All,
            ],
            _ => self.whom(),
        }
    }

    /// The protocol moments faults of this kind may be aimed at: the ones
    /// where consensus bugs live (a leader's first moments, a commit, an
    /// election under way). Disk faults stay on the clock: their pool is
    /// fixed for the run, so no moment names their node.
    pub fn moments(self) -> &'static [Moment] {
        match self {
            Kind::Partition | Kind::Kill | Kind::Crash => {
                &[Moment::Elect, Moment::Commit, Moment::Vote, Moment::Time]
            }
            Kind::Pause => &[Moment::Elect, Moment::Commit, Moment::Time],
            Kind::Clock | Kind::Overload => &[Moment::Elect, Moment::Time],
            Kind::Messages => &[Moment::Vote, Moment::Time],
            Kind::Disk | Kind::Membership => &[Moment::Time],
            // Always a leader settled in its term: one just elected has no
            // lease yet (its first commits, an election's no-op, come
            // before a quorum answered its heartbeats).
            Kind::Strand => &[Moment::Lease],
        }
    }

    /// How many intervals a fault of this kind lasts. A stranding lasts
    /// two: its peers take an election timeout or more to elect a
    /// successor, and only after that can what the stranded leader still
    /// answers be stale.
    pub fn intervals(self) -> u64 {
        match self {
            Kind::Strand => 2,
            _ => 1,
        }
    }

    /// Whether a fault of this kind may hit one named process of a node
    /// (a signal reaches one process; a power loss or a damaged disk is the
    /// whole machine's).
    pub fn aims_at_processes(self) -> bool {
        matches!(self, Kind::Pause | Kind::Kill)
    }

    /// Whether faults of this kind move wall clocks (so the nodes' clocks
    /// must be patched: see `faultline_process::vdso`).
    pub fn moves_clocks(self) -> bool {
        matches!(self, Kind::Clock | Kind::Strand)
    }

    /// Every variant name a spec of this kind accepts.
    pub fn variant_names(self) -> Vec<&'static str> {
        let kinds: Vec<&'static str> = match self {
            Kind::Partition => Shape::ALL.iter().map(|s| s.name()).collect(),
            Kind::Messages => MessageFault::ALL.iter().map(|m| m.name()).collect(),
            Kind::Clock => ClockFault::ALL.iter().map(|c| c.name()).collect(),
            Kind::Crash => LossKind::ALL.iter().map(|c| c.name()).collect(),
            Kind::Disk => DiskFault::ALL.iter().map(|c| c.name()).collect(),
            Kind::Membership => MemberChange::ALL.iter().map(|c| c.name()).collect(),
            _ => Vec::new(),
        };
        // A kind that can only be timed has no moment to narrow to.
        let moments = if self.moments().len() > 1 {
            self.moments()
        } else {
            &[]
        };
        let process = self.aims_at_processes().then_some("process=NAME");
        kinds
            .into_iter()
            .chain(self.whom().iter().map(|w| w.name()))
            .chain(moments.iter().map(|m| m.name()))
            .chain(process)
            .collect()
    }
}

/// One nemesis as named on the command line: a kind, optionally narrowed.
/// Each list narrows its own dimension of the draw (what the fault does;
/// whom it hits); an empty list draws from all options. Narrowing is how a
/// test aims at the fault that exposes a bug instead of waiting for a
/// random draw of it. Specs travel in test.json as their text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Spec {
    pub kind: Kind,
    pub shapes: Vec<Shape>,
    pub messages: Vec<MessageFault>,
    pub clocks: Vec<ClockFault>,
    pub losses: Vec<LossKind>,
    pub disks: Vec<DiskFault>,
    pub changes: Vec<MemberChange>,
    pub whom: Vec<Who>,
    pub moments: Vec<Moment>,
    /// A pause or kill aimed at one named process of each node
    /// (`kill:process=monitor`) rather than all of them: a system file may
    /// run a sidecar beside its server.
    pub process: Option<String>,
}

/// The spelling of the process variant: `process=NAME`.
const PROCESS_VARIANT: &str = "process=";

/// The specs that can act on `n` nodes. A spec narrowed to a partition
/// shape that cuts nothing at this size is refused with the reason (a
/// no-op fault would take a whole interval and show nothing); a kind that
/// acts only on links (partition, messages, strand) cannot act on one
/// node: refused when `named` says the user named it, else left out, with
/// the reason in the second list.
pub fn fit_to_size(
    specs: Vec<Spec>,
    n: usize,
    named: impl Fn(Kind) -> bool,
) -> Result<(Vec<Spec>, Vec<String>), String> {
    let mut kept = Vec::new();
    let mut left_out = Vec::new();
    for spec in specs {
        if let Some(s) = spec.shapes.iter().find(|s| !s.cuts_at(n)) {
            return Err(format!(
                "partition:{} cuts nothing: {}",
                s.name(),
                s.why_no_cut(n)
            ));
        }
        let on_links = matches!(spec.kind, Kind::Partition | Kind::Messages | Kind::Strand);
        if on_links && n < 2 {
            let why = format!("{}: one node has no links to act on", spec.kind.name());
            if named(spec.kind) {
                return Err(why);
            }
            left_out.push(why);
            continue;
        }
        kept.push(spec);
    }
    Ok((kept, left_out))
}

/// The options left after narrowing `all` to `chosen`, in `all`'s order
/// (the order the draw's random index counts in).
pub(crate) fn options<T: Named>(all: &[T], chosen: &[T]) -> Vec<T> {
    let narrowed: Vec<T> = all.iter().copied().filter(|v| chosen.contains(v)).collect();
    if narrowed.is_empty() {
        all.to_vec()
    } else {
        narrowed
    }
}

impl Spec {
    pub fn all_of(kind: Kind) -> Spec {
        Spec {
            kind,
            shapes: Vec::new(),
            messages: Vec::new(),
            clocks: Vec::new(),
            losses: Vec::new(),
            disks: Vec::new(),
            changes: Vec::new(),
            whom: Vec::new(),
            moments: Vec::new(),
            process: None,
        }
    }

    /// Adds one variant by name; false when the kind has no such variant.
    fn narrow(&mut self, name: &str) -> bool {
        fn add<T: Named>(list: &mut Vec<T>, v: T) {
            if !list.contains(&v) {
                list.push(v);
            }
        }
        let kind = self.kind;
        if let Some(p) = name.strip_prefix(PROCESS_VARIANT) {
            let plain = !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            let fits = kind.aims_at_processes() && plain;
            if fits && self.process.is_none() {
                self.process = Some(p.to_string());
            }
            return fits && self.process.as_deref() == Some(p);
        }
        match (kind, Shape::from_name(name), MessageFault::from_name(name)) {
            (Kind::Partition, Some(s), _) => add(&mut self.shapes, s),
            (Kind::Messages, _, Some(m)) => add(&mut self.messages, m),
            _ => match (ClockFault::from_name(name), Who::from_name(name)) {
                (Some(c), _) if kind == Kind::Clock => add(&mut self.clocks, c),
                _ if kind == Kind::Crash && LossKind::from_name(name).is_some() => add(
                    &mut self.losses,
                    LossKind::from_name(name).expect("checked"),
                ),
                _ if kind == Kind::Disk && DiskFault::from_name(name).is_some() => add(
                    &mut self.disks,
                    DiskFault::from_name(name).expect("checked"),
                ),
                _ if kind == Kind::Membership && MemberChange::from_name(name).is_some() => add(
                    &mut self.changes,
                    MemberChange::from_name(name).expect("checked"),
                ),
                (_, Some(w)) if kind.whom().contains(&w) => add(&mut self.whom, w),
                _ if Moment::from_name(name)
                    .is_some_and(|m| kind.moments().len() > 1 && kind.moments().contains(&m)) =>
                {
                    add(&mut self.moments, Moment::from_name(name).expect("checked"))
                }
                _ => return false,
            },
        }
        true
    }

    /// The chosen variants in their canonical order.
    fn variant_names(&self) -> Vec<&'static str> {
        fn named<T: Named>(chosen: &[T]) -> impl Iterator<Item = &'static str> + '_ {
            T::ALL
                .iter()
                .filter(|v| chosen.contains(v))
                .map(|v| v.name())
        }
        named(&self.shapes)
            .chain(named(&self.messages))
            .chain(named(&self.clocks))
            .chain(named(&self.losses))
            .chain(named(&self.disks))
            .chain(named(&self.changes))
            .chain(named(&self.whom))
            .chain(named(&self.moments))
            .collect()
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Kind::from_name(s).ok_or_else(|| {
            let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
            format!(
                "unknown nemesis {s:?} (available: {}, all, none)",
                names.join(", ")
            )
        })
    }
}

impl FromStr for Spec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, variants) = match s.split_once(':') {
            Some((k, v)) => (k.trim().parse::<Kind>()?, Some(v)),
            None => (s.trim().parse::<Kind>()?, None),
        };
        let mut spec = Spec::all_of(kind);
        for v in variants
            .into_iter()
            .flat_map(|v| v.split('+'))
            .map(str::trim)
        {
            if let (Some(old), Some(new)) = (&spec.process, v.strip_prefix(PROCESS_VARIANT)) {
                if old != new {
                    return Err(format!(
                        "{s:?} names two processes ({old} and {new}): a fault aims at one, or at the whole node"
                    ));
                }
            }
            if !spec.narrow(v) {
                return Err(format!(
                    "unknown {} variant {v:?} in {s:?} (available: {})",
                    kind.name(),
                    kind.variant_names().join(", ")
                ));
            }
        }
        Ok(spec)
    }
}

impl TryFrom<String> for Spec {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Spec> for String {
    fn from(s: Spec) -> String {
        s.to_string()
    }
}

impl std::fmt::Display for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind.name())?;
        let mut variants: Vec<String> =
            self.variant_names().into_iter().map(String::from).collect();
        variants.extend(self.process.iter().map(|p| format!("{PROCESS_VARIANT}{p}")));
        if !variants.is_empty() {
            write!(f, ":{}", variants.join("+"))?;
        }
        Ok(())
    }
}

/// Parses `--nemesis`: a comma list of specs, `all` or `none`. `all`
/// adds every kind not named otherwise (`all,partition:isolate-leader`).
pub fn parse_specs(list: &str) -> Result<Vec<Spec>, String> {
    let mut specs: Vec<Spec> = Vec::new();
    let mut every = false;
    // An empty shell variable must not turn a fault run into a fault-free
    // VALID: no faults is said in words.
    if list.split(',').all(|s| s.trim().is_empty()) {
        return Err(format!(
            "the fault list {list:?} names no fault; say `none` for no faults"
        ));
    }
    for part in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match part {
            "none" => {}
            "all" => every = true,
            p => {
                let spec: Spec = p.parse()?;
                if let Some(old) = specs.iter().find(|s| s.kind == spec.kind) {
                    if *old != spec {
                        return Err(format!(
                            "{} is named twice ({old} and {spec}); join its variants with + instead (e.g. partition:halves+bridge)",
                            spec.kind.name()
                        ));
                    }
                    continue;
                }
                specs.push(spec);
            }
        }
    }
    if every {
        for &kind in Kind::IN_ALL {
            if !specs.iter().any(|s| s.kind == kind) {
                specs.push(Spec::all_of(kind));
            }
        }
    }
    specs.sort_by_key(|s| s.kind);
    Ok(specs)
}
