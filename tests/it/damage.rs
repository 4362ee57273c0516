//! Damage at rest (issue 11, "segments are the truth, the index is
//! checked"): copies of a real data dir, made by the real broker, are
//! damaged by hand (a truncated, bit-flipped or deleted segment, flipped
//! and truncated sled files). Each either starts and serves every healthy
//! message (the damaged ones counted) or refuses to start naming the damage
//! and the data dir; then the built `tallyq repair` brings it up, prints its
//! report, and a produce gets an offset above every earlier one. No wrong
//! byte is ever served: every delivered payload is checked against its
//! offset.

use std::path::{Path, PathBuf};
use std::process::Command;

use tallyq::client::Client;

use crate::harness::*;

/// Messages per produced set.
const SET: u64 = 100;
/// Sets produced (half in each of two broker runs, so two segments).
const SETS: u64 = 6;

/// The payload of the message at `offset`.
fn payload(offset: u64) -> String {
    format!("message-at-offset-{offset:06}")
}

/// A real data dir: topic `t` of tenant acme with subscriptions `alo`
/// (at-least-once, 150 messages acked) and `amo` (at-most-once, untouched),
/// 600 messages in 6 sets over two segments. Returns the dir and the key.
async fn real_data_dir(root: &tempfile::TempDir) -> (PathBuf, String) {
    let dir = root.path().join("made");
    let server = ProcessServer::start(&dir);
    let operator = server.operator().await;
    create_tenant(&operator, "acme").await;
    lift_rate_limits(&operator, "acme").await;
    let secret = create_key(&operator, "acme", &[1, 2, 3], &[]).await;
    let acme = operator.with_token(&secret).unwrap();
    create_topic(&acme, "t", Default::default()).await;
    create_sub(&acme, "t", "alo", 30).await;
    create_sub(&acme, "t", "amo", 0).await;
    produce_sets(&acme, 0, SETS / 2).await;
    assert_eq!(server.terminate(), Some(0));

    // A second run appends to a new segment.
    let server = ProcessServer::start(&dir);
    let acme = server.client(&secret).await;
    produce_sets(&acme, SETS / 2, SETS).await;
    let mut acked = Vec::new();
    while acked.len() < 150 {
        let got = fetch(&acme, "t", "alo", (150 - acked.len()) as u32, 0).await;
        acked.extend(got.iter().map(|d| d.offset));
    }
    ack(&acme, "t", "alo", acked).await;
    assert_eq!(server.terminate(), Some(0));
    (dir, secret)
}

async fn produce_sets(client: &Client, from: u64, to: u64) {
    for set in from..to {
        let messages = (set * SET..(set + 1) * SET)
            .map(|o| msg(&payload(o)))
            .collect();
        let produced = client.produce("t", messages).await.unwrap();
        assert_eq!(produced.results[0].offset, set * SET);
    }
}

/// A copy of `dir` to damage.
fn copy_of(dir: &Path, root: &tempfile::TempDir, name: &str) -> PathBuf {
    let to = root.path().join(name);
    let status = Command::new("cp")
        .arg("-a")
        .arg(dir)
        .arg(&to)
        .status()
        .unwrap();
    assert!(status.success(), "cp -a");
    to
}

/// The segment files of a data dir, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::metadata(p).unwrap().len() > 0)
        .collect();
    files.sort();
    files
}

/// Where the set holding the message at `offset` is: its segment, where its
/// frame starts and where the frame's body (the sealed messages) starts and
/// how long it is. Payloads are encrypted, so the set is found by its frame's
/// plaintext header (`storage/frame.rs`: magic `TQFR`, first offset at
/// 16..24, count at 24..28, body length at 28..32, header CRC at 52..56).
struct FoundSet {
    segment: PathBuf,
    frame_at: usize,
    body_at: usize,
    body_len: usize,
}

