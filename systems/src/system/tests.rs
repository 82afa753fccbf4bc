use super::*;

#[test]
fn the_bundled_etcd_plans_a_joined_cluster() {
    let sys = System::load("etcd").unwrap();
    assert_eq!(sys.peer_ports(), vec![2380]);
    if faultline_process::clock::which("etcd").is_none() {
        return; // planning resolves the binary
    }
    let plan = sys
        .plan(
            3,
            1,
            |id| PathBuf::from(format!("/tmp/d/{id}")),
            &RunSettings::default(),
        )
        .unwrap();
    assert_eq!(plan[1].ip, "127.0.1.2");
    let args = plan[1].args.join(" ");
    assert!(
        args.contains(
            "--initial-cluster n1=http://fl-n1:2380,n2=http://fl-n2:2380,n3=http://fl-n3:2380"
        ),
        "{args}"
    );
    assert!(args.contains("--data-dir /tmp/d/n2"), "{args}");
    assert_eq!(
        format!("{:?}", plan[1].client),
        format!(
            "{:?}",
            crate::etcd::EtcdClient {
                address: "127.0.1.2:2379".into(),
                serializable: false
            }
        )
    );
}

#[test]
fn the_bundled_etcd_plans_members_and_joiners_and_its_membership_commands() {
    let sys = System::load("etcd").unwrap();
    assert!(sys.changes_membership());
    if faultline_process::clock::which("etcd").is_none() {
        return; // planning resolves the binary
    }
    let dir = |id: &str| PathBuf::from(format!("/tmp/d/{id}"));
    let run = RunSettings {
        members: Some(3),
        ..RunSettings::default()
    };
    let plan = sys.plan(6, 1, dir, &run).unwrap();
    let args = plan[4].args.join(" ");
    assert!(
        args.contains("--initial-cluster n1=http://fl-n1:2380,n2=http://fl-n2:2380,n3=http://fl-n3:2380 --initial-cluster-state new"),
        "{args}"
    );
    let joiner = sys.plan_joiner(5, &[1, 3, 4], 6, 1, dir, &run).unwrap();
    let args = joiner.args.join(" ");
    assert!(
        args.contains("--initial-cluster n1=http://fl-n1:2380,n3=http://fl-n3:2380,n4=http://fl-n4:2380,n5=http://fl-n5:2380 --initial-cluster-state existing"),
        "{args}"
    );
    let c = sys.member_commands(2, 5, 6, 1, dir, &run).unwrap();
    assert!(c.start_after_add);
    assert_eq!(
        c.add.join(" "),
        "etcdctl --endpoints=http://127.0.1.2:2379 --command-timeout=5s member add n5 --peer-urls=http://fl-n5:2380"
    );
    assert!(
        c.remove[2].contains("grep -F ' http://fl-n5:2380,'"),
        "{:?}",
        c.remove
    );
}

#[test]
fn member_placeholders_belong_to_the_membership_commands() {
    let base = r#"name = "x"
binary = "sh"
ports = { p = 1 }
ready = { tcp = "{ip}:{port.p}" }
client = { command = ["true"] }
"#;
    let bad = format!("{base}args = [\"{{member.node_id}}\"]\n");
    let e = System::parse("t.toml", &bad).unwrap_err();
    assert!(
        e.message.contains("unknown placeholder {member.node_id}"),
        "{e}"
    );
    let ok = format!("{base}[membership]\nadd = [\"a\", \"{{member.host}}\"]\nremove = [\"r\"]\nlist = [\"l\"]\n");
    let sys = System::parse("t.toml", &ok).unwrap();
    assert!(sys
        .membership_missing()
        .is_some_and(|m| m.contains("a, which")));
    let typo = format!("{base}[membership]\nadd = [\"a\", \"{{member.name}}\"]\nremove = [\"r\"]\nlist = [\"l\"]\n");
    assert!(System::parse("t.toml", &typo).is_err());
    let none = System::parse("t.toml", base).unwrap();
    assert!(none
        .membership_missing()
        .is_some_and(|m| m.contains("no [membership]")));
}

