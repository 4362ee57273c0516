//! Moving a tenant between brokers (SPEC §9): the Operator RPCs behind it on
//! two brokers, and `tallyq tenant move` on three brokers behind real nginx
//! while the tenant's producer and consumer keep going through the router.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tallyq::client::Client;
use tallyq::proto::v1 as pb;
use tokio_stream::StreamExt;
use tonic::{Code, Status};

use crate::harness::*;
use crate::router::{fleet, tallyq, to_node};

/// How many messages the live producer sends in all.
const MESSAGES: usize = 150;
/// How many it sends before the move starts.
const BEFORE_MOVE: usize = 40;

/// Whether a client retries `status`: the tenant is moving, the router or a
/// broker is briefly unavailable, or the router's reload cut the connection
/// under the call: nginx's old worker sends GOAWAY (tonic: INTERNAL "h2
/// protocol error", the call was not processed) or closes a connection with
/// a call on it (tonic: CANCELLED "operation was canceled"; its outcome is
/// unknown, so a produce is retried with the same dedup id, an ack is
/// idempotent, and a Fetch whose answer was lost is handed back by the
/// broker).
fn retry(status: &Status) -> bool {
    match status.code() {
        Code::FailedPrecondition => status.message().contains("moving"),
        Code::Unavailable => true,
        Code::Internal => status.message().contains("h2 protocol error"),
        Code::Cancelled => true,
        _ => false,
    }
}

/// Calls `call` until it succeeds, retrying what [`retry`] allows (bounded).
async fn with_move_retries<T, F, Fut>(what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    for _ in 0..3_000 {
        match call().await {
            Ok(v) => return v,
            Err(s) if retry(&s) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(s) => panic!("{what}: {s:?}"),
        }
    }
    panic!("{what}: still refused after 3000 tries");
}

fn marked(i: usize) -> String {
    format!("MOVEMARK-{i:04}")
}

/// What the consumer saw: every delivery in order, and what it acked.
#[derive(Default)]
struct Consumed {
    deliveries: Vec<(u64, String, u32)>,
    acked: BTreeSet<u64>,
    /// Offsets delivered again after their ack had been answered.
    redelivered_after_ack: Vec<u64>,
}

/// Every message (offset -> payload) of the tenant's topic `t` in its export.
async fn exported_messages(client: &Client) -> Vec<(u64, String)> {
    export_lines(client)
        .await
        .into_iter()
        .filter(|l| l["type"] == "message" && l["topic"] == "t")
        .map(|l| {
            let payload = base64_decode(l["payload_base64"].as_str().unwrap());
            (l["offset"].as_u64().unwrap(), payload)
        })
        .collect()
}

