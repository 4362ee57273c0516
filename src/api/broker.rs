//! The `tallyq.v1.Broker` service: produce, streams, fetch, ack, nack, seek.

use std::pin::Pin;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::auth::tenant_key;
use super::convert::{delivery, produce_response, stored_message};
use super::ApiState;
use crate::broker::delivery::SeekTarget;
use crate::broker::{ConsumerSession, FlowWindow};
use crate::error::Error;
use crate::proto::v1 as pb;
use crate::proto::v1::broker_server::Broker as BrokerApi;
use crate::quota::admission::StreamPermit;

/// Most batches a ProduceStream has queued for commit at once.
const PRODUCE_PIPELINE_DEPTH: usize = 32;
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

    /// Takes one of the tenant's concurrent-stream slots (a refused stream
    /// changes nothing and is not counted).
    fn open_stream(&self, tenant: &str) -> Result<StreamPermit, Status> {
        let broker = &self.state.broker;
        let plan = broker.tenancy().plan_of(tenant);
        Ok(broker.admission().open_stream(tenant, &plan)?)
    }
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl BrokerApi for BrokerService {
    async fn produce(
        &self,
        request: Request<pb::ProduceRequest>,
    ) -> Result<Response<pb::ProduceResponse>, Status> {
        let key = tenant_key(&request)?;
        let req = request.into_inner();
        let messages = req.messages.into_iter().map(stored_message).collect();
        let outcome = self
            .state
            .broker
            .produce(&key, &req.topic, messages)
            .await?;
        Ok(Response::new(produce_response(outcome)))
    }

    type ProduceStreamStream = ResponseStream<pb::ProduceResponse>;

    async fn produce_stream(
        &self,
        request: Request<Streaming<pb::ProduceRequest>>,
    ) -> Result<Response<Self::ProduceStreamStream>, Status> {
        let key = tenant_key(&request)?;
        let permit = self.open_stream(&key.tenant)?;
        let mut inbound = request.into_inner();
        let broker = self.state.broker.clone();
        let (queued_tx, mut queued_rx) = mpsc::channel(PRODUCE_PIPELINE_DEPTH);
        let (out_tx, out_rx) = mpsc::channel(PRODUCE_PIPELINE_DEPTH);
        // Reader: check and queue each batch as it arrives (pipelining).
        self.state.tasks.spawn(async move {
            while let Some(Ok(req)) = inbound.next().await {
                let messages = req.messages.into_iter().map(stored_message).collect();
                let queued = broker.submit_produce(&key, &req.topic, messages).await;
                let refused = queued.is_err();
                if queued_tx.send(queued).await.is_err() || refused {
                    break;
                }
            }
        });
        // Writer: answer in order, each after its commit; the first error ends the stream.
        self.state.tasks.spawn(async move {
            let _permit = permit;
            while let Some(queued) = queued_rx.recv().await {
                let result = match queued {
                    Ok(pending) => pending.wait().await,
                    Err(e) => Err(e),
                };
                let failed = result.is_err();
                let reply = result.map(produce_response).map_err(Status::from);
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
        let permit = self.open_stream(&key.tenant)?;
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
        let session = ConsumerSession::open(
            self.state.broker.clone(),
            key,
            &start.topic,
            &start.subscription,
            FlowWindow::new(start.max_outstanding_messages, start.max_outstanding_bytes),
        )?;
        let (tx, rx) = mpsc::channel(4);
        let shutdown = self.state.shutdown.clone();
        self.state.tasks.spawn(async move {
            let _permit = permit;
            run_consume(session, inbound, tx, shutdown).await
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn fetch(
        &self,
        request: Request<pb::FetchRequest>,
    ) -> Result<Response<pb::FetchResponse>, Status> {
        let key = tenant_key(&request)?;
        let req = request.into_inner();
        if req.max_messages > MAX_FETCH_MESSAGES {
            return Err(Error::invalid(format!(
                "max_messages {} is out of range: at most {MAX_FETCH_MESSAGES}",
                req.max_messages
            ))
            .into());
        }
        if req.max_wait_ms > MAX_FETCH_WAIT_MS {
            return Err(Error::invalid(format!(
                "max_wait_ms {} is out of range: at most {MAX_FETCH_WAIT_MS}",
                req.max_wait_ms
            ))
            .into());
        }
        let deliveries = self
            .state
            .broker
            .fetch(
                &key,
                &req.topic,
                &req.subscription,
                req.max_messages.max(1) as usize,
                Duration::from_millis(req.max_wait_ms as u64),
            )
            .await?;
        Ok(Response::new(pb::FetchResponse {
            deliveries: deliveries.into_iter().map(delivery).collect(),
        }))
    }

    async fn ack(
        &self,
        request: Request<pb::AckRequest>,
    ) -> Result<Response<pb::AckResponse>, Status> {
        let key = tenant_key(&request)?;
        let req = request.into_inner();
        let acknowledged = self
            .state
            .broker
            .ack(&key, &req.topic, &req.subscription, &req.offsets)
            .await?;
        Ok(Response::new(pb::AckResponse { acknowledged }))
    }

    async fn nack(
        &self,
        request: Request<pb::NackRequest>,
    ) -> Result<Response<pb::NackResponse>, Status> {
        let key = tenant_key(&request)?;
        let req = request.into_inner();
        let nacked = self
            .state
            .broker
            .nack(
                &key,
                &req.topic,
                &req.subscription,
                &req.offsets,
                Duration::from_millis(req.delay_ms),
            )
            .await?;
        Ok(Response::new(pb::NackResponse { nacked }))
    }

    async fn seek(
        &self,
        request: Request<pb::SeekRequest>,
    ) -> Result<Response<pb::SeekResponse>, Status> {
        let key = tenant_key(&request)?;
        let req = request.into_inner();
        let target = match pb::SeekPosition::try_from(req.position) {
            Ok(pb::SeekPosition::Earliest) => SeekTarget::Earliest,
            Ok(pb::SeekPosition::Latest) => SeekTarget::Latest,
            Ok(pb::SeekPosition::Offset) => SeekTarget::Offset(req.offset),
            Ok(pb::SeekPosition::Timestamp) => SeekTarget::Timestamp(req.timestamp_unix_ms),
            _ => {
                return Err(Error::invalid(format!(
                    "unknown seek position {}: use EARLIEST, LATEST, OFFSET or TIMESTAMP",
                    req.position
                ))
                .into())
            }
        };
        let next_offset = self
            .state
            .broker
            .seek(&key, &req.topic, &req.subscription, target)
            .await?;
        Ok(Response::new(pb::SeekResponse { next_offset }))
    }
}

/// Drives one Consume stream until the client leaves, an error ends it, or
/// the server shuts down.
async fn run_consume(
    mut session: ConsumerSession,
    mut inbound: Streaming<pb::ConsumeRequest>,
    tx: mpsc::Sender<Result<pb::ConsumeResponse, Status>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            let _ = tx
                .send(Err(Status::unavailable("the broker is shutting down")))
                .await;
            return;
        }
        match session.poll().await {
            Ok(batch) if !batch.is_empty() => {
                let response = pb::ConsumeResponse {
                    deliveries: batch.into_iter().map(delivery).collect(),
                };
                if tx.send(Ok(response)).await.is_err() {
                    return;
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        }
        let ready = session.ready();
        tokio::select! {
            message = inbound.next() => {
                let request = match message {
                    Some(Ok(pb::ConsumeRequest { request: Some(request) })) => request,
                    Some(Ok(_)) => continue,
                    // The client closed its side or the connection failed.
                    Some(Err(_)) | None => return,
                };
                let result = match request {
                    pb::consume_request::Request::Ack(ack) => session.ack(&ack.offsets).await.map(|_| ()),
                    pb::consume_request::Request::Nack(nack) => session
                        .nack(&nack.offsets, Duration::from_millis(nack.delay_ms))
                        .await
                        .map(|_| ()),
                    pb::consume_request::Request::Flow(flow) => {
                        session.set_window(FlowWindow::new(
                            flow.max_outstanding_messages,
                            flow.max_outstanding_bytes,
                        ));
                        Ok(())
                    }
                    pb::consume_request::Request::Start(_) => Err(Error::invalid(
                        "'start' may only be sent once, as the first message of a Consume stream",
                    )),
                };
                if let Err(e) = result {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            }
            _ = ready => {}
            _ = shutdown.changed() => {}
            _ = tx.closed() => return,
        }
    }
}
