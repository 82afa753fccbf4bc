//! A built-in client added through `faultline_systems::client`'s traits
//! alone: a toy kind registered beside the bundled ones is named by a
//! system file, planned for every node, and used by the harness's client
//! driver, which follows a member while its own node is out of the
//! cluster and comes back when it is in again.

use faultline::client::{Client, ClientSpec, Conn};
use faultline_checker::EventType;
use faultline_rundir::record::{Clock, History};
use faultline_systems::client::{
    Answer, BadSetting, Caller, ClientKind, ClientSettings, Connection, Endpoint,
};
use faultline_systems::registry::Registry;
use faultline_systems::system::{RunSettings, System};
use faultline_workloads::{Invocation, Workload};
use futures::future::BoxFuture;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// A key-value "server" in memory that every node's address reaches,
/// noting which address served each request.
struct Toy {
    registers: Mutex<BTreeMap<String, Value>>,
    served: Mutex<Vec<String>>,
}

static TOY: Toy = Toy {
    registers: Mutex::new(BTreeMap::new()),
    served: Mutex::new(Vec::new()),
};

impl ClientKind for Toy {
    fn name(&self) -> &'static str {
        "toy"
    }

    fn plan(&self, s: ClientSettings) -> Result<Arc<dyn Endpoint>, BadSetting> {
        if !s.address.ends_with(":7000") {
            return Err(BadSetting {
                key: "address",
                message: format!("[client] address {:?}: the toy listens on 7000", s.address),
            });
        }
        Ok(Arc::new(ToyEndpoint { address: s.address }))
    }
}

#[derive(Debug)]
struct ToyEndpoint {
    address: String,
}

impl Endpoint for ToyEndpoint {
    fn connect(&self, _: &Caller) -> Box<dyn Connection> {
        Box::new(ToyConn {
            address: self.address.clone(),
        })
    }
}

struct ToyConn {
    address: String,
}

impl Connection for ToyConn {
    fn call<'a>(&'a mut self, body: &'a Value, _: u64, _: Duration) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            TOY.served.lock().unwrap().push(self.address.clone());
            let mut regs = TOY.registers.lock().unwrap();
            let key = body["key"].to_string();
            let reply = match (body["type"].as_str(), regs.get(&key)) {
                (Some("read"), Some(v)) => json!({"type": "read_ok", "value": v}),
                (Some("read"), None) => json!({"type": "error", "code": 20}),
                (Some("write"), _) => {
                    regs.insert(key, body["value"].clone());
                    json!({"type": "write_ok"})
                }
                (Some("cas"), Some(v)) if *v == body["from"] => {
                    regs.insert(key, body["to"].clone());
                    json!({"type": "cas_ok"})
                }
                (Some("cas"), Some(_)) => json!({"type": "error", "code": 22}),
                (Some("cas"), None) => json!({"type": "error", "code": 20}),
                _ => json!({"type": "error", "code": 10}),
            };
            Answer::Reply(reply)
        })
    }
}

const TOY_SYSTEM: &str = r#"
name = "toy"
binary = "sh"
[ports]
client = 7000
[ready]
tcp = "{ip}:{port.client}"
[client]
adapter = "toy"
address = "{ip}:{port.client}"
"#;

fn lin_kv() -> &'static dyn Workload {
    faultline_workloads::WORKLOADS
        .iter()
        .copied()
        .find(|w| w.name() == "lin-kv")
        .expect("lin-kv is a workload")
}

