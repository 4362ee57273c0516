//! Layered configuration: embedded defaults, then an optional TOML file, then
//! command-line flags and `TALLYQ_*` environment variables (applied by the
//! CLI), followed by [`Config::validate`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::clock::ClockKind;
// Old path of the default plan's name, kept while other branches still name it.
pub use crate::plan::DEFAULT_PLAN;
use crate::plan::{self, Plan};
use crate::storage::MinFreeDisk;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: toml::de::Error,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Everything `tallyq serve` needs. `Config::default()` is the embedded
/// default: a safe local broker with no config file at all.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the sled store and the generated operator credential live.
    pub data_dir: PathBuf,
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Prometheus listen address (served by the operations work).
    pub metrics_listen: SocketAddr,
    /// This broker's node id; it will be stamped on every ledger entry.
    pub node_id: String,
    /// `system` (default) or `manual` (test clock, moved by AdvanceClock).
    pub clock: ClockKind,
    /// Where a manual clock starts on the broker's first start, as an RFC
    /// 3339 instant (`"2026-12-01T00:00:00Z"`); only with `clock =
    /// "manual"`. Later starts resume at the reading last saved (time never
    /// moves back). Default: the wall clock at first start.
    pub clock_start: Option<String>,
    /// File holding the operator credential. Default: `<data_dir>/operator.token`,
    /// generated with mode 0600 on first start when missing.
    pub operator_token_file: Option<PathBuf>,
    /// How long in-flight RPCs may run after a shutdown signal.
    pub shutdown_grace_seconds: u64,
    /// sled page-cache size in bytes.
    pub cache_capacity_bytes: u64,
    /// Log format.
    pub log_format: LogFormat,
    /// Failed authentications one source address may make per minute before
    /// it is refused for the rest of that minute.
    pub failed_auth_per_minute: u32,
    /// The daily billing cut-off is 00:00 at this UTC offset, in minutes
    /// (e.g. 480 for UTC+8).
    pub billing_utc_offset_minutes: i32,
    /// File holding the billing-reader credential (reads every tenant's ledger
    /// and statements, changes nothing). Default: `<data_dir>/billing-reader.token`,
    /// generated with mode 0600 on first start when missing.
    pub billing_reader_token_file: Option<PathBuf>,
    /// PEM certificate chain for TLS; with `tls_key_file`, gRPC is served over TLS.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key for TLS.
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA bundle; when set, clients must present a certificate it signed.
    pub tls_client_ca_file: Option<PathBuf>,
    /// Tenants with their own label in metrics; the rest share `other`.
    pub metrics_max_tenant_labels: usize,
    /// How often the server settles ended days on its own, in seconds of real
    /// time (it also settles at once whenever the manual clock is advanced).
    pub settlement_interval_seconds: u64,
    /// Free space the data dir's file system must keep: below it, produce and
    /// topic/subscription creates are refused (`RESOURCE_EXHAUSTED`) while
    /// consume, ack, nack, seek, deletes, billing reads and settlement go on
    /// in the space left. Bytes (`1073741824`, the default: 1 GiB) or a share
    /// of the file system's size as a string (`"5%"`, below 100%); 0 turns it
    /// off. Checked before each group commit and once a second, so service
    /// resumes by itself about a second after space returns.
    pub min_free_disk_bytes: MinFreeDisk,
    /// How often, in seconds, background compaction rewrites mostly-dead
    /// segments (at most 64 MiB copied per pass); while the disk is below
    /// `min_free_disk_bytes` it runs every second without that budget.
    pub compaction_interval_seconds: u64,
    /// A sealed segment file with less than this percentage of its bytes
    /// still retained is compacted: its retained sets are copied to the
    /// active segment and the file deleted. 0 turns compaction off; at most 99.
    pub compact_below_live_percent: u8,
    /// Plans by name; `standard` is built in and may be overridden here.
    pub plans: BTreeMap<String, Plan>,
    /// How long a failed-authentication window lasts, in seconds of wall time
    /// (never the manual test clock): `failed_auth_per_minute` failures of a
    /// source address claiming one tenant pass, the next is refused with the
    /// rest of the window to wait. 60 by default (SPEC §4: 20 a minute).
    pub failed_auth_window_seconds: u64,
    /// Proxies as CIDR blocks (e.g. `["10.0.0.0/8", "::1/128"]`) whose
    /// `x-forwarded-for` names the client's address for failed-authentication
    /// counting; from any other peer the header is ignored. Empty by default.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// File holding the master key (64 hex digits) that wraps every tenant's
    /// data key (encryption at rest). Default: `<data_dir>/master.key`,
    /// generated with mode 0600 on first start when missing; keep it out of
    /// the data dir (a mounted secret) in production.
    pub master_key_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        let mut plans = BTreeMap::new();
        plan::add_builtin(&mut plans);
        Config {
            data_dir: PathBuf::from("./data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            node_id: "node-1".to_string(),
            clock: ClockKind::System,
            clock_start: None,
            operator_token_file: None,
            shutdown_grace_seconds: 10,
            cache_capacity_bytes: 256 * 1024 * 1024,
            log_format: LogFormat::Text,
            failed_auth_per_minute: 20,
            billing_utc_offset_minutes: 0,
            billing_reader_token_file: None,
            settlement_interval_seconds: 60,
            metrics_max_tenant_labels: 200,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
            min_free_disk_bytes: MinFreeDisk::DEFAULT,
            compaction_interval_seconds: 10,
            compact_below_live_percent: 50,
            plans,
            failed_auth_window_seconds: 60,
            trusted_proxies: Vec::new(),
            master_key_file: None,
        }
    }
}

