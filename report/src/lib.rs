//! report.html: one self-contained file per run (inline CSS, SVG and
//! script, nothing fetched from anywhere, readable offline), drawn from the
//! run's own files. `data` loads them through the typed run directory,
//! `svg` draws the anomaly and the messages around it, `sections` writes
//! the page one section at a time, and the page's script and style are the
//! real files beside this one. `faultline report RUN_DIR` regenerates it.
//!
//! It reads only the run directory (`faultline_rundir`): a report can be
//! drawn for any run, on any machine, from its files alone.

mod coverage;
pub(crate) mod data;
mod sections;
mod svg;
mod workload;

use anyhow::Context;

pub use coverage::states_occurred;

use data::ReportData;
use faultline_rundir::{RunDir, REPORT};

/// Draws the timeline and the latency/throughput chart for the current
/// view, and handles navigation. Errors are caught and shown on the page
/// (and counted in `data-script-errors`), so a broken chart never hides the
/// rest of the report; `data-ready` says drawing finished.
const SCRIPT: &str = include_str!("script.js");
const CSS: &str = include_str!("style.css");

/// HTML-escapes text for element content and attribute values.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Writes RUN_DIR/report.html.
pub fn write(dir: &RunDir) -> anyhow::Result<()> {
    let d = ReportData::load(dir)?;
    let page = [
        sections::head(&d),
        sections::banner(&d),
        sections::checkers(&d),
        sections::anomaly(&d),
        workload::section(&d),
        sections::raft(&d),
        sections::timeline(&d),
        sections::faults(&d.bands),
        sections::membership(&d),
        sections::coverage(&d),
        sections::network(&d),
        sections::configuration(&d),
        sections::logs(&d),
        "</body></html>\n".to_string(),
    ]
    .concat();
    let path = dir.file(REPORT);
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))
}
