//! The `tallyq.v1.Broker` service: produce, streams, fetch, ack, nack, seek.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::access::NamesTopics;
use super::auth::{tenant_key, tenant_request};
use super::convert::{at_most, seek_target};
use super::pack::{pack, push_channel, PushSender, Returner};
use super::{reply, ApiState, ResponseStream};
use crate::broker::{ConsumerSession, FlowWindow};
use crate::error::Error;
use crate::proto::v1 as pb;
use crate::proto::v1::broker_server::Broker as BrokerApi;

/// Most batches a ProduceStream has queued for commit at once.
const PRODUCE_PIPELINE_DEPTH: usize = 32;
/// Consume responses ready before the client reads them.
const CONSUME_BUFFER: usize = 4;
/// Longest Fetch wait.
const MAX_FETCH_WAIT_MS: u32 = 30_000;
/// Most messages one Fetch returns.
const MAX_FETCH_MESSAGES: u32 = 1000;

/// The Broker service.
pub struct BrokerService {
    state: ApiState,
}

impl BrokerService {
    /// A service over `state`.
    pub fn new(state: ApiState) -> Self {
        BrokerService { state }
    }
}

#[tonic::async_trait]
impl BrokerApi for BrokerService {
    async fn produce(
        &self,
        request: Request<pb::ProduceRequest>,
    ) -> Result<Response<pb::ProduceResponse>, Status> {
        let (key, req) = tenant_request(request)?;
        let messages = req.messages.into_iter().map(Into::into).collect();
        reply(
            self.state
                .broker
                .produce(&key, &req.topic, messages)
                .await?,
        )
    }

    type ProduceStreamStream = ResponseStream<pb::ProduceResponse>;

