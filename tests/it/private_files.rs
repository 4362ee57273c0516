//! Private by default: whatever umask `tallyq serve` is started with, the
//! data dir and everything in it is owner-only (folders 0700, files 0600),
//! and a data dir left readable by others is made private when it is opened.
//! The umask is process-wide, so the broker runs as the built binary under
//! `sh -c 'umask 022; exec tallyq serve ...'`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::*;

/// `tallyq serve` on `data_dir` with the manual clock, started under a
/// permissive umask (022: files 0644, folders 0755 unless tallyq says
/// otherwise).
fn serve_under_umask_022(data_dir: &Path, token_file: &Path) -> ProcessServer {
    let mut command = Command::new("sh");
    command
        .args(["-c", "umask 022 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_tallyq"))
        .args(["serve", "--listen", "127.0.0.1:0", "--clock", "manual"])
        .arg("--metrics-listen")
        .arg(EPHEMERAL_METRICS)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--operator-token-file")
        .arg(token_file)
        .args(["--min-free-disk-bytes", TEST_MIN_FREE_DISK]);
    ProcessServer::spawn_command(command)
}

/// Every path under `dir` (itself included, links not followed) with its
/// permission bits.
fn modes(dir: &Path) -> Vec<(PathBuf, bool, u32)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        found.push((
            path.clone(),
            meta.is_dir(),
            meta.permissions().mode() & 0o777,
        ));
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                pending.push(entry.unwrap().path());
            }
        }
    }
    found
}

/// Asserts folders 0700 and files 0600, listing every path that is not.
fn assert_private(dir: &Path, when: &str) {
    let all = modes(dir);
    let files = all.iter().filter(|(_, is_dir, _)| !is_dir).count();
    assert!(
        files >= 4,
        "{when}: sled's files, a segment, a credential: {all:?}"
    );
    let open: Vec<String> = all
        .iter()
        .filter(|(_, is_dir, mode)| *mode != if *is_dir { 0o700 } else { 0o600 })
        .map(|(path, _, mode)| format!("{} {mode:o}", path.display()))
        .collect();
    assert!(open.is_empty(), "{when}: not owner-only: {open:#?}");
}

/// Makes a tenant, a topic and a subscription, produces, fetches and acks:
/// every kind of file the broker writes exists afterwards.
async fn use_the_broker(server: &ProcessServer, topic: &str) -> String {
    let operator = server.operator().await;
    create_tenant(&operator, "acme").await;
    let secret = create_key(&operator, "acme", &[1, 2, 3], &[]).await;
    let acme = server.client(&secret).await;
    create_topic(&acme, topic, Default::default()).await;
    create_sub(&acme, topic, "s", 10).await;
    acme.produce_once(topic, vec![msg("private"), msg("payload")])
        .await
        .unwrap();
    let got = fetch(&acme, topic, "s", 10, 0).await;
    assert_eq!(got.len(), 2);
    assert_eq!(ack(&acme, topic, "s", vec![0, 1]).await, 2);
    secret
}

#[tokio::test]
async fn a_broker_started_with_umask_022_keeps_its_data_dir_private() {
    let root = tempfile::tempdir().unwrap();
    let data = data_dir(&root);
    let token_file = root.path().join("operator.token");
    std::fs::write(&token_file, OPERATOR_TOKEN).unwrap();

    let server = serve_under_umask_022(&data, &token_file);
    let secret = use_the_broker(&server, "t").await;
    assert_private(&data, "while serving");
    assert_eq!(server.terminate(), Some(0));
    assert_private(&data, "after a graceful stop");

    // A data dir that an older version (or a copy by hand) left readable.
    for (path, is_dir, _) in modes(&data) {
        let mode = if is_dir { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let server = serve_under_umask_022(&data, &token_file);
    let acme = server.client(&secret).await;
    // Answered: the store is open (the "listening" line comes before it).
    assert_eq!(topic_stats(&acme, "t").await.messages, 2);
    assert_private(&data, "after reopening a readable data dir");
    acme.produce_once("t", vec![msg("after")]).await.unwrap();
    assert_eq!(topic_stats(&acme, "t").await.messages, 3);
    assert_eq!(server.terminate(), Some(0));
    assert_private(&data, "after the second run");
}
