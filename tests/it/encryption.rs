//! Encryption at rest, as an auditor checks it: every file under the data
//! dir is scanned for distinctive markers carried by a payload, a header, a
//! device id, a dedup id and the tenant's contact data, while the broker
//! runs and after it stops; terminating the tenant destroys its data key
//! (no wrapped key left for it) while its ledger stays. Also: a wrong master
//! key refuses start-up, and rotating the master key keeps every message
//! readable across a restart. All against the built binary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tallyq::proto::v1 as pb;
use tallyq::storage::Store;

use crate::harness::*;

const PAYLOAD: &str = "PAYLOAD-MARKER-q7Zp";
const HEADER: &str = "HEADER-MARKER-q7Zp";
const DEVICE: &str = "DEVICE-MARKER-q7Zp";
const DEDUP: &str = "DEDUP-MARKER-q7Zp";
const NAME: &str = "NAME-MARKER-q7Zp";
const EMAIL: &str = "email-marker-q7zp@acme.example";
const KEY_NOTE: &str = "KEY-DESCRIPTION-MARKER-q7Zp";
const MARKERS: [&str; 7] = [PAYLOAD, HEADER, DEVICE, DEDUP, NAME, EMAIL, KEY_NOTE];

/// Every marker found in plaintext in any file under `dir`: (marker, file).
fn markers_in(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    let mut files = 0;
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                pending.push(entry.unwrap().path());
            }
            continue;
        }
        files += 1;
        let bytes = std::fs::read(&path).unwrap();
        for marker in MARKERS {
            if bytes.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                found.push((marker.to_string(), path.clone()));
            }
        }
    }
    assert!(
        files >= 3,
        "sled's files and a segment at least under {dir:?}"
    );
    found
}

/// `tallyq serve` on `data_dir` (manual clock, test credential), with the
/// master key in `key_file` (None: the default `<data_dir>/master.key`).
fn serve(data_dir: &Path, key_file: Option<&Path>) -> ProcessServer {
    match key_file {
        Some(key) => {
            ProcessServer::start_with(data_dir, &["--master-key-file".as_ref(), key.as_os_str()])
        }
        None => ProcessServer::start(data_dir),
    }
}

