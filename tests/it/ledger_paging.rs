//! SPEC §3: a tenant's ledger reads page by a sequence of its own that
//! reveals nothing about other tenants' entries; the operator and the
//! billing reader keep the global sequence (billing jobs merge by node and
//! sequence).

use tallyq::client::{verify_ledger, Client};
use tallyq::proto::v1 as pb;

use super::harness::*;

/// One page of the ledger as `client` may read it.
async fn page(client: &Client, from: u64, limit: u32) -> pb::ListLedgerEntriesResponse {
    client
        .billing()
        .list_ledger_entries(pb::ListLedgerEntriesRequest {
            from_sequence: from,
            limit,
        })
        .await
        .unwrap()
        .into_inner()
}

/// Every page of `client`'s ledger, `limit` entries at a time, following
/// `next_sequence`; the pages and the cursor after the last.
async fn all_pages(client: &Client, limit: u32) -> (Vec<pb::LedgerEntry>, u64) {
    let mut entries = Vec::new();
    let mut next = 1;
    loop {
        let got = page(client, next, limit).await;
        if got.entries.is_empty() {
            return (entries, got.next_sequence);
        }
        next = got.next_sequence;
        entries.extend(got.entries);
    }
}

async fn pay(operator: &Client, tenant: &str, id: &str) {
    operator
        .operator()
        .record_payment(pb::RecordPaymentRequest {
            tenant: tenant.into(),
            payment_id: id.into(),
            amount_minor: 100,
            currency: "CNY".into(),
            note: String::new(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_tenants_ledger_pages_reveal_nothing_about_other_tenants() {
    let server = TestServer::start().await;
    let operator = server.operator().await;
    let acme = server.tenant("acme").await;
    let globex = server.tenant("globex").await;
    let initech = server.tenant("initech").await;
    for tenant in [&acme, &globex, &initech] {
        create_topic(tenant, "t", Default::default()).await;
        tenant.produce("t", vec![msg("x")]).await.unwrap();
    }
    // Entries of all three tenants interleave in the global ledger.
    pay(&operator, "globex", "g-1").await;
    pay(&operator, "acme", "a-1").await;
    pay(&operator, "initech", "i-1").await;
    advance_past_midnight(&operator).await;
    pay(&operator, "globex", "g-2").await;
    pay(&operator, "acme", "a-2").await;

    // The billing reader sees the global ledger: every tenant, gapless global
    // sequence, an intact chain.
    let reader = operator.with_token(BILLING_READER_TOKEN).unwrap();
    let (global, _) = all_pages(&reader, 1000).await;
    let sequences: Vec<u64> = global.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=global.len() as u64).collect::<Vec<_>>());
    assert_eq!(verify_ledger(&global).unwrap(), global.len() as u64);
    let acme_global: Vec<_> = global.iter().filter(|e| e.tenant == "acme").collect();
    assert!(acme_global.len() >= 3 && acme_global.len() < global.len());

    // acme pages one entry at a time by its own sequence 1, 2, 3, … and the
    // cursor after its last entry is its count + 1, whatever the others hold.
    let (own, after) = all_pages(&acme, 1).await;
    assert_eq!(own.len(), acme_global.len());
    let own_sequences: Vec<u64> = own.iter().map(|e| e.sequence).collect();
    assert_eq!(own_sequences, (1..=own.len() as u64).collect::<Vec<_>>());
    assert_eq!(after, own.len() as u64 + 1);
    for (mine, theirs) in own.iter().zip(&acme_global) {
        assert_eq!(mine.tenant, "acme");
        assert_eq!(
            (&mine.idempotency_key, mine.amount_minor, &mine.hash),
            (&theirs.idempotency_key, theirs.amount_minor, &theirs.hash),
            "the same entries, in ledger order"
        );
        assert!(
            mine.prev_hash.is_empty(),
            "no link to another tenant's entry"
        );
    }
    let whole = page(&acme, 0, 1000).await;
    assert_eq!(whole.entries, own, "one page or many, the same entries");
    assert_eq!(whole.next_sequence, after);

    // Other tenants' activity changes nothing acme can read.
    pay(&operator, "globex", "g-3").await;
    pay(&operator, "initech", "i-2").await;
    let again = page(&acme, 0, 1000).await;
    assert_eq!(again, whole);
    let past_the_end = page(&acme, 1_000, 10).await;
    assert!(past_the_end.entries.is_empty());
    assert_eq!(past_the_end.next_sequence, 1_000);

    // Every tenant pages by its own sequence, whatever the page size.
    let globex_own = all_pages(&globex, 2).await.0;
    assert!(globex_own.iter().all(|e| e.tenant == "globex"));
    assert_eq!(
        globex_own.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (1..=globex_own.len() as u64).collect::<Vec<_>>()
    );
}
