//! `tallyq serve` start-up, as the built binary: it says it listens only
//! once every port is bound, the store is open and the credential files are
//! written; a failed start names what failed, exits 4 and creates nothing.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::cli::{tallyq, Run};
use crate::harness::*;

/// Every file and folder under `dir` (relative), sorted; empty when `dir`
/// does not exist.
fn tree(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            found.push(path.strip_prefix(dir).unwrap().display().to_string());
            if path.is_dir() {
                todo.push(path);
            }
        }
    }
    found.sort();
    found
}

/// `tallyq serve --data-dir DIR --listen 127.0.0.1:0 --metrics-listen METRICS EXTRA…` from `cwd`.
fn serve(cwd: &Path, data_dir: &Path, metrics: &str, extra: &[&str]) -> Run {
    let data_dir = data_dir.to_str().unwrap();
    let mut args = vec![
        "serve",
        "--data-dir",
        data_dir,
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        metrics,
    ];
    args.extend_from_slice(extra);
    tallyq(cwd, &args, None)
}

/// Asserts a failed start: exit code 4, one `error:` line containing
/// `expected`, never "listening".
fn assert_failed_start(run: &Run, expected: &str) {
    assert_eq!(
        run.code,
        Some(4),
        "stdout: {} stderr: {}",
        run.stdout,
        run.stderr
    );
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    assert!(
        errors[0].contains(expected),
        "{expected:?} in {}",
        errors[0]
    );
    assert!(!run.stdout.contains("listening"), "{}", run.stdout);
}

#[tokio::test]
async fn listening_is_said_after_the_ports_the_store_and_the_credential_are_ready() {
    let root = tempfile::tempdir().unwrap();
    let dir = data_dir(&root);
    let metrics = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tallyq"))
        .args(["serve", "--listen", "127.0.0.1:0", "--metrics-listen"])
        .arg(metrics.to_string())
        .arg("--data-dir")
        .arg(&dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let credential = lines.next().unwrap().unwrap();
    assert_eq!(
        credential,
        format!(
            "operator credential: {}/operator.token (generated now, mode 0600)",
            dir.display()
        )
    );
    let master_key = lines.next().unwrap().unwrap();
    assert!(
        master_key.starts_with(&format!(
            "master key: {}/master.key (generated now, mode 0600",
            dir.display()
        )),
        "{master_key}"
    );
    let listening = lines.next().unwrap().unwrap();
    assert!(
        listening.starts_with("tallyq listening on 127.0.0.1:"),
        "{listening}"
    );
    // Right when it says so: the credential is on disk, the store is open,
    // and the metrics port answers.
    assert!(std::fs::read_to_string(dir.join("operator.token"))
        .unwrap()
        .starts_with("tqop_"));
    assert!(dir.join("db").is_dir());
    std::net::TcpStream::connect(metrics).expect("the metrics port is bound");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn a_second_broker_on_the_same_data_dir_is_told_another_uses_it() {
    let root = tempfile::tempdir().unwrap();
    let dir = data_dir(&root);
    let first = ProcessServer::start(&dir);
    first.operator().await; // up
    let before = tree(&dir);
    let token = dir.with_extension("token");
    let run = serve(
        root.path(),
        &dir,
        &free_port().to_string(),
        &["--operator-token-file", token.to_str().unwrap()],
    );
    assert_failed_start(
        &run,
        &format!(
            "cannot open the data directory {}: another broker is using it",
            dir.display()
        ),
    );
    assert_eq!(tree(&dir), before, "nothing created");
    drop(first);
}

#[test]
fn a_busy_metrics_port_is_named_and_nothing_is_created() {
    let root = tempfile::tempdir().unwrap();
    let dir = data_dir(&root);
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = busy.local_addr().unwrap().to_string();
    let run = serve(root.path(), &dir, &address, &[]);
    assert_failed_start(&run, &format!("cannot serve metrics on {address}"));
    assert!(!dir.exists(), "no data dir");
    assert_eq!(
        tree(root.path()),
        Vec::<String>::new(),
        "no token file either"
    );
}

#[test]
fn a_busy_grpc_port_is_named() {
    let root = tempfile::tempdir().unwrap();
    let dir = data_dir(&root);
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = busy.local_addr().unwrap().to_string();
    let run = tallyq(
        root.path(),
        &[
            "serve",
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen",
            &address,
        ],
        None,
    );
    assert_failed_start(&run, &format!("cannot listen on {address}"));
    assert!(!dir.exists());
}

#[test]
fn a_data_dir_that_cannot_be_one_is_named_and_left_as_it_was() {
    // Root ignores permission bits, so the unusable data dir is a file in
    // its place (which root cannot make a directory either).
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("data");
    std::fs::write(&file, "not a directory").unwrap();
    let metrics = free_port().to_string();
    let run = serve(root.path(), &file, &metrics, &[]);
    assert_failed_start(
        &run,
        &format!(
            "cannot use the data directory {}: it is not a directory",
            file.display()
        ),
    );
    let below = file.join("sub");
    let run = serve(root.path(), &below, &metrics, &[]);
    assert_failed_start(&run, &format!("{} is not a directory", file.display()));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a directory");
    assert_eq!(
        tree(root.path()),
        vec!["data".to_string()],
        "nothing created"
    );
}

#[test]
fn a_credential_that_cannot_be_written_leaves_no_data_dir() {
    let root = tempfile::tempdir().unwrap();
    let dir = data_dir(&root);
    // A dangling symbolic link: reading finds no credential (so one is
    // generated), writing it new fails, for root too, after the store opened.
    let token = root.path().join("operator.token");
    std::os::unix::fs::symlink(root.path().join("missing").join("target"), &token).unwrap();
    let run = serve(
        root.path(),
        &dir,
        &free_port().to_string(),
        &["--operator-token-file", token.to_str().unwrap()],
    );
    assert_failed_start(&run, &format!("credential file {}", token.display()));
    assert!(!dir.exists(), "the data dir this start created is gone");
    assert_eq!(tree(root.path()), vec!["operator.token".to_string()]);
}

#[test]
fn a_placeholder_credential_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = data_dir(&root);
    let token = root.path().join("operator.token");
    std::fs::write(&token, "REPLACE-WITH-A-LONG-RANDOM-OPERATOR-TOKEN\n").unwrap();
    let run = serve(
        root.path(),
        &dir,
        &free_port().to_string(),
        &["--operator-token-file", token.to_str().unwrap()],
    );
    assert_failed_start(
        &run,
        "holds the placeholder 'REPLACE-WITH-A-LONG-RANDOM-OPERATOR-TOKEN'",
    );
    assert!(!dir.exists());
}