#[test]
fn the_bundled_galera_plans_sql_clients_and_proxy_sources() {
    let sys = System::load("galera").unwrap();
    assert_eq!(sys.peer_ports(), vec![4567, 4444, 4568]);
    assert_eq!(sys.peer_source(), faultline_net::tcp::PeerSource::Proxy);
    let plan = sys
        .plan(
            3,
            1,
            |id| PathBuf::from(format!("/tmp/d/{id}")),
            &RunSettings::default(),
        )
        .unwrap();
    let args = plan[1].args.join(" ");
    assert!(
        args.contains(
            "--wsrep-cluster-address=gcomm://127.101.1.1:4567,127.102.2.1:4567,127.103.3.1:4567"
        ),
        "{args}"
    );
    assert!(
        args.contains("--socket=/tmp/d/n2.scratch/mysqld.sock"),
        "{args}"
    );
    assert_eq!(
        format!("{:?}", plan[1].client),
        format!(
            "{:?}",
            crate::sql::SqlEndpoint {
                dialect: crate::sql::Dialect::Mysql,
                address: "127.0.1.2:3306".into(),
                isolation: "repeatable-read".into(),
                candidates: Vec::new(),
            }
        )
    );
    let mut run = RunSettings::default();
    run.vars.insert("isolation".into(), "snapshot".into());
    let e = sys
        .plan(3, 1, |id| PathBuf::from(format!("/tmp/d/{id}")), &run)
        .unwrap_err();
    assert!(
        e.message.contains("isolation \"snapshot\" is none of"),
        "{e}"
    );
    assert!(e.line.is_some(), "{e}");
}

#[test]
fn what_a_system_requires_is_checked_with_its_binary() {
    let base = "name = \"x\"\nbinary = \"true\"\ninstall = \"apt-get install x\"\nrequires = [\"sh\", \"/nonexistent/plugin.so\"]\n[ports]\np = 1\n[ready]\ntcp = \"{ip}:{port.p}\"\n[client]\ncommand = [\"a\"]\n";
    let sys = System::parse("f.toml", base).unwrap();
    let e = sys.check_binary().unwrap_err();
    assert_eq!(e.line, Some(4), "{e}");
    assert!(
        e.message
            .contains("\"/nonexistent/plugin.so\" does not exist; install it: apt-get install x"),
        "{e}"
    );
    let ok = System::parse("f.toml", &base.replace(", \"/nonexistent/plugin.so\"", "")).unwrap();
    assert!(ok.check_binary().is_ok());
}

#[test]
fn bad_files_name_the_line() {
    let base = "name = \"x\"\nbinary = \"true\"\n[ports]\npeer = 1\n[ready]\ntcp = \"{ip}:{port.peer}\"\n[client]\ncommand = [\"a\"]\n";
    assert!(System::parse("f.toml", base).is_ok());
    let e = System::parse(
        "f.toml",
        &base.replace("name = \"x\"\n", "name = \"x\"\nargz = []\n"),
    )
    .unwrap_err();
    assert_eq!((e.line, e.source_name.as_str()), (Some(2), "f.toml"));
    assert!(e.message.contains("argz"), "{e}");
    let e = System::parse("f.toml", &base.replace("{port.peer}", "{port.peeer}")).unwrap_err();
    assert_eq!(e.line, Some(6));
    assert!(
        e.to_string().contains("unknown placeholder {port.peeer}"),
        "{e}"
    );
    let e = System::parse(
        "f.toml",
        &base.replace("command = [\"a\"]", "command = [\"a\", \"{nodeid}\"]"),
    )
    .unwrap_err();
    assert_eq!(e.line, Some(8), "{e}");
    let e = System::parse(
        "f.toml",
        &base.replace("[ports]", "peer_source = \"peer\"\n[ports]"),
    )
    .unwrap_err();
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.message.contains("neither \"node\" nor \"proxy\""), "{e}");
    let e = System::parse("f.toml", &base.replace("{ip}:", "{proxy}:")).unwrap_err();
    assert_eq!(e.line, Some(6), "{e}");
    assert!(e.message.contains("peer_source = \"proxy\""), "{e}");
}

