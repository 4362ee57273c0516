//! Responses that fit a stock client: deliveries are packed into Fetch
//! responses of at most [`MAX_RESPONSE_BYTES`] and Consume pushes of at most
//! [`MAX_PUSH_BYTES`] each, protobuf encoding and gRPC frame header
//! included, measured with prost's own `encoded_len` (not estimated from
//! payload sizes). A Consume batch larger than that goes out as several
//! pushes; a Fetch returns the first response's worth and hands the rest
//! back.
//!
//! Deliveries are billed when they are claimed (`broker::delivery`), so what
//! is not handed to the transport is handed back to the broker
//! ([`Broker::return_unsent`]): due again at once and not billed. For a
//! Consume stream that is every push tonic had not read when the client
//! left, handed back by the stream's pump ([`PushSender`]) in one write; for
//! a Fetch, what did not fit and a reply its caller no longer waits for.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use tonic::Status;

use crate::broker::{Broker, Delivered, Unsent};
use crate::proto::v1 as pb;

/// The most bytes one Fetch response or Consume push takes on the wire: a
/// stock gRPC client's default receive limit (4 MiB), which it compares with
/// the encoded message; the 5-byte gRPC frame header is counted too, to be
/// safe with clients that count it.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// The most bytes one Consume push takes on the wire. Smaller than a Fetch
/// response because of what a stream keeps: tonic encodes a stream's
/// responses into one buffer per stream that keeps the allocation of the
/// largest response it has encoded for as long as the stream is open, even
/// after that response was sent and acked. Measured (`cargo bench --bench
/// memory_bound`, second phase): with 4 MiB pushes, 64 idle streams that
/// had read and acked everything still held 1.75 MiB each, outside the
/// tenant's delivery-bytes pool. With pushes of at most this size, what a
/// tenant's 64 streams can keep that way is 64 × 256 KiB = 16 MiB. A single
/// message larger than this (a plan's message limit is 256 KiB by default)
/// still goes, alone.
pub const MAX_PUSH_BYTES: usize = 256 * 1024;

/// gRPC's length-prefixed message header: compressed flag and length.
const GRPC_FRAME_HEADER: usize = 5;

/// One response's worth of deliveries.
#[derive(Debug, Default)]
pub struct Packed {
    /// The deliveries as sent.
    pub deliveries: Vec<pb::Delivery>,
    /// The same deliveries, as the broker takes them back if they are not sent.
    pub unsent: Vec<Unsent>,
}

/// The encoded size of `d` as one element of a response's `repeated
/// Delivery deliveries = 1` (key, length prefix and body), as prost computes
/// it. Fetch and Consume responses have that one field only, so a response's
/// size is the sum of its elements'.
fn element_len(d: &pb::Delivery) -> usize {
    prost::encoding::message::encoded_len(1, d)
}

/// Splits `deliveries`, in order, into Fetch responses of at most
/// [`MAX_RESPONSE_BYTES`] each. A single delivery larger than that (only
/// possible with a plan whose messages are that large) goes alone: nothing
/// smaller can carry it.
pub fn pack(deliveries: Vec<Delivered>) -> Vec<Packed> {
    pack_within(deliveries, MAX_RESPONSE_BYTES)
}

/// Splits `deliveries`, in order, into responses of at most `max_bytes`
/// each on the wire; a single larger delivery goes alone.
fn pack_within(deliveries: Vec<Delivered>, max_bytes: usize) -> Vec<Packed> {
    let mut packs = Vec::new();
    let mut current = Packed::default();
    let mut size = GRPC_FRAME_HEADER;
    for d in deliveries {
        let unsent = Unsent::from(&d);
        let wire = pb::Delivery::from(d);
        let len = element_len(&wire);
        if !current.deliveries.is_empty() && size + len > max_bytes {
            packs.push(std::mem::take(&mut current));
            size = GRPC_FRAME_HEADER;
        }
        size += len;
        current.deliveries.push(wire);
        current.unsent.push(unsent);
    }
    if !current.deliveries.is_empty() {
        packs.push(current);
    }
    packs
}

/// Hands deliveries that never reached the transport back to the broker,
/// for one stream's or one call's subscription.
pub struct Returner {
    broker: Arc<Broker>,
    tenant: String,
    topic: String,
    subscription: String,
}

