//! Renders the router: an nginx config that sends each gRPC request to the
//! broker holding the tenant named by its API key.
//!
//! How a request is routed, in order:
//!
//! 1. `authorization: Bearer tq_<tenant>_…` (SPEC §3: the tenant is readable
//!    from the key) naming a tenant of the map → that tenant's node. An
//!    `x-tallyq-node` header is ignored then, so a tenant key cannot be aimed
//!    at another node.
//! 2. Such a key naming a tenant the map does not list → the router answers
//!    `UNAUTHENTICATED` with the broker's own bad-key message, so a caller
//!    cannot tell an unknown tenant from a wrong secret.
//! 3. Anything else (no credential: health, reflection; the operator or
//!    billing-reader token; a malformed key) names no tenant → the node in
//!    `x-tallyq-node`, else the default node. The default node because it is
//!    where new tenants are created and where health checks through the
//!    router should land when they say nothing; a malformed key gets the
//!    broker's own UNAUTHENTICATED there. An `x-tallyq-node` naming no node
//!    is answered with `NOT_FOUND`.
//!
//! A node that cannot be reached is answered with `UNAVAILABLE` (retry), not
//! nginx's HTML 502. Streams and long-polls get `stream_timeout_seconds` in
//! every direction; request bodies are not size-capped by nginx (the broker
//! enforces its own limits and answers with its own messages).

use std::fmt::Write;

use super::map::ShardMap;
use crate::tenancy::INVALID_API_KEY_MESSAGE;

/// The header an operator (or a billing job) sets to reach one node through
/// the router with a credential that names no tenant.
pub const NODE_HEADER: &str = "x-tallyq-node";

/// The message of a router-side `NOT_FOUND` for an `x-tallyq-node` naming no node.
pub const UNKNOWN_NODE_MESSAGE: &str =
    "the x-tallyq-node header names no node of the router's shard map";

/// The message of a router-side `UNAVAILABLE` when a node cannot be reached.
pub const UNREACHABLE_MESSAGE: &str = "the broker for this request is unreachable; retry";

/// nginx's name of a node's upstream group.
fn upstream(node: &str) -> String {
    format!("tallyq_node_{node}")
}

/// The whole `nginx.conf` (main context included) for `map`.
pub fn render(map: &ShardMap) -> String {
    let r = &map.router;
    let t = r.stream_timeout_seconds;
    let run = r.runtime_dir.trim_end_matches('/');
    let mut out = String::new();
    let w = &mut out;
    // Writing to a String cannot fail.
    let _ = writeln!(
        w,
        "# Rendered by `tallyq router render` from the tallyq shard map. Do not edit:\n\
         # edit the shard map, render again, then `nginx -s reload`.\n\
         worker_processes {wp};\n\
         pid {run}/tallyq-router.pid;\n\
         error_log stderr warn;\n\
         \n\
         events {{\n    worker_connections 4096;\n}}\n\
         \n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   client_body_temp_path {run}/tallyq-router-client-body;\n\
         \x20   proxy_temp_path {run}/tallyq-router-proxy;\n\
         \x20   fastcgi_temp_path {run}/tallyq-router-fastcgi;\n\
         \x20   uwsgi_temp_path {run}/tallyq-router-uwsgi;\n\
         \x20   scgi_temp_path {run}/tallyq-router-scgi;\n\
         \n\
         \x20   # Streams (Consume, ProduceStream, ExportData) and long-polls may be\n\
         \x20   # quiet for long: time out only after {t} s without a byte.\n\
         \x20   client_body_timeout {t}s;\n\
         \x20   send_timeout {t}s;\n\
         \x20   # The broker enforces its own size limits, with its own messages.\n\
         \x20   client_max_body_size 0;\n\
         \x20   # One client connection carries many requests: do not make it reconnect.\n\
         \x20   keepalive_requests 1000000;",
        wp = r.worker_processes,
    );
    if let Some(resolver) = &r.resolver {
        let _ = writeln!(w, "    resolver {resolver};");
    }
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "    # The tenant an API key names: `Bearer tq_<tenant>_<secret>` (SPEC §3).\n\
         \x20   map $http_authorization $tallyq_key_tenant {{\n\
         \x20       default \"\";\n\
         \x20       \"~^[Bb]earer \\s*tq_(?<tallyq_t>[a-z0-9][a-z0-9-]{{2,31}})_\" $tallyq_t;\n\
         \x20   }}\n\
         \n\
         \x20   # Requests naming no tenant: the node in x-tallyq-node, else the default.\n\
         \x20   map $http_x_tallyq_node $tallyq_header_node {{\n\
         \x20       default tallyq_unknown_node;\n\
         \x20       \"\" {default};",
        default = upstream(&map.default_node),
    );
    for id in map.nodes.keys() {
        let _ = writeln!(w, "        {id} {};", upstream(id));
    }
    let _ = writeln!(
        w,
        "    }}\n\
         \n\
         \x20   # Tenant -> node (the shard map's [tenants]); unlisted tenants are refused.\n\
         \x20   map $tallyq_key_tenant $tallyq_upstream {{\n\
         \x20       default tallyq_unknown_tenant;\n\
         \x20       \"\" $tallyq_header_node;"
    );
    for (tenant, node) in &map.tenants {
        let _ = writeln!(w, "        {tenant} {};", upstream(node));
    }
    let _ = writeln!(w, "    }}");
    for (id, node) in &map.nodes {
        let name = upstream(id);
        let _ = writeln!(w, "\n    upstream {name} {{");
        if r.resolver.is_some() {
            let _ = writeln!(w, "        zone {name} 64k;");
            let _ = writeln!(w, "        server {} resolve;", node.address);
        } else {
            let _ = writeln!(w, "        server {};", node.address);
        }
        let _ = writeln!(
            w,
            "        keepalive 64;\n        keepalive_requests 1000000;\n        keepalive_timeout 300s;\n    }}"
        );
    }
    let tls = r.tls_cert_file.as_ref().zip(r.tls_key_file.as_ref());
    let listen_params = match (tls.is_some(), r.http2_directive) {
        (true, true) => " ssl",
        (true, false) => " ssl http2",
        (false, true) => "",
        (false, false) => " http2",
    };
    let _ = writeln!(
        w,
        "\n    server {{\n        listen {}{listen_params};",
        r.listen
    );
    if r.http2_directive {
        let _ = writeln!(w, "        http2 on;");
    }
    if let Some((cert, key)) = tls {
        let _ = writeln!(
            w,
            "        ssl_certificate {cert};\n        ssl_certificate_key {key};\n        ssl_protocols TLSv1.2 TLSv1.3;"
        );
    }
    let _ = writeln!(
        w,
        "\n        location / {{\n\
         \x20           if ($tallyq_upstream = tallyq_unknown_tenant) {{\n                return 418;\n            }}\n\
         \x20           if ($tallyq_upstream = tallyq_unknown_node) {{\n                return 419;\n            }}\n\
         \x20           error_page 418 = @tallyq_unauthenticated;\n\
         \x20           error_page 419 = @tallyq_unknown_node;\n\
         \x20           error_page 502 503 504 = @tallyq_unavailable;\n\
         \x20           grpc_pass grpc://$tallyq_upstream;\n\
         \x20           # The broker counts failed authentications per client address:\n\
         \x20           # list the router in the brokers' trusted proxies.\n\
         \x20           grpc_set_header X-Forwarded-For $remote_addr;\n\
         \x20           grpc_set_header {NODE_HEADER} \"\";\n\
         \x20           grpc_read_timeout {t}s;\n\
         \x20           grpc_send_timeout {t}s;\n\
         \x20           grpc_socket_keepalive on;\n\
         \x20       }}"
    );
    for (location, code, message) in [
        ("tallyq_unauthenticated", 16, INVALID_API_KEY_MESSAGE),
        ("tallyq_unknown_node", 5, UNKNOWN_NODE_MESSAGE),
        ("tallyq_unavailable", 14, UNREACHABLE_MESSAGE),
    ] {
        let _ = writeln!(
            w,
            "\n        location @{location} {{\n\
             \x20           default_type application/grpc;\n\
             \x20           add_header grpc-status {code} always;\n\
             \x20           add_header grpc-message \"{message}\" always;\n\
             \x20           return 200;\n\
             \x20       }}"
        );
    }
    let _ = writeln!(w, "    }}\n}}");
    out
}

