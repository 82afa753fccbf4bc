//! A system file checked before anything runs: every name it uses is
//! defined, every process and step is well formed, and each error says
//! where in the file it is.

use super::*;

impl System {
    /// Every template names known placeholders and ports, and the
    /// description is complete.
    pub(super) fn check(&self) -> Result<(), (Option<usize>, String)> {
        let f = &self.file;
        let mut templates: Vec<&Spanned<String>> = vec![&f.binary];
        templates.extend(&f.args);
        templates.extend(f.env.values());
        templates.extend(f.join.iter());
        templates.extend(f.ready.tcp.iter().chain(f.ready.http_get.iter()));
        templates.extend(f.client.address.iter().chain(&f.client.command));
        templates.extend(f.client.isolation.iter());
        for step in f.init.iter().chain(&f.setup) {
            templates.extend(&step.command);
        }
        if let Some(l) = &f.leader {
            templates.extend(l.http_get.iter().chain(&l.command));
        }
        let member_templates: Vec<&Spanned<String>> = f
            .membership
            .iter()
            .flat_map(|m| m.add.iter().chain(&m.remove).chain(&m.list))
            .collect();
        templates.extend(member_templates.iter().copied());
        for p in &f.processes {
            templates.push(&p.binary);
            templates.extend(&p.args);
            templates.extend(p.env.values());
            if let Some(r) = &p.ready {
                templates.extend(r.tcp.iter().chain(r.http_get.iter()));
            }
        }
        self.check_process_names()?;
        self.check_steps_and_vars()?;
        for t in templates {
            for p in placeholders(t.get_ref()) {
                let of_member = member_templates.iter().any(|m| std::ptr::eq(*m, t));
                let known = PLACEHOLDERS.contains(&p)
                    || (of_member && MEMBER_PLACEHOLDERS.contains(&p))
                    || p.strip_prefix("port.")
                        .is_some_and(|n| f.ports.contains_key(n))
                    || p.strip_prefix("var.")
                        .is_some_and(|n| f.vars.contains_key(n));
                if !known {
                    return Err((
                        Some(t.span().start),
                        format!("unknown placeholder {{{p}}} in {:?}", t.get_ref()),
                    ));
                }
                let proxied = f
                    .peer_source
                    .as_ref()
                    .is_some_and(|s| s.get_ref() == "proxy");
                if p == "proxy" && !proxied {
                    return Err((
                        Some(t.span().start),
                        "{proxy} is the one address peers reach a node at with \
                         peer_source = \"proxy\", which this file does not set"
                            .into(),
                    ));
                }
            }
        }
        for p in &f.peer_ports {
            if !f.ports.contains_key(p.get_ref()) {
                return Err((
                    Some(p.span().start),
                    format!("peer port {:?} is not among [ports]", p.get_ref()),
                ));
            }
        }
        if let Some(p) = &f.peer_source {
            if !["node", "proxy"].contains(&p.get_ref().as_str()) {
                return Err((
                    Some(p.span().start),
                    format!(
                        "peer_source {:?} is neither \"node\" nor \"proxy\"",
                        p.get_ref()
                    ),
                ));
            }
        }
        let stops = std::iter::once(&f.stop).chain(f.processes.iter().map(|p| &p.stop));
        if let Some(bad) = stops.into_iter().find(|s| !s.known()) {
            return Err((
                None,
                format!(
                    "[stop] signal {:?}: use TERM, INT, QUIT, HUP or KILL",
                    bad.signal.as_deref().unwrap_or("")
                ),
            ));
        }
        if f.ready.tcp.is_none() && f.ready.http_get.is_none() {
            return Err((None, "[ready] needs tcp or http_get".into()));
        }
        let readies =
            std::iter::once(&f.ready).chain(f.processes.iter().filter_map(|p| p.ready.as_ref()));
        for url in readies.filter_map(|r| r.http_get.as_ref()) {
            if let Err(why) = check_http_url(url.get_ref()) {
                return Err((
                    Some(url.span().start),
                    format!("[ready] http_get {:?}: {why}", url.get_ref()),
                ));
            }
        }
        let kind = f
            .client
            .adapter
            .as_deref()
            .map(|a| (a, self.clients.get(a)));
        match (kind, f.client.command.is_empty()) {
            (Some((a, None)), _) => Err((
                None,
                format!(
                    "unknown [client] adapter {a:?} (available: {})",
                    self.clients.names().join(", ")
                ),
            )),
            (Some((a, Some(_))), true) if f.client.address.is_none() => {
                Err((None, format!("[client] adapter = {a:?} needs address")))
            }
            (Some((_, Some(k))), true) => self.check_client_keys(k.keys()),
            (None, false) => self.check_client_keys(&[]),
            _ => Err((None, "[client] needs adapter or command, not both".into())),
        }
    }

