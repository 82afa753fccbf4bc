//! The templating of system files: `{placeholder}` names, filled from a
//! node's variables, and where in the file a value was written.

use super::*;

/// A variable's value as placeholders spell it.
pub(super) fn value_text(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
            Some(v.to_string())
        }
        _ => None,
    }
}

/// The 1-based line of byte offset `at`.
pub(super) fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// The `{name}` placeholders in a template.
pub(super) fn placeholders(t: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push(&rest[open + 1..open + close]);
        rest = &rest[open + close + 1..];
    }
    out
}

/// A template with every placeholder replaced (all were checked to exist).
pub(super) fn fill(t: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = t.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// A readiness URL as the probe reads it: `http://HOST:PORT[/PATH]`
/// (placeholders stand for the host and port until a node is planned).
pub(super) fn check_http_url(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err("must start with http:// (https is not probed)".into());
    };
    let authority = rest.split('/').next().unwrap_or("");
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !port.is_empty() => Ok(()),
        _ => Err("must name host:port after http://".into()),
    }
}
