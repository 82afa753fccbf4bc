//! Membership changes on a real server, as its system file's
//! `[membership]` section says: commands that add, remove and list
//! members, run on faultline's host, answered as a stdio node answers
//! `member_add`/`member_remove`/`members` (so the nemesis asks every
//! system the same way), and how a new node starts (`{join}` naming the
//! members and it, `{cluster_state}` = `existing`).

use anyhow::Context;
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::answer::ErrorCode;
use crate::system::{NodePlan, RunSettings, System};

/// Most bytes of a command's output kept in an answer.
const MAX_TEXT_BYTES: usize = 2048;

/// What the cluster needs to change a real server's membership.
#[derive(Debug, Clone)]
pub struct ServerMembers {
    pub system: System,
    /// Nodes laid out (every node that may ever be a member).
    pub nodes: usize,
    pub data_root: PathBuf,
    pub hosts_dir: PathBuf,
    pub run: RunSettings,
    /// Where every command's output is appended.
    pub log: PathBuf,
}

impl ServerMembers {
    /// Whether a new node starts only once it was added (etcd).
    pub fn start_after_add(&self) -> bool {
        self.system.starts_after_add()
    }

    fn commands(
        &self,
        slot: u8,
        via: usize,
        member: usize,
    ) -> Option<crate::system::MemberCommands> {
        let root = self.data_root.clone();
        self.system.member_commands(
            via + 1,
            member + 1,
            self.nodes,
            slot,
            move |id| root.join(id),
            &self.run,
        )
    }

    /// Node `i` (0-based) planned to join `members` (0-based), and the
    /// hosts file it runs with.
    pub fn joiner_plan(
        &self,
        slot: u8,
        i: usize,
        members: &[usize],
    ) -> anyhow::Result<(NodePlan, PathBuf)> {
        let root = self.data_root.clone();
        let ks: Vec<usize> = members.iter().map(|m| m + 1).collect();
        let plan = self.system.plan_joiner(
            i + 1,
            &ks,
            self.nodes,
            slot,
            move |id| root.join(id),
            &self.run,
        )?;
        let hosts = self.hosts_dir.join(&plan.id);
        Ok((plan, hosts))
    }

    /// Answers a membership request to node `via` as a stdio node would:
    /// `{type}_ok`, an error (22 refused, 10 unsupported, 0 maybe done),
    /// `members_ok` with `voters`; `None` when the command did not finish.
    pub async fn answer(
        &self,
        slot: u8,
        via: usize,
        body: &Value,
        ids: &[String],
    ) -> Option<Value> {
        let ty = body["type"].as_str()?;
        let node = |k: &str| {
            body[k]
                .as_str()
                .and_then(|n| ids.iter().position(|i| i == n))
        };
        let (argv, timeout_ms) = match ty {
            "member_add" | "member_remove" => {
                let c = self.commands(slot, via, node("node")?)?;
                let argv = if ty == "member_add" { c.add } else { c.remove };
                (argv, c.timeout_ms)
            }
            "members" => {
                let c = self.commands(slot, via, via)?;
                (c.list, c.timeout_ms)
            }
            _ => {
                let why = format!("{ty}: this system changes one server at a time");
                return Some(ErrorCode::NOT_SUPPORTED.reply(why));
            }
        };
        let (ok, out, err) = self.run(&argv, Duration::from_millis(timeout_ms)).await?;
        if !ok {
            // etcdctl's own deadline: the request may still commit.
            let open = err.contains("deadline exceeded") || err.contains("timed out");
            let code = match open {
                true => ErrorCode::TIMEOUT,
                false => ErrorCode::PRECONDITION_FAILED,
            };
            // The last line says why (etcdctl logs its retries before it).
            let why = err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            return Some(code.reply(clip(why)));
        }
        if ty != "members" {
            return Some(json!({"type": format!("{ty}_ok")}));
        }
        let hosts: Vec<String> = (0..ids.len()).map(|i| self.host(i)).collect();
        Some(
            json!({"type": "members_ok", "voters": listed(&out, ids, &hosts), "old": null, "leader": null}),
        )
    }

    /// The name node `i` is dialed by (`{host}`).
    fn host(&self, i: usize) -> String {
        format!("fl-n{}", i + 1)
    }

    /// Runs one command within `timeout`; (succeeded, stdout, stderr), or
    /// `None` when it did not finish (it is killed).
    async fn run(&self, argv: &[String], timeout: Duration) -> Option<(bool, String, String)> {
        let (first, rest) = argv.split_first()?;
        let mut cmd = tokio::process::Command::new(first);
        cmd.args(rest)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let out = match tokio::time::timeout(timeout, cmd.output()).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                self.note(argv, &format!("could not start: {e}"));
                return Some((false, String::new(), format!("{first}: {e}")));
            }
            Err(_) => {
                self.note(
                    argv,
                    &format!("did not finish within {} ms", timeout.as_millis()),
                );
                return None;
            }
        };
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        );
        self.note(argv, &format!("{}\n{stdout}{stderr}", out.status));
        Some((out.status.success(), stdout, stderr))
    }

    /// Appends a command and how it ended to the membership log.
    fn note(&self, argv: &[String], what: &str) {
        let write = || -> anyhow::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .with_context(|| format!("opening {}", self.log.display()))?;
            writeln!(f, "$ {}\n{what}", argv.join(" "))?;
            Ok(())
        };
        if let Err(e) = write() {
            eprintln!("faultline: warning: {e:#}");
        }
    }
}

fn clip(s: &str) -> String {
    let s = s.trim();
    if s.len() <= MAX_TEXT_BYTES {
        return s.to_string();
    }
    let mut end = MAX_TEXT_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// The nodes a member list names, one line per member: a node is listed
/// when its id or its host appears on a line as a whole word.
pub fn listed(out: &str, ids: &[String], hosts: &[String]) -> Vec<String> {
    let mut found: Vec<usize> = Vec::new();
    for line in out.lines() {
        let words: Vec<&str> = line
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .collect();
        let hit = (0..ids.len()).find(|&i| {
            words.contains(&ids[i].as_str())
                || hosts.get(i).is_some_and(|h| words.contains(&h.as_str()))
        });
        found.extend(hit);
    }
    found.sort_unstable();
    found.dedup();
    found.into_iter().map(|i| ids[i].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_list_names_nodes_by_id_or_host_as_whole_words() {
        let ids: Vec<String> = (1..=11).map(|k| format!("n{k}")).collect();
        let hosts: Vec<String> = ids.iter().map(|i| format!("fl-{i}")).collect();
        let out = "8e9e05c52164694d, started, n1, http://fl-n1:2380, http://127.0.3.1:2379, false\n\
                   91bc3c398fb3c146, unstarted, , http://fl-n11:2380, , false\n\
                   fd422379fda50e48, started, n3, http://fl-n3:2380, http://127.0.3.3:2379, false\n";
        assert_eq!(listed(out, &ids, &hosts), vec!["n1", "n3", "n11"]);
        assert!(listed("", &ids, &hosts).is_empty());
    }
}
