//! The shard map: which independent broker (node) holds which tenant, the
//! node new tenants go to, and how the router in front of them listens.
//!
//! The operator edits it as TOML:
//!
//! ```toml
//! default_node = "node-1"
//!
//! [router]
//! listen = "0.0.0.0:8443"
//!
//! [nodes.node-1]
//! address = "10.0.0.1:50051"
//! [nodes.node-2]
//! address = "10.0.0.2:50051"
//!
//! [tenants]
//! acme = "node-1"
//! globex = "node-2"
//! ```
//!
//! A tenant's assignment is one `tenant = "node"` line of `[tenants]`, so a
//! tenant move flips exactly one line (and re-renders the router config);
//! [`ShardMap::to_toml`] writes the map back in this same layout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::tenancy::validate_tenant_id;

/// Why a shard map cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ShardMapError {
    /// The file could not be read.
    #[error("cannot read shard map {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not TOML of the shard-map schema.
    #[error("invalid shard map {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: toml::de::Error,
    },
    /// A value is out of range or the map is inconsistent.
    #[error("invalid shard map: {0}")]
    Invalid(String),
}

/// One broker: its node id (the key in `[nodes]`, the broker's `node_id`,
/// stamped on its ledger entries) and where the router reaches it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// `host:port` of the broker's gRPC listener (plaintext HTTP/2; the
    /// router-to-broker hop stays inside the cluster).
    pub address: String,
}

/// How the rendered nginx listens and times out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterSettings {
    /// `address:port` the router listens on for gRPC (HTTP/2).
    pub listen: String,
    /// PEM certificate chain: with `tls_key_file`, the router terminates TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<String>,
    /// PEM private key for TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<String>,
    /// How long a stream (Consume, ProduceStream, ExportData) or a long-poll
    /// may go without a byte in either direction before nginx drops it.
    pub stream_timeout_seconds: u64,
    /// An existing directory for nginx's pid file and temp dirs.
    pub runtime_dir: String,
    /// nginx `worker_processes` (`auto` or a count).
    pub worker_processes: String,
    /// Emit `http2 on;` (nginx 1.25.1 and later) instead of the `http2`
    /// parameter of `listen` (every nginx since 1.9.5, deprecated in 1.25.1).
    pub http2_directive: bool,
    /// Name servers for re-resolving node host names while running
    /// (`resolve` upstreams: nginx 1.27.3 and later). Needed when node
    /// addresses are DNS names whose addresses change, such as a
    /// StatefulSet's per-pod names; empty: names are resolved once, at start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolver: Option<String>,
}

impl Default for RouterSettings {
    fn default() -> Self {
        RouterSettings {
            listen: "127.0.0.1:50050".into(),
            tls_cert_file: None,
            tls_key_file: None,
            stream_timeout_seconds: 3600,
            runtime_dir: "/tmp".into(),
            worker_processes: "auto".into(),
            http2_directive: false,
            resolver: None,
        }
    }
}

/// The whole shard map, as the operator wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShardMap {
    /// The node new tenants are created on, and the target of requests that
    /// name neither a tenant nor a node.
    pub default_node: String,
    /// The router's own settings.
    #[serde(default)]
    pub router: RouterSettings,
    /// Nodes by node id.
    pub nodes: BTreeMap<String, Node>,
    /// Tenant id → node id. A tenant not listed here is unknown to the router.
    #[serde(default)]
    pub tenants: BTreeMap<String, String>,
}

