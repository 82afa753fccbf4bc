//! A system file made into a cluster's plan: each node's processes,
//! arguments, data and ports, the steps around them, and what joining or
//! changing members takes.

use super::*;

impl System {
    /// Every node of an `n`-node cluster, planned; `data_dir(id)` is where
    /// each keeps its data.
    pub fn plan(
        &self,
        n: usize,
        slot: u8,
        data_dir: impl Fn(&str) -> PathBuf,
        run: &RunSettings,
    ) -> Result<Vec<NodePlan>, SystemError> {
        if !(1..=MAX_NODES).contains(&n) {
            return Err(SystemError {
                source_name: self.source.clone(),
                line: None,
                message: format!("{n} nodes: a system runs 1 to {MAX_NODES}"),
            });
        }
        let first: Vec<usize> = (1..=run.members.unwrap_or(n).min(n)).collect();
        let join = self.join_of(&first, n, slot, &data_dir, run);
        let vars: Vec<_> = (1..=n)
            .map(|k| self.node_vars(k, n, slot, &data_dir, run))
            .collect();
        // Following the primary, each node's client knows every node, its
        // own first.
        let all: Vec<(String, String)> = if self.follows_primary()? {
            vars.iter()
                .map(|v| (v["node_id"].clone(), self.client_address(v)))
                .collect()
        } else {
            Vec::new()
        };
        let plans = vars
            .into_iter()
            .enumerate()
            .map(|(k, v)| {
                let candidates = all.iter().cycle().skip(k).take(all.len()).cloned();
                self.plan_node(v, &join, "new", candidates.collect())
            })
            .collect::<Result<_, _>>()?;
        Ok(plans)
    }

    /// Whether the SQL client looks for the server that accepts writes
    /// (`target_session_attrs = "read-write"`).
    pub(super) fn follows_primary(&self) -> Result<bool, SystemError> {
        let Some(t) = &self.file.client.target_session_attrs else {
            return Ok(false);
        };
        match t.get_ref().as_str() {
            "any" => Ok(false),
            "read-write" => Ok(true),
            other => Err(SystemError {
                source_name: self.source.clone(),
                line: Some(line_of(&self.text, t.span().start)),
                message: format!(
                    "[client] target_session_attrs {other:?} is neither \"any\" nor \"read-write\""
                ),
            }),
        }
    }

    /// Node `k` planned to join the cluster of `members` (1-based; the
    /// membership nemesis adds it): `{join}` names them and it, and
    /// `{cluster_state}` is `existing`.
    pub fn plan_joiner(
        &self,
        k: usize,
        members: &[usize],
        n: usize,
        slot: u8,
        data_dir: impl Fn(&str) -> PathBuf,
        run: &RunSettings,
    ) -> Result<NodePlan, SystemError> {
        let mut with: Vec<usize> = members.iter().copied().chain([k]).collect();
        with.sort_unstable();
        with.dedup();
        let join = self.join_of(&with, n, slot, &data_dir, run);
        self.plan_node(
            self.node_vars(k, n, slot, &data_dir, run),
            &join,
            "existing",
            Vec::new(),
        )
    }

    /// The `[membership]` commands for changing node `member` through node
    /// `via` (both 1-based); `None` when the file has no such section.
    pub fn member_commands(
        &self,
        via: usize,
        member: usize,
        n: usize,
        slot: u8,
        data_dir: impl Fn(&str) -> PathBuf,
        run: &RunSettings,
    ) -> Option<MemberCommands> {
        let m = self.file.membership.as_ref()?;
        let mut v = self.node_vars(via, n, slot, &data_dir, run);
        let of = self.node_vars(member, n, slot, &data_dir, run);
        for k in ["node_id", "host", "ip"] {
            v.insert(format!("member.{k}"), of[k].clone());
        }
        let fill_all = |c: &[Spanned<String>]| c.iter().map(|t| fill(t.get_ref(), &v)).collect();
        Some(MemberCommands {
            add: fill_all(&m.add),
            remove: fill_all(&m.remove),
            list: fill_all(&m.list),
            start_after_add: m.start_after_add,
            timeout_ms: m.timeout_ms,
        })
    }

