//! The CLI as a user runs it: the built binary against a real broker (a
//! `ProcessServer`), asserting what it prints on stdout and stderr and the
//! exit code. Every run sets `RUST_BACKTRACE=1` (common in Rust shops): no
//! error may print a backtrace anyway.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use tallyq::proto::v1 as pb;

use crate::harness::*;

/// What one run of the binary printed and how it ended.
pub struct Run {
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `tallyq ARGS` in `cwd` with no TALLYQ_* variable from the test's
/// environment, RUST_BACKTRACE=1, and `stdin` on its standard input.
pub fn tallyq(cwd: &Path, args: &[&str], stdin: Option<&[u8]>) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tallyq"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TALLYQ_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .current_dir(cwd)
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LOG", "warn")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tallyq");
    let mut input = child.stdin.take().unwrap();
    let feeder = stdin.map(|bytes| {
        let bytes = bytes.to_vec();
        std::thread::spawn(move || input.write_all(&bytes))
    });
    let out = child.wait_with_output().unwrap();
    if let Some(feeder) = feeder {
        feeder.join().unwrap().unwrap();
    }
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// `tallyq --server ADDRESS --token TOKEN ARGS` from `cwd`.
fn client(server: &ProcessServer, token: &str, cwd: &Path, args: &[&str]) -> Run {
    let mut all = vec!["--server", server.address.as_str(), "--token", token];
    all.extend_from_slice(args);
    tallyq(cwd, &all, None)
}

/// Asserts the run succeeded and returns its stdout.
fn ok(run: Run) -> String {
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    run.stdout
}

/// A tenant `acme` with an all-scopes key and a topic `t`; returns the key.
fn acme_with_topic(server: &ProcessServer, cwd: &Path) -> String {
    ok(client(
        server,
        OPERATOR_TOKEN,
        cwd,
        &["tenant", "create", "acme"],
    ));
    let key = ok(client(
        server,
        OPERATOR_TOKEN,
        cwd,
        &["key", "create", "acme", "--scope", "produce,consume,manage"],
    ));
    let key = key.trim().to_string();
    ok(client(server, &key, cwd, &["topic", "create", "t"]));
    key
}

#[tokio::test]
async fn a_refusal_is_one_line_with_the_code_name_and_exit_code_1() {
    let root = tempfile::tempdir().unwrap();
    let server = ProcessServer::start(&data_dir(&root));
    let run = client(
        &server,
        OPERATOR_TOKEN,
        root.path(),
        &["tenant", "get", "acme"],
    );
    assert_eq!(run.code, Some(1));
    assert_eq!(run.stderr, "error: NOT_FOUND: tenant 'acme' not found\n");
    assert_eq!(run.stdout, "");

    let run = client(
        &server,
        "tq_wrong_credential_000000000",
        root.path(),
        &["usage"],
    );
    assert_eq!(run.code, Some(1));
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.starts_with("error: UNAUTHENTICATED: "),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn no_credential_gets_a_hint_saying_where_one_comes_from() {
    let root = tempfile::tempdir().unwrap();
    let server = ProcessServer::start(&data_dir(&root));
    // The cwd has no ./data/operator.token.
    let cwd = tempfile::tempdir().unwrap();
    let run = tallyq(
        cwd.path(),
        &["--server", &server.address, "tenant", "list"],
        None,
    );
    assert_eq!(run.code, Some(1));
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stderr);
    assert!(
        lines[0].starts_with("error: UNAUTHENTICATED: "),
        "{}",
        lines[0]
    );
    for source in ["--token", "TALLYQ_TOKEN", "./data/operator.token"] {
        assert!(
            lines[1].starts_with("hint: ") && lines[1].contains(source),
            "{}",
            lines[1]
        );
    }
    // With a (wrong) credential there is no hint: the credential is the problem.
    let run = client(
        &server,
        "tq_wrong_credential_000000000",
        cwd.path(),
        &["tenant", "list"],
    );
    assert!(!run.stderr.contains("hint:"), "{}", run.stderr);
}

