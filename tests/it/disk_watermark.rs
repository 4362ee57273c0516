//! The disk watermark (`min_free_disk_bytes`) on a real small file system: a
//! 64 MiB tmpfs holds the broker's data dir, and the watermark is set so the
//! broker may use only a few MiB of it. Below the watermark produce, produce
//! streams and creates are refused with RESOURCE_EXHAUSTED naming the disk
//! space and a retry-after-ms, changing and billing nothing, while fetch,
//! ack, nack, seek and deletes keep working; once space returns produce is
//! accepted again without a restart; after a restart every acknowledged
//! message is there exactly once.
//!
//! No sleeps stand in for the monitor: each wait polls what a client sees
//! (a refusal, an accepted produce, a gauge), bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use tallyq::client::{retry_after, Client};
use tallyq::proto::v1 as pb;
use tallyq::storage::MinFreeDisk;
use tokio_stream::StreamExt;
use tonic::{Code, Status};

use crate::billing::{line, usage};
use crate::harness::*;
use crate::ops::{scrape, value};
use crate::small_fs::SmallFs;

const MIB: u64 = 1024 * 1024;
/// The size of every test's file system.
const MOUNT_BYTES: u64 = 64 * MIB;
/// How many times a wait for the disk monitor (a reading before each group
/// commit and once a second) tries, 100 ms apart.
const POLLS: usize = 100;
const POLL_PAUSE: Duration = Duration::from_millis(100);

/// A broker on `data_dir` that refuses new data below `minimum` free bytes.
async fn start(data_dir: &Path, minimum: u64) -> TestServer {
    let data_dir = data_dir.to_path_buf();
    TestServer::start_with(move |config| {
        config.data_dir = data_dir;
        config.min_free_disk_bytes = MinFreeDisk::bytes(minimum);
    })
    .await
}

/// Tenant `acme` without rate limits (the manual clock stands still); its
/// key's secret and a client holding it.
async fn tenant(server: &TestServer) -> (String, Client) {
    let operator = server.operator().await;
    create_tenant(&operator, "acme").await;
    lift_rate_limits(&operator, "acme").await;
    let secret = create_key(&operator, "acme", &[1, 2, 3], &[]).await;
    let client = operator.with_token(&secret).unwrap();
    (secret, client)
}

/// What the broker said it stored: offset -> payload, and the units billed.
#[derive(Default)]
struct Acknowledged {
    messages: BTreeMap<u64, String>,
    units: u64,
}

impl Acknowledged {
    /// Produces `payloads` as one batch (no retries); notes what the reply
    /// says was stored.
    async fn produce(
        &mut self,
        client: &Client,
        topic: &str,
        payloads: Vec<String>,
    ) -> Result<(), Status> {
        let reply = client
            .produce_once(topic, payloads.iter().map(|p| msg(p)).collect())
            .await?;
        assert_eq!(reply.results.len(), payloads.len());
        for (result, payload) in reply.results.iter().zip(payloads) {
            assert!(!result.duplicate);
            assert_eq!(self.messages.insert(result.offset, payload), None);
        }
        self.units += reply.units;
        Ok(())
    }
}

/// The refusal a client sees below the watermark.
fn assert_disk_refusal(status: &Status) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let message = status.message();
    assert!(
        message.starts_with("the broker's disk is nearly full: ")
            && message.contains(" free, below the ")
            && message.ends_with(" minimum; produce and creates resume when space is freed"),
        "{message}"
    );
    assert_eq!(
        retry_after(status),
        Some(Duration::from_secs(1)),
        "{status:?}"
    );
}

/// Produces one message at a time until the broker refuses; returns the
/// refusal. Accepted ones are acknowledged like any other.
async fn produce_until_refused(client: &Client, seen: &mut Acknowledged, tag: &str) -> Status {
    for attempt in 0..POLLS {
        match seen
            .produce(client, "t", vec![format!("{tag}-{attempt}")])
            .await
        {
            Ok(()) => tokio::time::sleep(POLL_PAUSE).await,
            Err(status) => return status,
        }
    }
    panic!("produce still accepted {POLLS} attempts after the disk fell below the watermark");
}