    /// Whether a new node starts only once it was added (etcd).
    pub fn starts_after_add(&self) -> bool {
        self.file
            .membership
            .as_ref()
            .is_some_and(|m| m.start_after_add)
    }

    /// Whether the file says how to change membership.
    pub fn changes_membership(&self) -> bool {
        self.file.membership.is_some()
    }

    /// The `join` template filled for each of `ks`, joined.
    pub(super) fn join_of(
        &self,
        ks: &[usize],
        n: usize,
        slot: u8,
        data_dir: &impl Fn(&str) -> PathBuf,
        run: &RunSettings,
    ) -> String {
        let Some(t) = &self.file.join else {
            return String::new();
        };
        let filled: Vec<String> = ks
            .iter()
            .map(|&k| fill(t.get_ref(), &self.node_vars(k, n, slot, data_dir, run)))
            .collect();
        filled.join(&self.file.join_separator)
    }

    /// Every placeholder's value for node `k` of `n`.
    pub(super) fn node_vars(
        &self,
        k: usize,
        n: usize,
        slot: u8,
        data_dir: &impl Fn(&str) -> PathBuf,
        run: &RunSettings,
    ) -> BTreeMap<String, String> {
        let nodes: Vec<String> = (1..=n)
            .map(|k| format!("n{k}={}", System::node_ip(slot, k)))
            .collect();
        let nodes = nodes.join(",");
        {
            let id = format!("n{k}");
            let mut v = BTreeMap::new();
            v.insert("nodes".into(), nodes.clone());
            v.insert("data_dir".into(), data_dir(&id).display().to_string());
            v.insert(
                "scratch_dir".into(),
                scratch_dir(&data_dir(&id)).display().to_string(),
            );
            v.insert("ip".into(), System::node_ip(slot, k));
            v.insert("host".into(), format!("fl-{id}"));
            v.insert("proxy".into(), System::proxy_ip(slot, k, k));
            v.insert("node_count".into(), n.to_string());
            v.insert("system_dir".into(), self.dir.display().to_string());
            v.insert("node_id".into(), id);
            v.insert("timeout_ms".into(), run.timeout_ms.to_string());
            for (name, port) in &self.file.ports {
                v.insert(format!("port.{name}"), port.to_string());
            }
            for (name, value) in self.vars().into_iter().chain(run.vars.clone()) {
                v.insert(format!("var.{name}"), value);
            }
            v
        }
    }

    pub(super) fn plan_node(
        &self,
        mut v: BTreeMap<String, String>,
        join: &str,
        cluster_state: &str,
        candidates: Vec<(String, String)>,
    ) -> Result<NodePlan, SystemError> {
        v.insert("join".into(), join.to_string());
        v.insert("cluster_state".into(), cluster_state.to_string());
        let f = &self.file;
        let program = self.resolve(&f.binary, &v)?;
        let sidecars = f
            .processes
            .iter()
            .map(|p| self.plan_process(p, &v))
            .collect::<Result<_, _>>()?;
        let client = self.plan_client(&v, candidates)?;
        Ok(NodePlan {
            program,
            args: f.args.iter().map(|a| fill(a.get_ref(), &v)).collect(),
            env: f
                .env
                .iter()
                .map(|(k, t)| (k.clone(), fill(t.get_ref(), &v)))
                .collect(),
            ready_tcp: f.ready.tcp.as_ref().map(|t| fill(t.get_ref(), &v)),
            ready_http: f.ready.http_get.as_ref().map(|t| fill(t.get_ref(), &v)),
            client,
            ip: v["ip"].clone(),
            host: v["host"].clone(),
            id: v["node_id"].clone(),
            process_name: f.process_name.get_ref().clone(),
            sidecars,
            init: steps(&f.init, &v),
            setup: steps(&f.setup, &v),
            leader: f.leader.as_ref().map(|l| crate::leader::LeaderProbe {
                http_get: l.http_get.as_ref().map(|u| fill(u.get_ref(), &v)),
                json_pointer: l.json_pointer.clone(),
                command: l.command.iter().map(|c| fill(c.get_ref(), &v)).collect(),
                every: std::time::Duration::from_millis(l.every_ms.max(50)),
            }),
        })
    }

