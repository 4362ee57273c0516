//! A message set damaged at rest is quarantined, not contagious: its
//! messages are skipped (never served, never left in flight), counted,
//! audited once, and every healthy message around it is delivered.

use std::path::Path;

use tallyq::client::Client;
use tallyq::proto::v1 as pb;

use crate::harness::*;
use crate::ops::scrape;

/// The payload of set 2's messages (padded: set 2 is far larger than sets 1
/// and 3 together, so the middle of the segment lies inside it).
const MARKER: &str = "CORRUPT-SET-TWO-MARKER";

/// Flips 16 bytes in the middle of the one segment file under `data_dir`,
/// inside set 2. (Payloads are stored encrypted, so set 2 is found by its
/// size, not by its marker.)
fn damage_segment(data_dir: &Path, marker: &[u8]) {
    let mut segments: Vec<_> = std::fs::read_dir(data_dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::metadata(p).unwrap().len() > 0)
        .collect();
    assert_eq!(segments.len(), 1, "one segment holds the three sets");
    let path = segments.pop().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(
        !bytes.windows(marker.len()).any(|w| w == marker),
        "set 2 is stored encrypted"
    );
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 16] {
        *b ^= 0xff;
    }
    std::fs::write(&path, bytes).unwrap();
}

/// Fetches until a fetch returns nothing; returns the payloads and offsets.
async fn drain(client: &Client, sub: &str) -> Vec<(u64, String)> {
    let mut got = Vec::new();
    loop {
        let batch = fetch(client, "t", sub, 100, 0).await;
        if batch.is_empty() {
            return got;
        }
        got.extend(batch.iter().map(|d| (d.offset, text(d))));
    }
}

async fn corrupt_series(server: &TestServer) -> f64 {
    scrape(server)
        .await
        .lines()
        .filter(|l| l.starts_with("tallyq_corrupt_messages_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn quarantine_audits(operator: &Client) -> usize {
    operator
        .operator()
        .list_audit_events(pb::ListAuditEventsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .events
        .iter()
        .filter(|e| e.action == "topic.set_quarantined" && e.tenant == "acme")
        .count()
}

#[tokio::test]
async fn a_corrupt_set_is_skipped_counted_once_and_the_rest_delivered() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let at_data = |c: &mut tallyq::config::Config| c.data_dir = data.clone();

    let server = TestServer::start_with(at_data).await;
    let operator = server.operator().await;
    create_tenant(&operator, "acme").await;
    let secret = create_key(&operator, "acme", &[1, 2, 3], &[]).await;
    let acme = operator.with_token(&secret).unwrap();
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "at-least-once", 30).await;
    create_sub(&acme, "t", "at-most-once", 0).await;
    acme.produce("t", vec![msg("one-a"), msg("one-b")])
        .await
        .unwrap();
    let padding = "x".repeat(2000);
    let set2: Vec<_> = (0..3)
        .map(|i| msg(&format!("{MARKER}-{i}-{padding}")))
        .collect();
    acme.produce("t", set2).await.unwrap();
    acme.produce("t", vec![msg("three-a"), msg("three-b")])
        .await
        .unwrap();
    server.stop().await;

    damage_segment(&data, MARKER.as_bytes());

    let server = TestServer::start_with(at_data).await;
    let operator = server.operator().await;
    let acme = operator.with_token(&secret).unwrap();
    let healthy = vec![
        (0, "one-a".to_string()),
        (1, "one-b".to_string()),
        (5, "three-a".to_string()),
        (6, "three-b".to_string()),
    ];
    for sub in ["at-least-once", "at-most-once"] {
        let got = drain(&acme, sub).await;
        assert_eq!(
            got, healthy,
            "{sub}: sets 1 and 3 exactly once, none of set 2"
        );
        let offsets = got.iter().map(|(o, _)| *o).collect();
        ack(&acme, "t", sub, offsets).await;
        let stats = sub_stats(&acme, "t", sub).await;
        assert_eq!(stats.in_flight, 0, "{sub}: nothing left in flight");
        assert_eq!(stats.backlog, 0, "{sub}: nothing left to deliver");
        assert_eq!(stats.next_offset, 7, "{sub}: moved on past set 2");
    }
    assert_eq!(topic_stats(&acme, "t").await.corrupt_messages, 3);
    assert_eq!(corrupt_series(&server).await, 3.0);

    // A second pass neither delivers nor re-counts them.
    for sub in ["at-least-once", "at-most-once"] {
        assert!(drain(&acme, sub).await.is_empty(), "{sub}: second pass");
    }
    // The export skips them and says so, rather than failing.
    let lines = export_lines(&acme).await;
    let exported: Vec<u64> = lines
        .iter()
        .filter(|l| l["type"] == "message")
        .map(|l| l["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(exported, vec![0, 1, 5, 6]);
    let skipped: Vec<_> = lines
        .iter()
        .filter(|l| l["type"] == "skipped_corrupt")
        .collect();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0]["first_offset"], 2);
    assert_eq!(skipped[0]["messages"], 3);
    assert_eq!(topic_stats(&acme, "t").await.corrupt_messages, 3);
    assert_eq!(corrupt_series(&server).await, 3.0);

    // One audit entry for the set (written in the background).
    let mut audits = 0;
    for _ in 0..100 {
        audits = quarantine_audits(&operator).await;
        if audits > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(audits, 1, "one audit entry per corrupt set");
    server.stop().await;
}