/// Produces one message at a time until the broker accepts one; every
/// refusal on the way must be the disk's.
async fn produce_until_accepted(client: &Client, seen: &mut Acknowledged, tag: &str) {
    for attempt in 0..POLLS {
        match seen
            .produce(client, "t", vec![format!("{tag}-{attempt}")])
            .await
        {
            Ok(()) => return,
            Err(status) => {
                assert_disk_refusal(&status);
                tokio::time::sleep(POLL_PAUSE).await;
            }
        }
    }
    panic!("produce still refused {POLLS} attempts after space returned");
}

/// Waits until the `tallyq_disk_low` gauge shows `low`; returns the scrape.
async fn disk_low_gauge_is(server: &TestServer, low: bool) -> String {
    let want = if low { 1.0 } else { 0.0 };
    for _ in 0..POLLS {
        let text = scrape(server).await;
        if text.contains("tallyq_disk_low{") && value(&text, "tallyq_disk_low", &[]) == want {
            return text;
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    panic!("tallyq_disk_low never became {want}");
}

/// Every message of a fresh at-most-once subscription: offset -> payload,
/// asserting that no offset comes twice.
async fn read_all(client: &Client, topic: &str, sub: &str) -> BTreeMap<u64, String> {
    let mut all = BTreeMap::new();
    loop {
        let got = fetch(client, topic, sub, 20, 0).await;
        if got.is_empty() {
            return all;
        }
        for delivery in &got {
            let again = all.insert(delivery.offset, text(delivery));
            assert_eq!(again, None, "offset {} delivered twice", delivery.offset);
        }
    }
}

/// The tenant's usage totals.
async fn usage_total(client: &Client) -> pb::UsageLine {
    line(&usage(client).await, "total", "").clone()
}

#[tokio::test]
async fn below_the_watermark_new_data_is_refused_the_rest_works_and_space_returning_ends_it() {
    // Declared first, dropped (unmounted) last.
    let fs = SmallFs::mount(MOUNT_BYTES);
    let data = fs.path().join("data");
    // The broker may use 8 MiB of the mount before it is below the watermark.
    let minimum = fs.free_bytes() - 8 * MIB;
    let server = start(&data, minimum).await;
    let (secret, acme) = tenant(&server).await;
    create_topic(&acme, "t", Default::default()).await;
    create_topic(&acme, "scratch", Default::default()).await;
    create_sub(&acme, "t", "alo", 10).await;
    create_sub(&acme, "t", "amo", 0).await;
    create_sub(&acme, "t", "spare", 0).await;
    let mut seen = Acknowledged::default();
    for i in 0..10 {
        seen.produce(&acme, "t", vec![format!("before-{i}")])
            .await
            .unwrap();
    }

    // Another process fills the disk to 1 MiB below the watermark.
    let ballast = fs.fill("ballast", fs.free_bytes() - minimum + MIB);
    assert!(
        fs.free_bytes() < minimum,
        "the ballast took the disk below the watermark"
    );
    assert_disk_refusal(&produce_until_refused(&acme, &mut seen, "racing").await);
    let mut refusals = 1;

    // Every way new data comes in is refused, and nothing of it is stored.
    let refused = seen.produce(&acme, "t", vec!["refused".into()]).await;
    assert_disk_refusal(&refused.unwrap_err());
    refusals += 1;
    let mut replies = acme
        .broker()
        .produce_stream(tokio_stream::iter(vec![pb::ProduceRequest {
            topic: "t".into(),
            messages: vec![msg("streamed")],
        }]))
        .await
        .unwrap()
        .into_inner();
    assert_disk_refusal(&replies.next().await.unwrap().unwrap_err());
    assert!(
        replies.next().await.is_none(),
        "the refusal ends the stream"
    );
    refusals += 1;
    let topic = acme
        .admin()
        .create_topic(pb::CreateTopicRequest {
            name: "new".into(),
            config: Some(Default::default()),
        })
        .await;
    assert_disk_refusal(&topic.unwrap_err());
    refusals += 1;
    let sub = acme
        .admin()
        .create_subscription(pb::CreateSubscriptionRequest {
            topic: "t".into(),
            name: "new".into(),
            config: Some(Default::default()),
            start: 0,
        })
        .await;
    assert_disk_refusal(&sub.unwrap_err());
    refusals += 1;
    let stats = topic_stats(&acme, "t").await;
    assert_eq!(
        stats.messages,
        seen.messages.len() as u64,
        "nothing refused was stored"
    );
    let subs = acme
        .admin()
        .list_subscriptions(pb::ListSubscriptionsRequest { topic: "t".into() })
        .await
        .unwrap()
        .into_inner()
        .subscriptions;
    assert_eq!(subs.len(), 3);
    let topics = acme
        .admin()
        .list_topics(pb::ListTopicsRequest {})
        .await
        .unwrap()
        .into_inner()
        .topics;
    assert_eq!(topics.len(), 2);

    // What drains the broker and frees space goes on below the watermark.
    let delivered = fetch(&acme, "t", "alo", 100, 0).await;
    let got: BTreeMap<u64, String> = delivered.iter().map(|d| (d.offset, text(d))).collect();
    assert_eq!(got, seen.messages, "fetch hands out every stored message");
    let offsets: Vec<u64> = seen.messages.keys().copied().collect();
    let (acked, unacked) = offsets.split_at(offsets.len() / 2);
    assert_eq!(
        ack(&acme, "t", "alo", acked.to_vec()).await,
        acked.len() as u32
    );
    let last = *unacked.last().unwrap();
    acme.broker()
        .nack(pb::NackRequest {
            topic: "t".into(),
            subscription: "alo".into(),
            offsets: vec![last],
            delay_ms: 0,
        })
        .await
        .unwrap();
    let redelivered = fetch(&acme, "t", "alo", 100, 0).await;
    assert_eq!(
        redelivered
            .iter()
            .map(|d| (d.offset, d.delivery_attempt))
            .collect::<Vec<_>>(),
        vec![(last, 2)]
    );
    let at_most_once = fetch(&acme, "t", "amo", 5, 0).await;
    assert_eq!(at_most_once.len(), 5);
    let sought = acme
        .broker()
        .seek(pb::SeekRequest {
            topic: "t".into(),
            subscription: "amo".into(),
            position: pb::SeekPosition::Earliest as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sought.next_offset, 0);
    acme.admin()
        .delete_subscription(pb::DeleteSubscriptionRequest {
            topic: "t".into(),
            name: "spare".into(),
        })
        .await
        .unwrap();
    acme.admin()
        .delete_topic(pb::DeleteTopicRequest {
            name: "scratch".into(),
        })
        .await
        .unwrap();

    // Usage is exactly what was acknowledged: refusals bill nothing.
    let deliveries = (delivered.len() + redelivered.len() + at_most_once.len()) as u64;
    let total = usage_total(&acme).await;
    assert_eq!(
        (total.produced_messages, total.produced_units),
        (seen.messages.len() as u64, seen.units)
    );
    assert_eq!(
        (total.delivered_messages, total.delivered_units),
        (deliveries, deliveries),
        "one unit per small message"
    );

    // Operators see it: the gauges and the refusals by kind.
    let metrics = disk_low_gauge_is(&server, true).await;
    let free = value(&metrics, "tallyq_disk_free_bytes", &[]);
    assert!(
        free > 0.0 && free < minimum as f64,
        "tallyq_disk_free_bytes {free}"
    );
    assert_eq!(
        value(
            &metrics,
            "tallyq_quota_refusals_total",
            &["kind=\"disk_space\""]
        ),
        refusals as f64
    );

    // Space returns: produce and creates are accepted again, no restart.
    std::fs::remove_file(&ballast).unwrap();
    produce_until_accepted(&acme, &mut seen, "after").await;
    create_topic(&acme, "new", Default::default()).await;
    disk_low_gauge_is(&server, false).await;

    // After a restart every acknowledged message is there exactly once, and
    // the acks held: only the unacked ones come back once their locks end.
    server.stop().await;
    let server = start(&data, minimum).await;
    let acme = Client::connect(&server.address, &secret).await.unwrap();
    create_sub(&acme, "t", "verify", 0).await;
    assert_eq!(read_all(&acme, "t", "verify").await, seen.messages);
    advance(&server.operator().await, 11_000).await;
    let acked: BTreeSet<u64> = acked.iter().copied().collect();
    let expected: Vec<u64> = seen
        .messages
        .keys()
        .copied()
        .filter(|offset| !acked.contains(offset))
        .collect();
    let again: Vec<u64> = fetch(&acme, "t", "alo", 100, 0)
        .await
        .iter()
        .map(|d| d.offset)
        .collect();
    assert_eq!(again, expected);
    server.stop().await;
}

#[tokio::test]
async fn a_broker_filling_its_own_disk_ends_in_clean_refusals_not_internal_errors() {
    let fs = SmallFs::mount(MOUNT_BYTES);
    let data = fs.path().join("data");
    let minimum = fs.free_bytes() - 12 * MIB;
    let server = start(&data, minimum).await;
    let (secret, acme) = tenant(&server).await;
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "alo", 10).await;
    create_sub(&acme, "t", "verify", 0).await;
    let mut seen = Acknowledged::default();

    // Batches of 8 × 60 KiB: the broker reaches the watermark in about 25.
    let filler = "x".repeat(60 * 1024);
    let mut refusal = None;
    for batch in 0..200 {
        let payloads = (0..8).map(|i| format!("b{batch}-m{i}-{filler}")).collect();
        if let Err(status) = seen.produce(&acme, "t", payloads).await {
            refusal = Some(status);
            break;
        }
    }
    let refusal = refusal.expect("200 batches of 480 KiB cannot fit in 12 MiB");
    assert_disk_refusal(&refusal);
    assert!(fs.free_bytes() < minimum);
    for _ in 0..3 {
        let again = seen.produce(&acme, "t", vec!["more".into()]).await;
        assert_disk_refusal(&again.unwrap_err());
    }
    assert_eq!(
        topic_stats(&acme, "t").await.messages,
        seen.messages.len() as u64
    );

    // Consumers drain and ack below the watermark.
    let mut delivered = 0;
    loop {
        let got = fetch(&acme, "t", "alo", 20, 0).await;
        if got.is_empty() {
            break;
        }
        delivered += got.len();
        let offsets = got.iter().map(|d| d.offset).collect::<Vec<_>>();
        assert_eq!(ack(&acme, "t", "alo", offsets).await, got.len() as u32);
    }
    assert_eq!(delivered, seen.messages.len());
    let total = usage_total(&acme).await;
    assert_eq!(
        (total.produced_messages, total.produced_units),
        (seen.messages.len() as u64, seen.units)
    );

    // A restart below the watermark: still refusing, nothing lost or doubled.
    server.stop().await;
    let server = start(&data, minimum).await;
    let acme = Client::connect(&server.address, &secret).await.unwrap();
    let after_restart = seen.produce(&acme, "t", vec!["more".into()]).await;
    assert_disk_refusal(&after_restart.unwrap_err());
    assert_eq!(read_all(&acme, "t", "verify").await, seen.messages);
    advance(&server.operator().await, 11_000).await;
    assert!(
        fetch(&acme, "t", "alo", 20, 0).await.is_empty(),
        "every ack survived"
    );
    server.stop().await;
}