    async fn produce_stream(
        &self,
        request: Request<Streaming<pb::ProduceRequest>>,
    ) -> Result<Response<Self::ProduceStreamStream>, Status> {
        let key = tenant_key(&request)?;
        let mut inbound = request.into_inner();
        let permit = self.state.open_stream(&key.tenant)?;
        let broker = self.state.broker.clone();
        let (queued_tx, mut queued_rx) = mpsc::channel(PRODUCE_PIPELINE_DEPTH);
        let (out_tx, out_rx) = mpsc::channel(PRODUCE_PIPELINE_DEPTH);
        // Batches read and not yet answered: a batch with none before it
        // waits at the combining gate as a unary produce does
        // (`Broker::submit_produce`).
        let in_flight = Arc::new(AtomicUsize::new(0));
        let answered = in_flight.clone();
        let mut shutdown = self.state.shutdown.clone();
        // Reader: check and queue each batch as it arrives (pipelining), until
        // the client ends its side, a frame cannot be read, or the server
        // stops serving (shutdown, or a failed store: an idle stream must not
        // keep the domain alive).
        self.state.tasks.spawn(async move {
            let mut frame = 0u64;
            loop {
                let next = tokio::select! {
                    next = inbound.next() => next,
                    _ = shutdown.wait_for(|stop| *stop) => None,
                };
                frame += 1;
                let req = match next {
                    Some(Ok(req)) => req,
                    Some(Err(status)) => {
                        let unreadable = Queued::Unreadable {
                            frame,
                            detail: status.message().to_string(),
                        };
                        let _ = queued_tx.send(unreadable).await;
                        break;
                    }
                    None => {
                        if *shutdown.borrow() {
                            // Counted as a batch: the writer answers it as one.
                            in_flight.fetch_add(1, Ordering::AcqRel);
                            let ended = Error::Unavailable("the broker is shutting down".into());
                            let _ = queued_tx.send(Queued::Batch(Err(ended))).await;
                        }
                        break;
                    }
                };
                let earlier_in_flight = in_flight.fetch_add(1, Ordering::AcqRel) > 0;
                let queued = match key.require_topics(req.topics()) {
                    Ok(()) => {
                        let messages = req.messages.into_iter().map(Into::into).collect();
                        broker
                            .submit_produce(&key, &req.topic, messages, earlier_in_flight)
                            .await
                    }
                    Err(e) => Err(e),
                };
                let refused = queued.is_err();
                if queued_tx.send(Queued::Batch(queued)).await.is_err() || refused {
                    break;
                }
            }
        });
        // Writer: answer in order, each after its commit; the first error ends
        // the stream (so every batch before it was stored).
        self.state.tasks.spawn(async move {
            let _permit = permit;
            let mut stored = 0u64;
            while let Some(queued) = queued_rx.recv().await {
                let batch = matches!(queued, Queued::Batch(_));
                let result = match queued {
                    Queued::Batch(Ok(pending)) => pending.wait().await,
                    Queued::Batch(Err(e)) => Err(e),
                    Queued::Unreadable { frame, detail } => {
                        Err(unreadable_frame(frame, stored, &detail))
                    }
                };
                let failed = result.is_err();
                stored += u64::from(!failed);
                let reply = result.map(Into::into).map_err(Status::from);
                if batch {
                    answered.fetch_sub(1, Ordering::AcqRel);
                }
                if out_tx.send(reply).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }

    type ConsumeStream = ResponseStream<pb::ConsumeResponse>;

    async fn consume(
        &self,
        request: Request<Streaming<pb::ConsumeRequest>>,
    ) -> Result<Response<Self::ConsumeStream>, Status> {
        let key = tenant_key(&request)?;
        let permit = self.state.open_stream(&key.tenant)?;
        let mut inbound = request.into_inner();
        let start = match inbound.next().await {
            Some(Ok(pb::ConsumeRequest {
                request: Some(pb::consume_request::Request::Start(start)),
            })) => start,
            Some(Err(status)) => return Err(status),
            _ => {
                return Err(
                    Error::invalid("the first message of a Consume stream must be 'start'").into(),
                )
            }
        };
        key.require_topics(start.topics())?;
        let returner = Returner::new(
            self.state.broker.clone(),
            &key.tenant,
            &start.topic,
            &start.subscription,
        );
        let session = ConsumerSession::open(
            self.state.broker.clone(),
            key,
            &start.topic,
            &start.subscription,
            FlowWindow::new(start.max_outstanding_messages, start.max_outstanding_bytes),
        )?;
        let (tx, rx) = push_channel(CONSUME_BUFFER, returner);
        let shutdown = self.state.shutdown.clone();
        self.state.tasks.spawn(async move {
            let _permit = permit;
            run_consume(session, inbound, tx, shutdown).await
        });
        Ok(Response::new(Box::pin(rx)))
    }

    async fn fetch(
        &self,
        request: Request<pb::FetchRequest>,
    ) -> Result<Response<pb::FetchResponse>, Status> {
        let (key, req) = tenant_request(request)?;
        let max_messages = at_most("max_messages", req.max_messages, MAX_FETCH_MESSAGES)?;
        let max_wait_ms = at_most("max_wait_ms", req.max_wait_ms, MAX_FETCH_WAIT_MS)?;
        let broker = self.state.broker.clone();
        let returner = Returner::new(broker.clone(), &key.tenant, &req.topic, &req.subscription);
        // The fetch runs on its own task, so a caller that gives up does not
        // cancel it half-way: what it claimed is then handed back, not lost.
        let (tx, rx) = oneshot::channel();
        self.state.tasks.spawn(async move {
            let fetched = broker
                .fetch(
                    &key,
                    &req.topic,
                    &req.subscription,
                    max_messages.max(1) as usize,
                    Duration::from_millis(max_wait_ms as u64),
                )
                .await;
            let first = match fetched {
                Ok(fetched) => {
                    // One response's worth goes out; the rest is due again at once.
                    let mut packs = pack(fetched.deliveries).into_iter();
                    let first = packs.next().unwrap_or_default();
                    returner
                        .give_back(packs.flat_map(|p| p.unsent).collect())
                        .await;
                    Ok((first, fetched.credit))
                }
                Err(e) => Err(e),
            };
            if let Err(Ok((first, _credit))) = tx.send(first) {
                returner.give_back(first.unsent).await;
            }
        });
        let (first, credit) = rx
            .await
            .map_err(|_| Status::unavailable("the fetch ended without an answer"))??;
        let mut response = Response::new(pb::FetchResponse {
            deliveries: first.deliveries,
        });
        // The answer keeps its credit until it has left the broker (the
        // edge's answer body carries it on; see server::connection).
        if let Some(credit) = credit {
            response.extensions_mut().insert(credit);
        }
        Ok(response)
    }

    async fn ack(
        &self,
        request: Request<pb::AckRequest>,
    ) -> Result<Response<pb::AckResponse>, Status> {
        let (key, req) = tenant_request(request)?;
        let broker = &self.state.broker;
        let acknowledged = broker
            .ack(&key, &req.topic, &req.subscription, &req.offsets)
            .await?;
        reply(pb::AckResponse { acknowledged })
    }

    async fn nack(
        &self,
        request: Request<pb::NackRequest>,
    ) -> Result<Response<pb::NackResponse>, Status> {
        let (key, req) = tenant_request(request)?;
        let delay = Duration::from_millis(req.delay_ms);
        let broker = &self.state.broker;
        let nacked = broker
            .nack(&key, &req.topic, &req.subscription, &req.offsets, delay)
            .await?;
        reply(pb::NackResponse { nacked })
    }

    async fn seek(
        &self,
        request: Request<pb::SeekRequest>,
    ) -> Result<Response<pb::SeekResponse>, Status> {
        let (key, req) = tenant_request(request)?;
        let target = seek_target(&req)?;
        let broker = &self.state.broker;
        let next_offset = broker
            .seek(&key, &req.topic, &req.subscription, target)
            .await?;
        reply(pb::SeekResponse { next_offset })
    }
}

/// What a ProduceStream's reader hands its writer, in stream order.
enum Queued {
    /// A batch queued for commit, or why it was refused.
    Batch(crate::error::Result<crate::broker::produce::PendingProduce>),
    /// Frame `frame` (1-based) could not be read; nothing after it is stored.
    Unreadable {
        /// Which frame of the stream.
        frame: u64,
        /// What the gRPC library said.
        detail: String,
    },
}

/// The INVALID_ARGUMENT that ends a ProduceStream at an undecodable frame,
/// saying which batch was the last one stored.
fn unreadable_frame(frame: u64, stored: u64, detail: &str) -> Error {
    let last = match stored {
        0 => "no batch of this stream was stored".to_string(),
        n => format!("the last stored batch is batch {n} of this stream (answered above)"),
    };
    Error::invalid(format!(
        "frame {frame} of this ProduceStream is not a ProduceRequest ({detail}); {last}; \
         nothing after it was stored: send the rest again on a new stream"
    ))
}

/// Drives one Consume stream until the client leaves, an error ends it, or
/// the server shuts down.
///
/// Before every delivery pass it applies everything the client has sent
/// already (acks merged into one commit), so acks free credit as soon as
/// they arrive, not only once nothing is left to deliver. Neither stream
/// acks nor delivery records are waited for in line: a pass is claimed while
/// the one before commits ([`ConsumerSession::poll`]), each goes out once
/// its record is durable, in claim order, and a failed commit ends the
/// stream.
async fn run_consume(
    mut session: ConsumerSession,
    mut inbound: Streaming<pb::ConsumeRequest>,
    tx: PushSender,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let ended = consume_loop(&mut session, &mut inbound, &tx, &mut shutdown).await;
    // Passes claimed and queued still go out (or, to a client that has
    // gone, are handed back) before the stream ends.
    while session.has_queued_passes() {
        match session.next_durable().await {
            Ok(batch) => {
                tx.send_deliveries(batch).await;
            }
            Err(_) => break,
        }
    }
    match ended {
        Ended::Error(status) => tx.send_error(status).await,
        Ended::ClientClosed => tx.hand_back_once_closed().await,
        Ended::ClientGone => tx.hand_back_unread().await,
    }
}

/// How a Consume stream's loop ended.
enum Ended {
    /// With an error for the client (or the server shutting down).
    Error(Status),
    /// The client closed its side or the connection failed.
    ClientClosed,
    /// The response stream was closed: the client is gone.
    ClientGone,
}

/// The loop of [`run_consume`], until the stream is to end.
async fn consume_loop(
    session: &mut ConsumerSession,
    inbound: &mut Streaming<pb::ConsumeRequest>,
    tx: &PushSender,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> Ended {
    loop {
        if *shutdown.borrow() {
            return Ended::Error(Status::unavailable("the broker is shutting down"));
        }
        let (received, ended) = received_already(inbound);
        if let Err(e) = apply_requests(session, received).await {
            return Ended::Error(e.into());
        }
        if ended {
            return Ended::ClientClosed;
        }
        // Every pass whose record is durable goes out, in order.
        while let Some(durable) = session.durable_now() {
            match durable {
                // As many pushes as the batch needs, each within 4 MiB.
                Ok(batch) => {
                    if !tx.send_deliveries(batch).await {
                        return Ended::ClientGone;
                    }
                }
                Err(e) => return Ended::Error(e.into()),
            }
        }
        match session.poll().await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => return Ended::Error(e.into()),
        }
        let ready = session.ready();
        tokio::select! {
            message = inbound.next() => {
                let request = match message {
                    Some(Ok(pb::ConsumeRequest { request: Some(request) })) => request,
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return Ended::ClientClosed,
                };
                if let Err(e) = apply_requests(session, vec![request]).await {
                    return Ended::Error(e.into());
                }
            }
            durable = session.next_commit() => match durable {
                Ok(Some(batch)) => {
                    if !tx.send_deliveries(batch).await {
                        return Ended::ClientGone;
                    }
                }
                Ok(None) => {}
                Err(e) => return Ended::Error(e.into()),
            },
            _ = ready => {}
            _ = shutdown.changed() => {}
            _ = tx.closed() => return Ended::ClientGone,
        }
    }
}

/// Most requests of a Consume stream applied together before a delivery pass.
const MAX_REQUESTS_AT_ONCE: usize = 256;

/// The requests the client has sent that are ready to read now, without
/// waiting for more, and whether its side of the stream has ended (closed,
/// or the connection failed).
fn received_already(
    inbound: &mut Streaming<pb::ConsumeRequest>,
) -> (Vec<pb::consume_request::Request>, bool) {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut received = Vec::new();
    while received.len() < MAX_REQUESTS_AT_ONCE {
        match tokio_stream::Stream::poll_next(std::pin::Pin::new(&mut *inbound), &mut cx) {
            std::task::Poll::Ready(Some(Ok(pb::ConsumeRequest {
                request: Some(request),
            }))) => received.push(request),
            std::task::Poll::Ready(Some(Ok(_))) => {}
            std::task::Poll::Ready(Some(Err(_)) | None) => return (received, true),
            std::task::Poll::Pending => break,
        }
    }
    (received, false)
}

/// Applies a Consume stream's requests in order; consecutive acks go as one
/// (one state change, one commit). An error ends the stream.
async fn apply_requests(
    session: &mut ConsumerSession,
    requests: Vec<pb::consume_request::Request>,
) -> crate::error::Result<()> {
    let mut acks: Vec<u64> = Vec::new();
    for request in requests {
        if let pb::consume_request::Request::Ack(ack) = request {
            acks.extend(ack.offsets);
            continue;
        }
        if !acks.is_empty() {
            session.ack(&std::mem::take(&mut acks)).await?;
        }
        match request {
            pb::consume_request::Request::Ack(_) => {}
            pb::consume_request::Request::Nack(nack) => {
                session
                    .nack(&nack.offsets, Duration::from_millis(nack.delay_ms))
                    .await?;
            }
            pb::consume_request::Request::Flow(flow) => session.set_window(FlowWindow::new(
                flow.max_outstanding_messages,
                flow.max_outstanding_bytes,
            ))?,
            pb::consume_request::Request::Start(_) => {
                return Err(Error::invalid(
                    "'start' may only be sent once, as the first message of a Consume stream",
                ))
            }
        }
    }
    if !acks.is_empty() {
        session.ack(&acks).await?;
    }
    Ok(())
}
