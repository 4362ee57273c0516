//! Room under a topic's size cap: which of the oldest sets must go for a
//! new one to fit, and dropping them.

use crate::broker::topic::{Topic, TopicLog, OVERFLOW_REFUSE};
use crate::error::{Error, Result};
use crate::quota::human_bytes;
use crate::storage::WriteSet;

/// How many of the oldest sets must go to fit `new_bytes` under the topic's
/// size cap, and the bytes that frees; refuses when the batch can never fit or
/// the topic's policy refuses produce when full. Changes nothing.
pub(in crate::broker) fn room_needed(
    topic: &Topic,
    log: &TopicLog,
    new_bytes: u64,
) -> Result<(usize, u64)> {
    let settings = topic.settings();
    let cap = settings.max_bytes;
    if new_bytes > cap {
        return Err(Error::invalid(format!(
            "batch of {new_bytes} bytes is larger than topic '{}''s size cap of {cap} bytes ({})",
            topic.name,
            human_bytes(cap)
        )));
    }
    if log.bytes + new_bytes <= cap {
        return Ok((0, 0));
    }
    if settings.overflow_policy == OVERFLOW_REFUSE {
        return Err(Error::exhausted(format!(
            "topic '{}' is full: {} of its {cap}-byte ({}) size cap is used and its overflow \
             policy refuses new messages until old ones expire",
            topic.name,
            log.bytes,
            human_bytes(cap)
        )));
    }
    let mut freed = 0;
    let mut sets = 0;
    for set in &log.sets {
        if log.bytes - freed + new_bytes <= cap {
            break;
        }
        freed += set.bytes;
        sets += 1;
    }
    Ok((sets, freed))
}

/// Drops the `sets` oldest sets, counting their messages as reclaimed.
pub(in crate::broker) fn reclaim(
    topic: &Topic,
    log: &mut TopicLog,
    sets: usize,
    writes: &mut WriteSet,
) {
    for _ in 0..sets {
        if let Some(set) = log.drop_oldest(topic.id, writes) {
            log.state.reclaimed_messages += set.count as u64;
        }
    }
}