/// A Kubernetes ConfigMap named `name` holding the rendered `nginx.conf`
/// and the shard map it came from (so the map travels with the router).
pub fn configmap(name: &str, nginx_conf: &str, shard_map_toml: &str) -> String {
    let indent = |text: &str| {
        text.lines()
            .map(|l| {
                if l.is_empty() {
                    String::new()
                } else {
                    format!("    {l}")
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "# Rendered by `tallyq router render --configmap {name}`: edit the shard map, not this.\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels:\n    \
         app.kubernetes.io/name: tallyq-router\ndata:\n  nginx.conf: |\n{}\n  shard-map.toml: |\n{}\n",
        indent(nginx_conf),
        indent(shard_map_toml),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> ShardMap {
        ShardMap::from_toml(
            r#"
default_node = "node-2"
[nodes.node-1]
address = "127.0.0.1:7001"
[nodes.node-2]
address = "127.0.0.1:7002"
[tenants]
acme = "node-1"
globex = "node-2"
"#,
        )
        .unwrap()
    }

    #[test]
    fn routes_tenants_nodes_and_the_default() {
        let conf = render(&map());
        for line in [
            "acme tallyq_node_node-1;",
            "globex tallyq_node_node-2;",
            "\"\" tallyq_node_node-2;",
            "node-1 tallyq_node_node-1;",
            "server 127.0.0.1:7001;",
            "listen 127.0.0.1:50050 http2;",
            "grpc_pass grpc://$tallyq_upstream;",
            "add_header grpc-status 16 always;",
            "add_header grpc-message \"invalid or revoked API key\" always;",
            "grpc_read_timeout 3600s;",
        ] {
            assert!(conf.contains(line), "missing {line}:\n{conf}");
        }
        assert!(!conf.contains("ssl"), "no TLS unless configured");
    }

    #[test]
    fn tls_resolver_and_http2_directive() {
        let mut map = map();
        map.router.tls_cert_file = Some("/etc/tls/tls.crt".into());
        map.router.tls_key_file = Some("/etc/tls/tls.key".into());
        map.router.http2_directive = true;
        map.router.resolver = Some("10.96.0.10 valid=10s".into());
        let conf = render(&map);
        for line in [
            "listen 127.0.0.1:50050 ssl;",
            "http2 on;",
            "ssl_certificate /etc/tls/tls.crt;",
            "resolver 10.96.0.10 valid=10s;",
            "server 127.0.0.1:7001 resolve;",
            "zone tallyq_node_node-1 64k;",
        ] {
            assert!(conf.contains(line), "missing {line}:\n{conf}");
        }
    }
}
