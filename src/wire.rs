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
