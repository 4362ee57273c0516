//! One round of produce combining (`combine.rs`): the produces taken from a
//! topic's queue, in queue order, stored as one message set with one commit.
//!
//! Each produce is sorted into new messages and duplicates on its own (a
//! duplicate of a message of an earlier produce in the set is a duplicate),
//! gets offsets right after the produces before it, and is admitted on its
//! own: the first against the log as it is (exactly as a produce alone), each
//! later one by asking whether the whole set, with it, still fits the topic's
//! size cap and the tenant's storage quota, then spending its own produce
//! rate. When the set with it would not fit, it is not refused: the round
//! stores the set so far and puts it and the produces after it back at the
//! front of the queue, so the next round admits it first, alone, and it gets
//! exactly the answer it would have got without combining. A refused
//! produce changes nothing and the others are stored.

use std::collections::HashMap;
use std::sync::Arc;

use super::combine::{Batch, Gate, LeadToken, Member, Turn};
use super::dedup::{remember_dedup_ids, SortedBatch};
use super::pending::{QueuedDedupIds, StoredFigures};
use super::{PendingProduce, ProduceOutcome, Room};
use crate::broker::device_usage::Billed;
use crate::broker::topic::{Topic, TopicLog};
use crate::broker::{Broker, Message};
use crate::crypto::TenantKeys;
use crate::error::Error;
use crate::metering::UsageDelta;
use crate::storage::{CommitSlot, WriteSet};

/// The set a round is building.
#[derive(Default)]
struct Combined {
    /// The new messages, in offset order.
    messages: Vec<Message>,
    /// Their units, in the same order.
    units: Vec<u64>,
    /// Their counted bytes.
    bytes: u64,
    /// The dedup_ids of the new messages, with their offsets.
    dedup: HashMap<Arc<str>, u64>,
    /// The room the whole set needs (measured last, for the whole).
    room: Option<Room>,
    /// The keys of the set's first produce (one tenant per topic).
    keys: Option<Arc<TenantKeys>>,
    /// The produces in the set, in order.
    members: Vec<Taken>,
    /// Produces of duplicates only, answered once the set is durable: their
    /// originals may be in it (nothing is confirmed before it is on disk).
    duplicates_only: Vec<(Reply, ProduceOutcome)>,
}

/// Where a produce hears its turn.
type Reply = tokio::sync::oneshot::Sender<Turn>;

/// A produce taken into the set, and what it will be told.
struct Taken {
    reply: tokio::sync::oneshot::Sender<Turn>,
    outcome: ProduceOutcome,
    dedup_ids: Vec<Arc<str>>,
    messages: u64,
    bytes: u64,
}

/// What became of one produce of the round.
enum Joined {
    /// Refused or failed on its own; nothing of it is in the set.
    Refused(Error),
    /// Duplicates only: answered at once, nothing queued.
    NothingNew(ProduceOutcome),
    /// Its new messages join the set.
    Taken(SortedBatch),
    /// The set with it would not fit: it goes first in the next round.
    NextRound,
}

impl Broker {
    /// Leads one round of `token`'s topic, `own` first: waits at the gate
    /// ([`Gate::Wait`]), takes the log lock and a commit slot, takes the
    /// waiting produces, stores them and answers each; then hands the lead
    /// on (dropping `token`).
    pub(super) async fn lead_round(&self, token: LeadToken, own: Member, gate: Gate) {
        let topic = token.topic().clone();
        if gate == Gate::Wait {
            if let Some(earlier) = topic.produce_queue.gate() {
                // Its own members hear how it went; this round only waits.
                let _ = earlier.wait().await;
            }
        }
        let mut log = topic.log.lock().await;
        let slot = self.store.reserve_commit().await;
        // No await from here on: what is taken is answered.
        let mut round = vec![own];
        topic.produce_queue.take(&mut round);
        let slot = match slot {
            Ok(_) if topic.is_deleted() => Err(Error::not_found("topic", topic.name.as_str())),
            Ok(slot) => Ok(slot),
            Err(e) => Err(Error::from(e)),
        };
        match slot {
            Ok(slot) => {
                let next_round = self.store_round(&topic, &mut log, slot, round);
                topic.produce_queue.put_back(next_round);
            }
            Err(error) => {
                for member in round {
                    let _ = member.reply.send(Turn::Done(Err(error.clone())));
                }
            }
        }
        drop(log);
        drop(token);
    }

