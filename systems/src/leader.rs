//! Who leads, asked of a node: for a server that emits no trace events,
//! the system file says how (Jepsen asks each database who its primaries
//! are). An HTTP GET whose JSON answer holds the leader's name at a JSON
//! pointer, or a command that prints it. The name is mapped to a node: its
//! id, its `fl-nK` host name, or its address appearing in the answer.

use serde_json::Value;
use std::time::Duration;

use crate::http;

/// How to ask one node who leads, every placeholder filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaderProbe {
    pub http_get: Option<String>,
    /// Where in the JSON answer the name is (RFC 6901); the whole answer
    /// when absent.
    pub json_pointer: Option<String>,
    pub command: Vec<String>,
    pub every: Duration,
}

/// The most a command's answer may print.
const MAX_ANSWER_BYTES: usize = 64 << 10;

impl LeaderProbe {
    /// The leader's name as the node answers it (empty: none known), or
    /// why it could not say.
    pub async fn ask(&self, timeout: Duration) -> Result<String, String> {
        match tokio::time::timeout(timeout, self.answer()).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        }
    }

    async fn answer(&self) -> Result<String, String> {
        if let Some(url) = &self.http_get {
            let (address, path) = http::split_url(url);
            let (status, body) = http::call(address, "GET", &path, None)
                .await
                .map_err(|e| e.0)??;
            if !(200..300).contains(&status) {
                return Err(format!("HTTP {status} from {url}"));
            }
            return name_at(&body, self.json_pointer.as_deref());
        }
        let (program, args) = self.command.split_first().ok_or("no probe")?;
        let out = tokio::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| format!("{program}: {e}"))?;
        if !out.status.success() {
            return Err(format!("{:?} failed: {}", self.command, out.status));
        }
        let text = String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(MAX_ANSWER_BYTES)]);
        Ok(text.trim().to_string())
    }
}

/// The name at `pointer` in a JSON answer (a string, or a number).
fn name_at(body: &Value, pointer: Option<&str>) -> Result<String, String> {
    let v = match pointer {
        Some(p) => body.pointer(p).ok_or_else(|| format!("no {p} in {body}"))?,
        None => body,
    };
    match v {
        Value::String(s) => Ok(s.trim().to_string()),
        Value::Null => Ok(String::new()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(format!("the leader at {pointer:?} is not a name: {other}")),
    }
}

/// Which node a leader's name means: `ids[k]` itself, its host name
/// `fl-nK`, or an answer containing its address `ips[k]` (followed by
/// nothing or a port). `None` for an empty or unknown name.
pub fn node_of(name: &str, ids: &[String], ips: &[String]) -> Option<usize> {
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    if let Some(k) = ids
        .iter()
        .position(|id| name == id || name == format!("fl-{id}"))
    {
        return Some(k);
    }
    ips.iter().position(|ip| {
        name.match_indices(ip.as_str()).any(|(at, _)| {
            let after = name[at + ip.len()..].chars().next();
            !matches!(after, Some(c) if c.is_ascii_digit() || c == '.')
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_map_to_nodes_by_id_host_or_address() {
        let ids = ["n1", "n2", "n3"].map(String::from);
        let ips = ["127.0.5.1", "127.0.5.2", "127.0.5.3"].map(String::from);
        assert_eq!(node_of("n2", &ids, &ips), Some(1));
        assert_eq!(node_of("fl-n3", &ids, &ips), Some(2));
        assert_eq!(node_of("nats://127.0.5.3:4222", &ids, &ips), Some(2));
        assert_eq!(node_of("127.0.5.1", &ids, &ips), Some(0));
        // 127.0.5.1 is not a prefix match of 127.0.5.12.
        assert_eq!(node_of("127.0.5.12:1", &ids, &ips), None);
        assert_eq!(node_of("", &ids, &ips), None);
        assert_eq!(node_of("n9", &ids, &ips), None);
    }

    #[test]
    fn the_name_is_read_at_its_pointer() {
        let body = json!({"meta_cluster": {"leader": "n2"}, "id": 7});
        assert_eq!(
            name_at(&body, Some("/meta_cluster/leader")),
            Ok("n2".into())
        );
        assert_eq!(name_at(&body, Some("/id")), Ok("7".into()));
        assert!(name_at(&body, Some("/nope")).is_err());
        assert_eq!(name_at(&json!("n1\n"), None), Ok("n1".into()));
    }
}
