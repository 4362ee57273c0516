//! More than one broker (SPEC §9): growth is by independent tallyq brokers
//! behind nginx, not by a cluster of our own. The operator keeps a shard map
//! ([`ShardMap`], `map.rs`: nodes, tenant → node, the default node) and
//! renders the router from it ([`render_nginx`], `nginx.rs`). The CLI reads
//! the same map to reach every node (one ledger view for billing jobs).
//!
//! Nothing here serves requests or knows tonic: the map is data, the router
//! is nginx.

mod cursor;
mod map;
mod nginx;

pub use cursor::{merge_by_time, CursorError, NodeCursors};
pub use map::{Node, RouterSettings, ShardMap, ShardMapError};
pub use nginx::{
    configmap as render_configmap, render as render_nginx, NODE_HEADER, UNKNOWN_NODE_MESSAGE,
    UNREACHABLE_MESSAGE,
};