fn find_set(dir: &Path, offset: u64) -> FoundSet {
    const HEADER: usize = 56;
    let le = |b: &[u8]| -> u64 {
        let mut v = [0u8; 8];
        v[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(v)
    };
    for path in segments(dir) {
        let bytes = std::fs::read(&path).unwrap();
        let mut at = 0;
        while let Some(found) = bytes[at..].windows(4).position(|w| w == b"TQFR") {
            let frame_at = at + found;
            at = frame_at + 1;
            let Some(header) = bytes.get(frame_at..frame_at + HEADER) else {
                break;
            };
            if crc32fast::hash(&header[..52]) as u64 != le(&header[52..56]) {
                continue; // the magic's bytes inside a sealed body
            }
            let first = le(&header[16..24]);
            let count = le(&header[24..28]);
            if (first..first + count).contains(&offset) {
                return FoundSet {
                    segment: path,
                    frame_at,
                    body_at: frame_at + HEADER,
                    body_len: le(&header[28..32]) as usize,
                };
            }
        }
    }
    panic!("no segment holds offset {offset}");
}

fn flip(path: &Path, at: usize, len: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    for b in &mut bytes[at..at + len] {
        *b ^= 0xff;
    }
    std::fs::write(path, bytes).unwrap();
}

fn truncate(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Runs the built `tallyq repair` on `dir`; returns its report.
fn repair(dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tallyq"))
        .args(["repair", "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "repair failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("summary: "),
        "the report is printed: {stdout}"
    );
    stdout
}

/// Asserts the broker refuses `dir`, naming `damage`, the dir and repair.
fn assert_refused(dir: &Path, damage: &str) -> String {
    let stderr = match ProcessServer::try_start(dir) {
        Ok(_) => panic!("the broker started on a damaged data dir ({damage})"),
        Err(stderr) => stderr,
    };
    assert!(stderr.contains(damage), "names {damage:?}: {stderr}");
    assert!(
        stderr.contains(&format!("tallyq repair --data-dir {}", dir.display())),
        "points to repair: {stderr}"
    );
    stderr
}

/// Starts the broker on `dir`, drains `amo` and checks that exactly the
/// messages at `healthy` offsets are served, each with its own payload; then
/// produces one message, which must get an offset at or above `above`.
/// Returns the stats' corrupt-message count.
async fn serves(dir: &Path, secret: &str, healthy: &[u64], above: u64) -> u64 {
    let server = match ProcessServer::try_start(dir) {
        Ok(server) => server,
        Err(stderr) => panic!("the broker refused to start: {stderr}"),
    };
    let acme = server.client(secret).await;
    let mut served = Vec::new();
    loop {
        let got = fetch(&acme, "t", "amo", 1000, 0).await;
        if got.is_empty() {
            break;
        }
        for d in &got {
            assert_eq!(text(d), payload(d.offset), "a wrong byte was served");
            served.push(d.offset);
        }
    }
    assert_eq!(served, healthy, "every healthy message, once, nothing else");
    let corrupt = topic_stats(&acme, "t").await.corrupt_messages;
    let produced = acme.produce("t", vec![msg("after")]).await.unwrap();
    let offset = produced.results[0].offset;
    assert!(
        offset >= above,
        "offset {offset} reused (must be >= {above})"
    );
    let again = fetch(&acme, "t", "amo", 10, 1000).await;
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].offset, text(&again[0])), (offset, "after".into()));
    assert_eq!(server.terminate(), Some(0));
    corrupt
}

fn range(from: u64, to: u64) -> Vec<u64> {
    (from..to).collect()
}

#[tokio::test]
async fn a_truncated_segment_is_refused_by_name_and_repair_keeps_the_rest() {
    let root = tempfile::tempdir().unwrap();
    let (made, secret) = real_data_dir(&root).await;
    let dir = copy_of(&made, &root, "truncated");
    // Cut in the middle of the set of offsets 400..500.
    let set = find_set(&dir, 450);
    let segment = set.segment;
    truncate(&segment, (set.body_at + set.body_len / 2) as u64);
    let name = segment.file_name().unwrap().to_string_lossy().to_string();
    let id: u64 = name.trim_end_matches(".seg").parse().unwrap();
    assert_refused(&dir, &format!("segment {id} is"));
    let report = repair(&dir);
    assert!(report.contains("2 sets (200 messages) lost"), "{report}");
    // The set cut short and the one after it are gone; their offsets stay used.
    serves(&dir, &secret, &range(0, 400), SETS * SET).await;
}

