//! Responses that fit a stock client: deliveries are packed into Fetch
//! responses and Consume pushes of at most [`MAX_RESPONSE_BYTES`] each,
//! protobuf encoding and gRPC frame header included, measured with prost's
//! own `encoded_len` (not estimated from payload sizes). A Consume batch
//! larger than that goes out as several pushes; a Fetch returns the first
//! response's worth and hands the rest back.
//!
//! Deliveries are billed when they are claimed (`broker::delivery`), so what
//! is not handed to the transport is handed back to the broker
//! ([`Broker::return_unsent`]): due again at once and not billed. For a
//! Consume stream that is every push still queued when the client leaves
//! ([`PushStream`]'s drop drains its queue); for a Fetch, what did not fit
//! and a reply its caller no longer waits for.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use tonic::Status;

use crate::broker::{Broker, Delivered, Unsent};
use crate::proto::v1 as pb;

/// The most bytes one Fetch response or Consume push takes on the wire: a
/// stock gRPC client's default receive limit (4 MiB), which it compares with
/// the encoded message; the 5-byte gRPC frame header is counted too, to be
/// safe with clients that count it.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

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

/// Splits `deliveries`, in order, into responses of at most
/// [`MAX_RESPONSE_BYTES`] each. A single delivery larger than that (only
/// possible with a plan whose messages are that large) goes alone: nothing
/// smaller can carry it.
pub fn pack(deliveries: Vec<Delivered>) -> Vec<Packed> {
    let mut packs = Vec::new();
    let mut current = Packed::default();
    let mut size = GRPC_FRAME_HEADER;
    for d in deliveries {
        let unsent = Unsent::from(&d);
        let wire = pb::Delivery::from(d);
        let len = element_len(&wire);
        if !current.deliveries.is_empty() && size + len > MAX_RESPONSE_BYTES {
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
#[derive(Clone)]
pub struct Returner {
    broker: Arc<Broker>,
    tenant: String,
    topic: String,
    subscription: String,
    tasks: TaskTracker,
}

impl Returner {
    /// A returner for `tenant`'s `topic`/`subscription`; background returns
    /// run on `tasks` (so shutdown waits for them).
    pub fn new(
        broker: Arc<Broker>,
        tenant: &str,
        topic: &str,
        subscription: &str,
        tasks: TaskTracker,
    ) -> Self {
        Returner {
            broker,
            tenant: tenant.to_string(),
            topic: topic.to_string(),
            subscription: subscription.to_string(),
            tasks,
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

    /// Hands back what the receiver still holds once it is closed, in the
    /// background.
    fn drain(self, mut rx: mpsc::Receiver<Result<Push, Status>>) {
        let tasks = self.tasks.clone();
        tasks.spawn(async move {
            rx.close();
            let mut unsent = Vec::new();
            // After close, recv ends once every queued push (and any send
            // already under way) has been received.
            while let Some(item) = rx.recv().await {
                if let Ok(push) = item {
                    unsent.extend(push.unsent);
                }
            }
            self.give_back(unsent).await;
        });
    }
}

/// One queued Consume push and what to hand back if it is never sent.
pub struct Push {
    response: pb::ConsumeResponse,
    unsent: Vec<Unsent>,
}

/// The sending side of a Consume stream's pushes.
pub struct PushSender {
    tx: mpsc::Sender<Result<Push, Status>>,
    returner: Returner,
}

/// The Consume response stream tonic reads: what it has read is handed to
/// the transport; what is still queued when it is dropped is handed back.
pub struct PushStream {
    rx: Option<mpsc::Receiver<Result<Push, Status>>>,
    returner: Returner,
}

/// A queue of at most `capacity` pushes between a Consume stream's pump
/// and tonic.
pub fn push_channel(capacity: usize, returner: Returner) -> (PushSender, PushStream) {
    let (tx, rx) = mpsc::channel(capacity);
    (
        PushSender {
            tx,
            returner: returner.clone(),
        },
        PushStream {
            rx: Some(rx),
            returner,
        },
    )
}

impl PushSender {
    /// Queues `deliveries` as as many pushes as they need. When the client
    /// is gone, what could not be queued is handed back and this returns
    /// false.
    pub async fn send_deliveries(&self, deliveries: Vec<Delivered>) -> bool {
        let mut packs = pack(deliveries).into_iter();
        while let Some(packed) = packs.next() {
            let push = Push {
                response: pb::ConsumeResponse {
                    deliveries: packed.deliveries,
                },
                unsent: packed.unsent,
            };
            if let Err(mpsc::error::SendError(item)) = self.tx.send(Ok(push)).await {
                let mut unsent = item.map(|push| push.unsent).unwrap_or_default();
                unsent.extend(packs.flat_map(|p| p.unsent));
                self.returner.give_back(unsent).await;
                return false;
            }
        }
        true
    }

    /// Ends the stream with `status` (if the client still listens).
    pub async fn send_error(&self, status: Status) {
        let _ = self.tx.send(Err(status)).await;
    }

    /// Resolves when the client has gone.
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

impl tokio_stream::Stream for PushStream {
    type Item = Result<pb::ConsumeResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.rx.as_mut() {
            Some(rx) => rx
                .poll_recv(cx)
                .map(|item| item.map(|r| r.map(|push| push.response))),
            None => Poll::Ready(None),
        }
    }
}

impl Drop for PushStream {
    fn drop(&mut self) {
        if let Some(rx) = self.rx.take() {
            self.returner.clone().drain(rx);
        }
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
            assert!(encoded + GRPC_FRAME_HEADER <= MAX_RESPONSE_BYTES, "{encoded}");
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
    fn an_oversized_delivery_goes_alone() {
        let batch = vec![delivery(0, 10), delivery(1, 5 * 1024 * 1024), delivery(2, 10)];
        let packs = pack(batch);
        let sizes: Vec<usize> = packs.iter().map(|p| p.deliveries.len()).collect();
        assert_eq!(sizes, vec![1, 1, 1]);
    }
}
