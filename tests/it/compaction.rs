//! Compaction against the real broker: a small long-retained topic no
//! longer keeps a segment full of another topic's expired or deleted data on
//! disk. Its retained sets are moved to the active segment, the old file is
//! deleted, and every retained message reads back with the same offset and
//! bytes, before and after a restart. On a real small file system, deleting
//! a topic past the watermark gives the space back and produce resumes.
//!
//! Waits poll what an operator sees (the segment files, a metric, an accepted
//! produce), bounded; nothing asserts how long anything took.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use tallyq::client::Client;
use tallyq::proto::v1 as pb;
use tallyq::storage::MinFreeDisk;

use crate::harness::*;
use crate::ops::{scrape, value};
use crate::small_fs::SmallFs;

const KIB: usize = 1024;
const MIB: u64 = 1024 * 1024;
/// How many times a wait for the background job tries, 100 ms apart.
const POLLS: usize = 300;
const POLL_PAUSE: Duration = Duration::from_millis(100);

/// A broker on `data_dir` compacting every `interval_seconds` (and every
/// second below the watermark), refusing new data below `minimum` free bytes.
async fn start(data_dir: &Path, interval_seconds: u64, minimum: Option<u64>) -> TestServer {
    let data_dir = data_dir.to_path_buf();
    TestServer::start_with(move |config| {
        config.data_dir = data_dir;
        config.compaction_interval_seconds = interval_seconds;
        if let Some(minimum) = minimum {
            config.min_free_disk_bytes = MinFreeDisk::bytes(minimum);
        }
    })
    .await
}

/// Tenant `acme` without rate limits (the manual clock stands still): its
/// key's secret and a client holding it.
async fn tenant(server: &TestServer) -> (String, Client) {
    let operator = server.operator().await;
    create_tenant(&operator, "acme").await;
    lift_rate_limits(&operator, "acme").await;
    let secret = create_key(&operator, "acme", &[1, 2, 3], &[]).await;
    let client = operator.with_token(&secret).unwrap();
    (secret, client)
}

/// The acme client of a restarted broker (the key survives restarts).
async fn same_tenant(server: &TestServer, secret: &str) -> Client {
    server.operator().await.with_token(secret).unwrap()
}

/// Total size of the broker's segment files, as `ls` shows them.
fn segment_bytes(data_dir: &Path) -> u64 {
    std::fs::read_dir(data_dir.join("segments"))
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum()
}

/// Produces `payloads` as one batch; records offset -> payload.
async fn produce(
    client: &Client,
    topic: &str,
    payloads: Vec<String>,
    seen: &mut BTreeMap<u64, String>,
) {
    let reply = client
        .produce_once(topic, payloads.iter().map(|p| msg(p)).collect())
        .await
        .unwrap();
    for (result, payload) in reply.results.iter().zip(payloads) {
        seen.insert(result.offset, payload);
    }
}

