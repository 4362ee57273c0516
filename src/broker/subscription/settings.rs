//! What a subscription is and how it delivers: its identity and settings.

/// A subscription's identity (fixed at creation) and its delivery settings
/// (changed by an update), as created, stored and shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSettings {
    /// Internal id; the subscription's stored state is found by it.
    pub id: u64,
    /// The topic's internal id.
    pub topic_id: u64,
    /// Name within the topic.
    pub name: String,
    /// 0: at-most-once; otherwise the lock time in seconds.
    pub lock_seconds: u32,
    /// 0: unlimited.
    pub max_delivery_attempts: u32,
    /// Dead-letter topic name, or "".
    pub dead_letter_topic: String,
    /// Creation time, Unix ms.
    pub created_ms: i64,
}