    /// Stores the produces of `round` as one set and answers each; returns
    /// the ones left for the next round.
    fn store_round(
        &self,
        topic: &Arc<Topic>,
        log: &mut TopicLog,
        slot: CommitSlot<'_>,
        round: Vec<Member>,
    ) -> Vec<Member> {
        let window_ms = topic.settings().dedup_window_seconds as i64 * 1000;
        let now = self.clock.now_ms().max(log.state.last_publish_ms);
        let mut set = Combined::default();
        let mut round = round.into_iter();
        let mut next_round = Vec::new();
        while let Some(member) = round.next() {
            let answer = match self.join_set(topic, log, &mut set, &member.batch, now, window_ms) {
                Joined::Refused(e) => Err(e),
                Joined::NothingNew(outcome) if set.members.is_empty() => {
                    Ok(PendingProduce::nothing_stored(outcome, topic.clone()))
                }
                Joined::NothingNew(outcome) => {
                    set.duplicates_only.push((member.reply, outcome));
                    continue;
                }
                Joined::Taken(sorted) => {
                    set.add(member, sorted);
                    continue;
                }
                Joined::NextRound => {
                    next_round.push(member);
                    next_round.extend(round);
                    break;
                }
            };
            let _ = member.reply.send(Turn::Done(answer));
        }
        if !set.members.is_empty() {
            self.store_set(topic, log, slot, set, now);
        }
        next_round
    }

    /// Sorts and admits one produce against the log with the set so far.
    fn join_set(
        &self,
        topic: &Topic,
        log: &TopicLog,
        set: &mut Combined,
        batch: &Batch,
        now: i64,
        window_ms: i64,
    ) -> Joined {
        let first_offset = log.state.next_offset + set.messages.len() as u64;
        let sorted = match self.sort_out_duplicates(
            topic,
            &batch.keys,
            &batch.messages,
            &batch.sizes,
            first_offset,
            now,
            window_ms,
            &set.dedup,
        ) {
            Ok(sorted) => sorted,
            Err(e) => return Joined::Refused(e),
        };
        if sorted.new == 0 {
            return Joined::NothingNew(sorted.outcome);
        }
        let (plan, units) = (&batch.plan, sorted.outcome.units);
        let room = if set.members.is_empty() {
            self.admit_storage(&topic.tenant, plan, topic, log, sorted.bytes, units)
        } else {
            match self.room_for(plan, topic, log, set.bytes + sorted.bytes) {
                Ok(room) => self
                    .admission
                    .admit_produce(&topic.tenant, plan, units)
                    .map(|()| room),
                Err(_) => return Joined::NextRound,
            }
        };
        match room {
            Ok(room) => {
                set.room = Some(room);
                if set.keys.is_none() {
                    set.keys = Some(batch.keys.clone());
                }
                Joined::Taken(sorted)
            }
            Err(e) => Joined::Refused(e),
        }
    }