/// Every retained message of `topic` through the at-most-once subscription
/// `sub`, sought back to the earliest offset first: offset -> payload.
async fn read_all(client: &Client, topic: &str, sub: &str) -> BTreeMap<u64, String> {
    client
        .broker()
        .seek(pb::SeekRequest {
            topic: topic.into(),
            subscription: sub.into(),
            position: pb::SeekPosition::Earliest as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut all = BTreeMap::new();
    loop {
        let got = fetch(client, topic, sub, 100, 0).await;
        if got.is_empty() {
            return all;
        }
        for delivery in &got {
            let again = all.insert(delivery.offset, text(delivery));
            assert_eq!(again, None, "offset {} delivered twice", delivery.offset);
        }
    }
}

/// Waits until the segment files total less than `bytes`; returns their size.
async fn segments_shrink_below(data_dir: &Path, bytes: u64) -> u64 {
    for _ in 0..POLLS {
        let now = segment_bytes(data_dir);
        if now < bytes {
            return now;
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    panic!(
        "the segment files still hold {} bytes, not below {bytes}: nothing was compacted",
        segment_bytes(data_dir)
    );
}

/// A payload of `len` bytes tagged with `tag`.
fn payload(tag: &str, len: usize) -> String {
    format!("{tag}-{}", "x".repeat(len))
}

#[tokio::test]
async fn a_long_retained_set_no_longer_pins_a_segment_of_expired_data() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let server = start(&data, 1, None).await;
    let (secret, acme) = tenant(&server).await;
    let week = pb::TopicConfig {
        message_expiry_seconds: 604_800,
        ..Default::default()
    };
    let minute = pb::TopicConfig {
        message_expiry_seconds: 60,
        ..Default::default()
    };
    create_topic(&acme, "keep", week).await;
    create_topic(&acme, "bulk", minute).await;
    create_sub(&acme, "keep", "audit", 0).await;
    // The long-retained sets are interleaved with 8 MiB of the other topic's.
    let mut kept = BTreeMap::new();
    let mut bulk = BTreeMap::new();
    for batch in 0..40 {
        if batch % 8 == 0 {
            let payloads = (0..3)
                .map(|i| payload(&format!("keep-{batch}-{i}"), 10))
                .collect();
            produce(&acme, "keep", payloads, &mut kept).await;
        }
        let payloads = (0..2)
            .map(|i| payload(&format!("bulk-{batch}-{i}"), 100 * KIB))
            .collect();
        produce(&acme, "bulk", payloads, &mut bulk).await;
    }
    assert_eq!(kept.len(), 15);
    // A restart seals the segment they were written to.
    server.stop().await;
    let server = start(&data, 1, None).await;
    let acme = same_tenant(&server, &secret).await;
    let before = segment_bytes(&data);
    assert!(before >= 7 * MIB, "the sets are on disk: {before} bytes");

    // The other topic's sets expire; its 8 MiB must not stay on disk for the
    // sake of 15 small messages.
    advance(&server.operator().await, 61_000).await;
    assert_eq!(topic_stats(&acme, "bulk").await.messages, 0, "expired");
    let after = segments_shrink_below(&data, MIB).await;
    let metrics = scrape(&server).await;
    assert!(
        value(&metrics, "tallyq_compactions_total", &[]) >= 1.0,
        "{metrics}"
    );
    assert!(value(&metrics, "tallyq_compacted_bytes_total", &[]) > 0.0);
    println!("compaction: segment files {before} -> {after} bytes");

    // Every retained message is there, at its offset, byte for byte.
    assert_eq!(read_all(&acme, "keep", "audit").await, kept);
    let stats = topic_stats(&acme, "keep").await;
    assert_eq!((stats.messages, stats.next_offset), (15, 15));
    acme.produce("keep", vec![msg("after")]).await.unwrap();
    kept.insert(15, "after".into());

    // And after a restart, from the moved headers.
    server.stop().await;
    let server = start(&data, 1, None).await;
    let acme = same_tenant(&server, &secret).await;
    assert_eq!(read_all(&acme, "keep", "audit").await, kept);
    assert!(segment_bytes(&data) < MIB, "the old segment stayed deleted");
    server.stop().await;
}

#[tokio::test]
async fn past_the_watermark_deleting_a_topic_frees_its_space_and_produce_resumes() {
    // Declared first, dropped (unmounted) last.
    let fs = SmallFs::mount(64 * MIB);
    let data = fs.path().join("data");
    // The broker may use 12 MiB of the mount before it is below the watermark.
    let minimum = fs.free_bytes() - 12 * MIB;
    // Only the disk pressure makes compaction run here.
    let server = start(&data, 3600, Some(minimum)).await;
    let (secret, acme) = tenant(&server).await;
    create_topic(&acme, "keep", Default::default()).await;
    create_topic(&acme, "bulk", Default::default()).await;
    create_sub(&acme, "keep", "audit", 0).await;
    let mut kept = BTreeMap::new();
    produce(
        &acme,
        "keep",
        vec!["k0".into(), "k1".into(), "k2".into()],
        &mut kept,
    )
    .await;

    // Fill the disk past the watermark with the other topic.
    let mut refused = None;
    for batch in 0..POLLS {
        let payloads = (0..4).map(|i| payload(&format!("b{batch}-{i}"), 100 * KIB));
        let messages = payloads.map(|p| msg(&p)).collect();
        if let Err(status) = acme.produce_once("bulk", messages).await {
            refused = Some(status);
            break;
        }
        // Between batches, more of the long-retained topic.
        if batch % 10 == 0 {
            let payload = format!("k-{batch}");
            match acme.produce_once("keep", vec![msg(&payload)]).await {
                Ok(reply) => {
                    kept.insert(reply.results[0].offset, payload);
                }
                Err(status) => {
                    refused = Some(status);
                    break;
                }
            }
        }
    }
    let refused = refused.expect("the disk fell below the watermark");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(refused.message().contains("disk"), "{refused:?}");
    let full = segment_bytes(&data);

    // Deleting the big topic (allowed below the watermark) gives its space
    // back although the long-retained topic's sets share its segment.
    acme.admin()
        .delete_topic(pb::DeleteTopicRequest {
            name: "bulk".into(),
        })
        .await
        .unwrap();
    let after = segments_shrink_below(&data, MIB).await;
    println!("delete under pressure: segment files {full} -> {after} bytes");
    let mut accepted = false;
    for attempt in 0..POLLS {
        match acme
            .produce_once("keep", vec![msg(&format!("resumed-{attempt}"))])
            .await
        {
            Ok(reply) => {
                kept.insert(reply.results[0].offset, format!("resumed-{attempt}"));
                accepted = true;
                break;
            }
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
                tokio::time::sleep(POLL_PAUSE).await;
            }
        }
    }
    assert!(
        accepted,
        "produce still refused after the topic's space was freed"
    );
    assert_eq!(read_all(&acme, "keep", "audit").await, kept);

    server.stop().await;
    let server = start(&data, 3600, Some(minimum)).await;
    let acme = same_tenant(&server, &secret).await;
    assert_eq!(read_all(&acme, "keep", "audit").await, kept);
    server.stop().await;
}