#[tokio::test]
async fn an_unreachable_broker_exits_3_and_usage_errors_exit_2() {
    let cwd = tempfile::tempdir().unwrap();
    let nobody = format!("http://{}", free_port());
    let run = tallyq(
        cwd.path(),
        &[
            "--server",
            &nobody,
            "--token",
            OPERATOR_TOKEN,
            "tenant",
            "list",
        ],
        None,
    );
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr
            .starts_with(&format!("error: cannot connect to {nobody}")),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("backtrace"), "{}", run.stderr);

    let run = tallyq(cwd.path(), &["tenant", "create"], None);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    let run = tallyq(cwd.path(), &["produce", "t", "--batch", "0"], None);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
}

#[tokio::test]
async fn a_usage_mistake_clap_cannot_see_exits_2() {
    let root = tempfile::tempdir().unwrap();
    let server = ProcessServer::start(&data_dir(&root));
    let key = acme_with_topic(&server, root.path());
    let run = client(&server, &key, root.path(), &["seek", "t", "s"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "error: say where to seek: --earliest, --latest, --offset N or --timestamp-ms T\n"
    );
}

#[test]
fn help_groups_the_client_flags_and_keeps_them_out_of_serve() {
    let cwd = tempfile::tempdir().unwrap();
    let top = ok(tallyq(cwd.path(), &["--help"], None));
    assert!(top.contains("Exit codes: 0 done; 1 refused"), "{top}");
    let create = ok(tallyq(cwd.path(), &["tenant", "create", "--help"], None));
    let (own, clients) = create
        .split_once("Client options")
        .expect("a heading for the client flags");
    assert!(
        !own.contains("--server") && !own.contains("--tls-ca"),
        "{create}"
    );
    assert!(
        clients.contains("--server") && clients.contains("--tls-key"),
        "{create}"
    );
    let plan = create.lines().find(|l| l.contains("--plan")).unwrap();
    assert_eq!(plan.matches("default").count(), 1, "{plan}");
    assert!(!create.contains("[default: \"\"]"), "{create}");

    let serve = ok(tallyq(cwd.path(), &["serve", "--help"], None));
    for client_flag in [
        "--server",
        "--token ",
        "--token-file",
        "--tls-ca",
        "--tls-domain",
        "--tls-cert ",
        "--tls-key ",
    ] {
        assert!(
            !serve.contains(client_flag),
            "{client_flag} in serve --help:\n{serve}"
        );
    }
    assert!(serve.contains("--tls-cert-file") && serve.contains("--metrics-listen"));

    let terminate = ok(tallyq(cwd.path(), &["tenant", "terminate", "--help"], None));
    assert!(
        terminate
            .lines()
            .next()
            .unwrap()
            .ends_with("(cannot be undone)"),
        "{terminate}"
    );
    let statement = ok(tallyq(cwd.path(), &["statement", "--help"], None));
    assert!(
        statement.contains("statement [OPTIONS] [TENANT] <MONTH>"),
        "{statement}"
    );
}

#[tokio::test]
async fn produce_from_stdin_splits_by_bytes_and_count_and_prints_every_offset() {
    let root = tempfile::tempdir().unwrap();
    let server = ProcessServer::start(&data_dir(&root));
    let key = acme_with_topic(&server, root.path());
    // 100 lines of 100 KB: 10 MB, over the 4 MiB batch limit as one batch of 100.
    let line = "x".repeat(100_000);
    let input: String = (0..100).map(|_| format!("{line}\n")).collect();
    let mut args = vec!["--server", server.address.as_str(), "--token", key.as_str()];
    args.extend(["produce", "t"]);
    let run = tallyq(root.path(), &args, Some(input.as_bytes()));
    let stdout = ok(run);
    let expected: String = (0..100).map(|i| format!("offset={i}\n")).collect();
    assert_eq!(stdout, expected);
    let topics = ok(client(&server, &key, root.path(), &["topic", "list"]));
    assert!(topics.starts_with("t\tmessages=100\t"), "{topics}");

    // Split by count too: with at most 3 messages a batch for this tenant,
    // 7 lines in batches of 3 are all stored (one batch of 7 would be refused).
    ok(client(
        &server,
        OPERATOR_TOKEN,
        root.path(),
        &[
            "tenant",
            "update",
            "acme",
            "--set-quota",
            "max_batch_messages=3",
        ],
    ));
    let mut args = vec!["--server", server.address.as_str(), "--token", key.as_str()];
    args.extend(["produce", "t", "--batch", "3"]);
    let seven = "1\n2\n3\n4\n5\n6\n7\n";
    let stdout = ok(tallyq(root.path(), &args, Some(seven.as_bytes())));
    let expected: String = (100..107).map(|i| format!("offset={i}\n")).collect();
    assert_eq!(stdout, expected);
    args.truncate(args.len() - 2);
    let refused = tallyq(root.path(), &args, Some(seven.as_bytes()));
    assert_eq!(refused.code, Some(1), "one batch of 7: {}", refused.stderr);
    assert!(
        refused
            .stderr
            .starts_with("error: INVALID_ARGUMENT: batch of 7 messages"),
        "{}",
        refused.stderr
    );

    // Arguments print the same way.
    let stdout = ok(client(
        &server,
        &key,
        root.path(),
        &["produce", "t", "a", "b"],
    ));
    assert_eq!(stdout, "offset=107\noffset=108\n");
}

#[tokio::test]
async fn ledger_export_says_where_to_resume() {
    let root = tempfile::tempdir().unwrap();
    let server = ProcessServer::start(&data_dir(&root));
    let key = acme_with_topic(&server, root.path());
    ok(client(&server, &key, root.path(), &["produce", "t", "a"]));
    let ended = advance_past_midnight(&server.operator().await).await;
    let entries = ledger(&server.operator().await).await;
    assert!(!entries.is_empty(), "the day {ended} was settled");
    let last = entries.last().unwrap().sequence;

    let run = client(&server, OPERATOR_TOKEN, root.path(), &["ledger", "export"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), entries.len());
    assert_eq!(
        run.stderr,
        format!(
            "exported {} entries\nnext: --from {}\n",
            entries.len(),
            last + 1
        )
    );
    let from = (last + 1).to_string();
    let run = client(
        &server,
        OPERATOR_TOKEN,
        root.path(),
        &["ledger", "export", "--from", &from],
    );
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        format!("exported 0 entries\nnext: --from {from}\n")
    );

    // A tenant key may omit the tenant of its statement; the operator names it.
    let month = &ended[..7];
    let own = ok(client(&server, &key, root.path(), &["statement", month]));
    assert!(own.starts_with(&format!("statement acme {month}")), "{own}");
    let named = ok(client(
        &server,
        OPERATOR_TOKEN,
        root.path(),
        &["statement", "acme", month],
    ));
    assert_eq!(own, named);
}

