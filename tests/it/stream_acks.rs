//! A Consume stream under a steady flow of acks: the broker applies each ack
//! as it arrives and commits it beside the stream's work (claiming the next
//! pass while the one before commits). Every ack still holds across a
//! restart, and pushes still come in claim order, each message once.

use std::time::Duration;

use crate::harness::*;

#[tokio::test]
async fn acks_sent_push_after_push_all_hold_across_a_restart_and_pushes_keep_their_order() {
    let root = tempfile::tempdir().unwrap();
    let dir = data_dir(&root);
    let server = ProcessServer::start(&dir);
    let operator = server.operator().await;
    create_tenant(&operator, "acme").await;
    // The manual clock stands still: the standard plan's rates would stop
    // deliveries after one burst.
    lift_rate_limits(&operator, "acme").await;
    let secret = create_key(&operator, "acme", &[1, 2, 3], &[]).await;
    let acme = server.client(&secret).await;
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "s", 10).await;
    const TOTAL: u64 = 1000;
    for batch in 0..10 {
        let messages = (0..100).map(|i| msg(&format!("b{batch}-m{i}"))).collect();
        acme.produce("t", messages).await.unwrap();
    }

    // A window of 50: the backlog takes many pushes, each acked at once.
    let mut consumer = acme.consume("t", "s", 50, 0).await.unwrap();
    let mut offsets = Vec::new();
    while (offsets.len() as u64) < TOTAL {
        let next = tokio::time::timeout(Duration::from_secs(60), consumer.next()).await;
        let batch = next
            .expect("pushes keep coming while their acks commit")
            .unwrap()
            .expect("the stream stays open");
        assert!(batch.iter().all(|d| d.delivery_attempt == 1));
        let acked: Vec<u64> = batch.iter().map(|d| d.offset).collect();
        offsets.extend(acked.iter().copied());
        consumer.ack(acked).await.unwrap();
    }
    assert_eq!(
        offsets,
        (0..TOTAL).collect::<Vec<_>>(),
        "every message once, in offset order"
    );
    // The last acks have reached the broker once nothing is in flight.
    let mut stats = sub_stats(&acme, "t", "s").await;
    for _ in 0..200 {
        if stats.in_flight == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        stats = sub_stats(&acme, "t", "s").await;
    }
    assert_eq!((stats.in_flight, stats.backlog), (0, 0));
    consumer.close();
    assert_eq!(server.terminate(), Some(0), "SIGTERM exits 0");

    let server = ProcessServer::start(&dir);
    let acme = server.client(&secret).await;
    let operator = server.operator().await;
    let stats = sub_stats(&acme, "t", "s").await;
    assert_eq!(
        (stats.in_flight, stats.backlog, stats.next_offset),
        (0, 0, TOTAL),
        "every ack the stream sent held across the restart"
    );
    // Past every lock: an ack that had not held would bring its message back.
    advance(&operator, 11_000).await;
    assert!(fetch(&acme, "t", "s", 1000, 0).await.is_empty());
}