    /// Appends the set, queues its one write and answers its produces.
    fn store_set(
        &self,
        topic: &Arc<Topic>,
        log: &mut TopicLog,
        slot: CommitSlot<'_>,
        set: Combined,
        now: i64,
    ) {
        let Combined {
            messages,
            units,
            bytes,
            dedup,
            room,
            keys,
            members,
            duplicates_only,
        } = set;
        let answer_all =
            |error: &Error, members: Vec<Taken>, duplicates_only: Vec<(Reply, ProduceOutcome)>| {
                for member in members {
                    let _ = member.reply.send(Turn::Done(Err(error.clone())));
                }
                for (reply, _) in duplicates_only {
                    let _ = reply.send(Turn::Done(Err(error.clone())));
                }
            };
        let (Some(room), Some(keys)) = (room, keys) else {
            // Every taken produce set both; answer rather than lose them.
            let error = Error::Unavailable("produce combining lost its set; retry".into());
            answer_all(&error, members, duplicates_only);
            return;
        };
        // The usage it bills: the tenant's, the topic's and each device's.
        let mut usage = UsageDelta::default();
        usage.produced_all(
            &topic.name,
            messages
                .iter()
                .zip(&units)
                .map(|(m, units)| (m.device_id.as_str(), *units)),
        );
        let journal_id = match usage.has_devices().then(|| self.store.generate_id()) {
            Some(Err(e)) => {
                answer_all(&Error::from(e), members, duplicates_only);
                return;
            }
            Some(Ok(id)) => Some(id),
            None => None,
        };
        let mut writes = WriteSet::new();
        // The retained bytes change: close the storage interval they held
        // (reopened as it was if the append fails and nothing changes).
        let metered = log.state.storage_metered_ms;
        self.close_storage_interval(topic, log, now, &mut writes);
        let first_offset = log.state.next_offset;
        // If appending fails, the log is unchanged and nothing is queued.
        let appended = room.append(
            &self.store,
            &keys,
            &self.calendar,
            Billed::Produced,
            topic,
            log,
            messages,
            now,
            &mut writes,
        );
        let reclaimed = match appended {
            Ok(reclaimed) => reclaimed,
            Err(e) => {
                log.state.storage_metered_ms = metered;
                answer_all(&e, members, duplicates_only);
                return;
            }
        };
        debug_assert_eq!(log.sets.back().map(|s| s.bytes), Some(bytes));
        // Right at the metered-through offset (every set before it folded),
        // the set's per-device usage is journaled in this write (one row)
        // and the offset passes it, stored in this same write, so no fold
        // derives it from the set again (`broker/device_usage.rs`). A set
        // without device ids adds nothing to a fold: the offset passes it in
        // memory only (after a restart the fold reads it once more and adds
        // nothing). Behind the offset (sets before it not folded yet: a data
        // dir of an earlier version, dead letters), nothing is journaled and
        // the fold derives the set's usage from it, as before.
        let day = self.calendar.day_of(now);
        let new_end = log.state.next_offset;
        let at_offset = log.device_metered_through == first_offset;
        let journal_id = journal_id.filter(|_| at_offset);
        if at_offset {
            log.device_metered_through = new_end;
            if journal_id.is_some() {
                writes.put_metered_through(topic.id, new_end);
            }
        }
        remember_dedup_ids(topic, &keys, &dedup, now, &mut writes);
        // The usage rides in the same atomic write as the messages it counts;
        // the per-device breakdown as one journal row, folded into the device
        // counters off the produce path (`delivery/device_journal.rs`).
        match journal_id {
            Some(id) => usage.write_journaled(&keys, day, id, &mut writes),
            None => usage.write_without_devices(keys.owner(), day, &mut writes),
        }
        // The new set's header records the new end and publish time
        // (start-up takes them from the newest header); the stored counters
        // carry the storage interval just closed (and any reclaim).
        writes.put_topic_state(topic.id, &log.state);
        let visible = topic.clone();
        let commit = slot.send(
            writes,
            Some(Box::new(move || visible.publish_visible_end(new_end))),
        );
        topic.produce_queue.committed(commit.clone());
        for (i, member) in members.into_iter().enumerate() {
            let first = i == 0;
            let pending = PendingProduce {
                commit: Some(commit.clone()),
                outcome: member.outcome,
                topic: topic.clone(),
                dedup_ids: QueuedDedupIds::new(topic.clone(), member.dedup_ids, commit.clone()),
                stored: StoredFigures {
                    metrics: Some(self.metrics.clone()),
                    messages: member.messages,
                    bytes: member.bytes,
                    // The set's reclaim and the set itself count once.
                    reclaimed: if first { reclaimed } else { 0 },
                    sets: u64::from(first),
                },
            };
            let _ = member.reply.send(Turn::Done(Ok(pending)));
        }
        for (reply, outcome) in duplicates_only {
            let pending = PendingProduce {
                commit: Some(commit.clone()),
                outcome,
                topic: topic.clone(),
                dedup_ids: QueuedDedupIds::none(),
                stored: StoredFigures::default(),
            };
            let _ = reply.send(Turn::Done(Ok(pending)));
        }
    }
}

impl Combined {
    /// Takes `member`'s new messages (as sorted) into the set.
    fn add(&mut self, member: Member, sorted: SortedBatch) {
        let Member { batch, reply } = member;
        for (message, result) in batch.messages.into_iter().zip(&sorted.outcome.results) {
            if !result.duplicate {
                self.units.push(result.units);
                self.messages.push(message);
            }
        }
        self.bytes += sorted.bytes;
        // Shared, not copied: the set's map, the member's list and the
        // topic's uncommitted map hold the same `Arc<str>` of each id.
        let dedup_ids = sorted.dedup.keys().cloned().collect();
        self.dedup.extend(sorted.dedup);
        self.members.push(Taken {
            reply,
            outcome: sorted.outcome,
            dedup_ids,
            messages: sorted.new as u64,
            bytes: sorted.bytes,
        });
    }
}
