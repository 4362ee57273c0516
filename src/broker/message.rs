//! A message as the broker takes, keeps and hands it out, and the set of
//! messages one produce batch stores together. Plain values: storage turns
//! them into its rows, the API into wire messages.

use std::collections::HashMap;

use bytes::Bytes;

/// One message: its payload, headers and the ids the broker acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// The payload.
    pub payload: Bytes,
    /// String headers.
    pub headers: HashMap<String, String>,
    /// Device id or "".
    pub device_id: String,
    /// Dedup id or "".
    pub dedup_id: String,
}

/// The messages of one produce batch (or one dead-letter move), stored
/// together at consecutive offsets with one publish time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageSet {
    /// Publish time, Unix ms.
    pub publish_ms: i64,
    /// The messages, at offsets first, first + 1, ...
    pub messages: Vec<Message>,
}
