//! A suite split among CI jobs: which (entry, seed) runs shard K of N
//! takes, balanced by expected run time, and the shards' JSON summaries
//! merged back into one. CI systems run the jobs side by side; faultline
//! only has to split deterministically and merge strictly.

use serde_json::Value;

use super::RunResult;

/// Shard `index` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

/// Most shards a suite may be split into.
const MAX_SHARDS: usize = 1024;

/// Where the common CI systems say which parallel job this is: (index
/// variable, count variable, whether the index counts from 1).
const CI_VARIABLES: &[(&str, &str, bool)] = &[
    // GitLab CI `parallel:`.
    ("CI_NODE_INDEX", "CI_NODE_TOTAL", true),
    // Buildkite `parallelism:`.
    (
        "BUILDKITE_PARALLEL_JOB",
        "BUILDKITE_PARALLEL_JOB_COUNT",
        false,
    ),
    // CircleCI `parallelism:`.
    ("CIRCLE_NODE_INDEX", "CIRCLE_NODE_TOTAL", false),
    // A Kubernetes Indexed Job sets the index; the count is the Job's
    // `completions`, which the pod spec passes on.
    ("JOB_COMPLETION_INDEX", "FAULTLINE_SHARD_COUNT", false),
];

impl Shard {
    /// `K/N`, 1 <= K <= N.
    pub fn parse(s: &str) -> Result<Shard, String> {
        let bad = || format!("--shard {s:?}: expected K/N with 1 <= K <= N <= {MAX_SHARDS}");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            k.trim().parse::<usize>().map_err(|_| bad())?,
            n.trim().parse::<usize>().map_err(|_| bad())?,
        );
        if index == 0 || index > count || count > MAX_SHARDS {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// `--shard auto`: `FAULTLINE_SHARD=K/N`, else the first CI system's
    /// pair of variables that is set (`CI_VARIABLES`).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Shard, String> {
        if let Some(s) = get("FAULTLINE_SHARD") {
            return Shard::parse(&s).map_err(|e| format!("FAULTLINE_SHARD: {e}"));
        }
        for &(index_var, count_var, one_based) in CI_VARIABLES {
            let Some(index) = get(index_var) else {
                continue;
            };
            let count = get(count_var)
                .ok_or_else(|| format!("{index_var} is set but {count_var} is not"))?;
            let number = |v: &str, s: &str| {
                s.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("{v}={s:?} is not a number"))
            };
            let (index, count) = (number(index_var, &index)?, number(count_var, &count)?);
            let k = if one_based { index } else { index + 1 };
            return Shard::parse(&format!("{k}/{count}"))
                .map_err(|e| format!("from {index_var} and {count_var}: {e}"));
        }
        let names: Vec<&str> = std::iter::once("FAULTLINE_SHARD")
            .chain(CI_VARIABLES.iter().map(|v| v.0))
            .collect();
        Err(format!("--shard auto: none of {} is set", names.join(", ")))
    }
}

/// Which shard (0-based) each run goes to, given each run's expected
/// seconds: the longest run first onto the least loaded shard (ties: the
/// earlier run, the lower shard), so every shard ends near the same time.
/// Deterministic: the same suite and count give the same split anywhere.
pub fn assign(costs_s: &[f64], count: usize) -> Vec<usize> {
    assert!(count >= 1, "at least one shard");
    let mut order: Vec<usize> = (0..costs_s.len()).collect();
    order.sort_by(|&a, &b| costs_s[b].total_cmp(&costs_s[a]).then(a.cmp(&b)));
    let mut load = vec![0.0f64; count];
    let mut shard_of = vec![0; costs_s.len()];
    for run in order {
        let lightest = (0..count)
            .min_by(|&a, &b| load[a].total_cmp(&load[b]).then(a.cmp(&b)))
            .expect("count >= 1");
        load[lightest] += costs_s[run];
        shard_of[run] = lightest;
    }
    shard_of
}