impl ShardMap {
    /// Reads and validates a shard map file.
    pub fn from_file(path: &Path) -> Result<Self, ShardMapError> {
        let text = std::fs::read_to_string(path).map_err(|source| ShardMapError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let map: ShardMap = toml::from_str(&text).map_err(|source| ShardMapError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        map.validate()?;
        Ok(map)
    }

    /// Parses and validates shard-map TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ShardMapError> {
        let map: ShardMap = toml::from_str(text).map_err(|source| ShardMapError::Parse {
            path: PathBuf::from("<text>"),
            source,
        })?;
        map.validate()?;
        Ok(map)
    }

    /// The map as TOML in the layout the operator edits (comments are not
    /// kept): what a tenant move writes back after flipping an assignment.
    pub fn to_toml(&self) -> String {
        // Serializing plain strings, maps and integers cannot fail.
        toml::to_string(self).unwrap_or_default()
    }

    /// The node holding `tenant`, if the map lists it.
    pub fn node_of(&self, tenant: &str) -> Option<&str> {
        self.tenants.get(tenant).map(String::as_str)
    }

    /// Checks names, addresses and that every reference names a node.
    pub fn validate(&self) -> Result<(), ShardMapError> {
        let invalid = |m: String| Err(ShardMapError::Invalid(m));
        if self.nodes.is_empty() {
            return invalid("it names no node: add a [nodes.<id>] table".into());
        }
        for (id, node) in &self.nodes {
            validate_node_id(id)?;
            validate_address(&format!("node '{id}' address"), &node.address)?;
        }
        if !self.nodes.contains_key(&self.default_node) {
            return invalid(format!(
                "default_node '{}' is not one of [nodes]",
                self.default_node
            ));
        }
        for (tenant, node) in &self.tenants {
            validate_tenant_id(tenant).map_err(|e| ShardMapError::Invalid(e.to_string()))?;
            if !self.nodes.contains_key(node) {
                return invalid(format!(
                    "tenant '{tenant}' is assigned to node '{node}', which is not one of [nodes]"
                ));
            }
        }
        let r = &self.router;
        validate_address("router listen", &r.listen)?;
        if r.tls_cert_file.is_some() != r.tls_key_file.is_some() {
            return invalid("router tls_cert_file and tls_key_file go together".into());
        }
        for (what, value) in [
            ("router tls_cert_file", r.tls_cert_file.as_deref()),
            ("router tls_key_file", r.tls_key_file.as_deref()),
            ("router runtime_dir", Some(r.runtime_dir.as_str())),
            ("router resolver", r.resolver.as_deref()),
        ] {
            if let Some(value) = value {
                // Only the resolver line lists several words (addresses, valid=).
                validate_config_word(what, value, what == "router resolver")?;
            }
        }
        if r.worker_processes != "auto"
            && r.worker_processes.parse::<u16>().map_or(true, |n| n == 0)
        {
            return invalid(format!(
                "router worker_processes '{}' must be \"auto\" or a positive count",
                r.worker_processes
            ));
        }
        if !(1..=86_400 * 7).contains(&r.stream_timeout_seconds) {
            return invalid("router stream_timeout_seconds must be 1 to 604800".into());
        }
        Ok(())
    }
}

/// Node ids: 1 to 64 of `A-Z a-z 0-9 . _ -` (they become nginx upstream
/// names and `x-tallyq-node` header values).
fn validate_node_id(id: &str) -> Result<(), ShardMapError> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ShardMapError::Invalid(format!(
            "invalid node id '{id}': use 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'"
        )))
    }
}

/// `host:port` with a DNS name, an IPv4 address or a bracketed IPv6 address.
fn validate_address(what: &str, address: &str) -> Result<(), ShardMapError> {
    let bad = || {
        ShardMapError::Invalid(format!(
            "{what} '{address}' must be host:port (a DNS name, an IPv4 address or [IPv6]), \
             without a scheme"
        ))
    };
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
    };
    if port_ok && host_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// A value written into the nginx config as it is: no quotes, braces,
/// semicolons, `$` or control characters (spaces only where `spaces`).
fn validate_config_word(what: &str, value: &str, spaces: bool) -> Result<(), ShardMapError> {
    let ok = !value.is_empty()
        && value.chars().all(|c| {
            !c.is_control()
                && !matches!(c, '"' | '\'' | '{' | '}' | ';' | '$' | '\\' | '#')
                && (spaces || c != ' ')
        });
    if ok {
        Ok(())
    } else {
        Err(ShardMapError::Invalid(format!(
            "{what} '{value}' contains characters nginx would misread (quotes, braces, ';', '$', \
             '#', '\\', spaces or control characters)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = r#"
default_node = "node-1"
[nodes.node-1]
address = "127.0.0.1:50051"
[nodes.node-2]
address = "tallyq-1.tallyq.default.svc.cluster.local:50051"
[tenants]
acme = "node-1"
globex = "node-2"
"#;

    #[test]
    fn parses_and_round_trips() {
        let map = ShardMap::from_toml(MAP).unwrap();
        assert_eq!(map.node_of("globex"), Some("node-2"));
        assert_eq!(map.node_of("initech"), None);
        assert_eq!(map.router, RouterSettings::default());
        let mut moved = map.clone();
        moved.tenants.insert("globex".into(), "node-1".into());
        let again = ShardMap::from_toml(&moved.to_toml()).unwrap();
        assert_eq!(again, moved);
    }

    #[test]
    fn refuses_inconsistent_maps_with_reasons() {
        let cases = [
            (
                MAP.replace("default_node = \"node-1\"", "default_node = \"node-9\""),
                "default_node 'node-9'",
            ),
            (
                MAP.replace("globex = \"node-2\"", "globex = \"node-3\""),
                "assigned to node 'node-3'",
            ),
            (MAP.replace("acme =", "Acme ="), "invalid tenant id 'Acme'"),
            (
                MAP.replace("127.0.0.1:50051", "http://127.0.0.1:50051"),
                "without a scheme",
            ),
            (
                MAP.replace("[nodes.node-2]", "[nodes.\"node 2\"]"),
                "invalid node id 'node 2'",
            ),
            (
                format!("{MAP}\n[router]\nruntime_dir = \"/tmp;evil\"\n"),
                "nginx would misread",
            ),
            (format!("extra = 1\n{MAP}"), "unknown field"),
        ];
        for (text, expected) in cases {
            let error = ShardMap::from_toml(&text).unwrap_err().to_string();
            assert!(error.contains(expected), "{error} should say {expected}");
        }
    }
}