impl Returner {
    /// A returner for `tenant`'s `topic`/`subscription`.
    pub fn new(broker: Arc<Broker>, tenant: &str, topic: &str, subscription: &str) -> Self {
        Returner {
            broker,
            tenant: tenant.to_string(),
            topic: topic.to_string(),
            subscription: subscription.to_string(),
        }
    }

    /// Hands `unsent` back and waits until that is durable. A failure is
    /// logged: the messages then stay billed and come back at their lock
    /// deadline, as before this existed.
    pub async fn give_back(&self, unsent: Vec<Unsent>) {
        if unsent.is_empty() {
            return;
        }
        let result = self
            .broker
            .return_unsent(&self.tenant, &self.topic, &self.subscription, &unsent)
            .await;
        if let Err(e) = result {
            tracing::warn!(
                tenant = %self.tenant,
                topic = %self.topic,
                subscription = %self.subscription,
                messages = unsent.len(),
                error = %e,
                "could not take back deliveries that were not sent"
            );
        }
    }
}

/// The pushes queued for tonic and not read by it yet, oldest first: what to
/// hand back if the client leaves before tonic reads them.
type Queued = Arc<std::sync::Mutex<std::collections::VecDeque<Vec<Unsent>>>>;

/// Takes everything out of `queued` (a poisoned lock still holds valid data).
fn take_all(queued: &Queued) -> Vec<Unsent> {
    let mut queue = queued.lock().unwrap_or_else(|e| e.into_inner());
    queue.drain(..).flatten().collect()
}

/// The sending side of a Consume stream's pushes. It alone hands back what
/// the client never took, in one write, when it finds the client gone.
pub struct PushSender {
    tx: mpsc::Sender<Result<pb::ConsumeResponse, Status>>,
    queued: Queued,
    returner: Returner,
}

/// The Consume response stream tonic reads: what it has read is handed to
/// the transport.
pub struct PushStream {
    rx: mpsc::Receiver<Result<pb::ConsumeResponse, Status>>,
    queued: Queued,
}

/// A queue of at most `capacity` pushes between a Consume stream's pump
/// and tonic.
pub fn push_channel(capacity: usize, returner: Returner) -> (PushSender, PushStream) {
    let (tx, rx) = mpsc::channel(capacity);
    let queued = Queued::default();
    (
        PushSender {
            tx,
            queued: queued.clone(),
            returner,
        },
        PushStream { rx, queued },
    )
}

/// How long a stream that ended with an error may take to be closed by
/// tonic before what it did not read is left to its lock deadline.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl PushSender {
    /// Queues `deliveries` as as many pushes (of at most [`MAX_PUSH_BYTES`]
    /// each) as they need. When the client
    /// is gone, everything it never took (queued and not yet queued) is
    /// handed back and this returns false.
    pub async fn send_deliveries(&self, deliveries: Vec<Delivered>) -> bool {
        let mut packs = pack_within(deliveries, MAX_PUSH_BYTES).into_iter();
        while let Some(packed) = packs.next() {
            let response = pb::ConsumeResponse {
                deliveries: packed.deliveries,
            };
            let permit = match self.tx.reserve().await {
                Ok(permit) => permit,
                Err(_) => {
                    let mut unsent = packed.unsent;
                    unsent.extend(packs.flat_map(|p| p.unsent));
                    self.give_back_queued(unsent).await;
                    return false;
                }
            };
            // Recorded before it is queued, so the stream finds it when it reads.
            self.queued
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_back(packed.unsent);
            permit.send(Ok(response));
        }
        true
    }

    /// Hands back `unsent` and every queued push tonic did not read, in
    /// one write. Call once the client is gone.
    async fn give_back_queued(&self, unsent: Vec<Unsent>) {
        let mut all = take_all(&self.queued);
        all.extend(unsent);
        self.returner.give_back(all).await;
    }

    /// Ends the stream with `status` (if the client still listens); once
    /// tonic closes it, hands back what it did not read.
    pub async fn send_error(&self, status: Status) {
        let _ = self.tx.send(Err(status)).await;
        self.hand_back_once_closed().await;
    }

    /// The client's side of the stream ended (it closed it, or the
    /// connection failed): if tonic closes the response stream soon, the
    /// client is gone and what it did not read is handed back; a client
    /// that only half-closed keeps reading what is queued.
    pub async fn hand_back_once_closed(&self) {
        if tokio::time::timeout(CLOSE_WAIT, self.tx.closed())
            .await
            .is_ok()
        {
            self.give_back_queued(Vec::new()).await;
        }
    }

    /// Resolves when the client has gone (then call [`Self::hand_back_unread`]).
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// Hands back every queued push tonic did not read. Call once
    /// [`Self::closed`] resolved.
    pub async fn hand_back_unread(&self) {
        self.give_back_queued(Vec::new()).await
    }
}