#[tokio::test]
async fn a_bit_flip_in_a_body_is_quarantined_and_one_in_a_header_refused() {
    let root = tempfile::tempdir().unwrap();
    let (made, secret) = real_data_dir(&root).await;

    // A flipped payload: the broker starts and skips just that set.
    let dir = copy_of(&made, &root, "body");
    let set = find_set(&dir, 250);
    flip(&set.segment, set.body_at + set.body_len / 2, 1);
    let healthy: Vec<u64> = range(0, 200).into_iter().chain(range(300, 600)).collect();
    let corrupt = serves(&dir, &secret, &healthy, SETS * SET).await;
    assert_eq!(corrupt, SET, "the damaged set's messages are counted");
    let report = repair(&dir);
    assert!(report.contains("1 sets (100 messages) lost"), "{report}");
    // `amo` consumed everything on the first start, "after" (600) included.
    serves(&dir, &secret, &[], SETS * SET + 1).await;

    // A flipped frame header (the set of offsets 100..200, in front of its
    // first payload): refused by name.
    let dir = copy_of(&made, &root, "header");
    let set = find_set(&dir, 100);
    flip(&set.segment, set.frame_at + 20, 1);
    assert_refused(&dir, "offsets 100..200: the frame header");
    let report = repair(&dir);
    assert!(report.contains("1 sets (100 messages) lost"), "{report}");
    let healthy: Vec<u64> = range(0, 100).into_iter().chain(range(200, 600)).collect();
    serves(&dir, &secret, &healthy, SETS * SET).await;
}

#[tokio::test]
async fn a_deleted_segment_is_named_missing_and_never_recreated() {
    let root = tempfile::tempdir().unwrap();
    let (made, secret) = real_data_dir(&root).await;
    let dir = copy_of(&made, &root, "deleted");
    let segment = find_set(&dir, 400).segment;
    std::fs::remove_file(&segment).unwrap();
    let name = segment.file_name().unwrap().to_string_lossy().to_string();
    let id: u64 = name.trim_end_matches(".seg").parse().unwrap();
    assert_refused(&dir, &format!("segment {id} is missing"));
    assert!(!segment.exists(), "a missing segment is not recreated");
    assert_refused(&dir, &format!("segment {id} is missing"));
    let report = repair(&dir);
    assert!(report.contains("3 sets (300 messages) lost"), "{report}");
    serves(&dir, &secret, &range(0, 300), SETS * SET).await;
}

/// Damages a sled file of a copy; the broker either refuses naming the
/// damage (`must_refuse`: it has to) or serves everything; after repair
/// every message is served (the segments are intact) and no offset is
/// reused. Returns the repair's report ("" when it started at once).
async fn sled_damage(name: &str, must_refuse: bool, damage: impl Fn(&Path)) -> String {
    let root = tempfile::tempdir().unwrap();
    let (made, secret) = real_data_dir(&root).await;
    let dir = copy_of(&made, &root, name);
    damage(&dir.join("db"));
    match ProcessServer::try_start(&dir) {
        Ok(server) => {
            assert!(!must_refuse, "started on a damaged index");
            // Started: then it must serve every message, as if undamaged.
            drop(server);
            serves(&dir, &secret, &range(0, 600), SETS * SET).await;
            String::new()
        }
        Err(stderr) => {
            assert!(stderr.contains(&dir.display().to_string()), "{stderr}");
            assert!(stderr.contains("tallyq repair --data-dir"), "{stderr}");
            let report = repair(&dir);
            serves(&dir, &secret, &range(0, 600), SETS * SET).await;
            report
        }
    }
}

/// sled's log file and how much of it holds data (it is preallocated).
fn sled_log_used(db: &Path) -> (PathBuf, usize) {
    let log = db.join("db");
    let bytes = std::fs::read(&log).unwrap();
    let used = bytes.iter().rposition(|b| *b != 0).unwrap() + 1;
    (log, used)
}

#[tokio::test]
async fn a_truncated_sled_log_is_refused_and_repair_rebuilds_it_from_the_segments() {
    let report = sled_damage("sled-truncated", true, |db| {
        let (log, used) = sled_log_used(db);
        truncate(&log, (used * 2 / 3) as u64);
    })
    .await;
    assert!(report.contains("commits lost by the index"), "{report}");
}

#[tokio::test]
async fn flipped_bytes_in_the_sled_log_are_refused_and_repair_rebuilds_it_from_the_segments() {
    let report = sled_damage("sled-flipped", true, |db| {
        let (log, used) = sled_log_used(db);
        flip(&log, used * 2 / 3, 16);
    })
    .await;
    assert!(report.contains("commits lost by the index"), "{report}");
}

#[tokio::test]
async fn a_damaged_sled_config_file_is_refused_and_repaired() {
    let report = sled_damage("sled-conf", true, |db| flip(&db.join("conf"), 0, 4)).await;
    assert!(report.contains("config file moved aside"), "{report}");
}

#[tokio::test]
async fn truncated_sled_snapshots_are_refused_or_served_whole() {
    sled_damage("sled-snapshot", false, |db| {
        for entry in std::fs::read_dir(db).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with("snap.") {
                let len = std::fs::metadata(&path).unwrap().len();
                truncate(&path, len / 2);
            }
        }
    })
    .await;
}