/// Merges the JSON summaries of a sharded suite: the same suite and plan,
/// every shard exactly once. Returns the suite's name and its runs in plan
/// order.
pub fn merge(docs: &[(String, Value)]) -> Result<(String, Vec<RunResult>), String> {
    let first = docs.first().ok_or("no summaries to merge")?;
    let plan = |(file, d): &(String, Value)| -> Result<(String, Value, Shard), String> {
        let name = d["suite"]
            .as_str()
            .ok_or_else(|| format!("{file}: not a suite summary (no \"suite\")"))?;
        let shard = &d["shard"];
        let (Some(k), Some(n)) = (shard["index"].as_u64(), shard["count"].as_u64()) else {
            return Err(format!(
                "{file}: suite {name:?} was not run as a shard (no \"shard\")"
            ));
        };
        Ok((
            name.to_string(),
            d["planned"].clone(),
            Shard {
                index: k as usize,
                count: n as usize,
            },
        ))
    };
    let (name, planned, Shard { count, .. }) = plan(first)?;
    let mut seen = vec![None::<&str>; count];
    let mut runs: Vec<RunResult> = Vec::new();
    for doc in docs {
        let (n, p, s) = plan(doc)?;
        let file = doc.0.as_str();
        if n != name || p != planned || s.count != count {
            return Err(format!(
                "{file}: shard {}/{} of suite {n:?} does not belong with {} (shard of {count} of suite {name:?}): a different suite, file or count",
                s.index, s.count, first.0
            ));
        }
        if let Some(other) = seen[s.index - 1].replace(file) {
            return Err(format!(
                "shard {}/{count} given twice: {other} and {file}",
                s.index
            ));
        }
        let got: Vec<RunResult> = serde_json::from_value(doc.1["runs"].clone())
            .map_err(|e| format!("{file}: runs: {e}"))?;
        runs.extend(got);
    }
    let missing: Vec<String> = (1..=count)
        .filter(|k| seen[k - 1].is_none())
        .map(|k| format!("{k}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing shard(s) {} of suite {name:?}",
            missing.join(", ")
        ));
    }
    let order: Vec<(String, u64)> =
        serde_json::from_value(planned).map_err(|e| format!("{}: planned: {e}", first.0))?;
    let key = |r: &RunResult| {
        order
            .iter()
            .position(|(e, s)| *e == r.entry && *s == r.seed)
    };
    if runs.len() != order.len() || runs.iter().any(|r| key(r).is_none()) {
        return Err(format!(
            "the shards hold {} runs, the plan {}: a summary was edited or cut short",
            runs.len(),
            order.len()
        ));
    }
    runs.sort_by_key(key);
    Ok((name, runs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_from_flags_and_ci_variables() {
        assert_eq!(Shard::parse("2/3"), Ok(Shard { index: 2, count: 3 }));
        for bad in ["0/3", "4/3", "3", "a/b", "1/0"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let gitlab = Shard::from_env(env(&[("CI_NODE_INDEX", "1"), ("CI_NODE_TOTAL", "4")]));
        assert_eq!(gitlab, Ok(Shard { index: 1, count: 4 }));
        let k8s = Shard::from_env(env(&[
            ("JOB_COMPLETION_INDEX", "0"),
            ("FAULTLINE_SHARD_COUNT", "2"),
        ]));
        assert_eq!(k8s, Ok(Shard { index: 1, count: 2 }));
        let own = Shard::from_env(env(&[("FAULTLINE_SHARD", "3/3"), ("CI_NODE_INDEX", "1")]));
        assert_eq!(own, Ok(Shard { index: 3, count: 3 }));
        let half = Shard::from_env(env(&[("CIRCLE_NODE_INDEX", "0")])).unwrap_err();
        assert!(half.contains("CIRCLE_NODE_TOTAL is not"), "{half}");
        assert!(Shard::from_env(env(&[]))
            .unwrap_err()
            .contains("none of FAULTLINE_SHARD"));
    }

    #[test]
    fn every_run_lands_on_one_shard_and_the_loads_stay_close() {
        let costs: Vec<f64> = (0..96).map(|i| 30.0 + (i % 7) as f64 * 10.0).collect();
        for n in 1..=7 {
            let a = assign(&costs, n);
            assert_eq!(a.len(), costs.len());
            let mut load = vec![0.0; n];
            for (run, &s) in a.iter().enumerate() {
                load[s] += costs[run];
            }
            let (lo, hi) = (
                load.iter().cloned().fold(f64::MAX, f64::min),
                load.iter().cloned().fold(0.0, f64::max),
            );
            assert!(hi - lo <= 90.0, "{n} shards: {load:?}");
            assert_eq!(a, assign(&costs, n), "deterministic");
        }
    }
}