impl tokio_stream::Stream for PushStream {
    type Item = Result<pb::ConsumeResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = self.rx.poll_recv(cx);
        if let Poll::Ready(Some(Ok(_))) = &item {
            // Handed to the transport: no longer the broker's to take back.
            self.queued
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::Message;
    use prost::Message as _;

    fn delivery(offset: u64, payload: usize) -> Delivered {
        Delivered {
            offset,
            message: Message {
                payload: vec![7u8; payload].into(),
                headers: [("k".to_string(), "v".to_string())].into_iter().collect(),
                device_id: "imei-1".into(),
                dedup_id: format!("d-{offset}"),
            },
            publish_ms: 1_700_000_000_000,
            attempt: 1,
            bytes: payload as u64,
            claimed_ms: 0,
        }
    }

    #[test]
    fn every_response_fits_encoded_and_nothing_is_dropped_or_reordered() {
        // 40 messages of 256 KiB: 10 MiB of payload, far over one response.
        let batch: Vec<Delivered> = (0..40).map(|i| delivery(i, 256 * 1024)).collect();
        let packs = pack(batch);
        assert!(packs.len() >= 3, "{} responses", packs.len());
        let mut offsets = Vec::new();
        for p in &packs {
            let response = pb::ConsumeResponse {
                deliveries: p.deliveries.clone(),
            };
            let encoded = response.encoded_len();
            assert!(
                encoded + GRPC_FRAME_HEADER <= MAX_RESPONSE_BYTES,
                "{encoded}"
            );
            assert_eq!(encoded, response.encode_to_vec().len());
            assert_eq!(p.deliveries.len(), p.unsent.len());
            offsets.extend(p.deliveries.iter().map(|d| d.offset));
        }
        assert_eq!(offsets, (0..40).collect::<Vec<_>>());
    }

    #[test]
    fn sixteen_quarter_mebibyte_messages_are_more_than_one_response() {
        // 16 x 256 KiB is exactly 4 MiB of payload: framing puts it over.
        let batch: Vec<Delivered> = (0..16).map(|i| delivery(i, 256 * 1024)).collect();
        let packs = pack(batch);
        assert_eq!(packs.len(), 2);
        assert_eq!(packs[0].deliveries.len(), 15);
    }

    #[test]
    fn pushes_are_smaller_than_fetch_responses() {
        // 64 KiB messages: 3 fit a 256 KiB push (framing puts the 4th over).
        let batch: Vec<Delivered> = (0..12).map(|i| delivery(i, 64 * 1024)).collect();
        let pushes = pack_within(batch, MAX_PUSH_BYTES);
        let sizes: Vec<usize> = pushes.iter().map(|p| p.deliveries.len()).collect();
        assert_eq!(sizes, vec![3, 3, 3, 3]);
        for p in &pushes {
            let response = pb::ConsumeResponse {
                deliveries: p.deliveries.clone(),
            };
            assert!(response.encoded_len() + GRPC_FRAME_HEADER <= MAX_PUSH_BYTES);
        }
        // A message of the plan's largest size still goes out, alone.
        let big = vec![delivery(0, 10), delivery(1, 256 * 1024), delivery(2, 10)];
        let sizes: Vec<usize> = pack_within(big, MAX_PUSH_BYTES)
            .iter()
            .map(|p| p.deliveries.len())
            .collect();
        assert_eq!(sizes, vec![1, 1, 1]);
    }

    #[test]
    fn an_oversized_delivery_goes_alone() {
        let batch = vec![
            delivery(0, 10),
            delivery(1, 5 * 1024 * 1024),
            delivery(2, 10),
        ];
        let packs = pack(batch);
        let sizes: Vec<usize> = packs.iter().map(|p| p.deliveries.len()).collect();
        assert_eq!(sizes, vec![1, 1, 1]);
    }
}