/// Creates tenant `acme` with marked contact data, a key and topic `t` with
/// subscription `s`; returns the key's secret.
async fn marked_tenant(server: &ProcessServer) -> String {
    let operator = server.operator().await;
    operator
        .operator()
        .create_tenant(pb::CreateTenantRequest {
            id: "acme".into(),
            display_name: NAME.into(),
            contact_email: EMAIL.into(),
            plan: String::new(),
        })
        .await
        .unwrap();
    let secret = operator
        .operator()
        .create_api_key(pb::CreateApiKeyRequest {
            tenant: "acme".into(),
            scopes: vec![1, 2, 3],
            topics: vec![],
            description: KEY_NOTE.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let acme = server.client(&secret).await;
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "s", 30).await;
    secret
}

/// A message carrying every marker, the dedup id numbered `n`.
fn marked(n: u32) -> pb::Message {
    pb::Message {
        payload: format!("{PAYLOAD}-{n}").into_bytes().into(),
        headers: HashMap::from([("h".to_string(), HEADER.to_string())]),
        device_id: DEVICE.into(),
        dedup_id: format!("{DEDUP}-{n}"),
    }
}

#[tokio::test]
async fn no_marker_is_stored_in_plaintext_and_termination_destroys_the_key() {
    let root = tempfile::tempdir().unwrap();
    let dir = data_dir(&root);
    let server = serve(&dir, None);
    let secret = marked_tenant(&server).await;
    let acme = server.client(&secret).await;
    // A neighbour whose messages share acme's segment.
    let operator = server.operator().await;
    create_tenant(&operator, "other").await;
    let other_secret = create_key(&operator, "other", &[1, 2, 3], &[]).await;
    let other = server.client(&other_secret).await;
    create_topic(&other, "n", Default::default()).await;
    other
        .produce_once("n", vec![msg("neighbour")])
        .await
        .unwrap();
    for batch in 0..10 {
        let messages = (0..10).map(|i| marked(batch * 10 + i)).collect();
        acme.produce_once("t", messages).await.unwrap();
    }
    // Messages are served decrypted, with every field intact.
    let got = fetch(&acme, "t", "s", 5, 0).await;
    let first = got[0].message.as_ref().unwrap();
    assert_eq!(first.payload, format!("{PAYLOAD}-0").into_bytes());
    assert_eq!(first.headers["h"], HEADER);
    assert_eq!(
        (first.device_id.as_str(), first.dedup_id.as_str()),
        (DEVICE, &*format!("{DEDUP}-0"))
    );
    let exported = export_lines(&acme).await;
    let last = exported
        .iter()
        .rfind(|l| l["type"] == "message")
        .expect("messages exported");
    let payload = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        last["payload_base64"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(
        payload,
        format!("{PAYLOAD}-99").into_bytes(),
        "export decrypts"
    );
    assert_eq!(
        (last["device_id"].as_str(), last["headers"]["h"].as_str()),
        (Some(DEVICE), Some(HEADER))
    );
    assert!(exported
        .iter()
        .any(|l| l["type"] == "usage" && l["dimension"] == "device" && l["name"] == DEVICE));
    let tenant = operator
        .operator()
        .get_tenant(pb::GetTenantRequest { id: "acme".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (tenant.display_name.as_str(), tenant.contact_email.as_str()),
        (NAME, EMAIL)
    );

    assert_eq!(markers_in(&dir), vec![], "while running");
    assert_eq!(server.terminate(), Some(0));
    assert_eq!(markers_in(&dir), vec![], "after a stop");

    // Across a restart: everything readable, dedup still finds duplicates.
    let server = serve(&dir, None);
    let acme = server.client(&secret).await;
    let again = acme.produce_once("t", vec![marked(42)]).await.unwrap();
    assert_eq!(
        (again.results[0].offset, again.results[0].duplicate),
        (42, true)
    );
    let got = fetch(&acme, "t", "s", 100, 0).await;
    assert_eq!(got.len(), 95, "the 5 fetched before are still locked");
    assert_eq!(text_of_last(&got), format!("{PAYLOAD}-99"));

    let operator = server.operator().await;
    let terminated = operator
        .operator()
        .terminate_tenant(pb::TerminateTenantRequest {
            id: "acme".into(),
            reason: "cancelled".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(terminated.status, pb::TenantStatus::Terminated as i32);
    let ledger_before = ledger(&operator).await;
    assert!(ledger_before.iter().any(|e| e.tenant == "acme"));
    assert_eq!(server.terminate(), Some(0));
    assert_eq!(markers_in(&dir), vec![], "after termination");

    // The data key is gone from the store; the neighbour's is not.
    {
        let (store, committer) = Store::open(&dir, 8 << 20).unwrap();
        assert_eq!(store.wrapped_data_key("acme").unwrap(), None);
        assert!(store.wrapped_data_key("other").unwrap().is_some());
        drop(store);
        committer.join();
    }

    let server = serve(&dir, None);
    let operator = server.operator().await;
    let tenant = operator
        .operator()
        .get_tenant(pb::GetTenantRequest { id: "acme".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tenant.status, pb::TenantStatus::Terminated as i32);
    assert_eq!(
        (tenant.display_name.as_str(), tenant.contact_email.as_str()),
        ("", "")
    );
    let ledger_after = ledger(&operator).await;
    assert_eq!(
        &ledger_after[..ledger_before.len()],
        &ledger_before[..],
        "the ledger is intact"
    );
    assert!(tallyq::client::verify_ledger(&ledger_after).is_ok());
    let other = server.client(&other_secret).await;
    let lines = export_lines(&other).await;
    assert_eq!(lines.iter().filter(|l| l["type"] == "message").count(), 1);
}

fn text_of_last(got: &[pb::Delivery]) -> String {
    text(got.last().unwrap())
}

/// Runs `tallyq serve` expecting it to refuse to start; returns its stderr.
fn refused_start(data_dir: &Path, key_file: &Path) -> String {
    let token_file = data_dir.with_extension("token");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tallyq"))
        .args(["serve", "--listen", "127.0.0.1:0", "--clock", "manual"])
        .arg("--metrics-listen")
        .arg(EPHEMERAL_METRICS)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--operator-token-file")
        .arg(&token_file)
        .args(["--min-free-disk-bytes", TEST_MIN_FREE_DISK])
        .arg("--master-key-file")
        .arg(key_file)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(!output.status.success(), "it must refuse to start");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn a_wrong_master_key_refuses_start_up_and_rotation_keeps_messages_readable() {
    let root = tempfile::tempdir().unwrap();
    let dir = data_dir(&root);
    let server = serve(&dir, None);
    let secret = marked_tenant(&server).await;
    let acme = server.client(&secret).await;
    acme.produce_once("t", (0..5).map(marked).collect())
        .await
        .unwrap();
    assert_eq!(server.terminate(), Some(0));

    // Another key: refused, with a clear message, and nothing written.
    let wrong = root.path().join("wrong.key");
    std::fs::write(&wrong, format!("{}\n", "ab".repeat(32))).unwrap();
    let stderr = refused_start(&dir, &wrong);
    assert!(
        stderr.contains("does not open this data dir's keys"),
        "{stderr}"
    );

    // Rotate offline to a new key; the old one no longer opens the store.
    let new_key = root.path().join("new.key");
    let rotated = std::process::Command::new(env!("CARGO_BIN_EXE_tallyq"))
        .args(["keys", "rotate-master", "--data-dir"])
        .arg(&dir)
        .arg("--new-key-file")
        .arg(&new_key)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&rotated.stdout);
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    assert!(stdout.contains("rewrapped 2 keys"), "{stdout}");
    let stderr = refused_start(&dir, &dir.join("master.key"));
    assert!(
        stderr.contains("does not open this data dir's keys"),
        "{stderr}"
    );

    let server = serve(&dir, Some(&new_key));
    let acme = server.client(&secret).await;
    let got = fetch(&acme, "t", "s", 10, 0).await;
    let payloads: Vec<String> = got.iter().map(text).collect();
    let expected: Vec<String> = (0..5).map(|n| format!("{PAYLOAD}-{n}")).collect();
    assert_eq!(payloads, expected);
    let again = acme.produce_once("t", vec![marked(3)]).await.unwrap();
    assert!(again.results[0].duplicate, "dedup survives the rotation");
    let tenant = server
        .operator()
        .await
        .operator()
        .get_tenant(pb::GetTenantRequest { id: "acme".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tenant.contact_email, EMAIL);
}
