//! Reading retained messages back: the message at an offset, through a
//! one-set cache so a sequential reader decodes each message set once, and
//! every retained set in order (for export). A set may expire between
//! reading its header and its bytes; both readers then treat it as gone. It
//! may also be moved by compaction; both then read it again where it went.

use super::quarantine::is_damage;
use super::SetSummary;
use super::Topic;
use crate::broker::{Broker, Message, MessageSet};
use crate::error::Result;

/// The last message set read, so sequential reads decode each set once.
#[derive(Default)]
pub struct SetCache {
    entry: Option<(u64, u64, MessageSet)>,
}

impl Broker {
    /// Reads the message at `offset`, or `None` when it is no longer retained.
    pub(in crate::broker) fn read_message(
        &self,
        topic: &Topic,
        offset: u64,
        cache: &mut SetCache,
    ) -> Result<Option<(Message, i64)>> {
        if offset < topic.first_offset() {
            return Ok(None);
        }
        let cached = matches!(&cache.entry, Some((id, first, set))
            if *id == topic.id && *first <= offset && offset < *first + set.messages.len() as u64);
        if !cached {
            cache.entry = None;
            if let Some(set) = self.store.set_at_or_before(topic.id, offset)? {
                match self.read_set(topic, &set, offset)? {
                    Some(messages) => cache.entry = Some((topic.id, set.first_offset, messages)),
                    None => return Ok(None),
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

    /// Every retained message set of `topic` in offset order, with its first
    /// offset. Sets are read one at a time, so memory holds one set whatever
    /// the topic's size; a set that expires meanwhile is skipped.
    pub(in crate::broker) fn retained_sets<'a>(
        &'a self,
        topic: &'a Topic,
    ) -> impl Iterator<Item = Result<(u64, MessageSet)>> + 'a {
        self.store.sets(topic.id).filter_map(move |item| {
            let set = match item {
                Ok(set) => set,
                Err(e) => return Some(Err(e.into())),
            };
            self.read_set(topic, &set, set.first_offset)
                .transpose()
                .map(|messages| messages.map(|messages| (set.first_offset, messages)))
        })
    }

    /// The set's stored header when it now points elsewhere than `set`
    /// (compaction moved it), else `None`.
    fn moved(&self, topic: &Topic, set: &SetSummary) -> Result<Option<SetSummary>> {
        Ok(self
            .store
            .set_at_or_before(topic.id, set.first_offset)?
            .filter(|s| s.first_offset == set.first_offset && s.location != set.location))
    }

    /// Reads the messages of `set`, wanted for `offset`: `None`
    /// when reading fails because the set expired or was reclaimed since its
    /// header was read (its segment may be gone), an error when it fails with
    /// `offset` still retained.
    /// A set found corrupt is quarantined: `None`, now and on every later read.
    pub(in crate::broker) fn read_set(
        &self,
        topic: &Topic,
        set: &SetSummary,
        offset: u64,
    ) -> Result<Option<MessageSet>> {
        if topic.quarantine.contains(set.first_offset) {
            return Ok(None);
        }
        // Without its tenant's key (terminated: destroyed) nothing is readable.
        let Ok(keys) = self.tenancy.data_keys(&topic.tenant) else {
            return Ok(None);
        };
        match self.store.read_set(&keys, topic.id, set) {
            Ok(read) if read.messages.len() != set.count as usize => {
                let cause = format!(
                    "the set decoded to {} messages, its header says {}",
                    read.messages.len(),
                    set.count
                );
                self.quarantine_set(topic, set, &cause);
                Ok(None)
            }
            Ok(set) => Ok(Some(set)),
            Err(_) if offset < topic.first_offset() => Ok(None),
            Err(e) => {
                // Compaction moved the set after its header was read and its
                // old segment is gone: read it where its header now points.
                if let Some(moved) = self.moved(topic, set)? {
                    return self.read_set(topic, &moved, offset);
                }
                if is_damage(&e) {
                    self.quarantine_set(topic, set, &e);
                    return Ok(None);
                }
                Err(e.into())
            }
        }
    }
}