#[test]
fn a_system_file_names_a_client_kind_only_once_it_is_registered() {
    let e = System::parse("toy.toml", TOY_SYSTEM).unwrap_err();
    assert!(
        e.to_string()
            .contains("unknown [client] adapter \"toy\" (available: etcd, nats, postgres, mysql)"),
        "{e}"
    );
    let with_toy = || Registry::builtin().with(&TOY);
    let sys = System::parse_with("toy.toml", TOY_SYSTEM, with_toy()).unwrap();
    let plans = sys
        .plan(
            3,
            9,
            |id| PathBuf::from(format!("/tmp/d/{id}")),
            &RunSettings::default(),
        )
        .unwrap();
    let planned: Vec<String> = plans.iter().map(|p| format!("{:?}", p.client)).collect();
    assert_eq!(
        planned,
        (1..=3)
            .map(|k| format!("ToyEndpoint {{ address: \"127.0.9.{k}:7000\" }}"))
            .collect::<Vec<_>>()
    );
    // The kind's own refusal names the key and its line.
    let moved = TOY_SYSTEM.replace(
        "address = \"{ip}:{port.client}\"",
        "address = \"{ip}:7001\"",
    );
    let sys = System::parse_with("toy.toml", &moved, with_toy()).unwrap();
    let e = sys
        .plan(
            3,
            9,
            |id| PathBuf::from(format!("/tmp/d/{id}")),
            &RunSettings::default(),
        )
        .unwrap_err();
    assert_eq!(e.line, Some(10), "{e}");
    assert!(e.message.contains("the toy listens on 7000"), "{e}");
    // A key the kind does not read is refused rather than ignored.
    let iso = format!("{TOY_SYSTEM}isolation = \"serializable\"\n");
    let e = System::parse_with("toy.toml", &iso, with_toy()).unwrap_err();
    assert!(
        e.to_string()
            .contains("[client] isolation does not apply to the \"toy\" client"),
        "{e}"
    );
}

#[test]
fn the_driver_follows_a_member_through_any_clients_endpoint() {
    let sys = System::parse_with("toy.toml", TOY_SYSTEM, Registry::builtin().with(&TOY)).unwrap();
    let plans = sys
        .plan(
            3,
            8,
            |id| PathBuf::from(format!("/tmp/d/{id}")),
            &RunSettings::default(),
        )
        .unwrap();
    let endpoints: Vec<Arc<dyn Endpoint>> = plans.iter().map(|p| p.client.clone()).collect();
    let tmp = tempfile::tempdir().unwrap();
    let history =
        Arc::new(History::create(&tmp.path().join("history.jsonl"), Clock::new()).unwrap());
    let caller = Caller {
        client: "c1".into(),
        node: "n1".into(),
        log_dir: tmp.path().to_path_buf(),
    };
    let spec = ClientSpec {
        k: 1,
        node: 0,
        node_id: "n1".into(),
        concurrency: 1,
        workload: lin_kv(),
        timeout: Duration::from_secs(1),
    };
    let mut client = Client::new(spec, Conn::Server(endpoints[0].connect(&caller)), history);
    let members = Arc::new(RwLock::new(vec![0, 1, 2]));
    client.members = Some(members.clone());
    client.endpoints = Some(endpoints);
    client.log_dir = tmp.path().to_path_buf();
    let write = Invocation::new("write", json!(88001), json!(5));
    let read = Invocation::new("read", json!(88001), Value::Null);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let served = || TOY.served.lock().unwrap().last().cloned().unwrap();
    rt.block_on(async {
        assert_eq!(client.invoke(&write).await.unwrap(), EventType::Ok);
        assert_eq!(served(), "127.0.8.1:7000");
        // n1 leaves: client 1 asks members[0], n2.
        *members.write().unwrap() = vec![1, 2];
        assert_eq!(client.invoke(&read).await.unwrap(), EventType::Ok);
        assert_eq!(served(), "127.0.8.2:7000");
        // n1 is back: the client asks its own node again.
        *members.write().unwrap() = vec![0, 1, 2];
        assert_eq!(client.invoke(&read).await.unwrap(), EventType::Ok);
        assert_eq!(served(), "127.0.8.1:7000");
    });
    let text = std::fs::read_to_string(tmp.path().join("history.jsonl")).unwrap();
    let nodes: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["type"] != "invoke")
        .map(|e| e["node"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(nodes, ["n1", "n2", "n1"], "{text}");
    let reads: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["type"] == "ok" && e["f"] == "read")
        .map(|e| e["value"].clone())
        .collect();
    assert_eq!(reads, [json!(5), json!(5)], "{text}");
}