#[test]
fn a_leader_probe_is_one_way_of_asking_with_its_placeholders_filled() {
    let base = "name = \"x\"\nbinary = \"true\"\n[ports]\nhttp = 8222\n[ready]\ntcp = \"{ip}:{port.http}\"\n[client]\ncommand = [\"a\"]\n";
    let probe = "[leader]\nhttp_get = \"http://{ip}:{port.http}/jsz\"\njson_pointer = \"/meta_cluster/leader\"\n";
    let sys = System::parse("f.toml", &format!("{base}{probe}")).unwrap();
    let plan = sys
        .plan(
            2,
            4,
            |id| PathBuf::from(format!("/tmp/d/{id}")),
            &RunSettings::default(),
        )
        .unwrap();
    let p = plan[1].leader.as_ref().unwrap();
    assert_eq!(p.http_get.as_deref(), Some("http://127.0.4.2:8222/jsz"));
    assert_eq!(p.every, std::time::Duration::from_millis(500));
    let both = format!("{base}{probe}command = [\"echo\", \"n1\"]\n");
    let e = System::parse("f.toml", &both).unwrap_err();
    assert!(e.message.contains("http_get or command"), "{e}");
    let e = System::parse("f.toml", &format!("{base}[leader]\n")).unwrap_err();
    assert!(e.message.contains("http_get or command"), "{e}");
    let e = System::parse(
        "f.toml",
        &format!("{base}{}", probe.replace("\"/meta", "\"meta")),
    )
    .unwrap_err();
    assert!(e.message.contains("must start with /"), "{e}");
}

#[test]
fn sidecars_are_planned_beside_the_server_and_checked_like_it() {
    let base = "name = \"x\"\nbinary = \"true\"\n[ports]\npeer = 1\n[ready]\ntcp = \"{ip}:{port.peer}\"\n[client]\ncommand = [\"a\"]\n";
    let side = "[[process]]\nname = \"monitor\"\nbinary = \"true\"\nargs = [\"--node\", \"{node_id}\", \"{ip}:{port.peer}\"]\n[process.ready]\ntcp = \"{ip}:{port.peer}\"\n[process.stop]\nsignal = \"INT\"\ngrace_ms = 100\n";
    let sys = System::parse("f.toml", &format!("{base}{side}")).unwrap();
    assert_eq!(sys.process_names(), ["server", "monitor"]);
    let plan = sys
        .plan(
            2,
            3,
            |id| PathBuf::from(format!("/tmp/d/{id}")),
            &RunSettings::default(),
        )
        .unwrap();
    let m = &plan[1].sidecars[0];
    assert_eq!(
        (plan[1].process_name.as_str(), m.name.as_str()),
        ("server", "monitor")
    );
    assert_eq!(m.args, ["--node", "n2", "127.0.3.2:1"]);
    assert_eq!(m.ready_tcp.as_deref(), Some("127.0.3.2:1"));
    assert_eq!(
        (m.stop_signal, m.stop_grace_ms),
        (nix::sys::signal::Signal::SIGINT, 100)
    );
    let named = format!("process_name = \"db\"\n{base}{side}");
    let sys = System::parse("f.toml", &named).unwrap();
    assert_eq!(sys.process_names(), ["db", "monitor"]);
    // A process kept on true time must be one of them.
    let exempt = format!("clock_exempt = [\"monitor\"]\n{base}{side}");
    let sys = System::parse("f.toml", &exempt).unwrap();
    assert_eq!(sys.clock_exempt(), ["monitor"]);
    let e = System::parse("f.toml", &exempt.replace("[\"monitor\"]", "[\"monitr\"]")).unwrap_err();
    assert!(
        e.message.contains(
            "clock_exempt names \"monitr\", which is not a process (processes: server, monitor)"
        ),
        "{e}"
    );
    assert_eq!(e.line, Some(1), "{e}");
    let bad = |text: String, want: &str, line: Option<usize>| {
        let e = System::parse("f.toml", &text).unwrap_err();
        assert!(e.message.contains(want), "{e}");
        assert_eq!(e.line, line, "{e}");
    };
    bad(
        format!("{base}{}", side.replace("\"monitor\"", "\"server\"")),
        "two processes are named \"server\"",
        Some(10),
    );
    bad(
        format!("{base}{}", side.replace("\"monitor\"", "\"mon itor\"")),
        "letters, digits",
        Some(10),
    );
    bad(
        format!("{base}{}", side.replace("{node_id}", "{nodeid}")),
        "unknown placeholder {nodeid}",
        Some(12),
    );
    bad(
        format!("{base}{}", side.replace("INT", "USR1")),
        "signal \"USR1\"",
        None,
    );
    let missing = format!(
        "{base}{}",
        side.replace("binary = \"true\"", "binary = \"no-such-monitor\"")
    );
    let e = System::parse("f.toml", &missing)
        .unwrap()
        .check_binary()
        .unwrap_err();
    assert!(e.message.contains("no-such-monitor"), "{e}");
    assert_eq!(e.line, Some(11), "{e}");
}
