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
