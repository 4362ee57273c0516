//! What the client and the server agree on beyond `proto/`: message-size
//! limits, HTTP/2 windows and the metadata keys of refusals. Both sides import
//! these from here, so the client never depends on server modules.

/// The gRPC decoding limit: above the largest batch a plan allows (4 MiB of
/// message sizes plus protobuf framing), so the batch limit is what refuses an
/// oversized batch, with its own message.
pub const MAX_DECODING_BYTES: usize = 16 * 1024 * 1024;

/// HTTP/2 per-stream flow-control window (bytes).
pub const HTTP2_STREAM_WINDOW: u32 = 8 * 1024 * 1024;
/// HTTP/2 per-connection flow-control window (bytes).
pub const HTTP2_CONNECTION_WINDOW: u32 = 32 * 1024 * 1024;

/// Metadata key that carries how long to wait before retrying, in ms.
pub const RETRY_AFTER_MS: &str = "retry-after-ms";

/// A gRPC status code's canonical name (`NOT_FOUND` for 5), as the gRPC
/// specification spells it: the RPC metrics' `code` label and the CLI's
/// error lines use it.
pub fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

/// Most concurrent HTTP/2 streams one connection may carry (the server's
/// SETTINGS_MAX_CONCURRENT_STREAMS, SPEC §4): above one tenant's stream
/// quota (64 streams and long-polls by default) with room for its unary
/// calls, so the quota, not the transport, refuses a tenant's 65th stream,
/// while a single connection can no longer open thousands of long-polls.
pub const MAX_CONCURRENT_STREAMS_PER_CONNECTION: u32 = 128;

/// How long a request handler may take before the server drops the request
/// (tonic's `Server::timeout`; a client's shorter `grpc-timeout` wins): a
/// request that stops sending before it is whole (a unary request, or a
/// stream that never sends its first message) is dropped after this. Above
/// the longest Fetch wait (30 s). Streams, once answered, are not cut by it.
pub const REQUEST_TIMEOUT_SECS: u64 = 60;

/// Interval of the server's HTTP/2 keepalive pings; a connection whose peer
/// does not answer one within [`HTTP2_KEEPALIVE_TIMEOUT_SECS`] is closed
/// with every stream on it (a peer that vanished stops holding streams).
pub const HTTP2_KEEPALIVE_INTERVAL_SECS: u64 = 30;

/// How long the server waits for a keepalive ping's answer.
pub const HTTP2_KEEPALIVE_TIMEOUT_SECS: u64 = 20;