    /// The optional `[client]` keys the file sets are ones its client
    /// reads: one that would be ignored is refused, naming it.
    fn check_client_keys(&self, reads: &[&str]) -> Result<(), (Option<usize>, String)> {
        for key in ["isolation", "target_session_attrs"] {
            if let Some(at) = self.client_key_span(key) {
                if !reads.contains(&key) {
                    let who = self.file.client.adapter.as_deref().unwrap_or("command");
                    return Err((
                        Some(at),
                        format!("[client] {key} does not apply to the {who:?} client"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Process names are plain (they appear in file names and in
    /// `kill:process=NAME`) and distinct, and a sidecar's probe is whole.
    pub(super) fn check_process_names(&self) -> Result<(), (Option<usize>, String)> {
        let f = &self.file;
        let mut seen = vec![f.process_name.get_ref().as_str()];
        let names = std::iter::once(&f.process_name).chain(f.processes.iter().map(|p| &p.name));
        for (i, name) in names.enumerate() {
            let at = (!name.span().is_empty()).then(|| name.span().start);
            let n = name.get_ref();
            let plain = !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !plain {
                return Err((
                    at,
                    format!("process name {n:?} must be letters, digits, - or _"),
                ));
            }
            if i > 0 && seen.contains(&n.as_str()) {
                return Err((at, format!("two processes are named {n:?}")));
            }
            seen.push(n);
        }
        for p in &f.processes {
            if p.ready
                .as_ref()
                .is_some_and(|r| r.tcp.is_none() && r.http_get.is_none())
            {
                return Err((
                    Some(p.name.span().start),
                    format!(
                        "[process.ready] of {:?} needs tcp or http_get",
                        p.name.get_ref()
                    ),
                ));
            }
        }
        let names = self.process_names();
        for e in &f.clock_exempt {
            if !names.contains(e.get_ref()) {
                return Err((
                    Some(e.span().start),
                    format!(
                        "clock_exempt names {:?}, which is not a process (processes: {})",
                        e.get_ref(),
                        names.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Steps have a command; variables are plain names with plain values.
    pub(super) fn check_steps_and_vars(&self) -> Result<(), (Option<usize>, String)> {
        let f = &self.file;
        if let Some(l) = &f.leader {
            if l.http_get.is_some() != l.command.is_empty() {
                return Err((None, "[leader] needs http_get or command, not both".into()));
            }
            if let Some(p) = l.json_pointer.as_deref().filter(|p| !p.starts_with('/')) {
                return Err((
                    None,
                    format!("[leader] json_pointer {p:?} must start with /"),
                ));
            }
        }
        if let Some(t) = &f.client.target_session_attrs {
            if !["any", "read-write"].contains(&t.get_ref().as_str()) {
                return Err((
                    Some(t.span().start),
                    format!(
                        "[client] target_session_attrs {:?} is neither \"any\" nor \"read-write\"",
                        t.get_ref()
                    ),
                ));
            }
        }
        for (what, steps) in [("init", &f.init), ("setup", &f.setup)] {
            if let Some(i) = steps.iter().position(|s| s.command.is_empty()) {
                return Err((None, format!("[[{what}]] step {} has no command", i + 1)));
            }
        }
        for (name, v) in &f.vars {
            if value_text(v.get_ref()).is_none() {
                return Err((
                    Some(v.span().start),
                    format!("variable {name:?} must be a string, number or boolean"),
                ));
            }
        }
        Ok(())
    }
}
