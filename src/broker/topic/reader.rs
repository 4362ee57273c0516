//! Reading retained messages back: the message at an offset, through a
//! one-set cache so a sequential reader decodes each message set once.

use super::Topic;
use crate::broker::Broker;
use crate::error::Result;
use crate::storage::keys;
use crate::storage::records::{MessageSetRecord, SetHeaderRecord, StoredMessage};

/// The last message set read, so sequential reads decode each set once.
#[derive(Default)]
pub struct SetCache {
    entry: Option<(u64, u64, MessageSetRecord)>,
}

impl Broker {
    /// Reads the message at `offset`, or `None` when it is no longer retained.
    pub(in crate::broker) fn read_message(
        &self,
        topic: &Topic,
        offset: u64,
        cache: &mut SetCache,
    ) -> Result<Option<(StoredMessage, i64)>> {
        if offset < topic.first_offset() {
            return Ok(None);
        }
        let cached = matches!(&cache.entry, Some((id, first, set))
            if *id == topic.id && *first <= offset && offset < *first + set.messages.len() as u64);
        if !cached {
            let prefix = keys::id_prefix(keys::SET_HEADER, topic.id);
            let found = self.store.last_at_or_before::<SetHeaderRecord>(
                &prefix,
                &keys::set_header(topic.id, offset),
            )?;
            cache.entry = None;
            if let Some((key, header)) = found {
                if let (Some(first), Some(blob)) = (keys::u64_at(&key, 9), header.blob) {
                    match self.store.read_blob::<MessageSetRecord>(&blob) {
                        Ok(set) => cache.entry = Some((topic.id, first, set)),
                        // Expired or reclaimed between reading its header and
                        // its bytes (its segment may be gone): not retained.
                        Err(_) if offset < topic.first_offset() => return Ok(None),
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(cache.entry.as_ref().and_then(|(_, first, set)| {
            offset
                .checked_sub(*first)
                .and_then(|i| set.messages.get(i as usize))
                .map(|m| (m.clone(), set.publish_ms))
        }))
    }
}