    /// This node's `[client] address`.
    fn client_address(&self, v: &BTreeMap<String, String>) -> String {
        let address = self.file.client.address.as_ref();
        fill(address.map_or("", |a| a.get_ref().as_str()), v)
    }

    /// How clients reach the node of `v`: its built-in client, planned by
    /// its kind, or the user's adapter command.
    fn plan_client(
        &self,
        v: &BTreeMap<String, String>,
        candidates: Vec<(String, String)>,
    ) -> Result<Arc<dyn Endpoint>, SystemError> {
        let c = &self.file.client;
        let Some(name) = c.adapter.as_deref() else {
            let argv = c.command.iter().map(|t| fill(t.get_ref(), v)).collect();
            return Ok(Arc::new(crate::adapter::AdapterEndpoint { argv }));
        };
        let err = |line: Option<usize>, message| SystemError {
            source_name: self.source.clone(),
            line,
            message,
        };
        // Checked against the registry when the file was read.
        let kind = self.clients.get(name).ok_or_else(|| {
            err(
                None,
                format!("unknown [client] adapter {name:?} (a faultline bug: it was checked)"),
            )
        })?;
        let settings = ClientSettings {
            address: self.client_address(v),
            isolation: c.isolation.as_ref().map(|i| fill(i.get_ref(), v)),
            serializable_reads: c.serializable_reads,
            node_count: v["node_count"].parse().unwrap_or(1),
            candidates,
        };
        kind.plan(settings).map_err(|bad| {
            let at = self.client_key_span(bad.key);
            err(at.map(|s| line_of(&self.text, s)), bad.message)
        })
    }

    /// Where a `[client]` key's value starts in the file, if it is set.
    pub(super) fn client_key_span(&self, key: &str) -> Option<usize> {
        let c = &self.file.client;
        let span = match key {
            "address" => c.address.as_ref()?.span(),
            "isolation" => c.isolation.as_ref()?.span(),
            "target_session_attrs" => c.target_session_attrs.as_ref()?.span(),
            _ => return None,
        };
        Some(span.start)
    }

    /// A binary template filled in and looked up as exec would.
    pub(super) fn resolve(
        &self,
        binary: &Spanned<String>,
        v: &BTreeMap<String, String>,
    ) -> Result<PathBuf, SystemError> {
        let program = fill(binary.get_ref(), v);
        // A user that does not exist is refused when the file is checked
        // (`check_binary`) and when nodes are laid out (`run_as`).
        if let Some(who) = self.identity().ok().flatten() {
            return who.resolve(&program).map_err(|why| SystemError {
                source_name: self.source.clone(),
                line: Some(line_of(&self.text, binary.span().start)),
                message: format!("binary {program:?} cannot run as user {}: {why}", who.name),
            });
        }
        faultline_process::clock::which(&program)
            .ok_or_else(|| self.missing(&program, binary.span().start))
    }

    pub(super) fn plan_process(
        &self,
        p: &ProcessFile,
        v: &BTreeMap<String, String>,
    ) -> Result<ProcessPlan, SystemError> {
        let (stop_signal, stop_grace_ms) = p.stop.resolve();
        let ready = p.ready.as_ref();
        let probe = |t: Option<&Spanned<String>>| t.map(|t| fill(t.get_ref(), v));
        Ok(ProcessPlan {
            name: p.name.get_ref().clone(),
            program: self.resolve(&p.binary, v)?,
            args: p.args.iter().map(|a| fill(a.get_ref(), v)).collect(),
            env: p
                .env
                .iter()
                .map(|(k, t)| (k.clone(), fill(t.get_ref(), v)))
                .collect(),
            ready_tcp: probe(ready.and_then(|r| r.tcp.as_ref())),
            ready_http: probe(ready.and_then(|r| r.http_get.as_ref())),
            ready_timeout_ms: ready.map_or(ready_timeout(), |r| r.timeout_ms),
            stop_signal,
            stop_grace_ms,
        })
    }
}

/// Steps with every placeholder filled in.
pub(super) fn steps(list: &[StepFile], v: &BTreeMap<String, String>) -> Vec<StepPlan> {
    list.iter()
        .map(|s| StepPlan {
            command: s.command.iter().map(|c| fill(c.get_ref(), v)).collect(),
            timeout_ms: s.timeout_ms,
        })
        .collect()
}
