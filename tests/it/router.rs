//! More than one broker (SPEC §9): three real brokers behind real nginx
//! running the config `tallyq router render` writes from a shard map.
//! Tenants are created through the router, their traffic goes through it,
//! and each node is then read directly to see where the data landed.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tallyq::client::Client;
use tallyq::proto::v1 as pb;
use tonic::{Code, Request};

use crate::harness::*;

/// Debian's nginx, installed with apt when missing (the test runs as root in
/// CI); a machine where it cannot be installed fails the test with the reason.
pub(crate) fn nginx_binary() -> PathBuf {
    let found = |p: &str| {
        Command::new(p)
            .arg("-v")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    for candidate in ["nginx", "/usr/sbin/nginx"] {
        if found(candidate) {
            return PathBuf::from(candidate);
        }
    }
    let status = Command::new("sh")
        .args([
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx",
        ])
        .status();
    match status {
        Ok(s) if s.success() && found("/usr/sbin/nginx") => PathBuf::from("/usr/sbin/nginx"),
        other => panic!(
            "nginx is not installed and `apt-get install nginx` failed ({other:?}): the router \
             test needs Debian's nginx; install it or run the tests as root with apt available"
        ),
    }
}

/// nginx in the foreground with its own prefix, pid and temp dirs; killed on drop.
pub(crate) struct Nginx {
    child: Child,
}

impl Nginx {
    fn start(dir: &Path, conf: &Path, listen: std::net::SocketAddr) -> Nginx {
        let nginx = nginx_binary();
        let test = Command::new(&nginx)
            .arg("-t")
            .arg("-p")
            .arg(dir)
            .args(["-e", "stderr", "-c"])
            .arg(conf)
            .output()
            .expect("run nginx -t");
        assert!(
            test.status.success(),
            "nginx refuses the rendered config: {}",
            String::from_utf8_lossy(&test.stderr)
        );
        let child = Command::new(&nginx)
            .arg("-p")
            .arg(dir)
            .args(["-e", "stderr", "-c"])
            .arg(conf)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let nginx = Nginx { child };
        for _ in 0..200 {
            if std::net::TcpStream::connect(listen).is_ok() {
                return nginx;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("nginx is not listening on {listen}");
    }
}

impl Drop for Nginx {
    /// SIGTERM, so the master stops its workers before it exits (a SIGKILLed
    /// master leaves them running); SIGKILL only if it is still there after 5 s.
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the built `tallyq` with `args`; returns (success, stdout, stderr).
/// It runs on a blocking thread: the brokers it talks to share this runtime.
pub(crate) async fn tallyq(args: &[&str]) -> (bool, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_tallyq"))
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .output()
    })
    .await
    .unwrap()
    .expect("run tallyq");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `message` for node `node` through the router (`x-tallyq-node`).
pub(crate) fn to_node<T>(node: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-tallyq-node", node.parse().unwrap());
    request
}

const TENANTS: [(&str, &str); 3] = [
    ("acme", "node-1"),
    ("globex", "node-2"),
    ("initech", "node-3"),
];

/// Three brokers (node-1 default), a shard map, the rendered config, nginx.
pub(crate) struct Fleet {
    /// The brokers by node id.
    pub(crate) nodes: BTreeMap<String, TestServer>,
    /// The shard map file.
    pub(crate) map: PathBuf,
    /// The router's address, `http://...`.
    pub(crate) router: String,
    _nginx: Nginx,
    /// Holds the map, nginx.conf and nginx's runtime files.
    pub(crate) dir: tempfile::TempDir,
}

pub(crate) async fn fleet() -> Fleet {
    let mut nodes = BTreeMap::new();
    for id in ["node-1", "node-2", "node-3"] {
        let server = TestServer::start_with(|c| c.node_id = id.to_string()).await;
        nodes.insert(id.to_string(), server);
    }
    let dir = tempfile::tempdir().unwrap();
    let listen = free_port();
    let mut map = format!(
        "default_node = \"node-1\"\n\n[router]\nlisten = \"{listen}\"\nruntime_dir = \"{}\"\n\
         worker_processes = \"1\"\nstream_timeout_seconds = 600\n",
        dir.path().display()
    );
    for (id, server) in &nodes {
        let address = server.address.trim_start_matches("http://");
        map.push_str(&format!("\n[nodes.{id}]\naddress = \"{address}\"\n"));
    }
    map.push_str("\n[tenants]\n");
    for (tenant, node) in TENANTS {
        map.push_str(&format!("{tenant} = \"{node}\"\n"));
    }
    let map_path = dir.path().join("shard-map.toml");
    std::fs::write(&map_path, map).unwrap();
    let conf = dir.path().join("nginx.conf");
    let (ok, _, err) = tallyq(&[
        "router",
        "render",
        "--shard-map",
        map_path.to_str().unwrap(),
        "--out",
        conf.to_str().unwrap(),
    ])
    .await;
    assert!(ok, "router render failed: {err}");
    let nginx = Nginx::start(dir.path(), &conf, listen);
    Fleet {
        nodes,
        map: map_path,
        router: format!("http://{listen}"),
        _nginx: nginx,
        dir,
    }
}

/// The code and message of a refused ListTopics.
async fn refusal(client: &Client) -> (Code, String) {
    let status = client
        .admin()
        .list_topics(pb::ListTopicsRequest::default())
        .await
        .expect_err("the key must be refused");
    (status.code(), status.message().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_behind_nginx_route_by_tenant_and_share_one_ledger_view() {
    let fleet = fleet().await;
    let operator = Client::connect(&fleet.router, OPERATOR_TOKEN)
        .await
        .unwrap();

    // Tenants are created through the router: acme with no node header (the
    // default node), the others on the node the header names.
    let mut keys = BTreeMap::new();
    for (tenant, node) in TENANTS {
        let create = pb::CreateTenantRequest {
            id: tenant.into(),
            ..Default::default()
        };
        let request = if tenant == "acme" {
            Request::new(create)
        } else {
            to_node(node, create)
        };
        operator.operator().create_tenant(request).await.unwrap();
        let key = operator
            .operator()
            .create_api_key(to_node(
                node,
                pb::CreateApiKeyRequest {
                    tenant: tenant.into(),
                    scopes: vec![1, 2, 3],
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .secret;
        keys.insert(tenant, key);
    }

    // Each tenant's own traffic through the router with its own key: unary
    // produce, a Consume stream, a Fetch long-poll.
    for (tenant, _) in TENANTS {
        let client = operator.with_token(&keys[tenant]).unwrap();
        create_topic(&client, "t", Default::default()).await;
        create_sub(&client, "t", "stream", 30).await;
        create_sub(&client, "t", "poll", 30).await;
        let payloads: Vec<String> = (0..5).map(|i| format!("{tenant}-{i}")).collect();
        let reply = client
            .produce("t", payloads[..3].iter().map(|p| msg(p)).collect())
            .await
            .unwrap();
        assert_eq!(reply.results.len(), 3);
        // The rest through a ProduceStream, one request per message.
        let requests: Vec<pb::ProduceRequest> = payloads[3..]
            .iter()
            .map(|p| pb::ProduceRequest {
                topic: "t".into(),
                messages: vec![msg(p)],
            })
            .collect();
        let mut replies = client
            .broker()
            .produce_stream(tokio_stream::iter(requests))
            .await
            .unwrap()
            .into_inner();
        let mut offsets = Vec::new();
        while let Some(reply) = replies.message().await.unwrap() {
            offsets.push(reply.results[0].offset);
        }
        assert_eq!(
            offsets,
            vec![3, 4],
            "{tenant}'s ProduceStream through the router"
        );

        let mut consumer = client.consume("t", "stream", 10, 1 << 20).await.unwrap();
        let mut seen = Vec::new();
        while seen.len() < 5 {
            let batch = tokio::time::timeout(Duration::from_secs(20), consumer.next())
                .await
                .expect("deliveries through the router")
                .unwrap()
                .expect("the stream stays open");
            consumer
                .ack(batch.iter().map(|d| d.offset).collect())
                .await
                .unwrap();
            seen.extend(batch.iter().map(text));
        }
        assert_eq!(seen, payloads, "{tenant} consumes its own messages");
        let polled: Vec<String> = fetch(&client, "t", "poll", 10, 2_000)
            .await
            .iter()
            .map(text)
            .collect();
        assert_eq!(polled, payloads, "{tenant} long-polls its own messages");
        // Wait past the last message: the long-poll comes back empty, not cut.
        assert!(fetch(&client, "t", "poll", 10, 1_500).await.is_empty());
    }

    // Read every node directly: each holds exactly its tenant and its data.
    for (tenant, node) in TENANTS {
        let server = &fleet.nodes[node];
        let direct = server.operator().await;
        let listed: Vec<String> = direct
            .operator()
            .list_tenants(pb::ListTenantsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .tenants
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(
            listed,
            vec![tenant.to_string()],
            "{node} holds only {tenant}"
        );
        let own = direct.with_token(&keys[tenant]).unwrap();
        let stats = topic_stats(&own, "t").await;
        assert_eq!(
            (stats.messages, stats.next_offset),
            (5, 5),
            "{tenant} on {node}"
        );
        for (other, other_node) in TENANTS {
            if other_node != node {
                let stranger = direct.with_token(&keys[other]).unwrap();
                assert_eq!(refusal(&stranger).await.0, Code::Unauthenticated);
            }
        }
    }

    // A tenant key goes to its tenant's node whatever x-tallyq-node says.
    let acme = operator.with_token(&keys["acme"]).unwrap();
    let topics = acme
        .admin()
        .list_topics(to_node("node-2", pb::ListTopicsRequest::default()))
        .await
        .expect("acme's key still reaches node-1")
        .into_inner()
        .topics;
    assert_eq!(topics.len(), 1);

    // An unknown tenant's key (answered by nginx) and a forged key of a real
    // tenant (answered by its broker) look the same, and the same as a bad
    // key sent straight to a broker.
    let secret = "A".repeat(32);
    let unknown = operator.with_token(&format!("tq_nobody_{secret}")).unwrap();
    let forged = operator.with_token(&format!("tq_globex_{secret}")).unwrap();
    let direct_bad = fleet.nodes["node-2"]
        .anonymous()
        .await
        .with_token(&format!("tq_globex_{secret}"))
        .unwrap();
    let (unknown, forged, direct_bad) = (
        refusal(&unknown).await,
        refusal(&forged).await,
        refusal(&direct_bad).await,
    );
    assert_eq!(unknown.0, Code::Unauthenticated);
    assert_eq!(unknown, forged, "the router reveals nothing");
    assert_eq!(unknown, direct_bad);
    // An unknown node named by the header is NOT_FOUND, not some default.
    let status = operator
        .operator()
        .list_tenants(to_node("node-9", pb::ListTenantsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    // Close the day on every node through the router, then read one ledger.
    for (_, node) in TENANTS {
        let now = operator
            .operator()
            .advance_clock(to_node(node, pb::AdvanceClockRequest { advance_ms: 1 }))
            .await
            .unwrap()
            .into_inner()
            .now_unix_ms;
        let to_midnight = (now.div_euclid(86_400_000) + 1) * 86_400_000 - now + 1_000;
        operator
            .operator()
            .advance_clock(to_node(
                node,
                pb::AdvanceClockRequest {
                    advance_ms: to_midnight as u64,
                },
            ))
            .await
            .unwrap();
    }
    let map = fleet.map.to_str().unwrap();
    let cursor = fleet.dir.path().join("ledger.cursor");
    let cursor_arg = cursor.to_str().unwrap();
    let export = |extra: &'static [&'static str]| {
        let mut args = vec![
            "--token",
            OPERATOR_TOKEN,
            "ledger",
            "export",
            "--shard-map",
            map,
        ];
        args.extend_from_slice(extra);
        args.extend(["--cursor", cursor_arg]);
        args
    };
    let (ok, out, err) = tallyq(&export(&[])).await;
    assert!(ok, "ledger export --shard-map failed: {err}");
    let entries: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut keys_seen = HashSet::new();
    let mut last = BTreeMap::new();
    for e in &entries {
        let node = e["node_id"].as_str().unwrap().to_string();
        let sequence = e["sequence"].as_u64().unwrap();
        assert!(
            keys_seen.insert((node.clone(), sequence)),
            "({node}, {sequence}) once"
        );
        let tenant = e["tenant"].as_str().unwrap();
        let home = TENANTS.iter().find(|(t, _)| *t == tenant).unwrap().1;
        assert_eq!(node, home, "{tenant}'s charges come from its node");
        let previous = last.insert(node.clone(), sequence).unwrap_or(0);
        assert_eq!(
            sequence,
            previous + 1,
            "{node}'s chain in order, nothing skipped"
        );
    }
    for (tenant, node) in TENANTS {
        let units: u64 = entries
            .iter()
            .filter(|e| e["tenant"] == tenant && e["meter"] == "message_units")
            .map(|e| e["quantity"].as_u64().unwrap())
            .sum();
        assert_eq!(
            units,
            5 + 10,
            "{tenant}: 5 produced, 10 delivered units on {node}"
        );
    }
    let expected_cursor: String = last
        .iter()
        .map(|(n, s)| format!("{n}={}\n", s + 1))
        .collect();
    assert_eq!(std::fs::read_to_string(&cursor).unwrap(), expected_cursor);
    assert!(
        err.contains(&format!("exported {} entries from 3 nodes", entries.len())),
        "{err}"
    );

    // Resuming from the cursor file: nothing new, nothing repeated.
    let (ok, out, err) = tallyq(&export(&[])).await;
    assert!(ok, "{err}");
    assert_eq!(out, "", "a resumed export repeats nothing");
    assert_eq!(std::fs::read_to_string(&cursor).unwrap(), expected_cursor);

    let (ok, out, err) = tallyq(&[
        "--token",
        OPERATOR_TOKEN,
        "ledger",
        "verify",
        "--shard-map",
        map,
    ])
    .await;
    assert!(ok, "ledger verify --shard-map failed: {out}{err}");
    for (_, node) in TENANTS {
        assert!(out.contains(&format!("{node}: ledger verified:")), "{out}");
    }
    assert!(out.contains("all 3 nodes verified"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_commands_refuse_a_shard_map_pointing_a_node_at_another_broker() {
    let fleet = fleet().await;
    // Give node-1 a ledger entry, then claim node-2 lives at node-1's address.
    let direct = fleet.nodes["node-1"].operator().await;
    create_tenant(&direct, "acme").await;
    direct
        .operator()
        .record_payment(pb::RecordPaymentRequest {
            tenant: "acme".into(),
            payment_id: "p-1".into(),
            amount_minor: 100,
            currency: "CNY".into(),
            note: String::new(),
        })
        .await
        .unwrap();
    let text = std::fs::read_to_string(&fleet.map).unwrap();
    let node1 = fleet.nodes["node-1"].address.trim_start_matches("http://");
    let node2 = fleet.nodes["node-2"].address.trim_start_matches("http://");
    let wrong = fleet.dir.path().join("wrong.toml");
    std::fs::write(&wrong, text.replace(node2, node1)).unwrap();
    let wrong = wrong.to_str().unwrap();
    let cursor = fleet.dir.path().join("wrong.cursor");
    let (ok, out, err) = tallyq(&[
        "--token",
        OPERATOR_TOKEN,
        "ledger",
        "export",
        "--shard-map",
        wrong,
        "--cursor",
        cursor.to_str().unwrap(),
    ])
    .await;
    assert!(!ok, "the export must fail");
    assert_eq!(out, "", "nothing is written when one node cannot be read");
    assert!(!cursor.exists(), "the cursor is not moved");
    assert!(
        err.contains("node node-2") && err.contains("of node 'node-1'"),
        "{err}"
    );
    let (ok, out, _) = tallyq(&[
        "--token",
        OPERATOR_TOKEN,
        "ledger",
        "verify",
        "--shard-map",
        wrong,
    ])
    .await;
    assert!(!ok);
    assert!(out.contains("node-2: NOT verified"), "{out}");
}