fn base64_decode(text: &str) -> String {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

/// (produced, delivered, total) message units and the topic-days of `day`
/// in `acme`'s charges of one node's ledger.
fn billed(entries: &[pb::LedgerEntry], day: &str) -> (u64, u64, u64, u64) {
    let mut sums = (0, 0, 0, 0);
    for e in entries
        .iter()
        .filter(|e| e.tenant == "acme" && e.kind == "charge")
    {
        match e.meter.as_str() {
            "message_units" => {
                sums.0 += e.produced_units;
                sums.1 += e.delivered_units;
                sums.2 += e.quantity;
            }
            "topic_days" if e.day == day => sums.3 += e.quantity,
            _ => {}
        }
    }
    sums
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_moves_between_brokers_behind_nginx_under_live_traffic() {
    let fleet = fleet().await;
    let router = Client::connect(&fleet.router, OPERATOR_TOKEN)
        .await
        .unwrap();
    let node1 = fleet.nodes["node-1"].operator().await;
    let node2 = fleet.nodes["node-2"].operator().await;
    // acme lives on node-1 (the shard map says so): created there through the router.
    router
        .operator()
        .create_tenant(to_node(
            "node-1",
            pb::CreateTenantRequest {
                id: "acme".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let secret = create_key(&node1, "acme", &[1, 2, 3], &[]).await;
    lift_rate_limits(&node1, "acme").await;
    node1
        .operator()
        .bind_device(pb::BindDeviceRequest {
            device_id: "imei-move-1".into(),
            tenant: "acme".into(),
            rebind: false,
        })
        .await
        .unwrap();
    let acme = router.with_token(&secret).unwrap();
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "s", 30).await;

    // The producer: one message a call, each with its dedup id, retried
    // with the same id while the tenant is moving.
    let producer = {
        let acme = acme.clone();
        tokio::spawn(async move {
            let mut acked = BTreeMap::new();
            for i in 0..MESSAGES {
                let message = pb::Message {
                    payload: marked(i).into_bytes().into(),
                    device_id: "imei-move-1".into(),
                    dedup_id: format!("d-{i}"),
                    ..Default::default()
                };
                let reply =
                    with_move_retries("produce", || acme.produce_once("t", vec![message.clone()]))
                        .await;
                acked.insert(marked(i), reply.results[0].offset);
            }
            acked
        })
    };
    // The consumer: Fetch through the router, then a unary Ack (answered once
    // durable), so "acked" means the broker said so.
    let consumer = {
        let acme = acme.clone();
        tokio::spawn(async move {
            let mut seen = Consumed::default();
            while seen.acked.len() < MESSAGES {
                let batch = with_move_retries("fetch", || {
                    let mut broker = acme.broker();
                    async move {
                        broker
                            .fetch(pb::FetchRequest {
                                topic: "t".into(),
                                subscription: "s".into(),
                                max_messages: 20,
                                max_wait_ms: 300,
                            })
                            .await
                            .map(|r| r.into_inner().deliveries)
                    }
                })
                .await;
                let offsets: Vec<u64> = batch.iter().map(|d| d.offset).collect();
                for d in &batch {
                    if seen.acked.contains(&d.offset) {
                        seen.redelivered_after_ack.push(d.offset);
                    }
                    seen.deliveries
                        .push((d.offset, text(d), d.delivery_attempt));
                }
                if offsets.is_empty() {
                    continue;
                }
                with_move_retries("ack", || {
                    let mut broker = acme.broker();
                    let offsets = offsets.clone();
                    async move {
                        broker
                            .ack(pb::AckRequest {
                                topic: "t".into(),
                                subscription: "s".into(),
                                offsets,
                            })
                            .await
                    }
                })
                .await;
                seen.acked.extend(offsets);
            }
            seen
        })
    };

    // Once some traffic went to node-1, move acme to node-2 while it goes on.
    for _ in 0..2_000 {
        if topic_stats(&node1.with_token(&secret).unwrap(), "t")
            .await
            .messages
            >= BEFORE_MOVE as u64
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let dir = fleet.dir.path();
    let conf = dir.join("nginx.conf");
    let reload = format!(
        "{} -p {} -e stderr -c {} -s reload",
        crate::router::nginx_binary().display(),
        dir.display(),
        conf.display()
    );
    let map = fleet.map.to_str().unwrap().to_string();
    let move_args = [
        "--token",
        OPERATOR_TOKEN,
        "tenant",
        "move",
        "acme",
        "--from",
        "node-1",
        "--to",
        "node-2",
        "--shard-map",
        &map,
        "--router-config",
        conf.to_str().unwrap(),
        "--reload-command",
        &reload,
    ];
    let (ok, _, err) = tallyq(&move_args).await;
    assert!(ok, "tenant move failed: {err}");
    assert!(err.contains("the move is complete"), "{err}");

    let acked = tokio::time::timeout(Duration::from_secs(120), producer)
        .await
        .expect("the producer finishes")
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(120), consumer)
        .await
        .expect("the consumer finishes")
        .unwrap();

    // Every acknowledged message is on node-2 exactly once, at its offset.
    let on_target = exported_messages(&node2.with_token(&secret).unwrap()).await;
    let by_payload: BTreeMap<&str, Vec<u64>> =
        on_target.iter().fold(BTreeMap::new(), |mut m, (o, p)| {
            m.entry(p.as_str()).or_default().push(*o);
            m
        });
    assert_eq!(on_target.len(), MESSAGES, "node-2 holds each message once");
    for (payload, offset) in &acked {
        assert_eq!(
            by_payload.get(payload.as_str()),
            Some(&vec![*offset]),
            "{payload} on node-2 at its acknowledged offset"
        );
    }
    let offsets: BTreeSet<u64> = acked.values().copied().collect();
    assert_eq!(
        offsets.len(),
        MESSAGES,
        "offsets are never handed out twice"
    );
    assert!(
        seen.redelivered_after_ack.is_empty(),
        "acked messages delivered again: {:?}",
        seen.redelivered_after_ack
    );
    assert_eq!(seen.acked, offsets, "the consumer acked every message");

    // The move day and its settlement on both nodes: billed units across the
    // two ledgers are the units produced and delivered, the move day's
    // topic-day counted once.
    let day = advance_past_midnight(&node1).await;
    assert_eq!(advance_past_midnight(&node2).await, day);
    let (l1, l2) = (ledger(&node1).await, ledger(&node2).await);
    let (p1, d1, q1, t1) = billed(&l1, &day);
    let (p2, d2, q2, t2) = billed(&l2, &day);
    let delivered = seen.deliveries.len() as u64;
    assert_eq!(p1 + p2, MESSAGES as u64, "produced units on both nodes");
    assert_eq!(d1 + d2, delivered, "delivered units on both nodes");
    assert_eq!(q1 + q2, MESSAGES as u64 + delivered, "message units billed");
    assert!(
        p1 >= BEFORE_MOVE as u64,
        "node-1 billed what it stored: {p1}"
    );
    assert_eq!(t1 + t2, 1, "the move day's topic-day is billed once");
    let moved_out = l1
        .iter()
        .find(|e| e.kind == "moved_out")
        .expect("moved_out on node-1");
    let moved_in = l2
        .iter()
        .find(|e| e.kind == "moved_in")
        .expect("moved_in on node-2");
    assert_eq!(moved_in.amount_minor, -moved_out.amount_minor);
    let (ok, out, err) = tallyq(&[
        "--token",
        OPERATOR_TOKEN,
        "ledger",
        "verify",
        "--shard-map",
        &map,
    ])
    .await;
    assert!(ok, "both chains verify: {out}{err}");
    // The month's statement over both nodes counts every unit once.
    let (ok, out, err) = tallyq(&[
        "--token",
        OPERATOR_TOKEN,
        "statement",
        "acme",
        &day[..7],
        "--shard-map",
        &map,
    ])
    .await;
    assert!(ok, "statement --shard-map: {err}");
    let total = out
        .lines()
        .find(|l| l.starts_with("total\t"))
        .expect("a total line");
    let fields: Vec<&str> = total.split('\t').collect();
    assert_eq!(fields[1], (q1 + q2).to_string(), "{out}");
    assert_eq!(fields[3], "1", "one topic-day in the month: {out}");

    // acme is gone from node-1: terminated as moved, its key answered "moving",
    // its messages nowhere in node-1's files.
    let there = node1
        .operator()
        .get_tenant(pb::GetTenantRequest { id: "acme".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(there.status, pb::TenantStatus::Terminated as i32);
    assert_eq!(there.status_reason, "moved to node-2");
    let direct = node1.with_token(&secret).unwrap();
    let refused = direct
        .admin()
        .list_topics(pb::ListTopicsRequest::default())
        .await
        .unwrap_err();
    // A request nginx's draining old workers still send there is told to retry.
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("moving"),
        "{}",
        refused.message()
    );
    assert_no_file_holds(&fleet.nodes["node-1"].data_dir, b"MOVEMARK");
    // The device binding moved with it.
    let devices = node2
        .operator()
        .list_devices(pb::ListDevicesRequest {
            tenant: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .devices;
    assert_eq!(devices.len(), 1);

    // Running the move again finds it done and changes nothing.
    let (ok, _, err) = tallyq(&move_args).await;
    assert!(ok && err.contains("moved to node-2 already"), "{err}");
}

/// No file under `dir` contains `needle`.
fn assert_no_file_holds(dir: &std::path::Path, needle: &[u8]) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_no_file_holds(&path, needle);
        } else if let Ok(bytes) = std::fs::read(&path) {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds {:?}",
                path.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
}

/// Reads a whole ExportTenantForMove stream: (snapshot id, sha256, bytes).
async fn export_for_move(
    operator: &Client,
    tenant: &str,
) -> Result<(String, String, Vec<u8>), Status> {
    let mut stream = operator
        .operator()
        .export_tenant_for_move(pb::ExportTenantForMoveRequest {
            tenant: tenant.into(),
        })
        .await?
        .into_inner();
    let (mut id, mut sha, mut bytes) = (String::new(), String::new(), Vec::new());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if !chunk.snapshot_id.is_empty() {
            id = chunk.snapshot_id;
            sha = chunk.sha256;
        }
        bytes.extend_from_slice(&chunk.data);
    }
    Ok((id, sha, bytes))
}

async fn import(
    operator: &Client,
    sha256: &str,
    bytes: &[u8],
    reprice: bool,
) -> Result<pb::ImportTenantResponse, Status> {
    let request = pb::ImportTenantRequest {
        data: bytes.to_vec().into(),
        sha256: sha256.into(),
        reprice,
    };
    operator
        .operator()
        .import_tenant(tokio_stream::iter(vec![request]))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn an_import_refuses_damage_an_existing_tenant_and_another_rate_card() {
    let source = TestServer::start_with(|c| c.node_id = "node-a".into()).await;
    let target = TestServer::start_with(|c| c.node_id = "node-b".into()).await;
    let pricier = TestServer::start_with(|c| {
        c.node_id = "node-c".into();
        let mut plan = tallyq::plan::Plan::default();
        plan.rates.message_unit_price_nano_minor *= 2;
        c.plans.insert("standard".into(), plan);
    })
    .await;
    let a = source.operator().await;
    let b = target.operator().await;
    let c = pricier.operator().await;
    create_tenant(&a, "acme").await;
    let secret = create_key(&a, "acme", &[1, 2, 3], &[]).await;
    let key = a.with_token(&secret).unwrap();
    create_topic(&key, "t", Default::default()).await;
    key.produce("t", vec![msg("one"), msg("two")])
        .await
        .unwrap();
    a.operator()
        .record_payment(pb::RecordPaymentRequest {
            tenant: "acme".into(),
            payment_id: "p-1".into(),
            amount_minor: 500,
            currency: "CNY".into(),
            note: String::new(),
        })
        .await
        .unwrap();

    let (id, sha, bytes) = export_for_move(&a, "acme").await.unwrap();
    // Settled up to the stop: 2 free units and one topic-day (2.00) today.
    let account = |client: &Client| {
        let mut billing = client.billing();
        async move {
            billing
                .get_account(pb::GetAccountRequest {
                    tenant: "acme".into(),
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    assert_eq!(account(&a).await.balance_minor, 300);
    assert!(id.starts_with("node-a/acme/"), "{id}");
    // The source answers "moving" from now on, and exports the same move again.
    let refused = key.produce_once("t", vec![msg("three")]).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("moving"),
        "{}",
        refused.message()
    );
    let again = export_for_move(&a, "acme").await.unwrap();
    assert_eq!(
        (&again.0, &again.1),
        (&id, &sha),
        "the same move, the same snapshot"
    );

    // A damaged snapshot is DATA_LOSS and creates nothing.
    let mut damaged = bytes.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x55;
    let status = import(&b, &sha, &damaged, false).await.unwrap_err();
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    let missing = b
        .operator()
        .get_tenant(pb::GetTenantRequest { id: "acme".into() })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    // Another rate card: refused unless told to re-price.
    let status = import(&c, &sha, &bytes, false).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("reprice"), "{}", status.message());
    assert!(
        !import(&c, &sha, &bytes, true)
            .await
            .unwrap()
            .already_imported
    );

    // The real import; the same snapshot again is "already imported".
    let done = import(&b, &sha, &bytes, false).await.unwrap();
    assert_eq!(
        (done.topics, done.messages, done.already_imported),
        (1, 2, false)
    );
    assert!(
        import(&b, &sha, &bytes, false)
            .await
            .unwrap()
            .already_imported
    );
    let moved = b.with_token(&secret).unwrap();
    let reply = moved.produce("t", vec![msg("three")]).await.unwrap();
    assert_eq!(reply.results[0].offset, 2, "offsets go on where they were");
    // The balance and the month's free units used came along.
    assert_eq!(account(&b).await.balance_minor, 300);
    let moved_in = ledger(&b)
        .await
        .into_iter()
        .find(|e| e.kind == "moved_in")
        .unwrap();
    assert_eq!((moved_in.amount_minor, moved_in.free_applied), (300, 2));

    // A tenant of that name that is not this move's: ALREADY_EXISTS.
    let other = TestServer::start_with(|c| c.node_id = "node-d".into()).await;
    let d = other.operator().await;
    create_tenant(&d, "acme").await;
    let status = import(&d, &sha, &bytes, false).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");

    // Finishing on the source erases it there, once.
    let finish = pb::FinishTenantMoveRequest {
        tenant: "acme".into(),
        snapshot_id: id.clone(),
        target_node: "node-b".into(),
    };
    let first = a
        .operator()
        .finish_tenant_move(finish.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(!first.already_finished);
    assert_eq!(
        first.tenant.unwrap().status,
        pb::TenantStatus::Terminated as i32
    );
    let second = a
        .operator()
        .finish_tenant_move(finish)
        .await
        .unwrap()
        .into_inner();
    assert!(second.already_finished);
    assert_eq!(
        account(&a).await.balance_minor,
        0,
        "the source's account moved out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_stopped_half_way_survives_a_kill_and_the_command_finishes_it() {
    // The source is a real process (node-1), killed with SIGKILL after the
    // export; the target an in-process broker.
    let root = tempfile::tempdir().unwrap();
    let source = ProcessServer::start(&data_dir(&root));
    let target = TestServer::start_with(|c| c.node_id = "node-b".into()).await;
    let a = Client::connect(&source.address, OPERATOR_TOKEN)
        .await
        .unwrap();
    create_tenant(&a, "acme").await;
    let secret = create_key(&a, "acme", &[1, 2, 3], &[]).await;
    let key = a.with_token(&secret).unwrap();
    create_topic(&key, "t", Default::default()).await;
    create_sub(&key, "t", "s", 30).await;
    key.produce("t", vec![msg("one"), msg("two"), msg("three")])
        .await
        .unwrap();
    // "one" is in flight (delivered, not acked) when the tenant stops; an
    // open Consume stream holds all three.
    let delivered = fetch(&key, "t", "s", 1, 1_000).await;
    assert_eq!(delivered.len(), 1);
    create_sub(&key, "t", "live", 30).await;
    let mut stream = key.consume("t", "live", 10, 1 << 20).await.unwrap();
    let mut pushed = 0;
    while pushed < 3 {
        pushed += stream.next().await.unwrap().expect("pushes").len();
    }
    let (id, sha, _) = export_for_move(&a, "acme").await.unwrap();
    // The stop ended the stream (the export waited for it).
    let ended = stream
        .next()
        .await
        .expect_err("the stream ends with the stop");
    assert_eq!(ended.code(), Code::FailedPrecondition);

    source.kill();
    let source = ProcessServer::start(&data_dir(&root));
    let a = Client::connect(&source.address, OPERATOR_TOKEN)
        .await
        .unwrap();
    let key = a.with_token(&secret).unwrap();
    let refused = key.produce_once("t", vec![msg("four")]).await.unwrap_err();
    assert_eq!(
        refused.code(),
        Code::FailedPrecondition,
        "still stopped after a restart"
    );
    assert!(
        refused.message().contains("moving"),
        "{}",
        refused.message()
    );
    let (again, again_sha, bytes) = export_for_move(&a, "acme").await.unwrap();
    assert_eq!(
        (again, again_sha),
        (id.clone(), sha.clone()),
        "the same data again"
    );

    // The first run got as far as the import, then died.
    let b = target.operator().await;
    assert!(
        !import(&b, &sha, &bytes, false)
            .await
            .unwrap()
            .already_imported
    );

    let map_path = root.path().join("shard-map.toml");
    let map = format!(
        "default_node = \"node-1\"\n\n[nodes.node-1]\naddress = \"{}\"\n\n[nodes.node-b]\naddress = \"{}\"\n\n[tenants]\nacme = \"node-1\"\n",
        source.address.trim_start_matches("http://"),
        target.address.trim_start_matches("http://"),
    );
    std::fs::write(&map_path, map).unwrap();
    let map = map_path.to_str().unwrap();
    let args = [
        "--token",
        OPERATOR_TOKEN,
        "tenant",
        "move",
        "acme",
        "--from",
        "node-1",
        "--to",
        "node-b",
        "--shard-map",
        map,
    ];
    let (ok, _, err) = tallyq(&args).await;
    assert!(ok, "the rerun finishes the move: {err}");
    assert!(
        err.contains("had snapshot") && err.contains("the move is complete"),
        "{err}"
    );
    let flipped = tallyq::shard::ShardMap::from_file(&map_path).unwrap();
    assert_eq!(flipped.node_of("acme"), Some("node-b"));

    // On the target: offsets kept, the in-flight message due at once (its
    // attempt count goes on), the others new.
    let moved = b.with_token(&secret).unwrap();
    let got = fetch(&moved, "t", "s", 10, 1_000).await;
    let summary: Vec<(u64, String, u32)> = got
        .iter()
        .map(|d| (d.offset, text(d), d.delivery_attempt))
        .collect();
    assert_eq!(
        summary,
        vec![
            (0, "one".into(), 2),
            (1, "two".into(), 1),
            (2, "three".into(), 1)
        ]
    );
    let live: Vec<(u64, u32)> = fetch(&moved, "t", "live", 10, 1_000)
        .await
        .iter()
        .map(|d| (d.offset, d.delivery_attempt))
        .collect();
    assert_eq!(
        live,
        vec![(0, 2), (1, 2), (2, 2)],
        "the stream's unacked pushes are due"
    );
    let there = a
        .operator()
        .get_tenant(pb::GetTenantRequest { id: "acme".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(there.status_reason, "moved to node-b");
}
