//! Reading retained messages back: the message at an offset, through a
//! one-set cache so a sequential reader decodes each message set once, and
//! every retained set in order (for export). A set may expire between
//! reading its header and its bytes; both readers then treat it as gone.

use super::Topic;
use crate::broker::Broker;
use crate::error::Result;
use crate::storage::keys;
use crate::storage::records::{BlobRef, MessageSetRecord, SetHeaderRecord, StoredMessage};

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
                    match self.read_set(topic, &blob, offset)? {
                        Some(set) => cache.entry = Some((topic.id, first, set)),
                        None => return Ok(None),
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

    /// Every retained message set of `topic` in offset order, with its first
    /// offset. Sets are read one at a time, so memory holds one set whatever
    /// the topic's size; a set that expires meanwhile is skipped.
    pub(in crate::broker) fn retained_sets<'a>(
        &'a self,
        topic: &'a Topic,
    ) -> impl Iterator<Item = Result<(u64, MessageSetRecord)>> + 'a {
        let prefix = keys::id_prefix(keys::SET_HEADER, topic.id);
        self.store
            .scan::<SetHeaderRecord>(&prefix)
            .filter_map(move |item| {
                let (key, header) = match item {
                    Ok(item) => item,
                    Err(e) => return Some(Err(e.into())),
                };
                let blob = header.blob?;
                let first = keys::u64_at(&key, 9).unwrap_or_default();
                self.read_set(topic, &blob, first)
                    .transpose()
                    .map(|set| set.map(|set| (first, set)))
            })
    }

    /// Reads the message set stored at `blob`, wanted for `offset`: `None`
    /// when reading fails because the set expired or was reclaimed since its
    /// header was read (its segment may be gone), an error when it fails with
    /// `offset` still retained.
    fn read_set(
        &self,
        topic: &Topic,
        blob: &BlobRef,
        offset: u64,
    ) -> Result<Option<MessageSetRecord>> {
        match self.store.read_blob::<MessageSetRecord>(blob) {
            Ok(set) => Ok(Some(set)),
            Err(_) if offset < topic.first_offset() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