impl Config {
    /// Reads a TOML file over the embedded defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Parses TOML text over the embedded defaults. The built-in `standard`
    /// plan stays available unless the text redefines it.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        let mut config: Config = toml::from_str(text)?;
        plan::add_builtin(&mut config.plans);
        Ok(config)
    }

    /// Checks ranges and consistency; run after all layers are applied.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id.is_empty() || self.node_id.len() > 64 {
            return Err(ConfigError::Invalid(
                "node_id must be 1 to 64 characters".into(),
            ));
        }
        if self.cache_capacity_bytes < 1024 * 1024 {
            return Err(ConfigError::Invalid(
                "cache_capacity_bytes must be at least 1 MiB".into(),
            ));
        }
        if !(-720..=840).contains(&self.billing_utc_offset_minutes) {
            return Err(ConfigError::Invalid(
                "billing_utc_offset_minutes must be between -720 and 840".into(),
            ));
        }
        if self.settlement_interval_seconds == 0 {
            return Err(ConfigError::Invalid(
                "settlement_interval_seconds must be at least 1".into(),
            ));
        }
        if self.compaction_interval_seconds == 0 || self.compact_below_live_percent > 99 {
            return Err(ConfigError::Invalid(
                "compaction_interval_seconds must be at least 1 and compact_below_live_percent \
                 at most 99"
                    .into(),
            ));
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(ConfigError::Invalid(
                "tls_cert_file and tls_key_file go together".into(),
            ));
        }
        if self.tls_client_ca_file.is_some() && self.tls_cert_file.is_none() {
            return Err(ConfigError::Invalid(
                "tls_client_ca_file needs tls_cert_file and tls_key_file".into(),
            ));
        }
        if self.failed_auth_per_minute == 0 {
            return Err(ConfigError::Invalid(
                "failed_auth_per_minute must be at least 1".into(),
            ));
        }
        if !(1..=3600).contains(&self.failed_auth_window_seconds) {
            return Err(ConfigError::Invalid(
                "failed_auth_window_seconds must be between 1 and 3600".into(),
            ));
        }
        if let Some(start) = &self.clock_start {
            if self.clock != ClockKind::Manual {
                return Err(ConfigError::Invalid(
                    "clock_start needs clock = \"manual\" (the system clock follows the wall clock)"
                        .into(),
                ));
            }
            if crate::clock::parse_rfc3339_ms(start).is_none() {
                return Err(ConfigError::Invalid(format!(
                    "clock_start '{start}' is not an RFC 3339 instant (e.g. \"2026-12-01T00:00:00Z\")"
                )));
            }
        }
        for (name, plan) in &self.plans {
            plan.validate()
                .map_err(|e| ConfigError::Invalid(format!("plan '{name}': {e}")))?;
        }
        Ok(())
    }

    /// The manual clock's configured start, Unix ms (after [`Config::validate`]).
    pub fn clock_start_ms(&self) -> Option<i64> {
        self.clock_start
            .as_deref()
            .and_then(crate::clock::parse_rfc3339_ms)
    }

    /// The operator credential file in effect.
    pub fn operator_token_path(&self) -> PathBuf {
        self.operator_token_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("operator.token"))
    }

    /// The billing-reader credential file in effect.
    pub fn billing_reader_token_path(&self) -> PathBuf {
        self.billing_reader_token_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("billing-reader.token"))
    }

    /// The master key file in effect.
    pub fn master_key_path(&self) -> PathBuf {
        self.master_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("master.key"))
    }

    /// The shutdown grace period.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe_and_local() {
        let c = Config::default();
        assert_eq!(c.listen.to_string(), "127.0.0.1:50051");
        assert_eq!(c.metrics_listen.to_string(), "127.0.0.1:9464");
        assert_eq!(c.node_id, "node-1");
        assert_eq!(c.clock, ClockKind::System);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn file_overrides_defaults_and_keeps_standard_plan() {
        let c = Config::from_toml(
            "clock = \"manual\"\nnode_id = \"node-7\"\n[plans.big]\nmax_topics = 50\n",
        )
        .unwrap();
        assert_eq!(c.clock, ClockKind::Manual);
        assert_eq!(c.node_id, "node-7");
        assert_eq!(c.plans["big"].max_topics, 50);
        assert_eq!(c.plans[DEFAULT_PLAN].max_topics, 5);
    }

    #[test]
    fn min_free_disk_takes_bytes_or_a_percentage() {
        assert_eq!(
            Config::default().min_free_disk_bytes,
            MinFreeDisk::bytes(1 << 30)
        );
        let c = Config::from_toml("min_free_disk_bytes = 5368709120").unwrap();
        assert_eq!(c.min_free_disk_bytes, MinFreeDisk::bytes(5 << 30));
        let c = Config::from_toml("min_free_disk_bytes = \"5%\"").unwrap();
        assert_eq!(c.min_free_disk_bytes.resolve(1000), 50);
        for bad in ["\"100%\"", "\"a lot\"", "-1"] {
            assert!(
                Config::from_toml(&format!("min_free_disk_bytes = {bad}")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(Config::from_toml("lisen = \"x\"").is_err());
    }
}
