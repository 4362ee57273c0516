//! Starts real brokers for the tests: in-process on an ephemeral loopback
//! port with a temp data dir (fast), or as the built `tallyq` binary (for
//! restarts and SIGKILL crashes). Both are driven through the real client.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tallyq::client::Client;
use tallyq::clock::ClockKind;
use tallyq::config::Config;
use tallyq::proto::v1 as pb;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The operator credential every test server uses.
pub const OPERATOR_TOKEN: &str = "tqop_test_operator_credential_0123456789";
/// The billing-reader credential every test server uses.
pub const BILLING_READER_TOKEN: &str = "tqbr_test_billing_reader_credential_0123456789";

/// A broker running inside the test process.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    /// Keeps the data dir alive.
    _dir: TempDir,
    /// Where /metrics is served.
    pub metrics: std::net::SocketAddr,
    /// The broker's data directory.
    pub data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), tallyq::server::ServerError>>>,
}

/// The disk watermark of test servers: far below the 1 GiB default, so that
/// only the tests about it (disk_watermark) depend on how full the machine's
/// disk is.
pub const TEST_MIN_FREE_DISK: &str = "16777216";

/// A test config: manual clock, temp data dir, known operator credential.
pub fn test_config(dir: &Path) -> Config {
    let token_file = dir.join("operator.token");
    std::fs::write(&token_file, OPERATOR_TOKEN).unwrap();
    let reader_file = dir.join("billing-reader.token");
    std::fs::write(&reader_file, BILLING_READER_TOKEN).unwrap();
    Config {
        data_dir: dir.join("data"),
        metrics_listen: free_port(),
        clock: ClockKind::Manual,
        operator_token_file: Some(token_file),
        billing_reader_token_file: Some(reader_file),
        shutdown_grace_seconds: 5,
        cache_capacity_bytes: 16 * 1024 * 1024,
        min_free_disk_bytes: TEST_MIN_FREE_DISK.parse().unwrap(),
        ..Config::default()
    }
}

/// A loopback address whose port was free a moment ago (for the metrics
/// endpoint, whose exporter binds by address).
/// `--metrics-listen` for a broker process whose metrics a test does not
/// scrape: the kernel picks the port when the broker binds it, so no other
/// test can take it in between (as it can a [`free_port`] under load).
pub const EPHEMERAL_METRICS: &str = "127.0.0.1:0";

/// A loopback address free a moment ago. Another process may take it before
/// the caller binds it: use it only where the test must know the port first.
pub fn free_port() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