#[test]
fn an_unknown_config_key_is_explained_once() {
    let cwd = tempfile::tempdir().unwrap();
    std::fs::write(cwd.path().join("bad.toml"), "lisen = \"127.0.0.1:1\"\n").unwrap();
    let run = tallyq(cwd.path(), &["serve", "--config", "bad.toml"], None);
    assert_eq!(run.code, Some(4), "{}", run.stderr);
    assert!(
        run.stderr
            .starts_with("error: invalid config file bad.toml"),
        "{}",
        run.stderr
    );
    assert_eq!(
        run.stderr.matches("unknown field `lisen`").count(),
        1,
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("Stack backtrace"), "{}", run.stderr);
    assert!(!cwd.path().join("data").exists(), "nothing created");
}

#[tokio::test]
async fn the_export_names_the_overflow_policy_as_the_api_does() {
    let server = TestServer::start().await;
    let acme = server.tenant("acme").await;
    create_topic(
        &acme,
        "t",
        pb::TopicConfig {
            overflow_policy: pb::OverflowPolicy::RefuseProduce as i32,
            ..Default::default()
        },
    )
    .await;
    let lines = export_lines(&acme).await;
    let topic = lines.iter().find(|l| l["type"] == "topic").unwrap();
    assert_eq!(topic["overflow_policy"], "OVERFLOW_POLICY_REFUSE_PRODUCE");
    assert_eq!(
        pb::OverflowPolicy::RefuseProduce.as_str_name(),
        "OVERFLOW_POLICY_REFUSE_PRODUCE",
        "the proto's own name"
    );
}
