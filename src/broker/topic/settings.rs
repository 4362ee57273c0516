//! What a topic is and how it behaves: its identity and settings, and what
//! it does when full.

/// What a topic does when a new batch would go over its size cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OverflowPolicy {
    /// Drop the oldest message sets until the batch fits (the default).
    #[default]
    ReclaimOldest,
    /// Refuse the produce until old messages expire.
    RefuseProduce,
}

impl OverflowPolicy {
    /// The policy an `OverflowPolicy` number of the API names: 0
    /// (unspecified) and 1 reclaim the oldest, 2 refuses; `None` for any
    /// other number.
    pub fn from_number(number: i32) -> Option<OverflowPolicy> {
        match number {
            0 | 1 => Some(OverflowPolicy::ReclaimOldest),
            2 => Some(OverflowPolicy::RefuseProduce),
            _ => None,
        }
    }

    /// Its number in the API (and in exports): 1 reclaim oldest, 2 refuse
    /// produce.
    pub fn number(self) -> i32 {
        self.numbered().0
    }

    /// The policy's name in the API (the proto enum's value name), as the
    /// JSON export writes it: `OVERFLOW_POLICY_RECLAIM_OLDEST` or
    /// `OVERFLOW_POLICY_REFUSE_PRODUCE`.
    pub fn api_name(self) -> &'static str {
        self.numbered().1
    }

    fn numbered(self) -> (i32, &'static str) {
        match self {
            OverflowPolicy::ReclaimOldest => (1, "OVERFLOW_POLICY_RECLAIM_OLDEST"),
            OverflowPolicy::RefuseProduce => (2, "OVERFLOW_POLICY_REFUSE_PRODUCE"),
        }
    }
}

/// A topic's identity (fixed at creation) and its settings (changed by an
/// update), as created, stored and shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSettings {
    /// Internal id; the topic's stored data is found by it.
    pub id: u64,
    /// Owning tenant.
    pub tenant: String,
    /// Name within the tenant.
    pub name: String,
    /// Message expiry in seconds.
    pub expiry_seconds: u64,
    /// Size cap in bytes.
    pub max_bytes: u64,
    /// What a produce into a full topic does.
    pub overflow_policy: OverflowPolicy,
    /// Dedup window in seconds.
    pub dedup_window_seconds: u64,
    /// Creation time, Unix ms.
    pub created_ms: i64,
}