impl TestServer {
    /// Starts a broker with the test config.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts a broker after letting the test adjust the config.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        adjust(&mut config);
        let metrics = config.metrics_listen;
        let data_dir = config.data_dir.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(tallyq::run(config, listener, async {
            let _ = stopped.await;
        }));
        TestServer {
            address,
            metrics,
            data_dir,
            _dir: dir,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    /// A client with the operator credential.
    pub async fn operator(&self) -> Client {
        Client::connect(&self.address, OPERATOR_TOKEN)
            .await
            .unwrap()
    }

    /// A client with no credential.
    pub async fn anonymous(&self) -> Client {
        Client::connect(&self.address, "").await.unwrap()
    }

    /// Creates a tenant and returns a client holding an all-scopes key.
    pub async fn tenant(&self, id: &str) -> Client {
        let operator = self.operator().await;
        create_tenant(&operator, id).await;
        let secret = create_key(&operator, id, &[1, 2, 3], &[]).await;
        operator.with_token(&secret).unwrap()
    }

    /// Stops the broker gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Creates a tenant.
pub async fn create_tenant(operator: &Client, id: &str) {
    operator
        .operator()
        .create_tenant(pb::CreateTenantRequest {
            id: id.into(),
            display_name: format!("Tenant {id}"),
            contact_email: format!("ops@{id}.example"),
            plan: String::new(),
        })
        .await
        .unwrap();
}

/// Issues a key and returns its secret.
pub async fn create_key(
    operator: &Client,
    tenant: &str,
    scopes: &[i32],
    topics: &[&str],
) -> String {
    operator
        .operator()
        .create_api_key(pb::CreateApiKeyRequest {
            tenant: tenant.into(),
            scopes: scopes.to_vec(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            description: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .secret
}

/// Raises a tenant's rate quotas far above anything a test sends.
pub async fn lift_rate_limits(operator: &Client, tenant: &str) {
    set_overrides(
        operator,
        tenant,
        &[
            ("produce_units_per_second", 1_000_000_000),
            ("produce_burst_units", 1_000_000_000),
            ("consume_units_per_second_per_topic", 1_000_000_000),
            ("control_calls_per_second", 1_000_000),
        ],
    )
    .await;
}

/// Sets per-tenant quota overrides.
pub async fn set_overrides(operator: &Client, tenant: &str, overrides: &[(&str, u64)]) {
    operator
        .operator()
        .update_tenant(pb::UpdateTenantRequest {
            id: tenant.into(),
            set_quota_overrides: overrides.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// Creates tenant `id` whose delivery bytes outstanding are limited to
/// `limit`, with rates that do not bind; returns its key's secret (every
/// scope). The Fetch-credit tests start from it.
pub async fn delivery_limited_tenant(server: &TestServer, id: &str, limit: u64) -> String {
    let operator = server.operator().await;
    create_tenant(&operator, id).await;
    lift_rate_limits(&operator, id).await;
    set_overrides(&operator, id, &[("max_outstanding_delivery_bytes", limit)]).await;
    create_key(&operator, id, &[1, 2, 3], &[]).await
}

/// Delivery bytes the client's tenant has outstanding, as its GetQuota says.
pub async fn outstanding_delivery_bytes(client: &Client) -> u64 {
    client
        .admin()
        .get_quota(pb::GetQuotaRequest {})
        .await
        .unwrap()
        .into_inner()
        .quotas
        .into_iter()
        .find(|q| q.name == "max_outstanding_delivery_bytes")
        .expect("GetQuota names max_outstanding_delivery_bytes")
        .used
}

/// A message with a text payload.
pub fn msg(payload: &str) -> pb::Message {
    pb::Message {
        payload: payload.as_bytes().to_vec().into(),
        ..Default::default()
    }
}

/// Payload of a delivery as text.
pub fn text(d: &pb::Delivery) -> String {
    String::from_utf8_lossy(&d.message.as_ref().unwrap().payload).into_owned()
}

/// Creates a topic with the given config (defaults where zero).
pub async fn create_topic(client: &Client, name: &str, config: pb::TopicConfig) -> pb::Topic {
    client
        .admin()
        .create_topic(pb::CreateTopicRequest {
            name: name.into(),
            config: Some(config),
        })
        .await
        .unwrap()
        .into_inner()
}

/// Creates a subscription with a lock time (0 = at-most-once).
pub async fn create_sub(client: &Client, topic: &str, name: &str, lock_seconds: u32) {
    client
        .admin()
        .create_subscription(pb::CreateSubscriptionRequest {
            topic: topic.into(),
            name: name.into(),
            config: Some(pb::SubscriptionConfig {
                lock_seconds,
                ..Default::default()
            }),
            start: 0,
        })
        .await
        .unwrap();
}

/// Fetches up to `max` messages, waiting up to `wait_ms`.
pub async fn fetch(
    client: &Client,
    topic: &str,
    sub: &str,
    max: u32,
    wait_ms: u32,
) -> Vec<pb::Delivery> {
    client
        .broker()
        .fetch(pb::FetchRequest {
            topic: topic.into(),
            subscription: sub.into(),
            max_messages: max,
            max_wait_ms: wait_ms,
        })
        .await
        .unwrap()
        .into_inner()
        .deliveries
}

/// Acks offsets; returns how many were pending.
pub async fn ack(client: &Client, topic: &str, sub: &str, offsets: Vec<u64>) -> u32 {
    client
        .broker()
        .ack(pb::AckRequest {
            topic: topic.into(),
            subscription: sub.into(),
            offsets,
        })
        .await
        .unwrap()
        .into_inner()
        .acknowledged
}

/// Moves the manual clock; returns the new time.
pub async fn advance(operator: &Client, ms: u64) -> i64 {
    operator
        .operator()
        .advance_clock(pb::AdvanceClockRequest { advance_ms: ms })
        .await
        .unwrap()
        .into_inner()
        .now_unix_ms
}

const DAY_MS: i64 = 86_400_000;

/// Moves the manual clock to just after the next UTC midnight; returns the
/// (UTC) date that just ended, as YYYY-MM-DD.
pub async fn advance_past_midnight(operator: &Client) -> String {
    let now = advance(operator, 1).await;
    let ended = now.div_euclid(DAY_MS);
    let to_midnight = (ended + 1) * DAY_MS - now;
    advance(operator, to_midnight as u64 + 1_000).await;
    day_name(ended)
}

/// YYYY-MM-DD of a UTC day number.
pub fn day_name(day: i64) -> String {
    tallyq::metering::Calendar::new(0).day_name(day)
}

/// All ledger entries, with any credential that may read them.
pub async fn ledger(client: &Client) -> Vec<pb::LedgerEntry> {
    client
        .billing()
        .list_ledger_entries(pb::ListLedgerEntriesRequest {
            from_sequence: 1,
            limit: 1000,
        })
        .await
        .unwrap()
        .into_inner()
        .entries
}

/// Topic figures.
pub async fn topic_stats(client: &Client, name: &str) -> pb::TopicStats {
    client
        .admin()
        .get_topic(pb::GetTopicRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap()
}

/// Subscription figures.
pub async fn sub_stats(client: &Client, topic: &str, name: &str) -> pb::SubscriptionStats {
    client
        .admin()
        .get_subscription(pb::GetSubscriptionRequest {
            topic: topic.into(),
            name: name.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap()
}

/// The broker as a separate process of the built binary, for restarts and
/// SIGKILL. Its data dir outlives it so the next process reopens it.
pub struct ProcessServer {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    child: Child,
}

impl ProcessServer {
    /// Starts `tallyq serve` on `data_dir` with the manual clock and the test
    /// operator credential (written next to the data dir).
    pub fn start(data_dir: &Path) -> ProcessServer {
        Self::start_with(data_dir, &[])
    }

    /// [`ProcessServer::start`] with `extra` arguments after the usual ones
    /// (a `--config` file, a master key file, …).
    pub fn start_with(data_dir: &Path, extra: &[&std::ffi::OsStr]) -> ProcessServer {
        let token_file = data_dir.with_extension("token");
        std::fs::write(&token_file, OPERATOR_TOKEN).unwrap();
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "serve".as_ref(),
            "--metrics-listen".as_ref(),
            EPHEMERAL_METRICS.as_ref(),
            "--data-dir".as_ref(),
            data_dir.as_os_str(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--clock".as_ref(),
            "manual".as_ref(),
            "--operator-token-file".as_ref(),
            token_file.as_os_str(),
            "--min-free-disk-bytes".as_ref(),
            TEST_MIN_FREE_DISK.as_ref(),
        ];
        args.extend_from_slice(extra);
        Self::spawn(&args)
    }

    /// Like [`ProcessServer::start`], but a broker that exits before it
    /// listens (it refused its data dir) is `Err` with what it printed to
    /// standard error.
    pub fn try_start(data_dir: &Path) -> Result<ProcessServer, String> {
        let token_file = data_dir.with_extension("token");
        std::fs::write(&token_file, OPERATOR_TOKEN).unwrap();
        let stderr_path = data_dir.with_extension("stderr");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tallyq"))
            .arg("serve")
            .args(["--metrics-listen", EPHEMERAL_METRICS])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0", "--clock", "manual"])
            .arg("--operator-token-file")
            .arg(&token_file)
            .args(["--min-free-disk-bytes", TEST_MIN_FREE_DISK])
            // "tallyq serving" (info) comes once the store is open and loaded.
            .env("RUST_LOG", "warn,tallyq::server=info")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start tallyq");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let address = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(addr) = line.strip_prefix("tallyq listening on ") {
                        break format!("http://{addr}");
                    }
                }
                _ => {
                    child.wait().unwrap();
                    return Err(std::fs::read_to_string(&stderr_path).unwrap_or_default());
                }
            }
        };
        std::thread::spawn(move || for _ in lines {});
        // It listens before it opens the store: wait for serving or exit.
        let since = std::time::Instant::now();
        loop {
            let printed = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            if printed.contains("tallyq serving") {
                return Ok(ProcessServer { address, child });
            }
            if child.try_wait().unwrap().is_some() {
                return Err(std::fs::read_to_string(&stderr_path).unwrap_or_default());
            }
            assert!(
                since.elapsed() < Duration::from_secs(60),
                "tallyq neither served nor exited within a minute: {printed}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the binary with exactly these arguments and waits for its
    /// "listening on" line.
    pub fn spawn(args: &[&std::ffi::OsStr]) -> ProcessServer {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tallyq"));
        command.args(args);
        Self::spawn_command(command)
    }

    /// Runs `command` (the binary, possibly behind a wrapper such as `sh -c`)
    /// and waits for its "listening on" line.
    pub fn spawn_command(mut command: Command) -> ProcessServer {
        let mut child = command
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tallyq");
        let stdout = child.stdout.take().unwrap();
        // What the broker said on stderr, kept so a failed start says why.
        let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let stderr = child.stderr.take().unwrap();
        let kept = said.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut kept = kept.lock().unwrap();
                kept.push(line);
                if kept.len() > 40 {
                    kept.remove(0);
                }
            }
        });
        let mut lines = BufReader::new(stdout).lines();
        let address = loop {
            let Some(Ok(line)) = lines.next() else {
                let status = child.wait().unwrap();
                let _ = reader.join();
                panic!(
                    "tallyq exited before listening ({status}); its stderr:\n{}",
                    said.lock().unwrap().join("\n")
                );
            };
            if let Some(addr) = line.strip_prefix("tallyq listening on ") {
                break format!("http://{addr}");
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        ProcessServer { address, child }
    }

    /// A client with the operator credential (retries while the server starts).
    pub async fn operator(&self) -> Client {
        self.client(OPERATOR_TOKEN).await
    }

    /// A client with `token`.
    pub async fn client(&self, token: &str) -> Client {
        for _ in 0..100 {
            if let Ok(client) = Client::connect(&self.address, token).await {
                return client;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("cannot connect to {}", self.address);
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap().code()
    }
}

impl Drop for ProcessServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh directory path for a process server's data.
pub fn data_dir(root: &TempDir) -> PathBuf {
    root.path().join("data")
}

/// Every line of the tenant's ExportData, parsed.
pub async fn export_lines(client: &Client) -> Vec<serde_json::Value> {
    let mut stream = client
        .admin()
        .export_data(pb::ExportDataRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut text = Vec::new();
    while let Some(chunk) = tokio_stream::StreamExt::next(&mut stream).await {
        text.extend_from_slice(&chunk.expect("the export does not fail").jsonl);
    }
    String::from_utf8(text)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
