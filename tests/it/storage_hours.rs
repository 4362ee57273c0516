//! storage_gib_hours exact (issue 13 item 6, SPEC §5): retained bytes
//! integrated over time, every change closing an interval, whatever order
//! expiry and metering run in, and across a kill -9; live usage shows
//! storage and topic_days before settlement.

use tallyq::client::Client;
use tallyq::proto::v1 as pb;

use crate::harness::*;

const MIN_MS: u64 = 60_000;
const HOUR_MS: u64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// Produces `count` messages of `bytes` counted bytes each (in batches of
/// ten, under the 4 MiB batch limit); returns the bytes stored.
async fn produce_bytes(client: &Client, topic: &str, count: usize, bytes: usize) -> u64 {
    let mut left = count;
    while left > 0 {
        let n = left.min(10);
        let messages = (0..n)
            .map(|_| pb::Message {
                payload: vec![b's'; bytes].into(),
                ..Default::default()
            })
            .collect();
        client.produce(topic, messages).await.unwrap();
        left -= n;
    }
    (count * bytes) as u64
}

/// Milli-GiB-hours of `byte_ms` byte-milliseconds, as SPEC §5 converts at
/// settlement (truncated).
fn milli_gib_hours(byte_ms: u128) -> u64 {
    (byte_ms * 1000 / ((1u128 << 30) * HOUR_MS as u128)) as u64
}

/// The tenant's charge for `meter` on `day`.
fn charge<'a>(entries: &'a [pb::LedgerEntry], day: &str, meter: &str) -> &'a pb::LedgerEntry {
    entries
        .iter()
        .find(|e| e.kind == "charge" && e.day == day && e.meter == meter)
        .unwrap_or_else(|| panic!("no {meter} charge for {day}: {entries:?}"))
}

/// The live total line of `day`.
async fn live_total(client: &Client, day: &str) -> pb::UsageLine {
    let usage = client
        .admin()
        .get_usage(pb::GetUsageRequest {})
        .await
        .unwrap()
        .into_inner();
    usage
        .lines
        .into_iter()
        .find(|l| l.day == day && l.dimension == "total")
        .unwrap_or_else(|| panic!("no live total for {day}"))
}

#[tokio::test]
async fn storage_hours_of_a_known_size_and_duration_are_exact_through_expiry() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    lift_rate_limits(&operator, "acme").await;
    // Start just after a midnight, so the whole scenario is in one day.
    advance_past_midnight(&operator).await;
    let today = day_name(advance(&operator, 1).await.div_euclid(DAY_MS));
    let hour = pb::TopicConfig {
        message_expiry_seconds: 3600,
        ..Default::default()
    };
    create_topic(&acme, "t", hour).await;

    // 5,000,000 bytes at 0; 5,000,000 more at 30 min; each set expires an
    // hour after it was published. AdvanceClock jumps past both expiries at
    // once, so expiry runs long after the instants it removes data at.
    let a = produce_bytes(&acme, "t", 20, 250_000).await;
    advance(&operator, 30 * MIN_MS).await;
    let b = produce_bytes(&acme, "t", 20, 250_000).await;
    advance(&operator, 3 * HOUR_MS).await;
    assert_eq!(topic_stats(&acme, "t").await.messages, 0, "both expired");

    // Held: a for 60 min, b for 60 min.
    let byte_ms = (a as u128 + b as u128) * HOUR_MS as u128;
    let expected = milli_gib_hours(byte_ms);
    assert_eq!(expected, 9, "10 MB for an hour is 9 milli-GiB-hours, not 0");

    // Live usage shows it (and the topic-day) before the day is settled.
    let live = live_total(&acme, &today).await;
    assert_eq!(live.storage_milli_gib_hours, expected);
    assert_eq!(live.topic_days, 1);

    let ended = advance_past_midnight(&operator).await;
    assert_eq!(ended, today);
    let entries = ledger(&operator).await;
    assert_eq!(
        charge(&entries, &today, "storage_gib_hours").quantity,
        expected
    );
    assert_eq!(charge(&entries, &today, "topic_days").quantity, 1);
}

#[tokio::test]
async fn live_usage_shows_topic_days_of_open_days_without_other_usage() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    lift_rate_limits(&operator, "acme").await;
    let today = day_name(advance(&operator, 1).await.div_euclid(DAY_MS));
    create_topic(&acme, "a", Default::default()).await;
    create_topic(&acme, "b", Default::default()).await;
    let live = live_total(&acme, &today).await;
    assert_eq!(live.topic_days, 2);
    assert_eq!(live.message_units, 0);
}

#[tokio::test]
async fn storage_hours_survive_a_kill_minus_nine() {
    let root = tempfile::tempdir().unwrap();
    let dir = data_dir(&root);
    let server = ProcessServer::start(&dir);
    let operator = server.operator().await;
    create_tenant(&operator, "acme").await;
    lift_rate_limits(&operator, "acme").await;
    let secret = create_key(&operator, "acme", &[1, 2, 3], &[]).await;
    advance_past_midnight(&operator).await;
    let produced_at = advance(&operator, 1).await;
    let today = day_name(produced_at.div_euclid(DAY_MS));
    let acme = server.client(&secret).await;
    let week = pb::TopicConfig {
        message_expiry_seconds: 604_800,
        ..Default::default()
    };
    create_topic(&acme, "t", week).await;
    let bytes = produce_bytes(&acme, "t", 16, 250_000).await;
    advance(&operator, 2 * HOUR_MS).await;
    server.kill();

    // The interval still starts at the produce: the two hours before the
    // kill and the four after it are all counted, once.
    let server = ProcessServer::start(&dir);
    let operator = server.operator().await;
    let acme = server.client(&secret).await;
    advance(&operator, 4 * HOUR_MS).await;
    let expected = milli_gib_hours(bytes as u128 * 6 * HOUR_MS as u128);
    assert_eq!(
        live_total(&acme, &today).await.storage_milli_gib_hours,
        expected
    );
    let ended = advance_past_midnight(&operator).await;
    assert_eq!(ended, today);
    let entries = ledger(&operator).await;
    // The settled day holds the bytes from the produce to its midnight.
    let midnight = (produced_at.div_euclid(DAY_MS) + 1) * DAY_MS;
    let held_ms = (midnight - produced_at) as u128;
    assert_eq!(
        charge(&entries, &today, "storage_gib_hours").quantity,
        milli_gib_hours(bytes as u128 * held_ms)
    );
}
