//! The fault vocabulary and seeded fault schedules. A table of contents:
//!
//! - `spec`: what a user names (`kill:all`, `clock:strobe+leader`), and
//!   which specs can act at a cluster's size (`fit_to_size`);
//! - `action`: what the nemesis does step by step (typed targets and
//!   units, one name table), and the fault periods of a history;
//! - `draw`: how a spec becomes one action (cuts, targets, rates, aim);
//! - `schedule` (below): every spec's faults on its own seeded timeline,
//!   merged;
//! - `windows`: the spans in which a bug can show (stranded and paused
//!   leaders, splits, rings of majorities) kept clear of faults that would
//!   hide them; `windows::ring` gives each ring its leader loss;
//! - `check`: what every schedule must be, drawn or written by hand;
//! - `effect`: what a crash or disk fault did to a node, as its record
//!   says (written by the executor, read by the report);
//! - `seed`: every random stream of a run, derived from the test seed.
//!
//! The same seed and configuration always give the same schedule, and
//! `--replay` reuses a recorded one verbatim. The harness executes actions
//! against its network (links) and node processes (signals, restarts) and
//! records each in the history.

pub mod action;
mod check;
pub mod draw;
pub mod effect;
pub mod seed;
pub mod spec;
#[cfg(test)]
mod tests;
mod windows;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use check::{assert_well_formed, check_schedule};
use windows::keep_windows_exposed;

pub use action::{
    lookup, Action, DiskFaultName, Link, LossKindName, MessageRates, Phase, Scope, Step, Target,
    Trigger, ACTIONS,
};
pub use draw::{
    aim, cut_between, disk_pool, draw, draw_disk, draw_moment, isolate, partition_cut, refit_count,
    refit_cut,
};
pub use spec::{
    fit_to_size, parse_specs, ClockFault, DiskFault, Kind, LossKind, MemberChange, MessageFault,
    Moment, Named, Shape, Spec, Who,
};

/// The whole fault schedule for a run. Each kind runs on its own timeline
/// (faults of one kind never overlap; each lasts `interval_ms`, a
/// stranding two (`Kind::intervals`), followed by a calm of 0.5 to 1.5
/// times `interval_ms`, longer when more than four kinds run, starting at
/// a seeded offset), and the timelines are merged, so different kinds
/// compose: a partition can be under way when a pause begins, as with
/// Jepsen's composed nemeses. A fault aimed at a protocol moment is armed
/// at its time and waits up to `interval_ms` for the moment; it lasts from
/// the latest it can start. Every fault is closed by its undo within
/// `duration_ms`.
pub fn schedule(
    specs: &[Spec],
    n: usize,
    seed: u64,
    interval_ms: u64,
    duration_ms: u64,
) -> Vec<Step> {
    let mut steps = Vec::new();
    if specs.is_empty() || interval_ms == 0 {
        return steps;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed::derive(seed, seed::Stream::Schedule));
    // Many kinds at once leave a cluster few moments with a working
    // majority, and a bug that needs one (a successor committing while a
    // stale leader answers) is then rarely exposed: past four kinds, each
    // kind's calms lengthen so about four are active at a time.
    // Membership changes take no node away for long, so they do not count.
    let busy = specs.iter().filter(|s| s.kind != Kind::Membership).count();
    let quiet = (busy as u64).div_ceil(4).max(1);
    for spec in specs {
        // Disk faults damage only nodes of one minority over the whole run:
        // a correct node stays down on a damaged disk.
        let pool = (spec.kind == Kind::Disk).then(|| disk_pool(n, &mut rng));
        let mut t = interval_ms / 2 + rng.gen_range(0..=interval_ms);
        while t < duration_ms {
            let action = match &pool {
                Some(pool) => draw_disk(spec, pool, &mut rng),
                None => draw(spec, n, &mut rng),
            };
            // The wait for a moment leaves the fault time to act before the
            // run ends.
            let within_ms = interval_ms.min(duration_ms.saturating_sub(t) / 2);
            let (action, on) = aim(spec, action, draw_moment(spec, &mut rng), within_ms, n);
            let undo = action.undo().expect("drawn actions start a fault");
            let step = Step {
                at_ms: t,
                action,
                on,
            };
            let end = (step.latest_ms() + interval_ms * spec.kind.intervals()).min(duration_ms);
            steps.push(step);
            steps.push(Step::at(end, undo));
            // A calm of random length (mean `interval_ms`): with a fixed
            // calm every kind would repeat with the same period, so two
            // kinds would keep one phase for the whole run and, at some
            // seeds, never be active together.
            t = end + quiet * rng.gen_range(interval_ms / 2..=interval_ms + interval_ms / 2);
        }
    }
    // Stable: a fault and its undo keep their order at equal times.
    steps.sort_by_key(|s| s.at_ms);
    let steps = keep_windows_exposed(steps, n, interval_ms / 2, duration_ms);
    assert_well_formed(&steps, n);
    steps
}
