//! The Rust client for tallyq, used by the CLI and the tests, and usable by
//! any Rust application: typed access to the three services with the
//! credential attached to every call, plus conveniences for produce and the
//! Consume stream, and [`verify_ledger`] to check the billing ledger's hash
//! chain. It shares only `wire` (limits, retry key) and the pure hash-chain
//! code of `billing::ledger` with the server.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status, Streaming};

use crate::billing::ledger::{verify_chain, ChainBroken, LedgerEntry};
use crate::proto::v1 as pb;
use crate::proto::v1::admin_client::AdminClient;
use crate::proto::v1::billing_client::BillingClient;
use crate::proto::v1::broker_client::BrokerClient;
use crate::proto::v1::operator_client::OperatorClient;

/// How many times a call refused with `retry-after-ms` is tried again.
pub const MAX_RETRIES: u32 = 5;
/// The longest a single retry waits, whatever the server asks.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);

/// How long a refusal asks the caller to wait, if it says (the
/// `retry-after-ms` metadata on RESOURCE_EXHAUSTED).
pub fn retry_after(status: &Status) -> Option<Duration> {
    if status.code() != tonic::Code::ResourceExhausted {
        return None;
    }
    status
        .metadata()
        .get(crate::wire::RETRY_AFTER_MS)?
        .to_str()
        .ok()?
        .parse::<u64>()
        .ok()
        .map(Duration::from_millis)
}

/// Runs `call`, and when it is refused with `retry-after-ms`, waits that long
/// (at most [`MAX_RETRY_WAIT`]) and tries again, at most [`MAX_RETRIES`] times.
/// Any other outcome is returned as it is.
pub async fn with_retries<T, F, Fut>(mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let mut attempt = 0;
    loop {
        match call().await {
            Err(status) if attempt < MAX_RETRIES => match retry_after(&status) {
                Some(wait) => {
                    attempt += 1;
                    tokio::time::sleep(wait.min(MAX_RETRY_WAIT)).await;
                }
                None => return Err(status),
            },
            other => return other,
        }
    }
}

/// Client-side decoding limit (matches the server's).
const MAX_MESSAGE_BYTES: usize = crate::wire::MAX_DECODING_BYTES;

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server address is not a valid URI.
    #[error("invalid server address '{0}'")]
    Address(String),
    /// The credential contains characters that cannot travel in metadata.
    #[error("the credential contains characters that are not allowed in gRPC metadata")]
    Token,
    /// The connection failed.
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// The address.
        address: String,
        /// The cause.
        #[source]
        source: tonic::transport::Error,
    },
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct BearerAuth {
    value: Option<MetadataValue<Ascii>>,
}

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.value {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

type Authed = InterceptedService<Channel, BearerAuth>;

/// A connection to one broker with one credential. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    auth: BearerAuth,
    /// Where `channel` goes, to open more connections there.
    endpoint: Endpoint,
}

impl Client {
    /// Connects to `address` (e.g. `http://127.0.0.1:50051`) with `token`
    /// (an API key or the operator credential; empty for none).
    pub async fn connect(address: &str, token: &str) -> Result<Self, ClientError> {
        Self::connect_endpoint(Self::endpoint(address)?, token).await
    }

    /// The endpoint `connect` uses (no Nagle, windows for 4 MiB batches), for
    /// callers that want to adjust it (TLS, local address, timeouts).
    pub fn endpoint(address: &str) -> Result<Endpoint, ClientError> {
        Ok(Endpoint::from_shared(address.to_string())
            .map_err(|_| ClientError::Address(address.to_string()))?
            .tcp_nodelay(true)
            .initial_stream_window_size(crate::wire::HTTP2_STREAM_WINDOW)
            .initial_connection_window_size(crate::wire::HTTP2_CONNECTION_WINDOW))
    }

    /// Connects over TLS: `ca_pem` is trusted, `domain` is the name the
    /// server's certificate must carry, `identity` (cert, key PEM) is sent when
    /// the server asks for client certificates.
    pub async fn connect_tls(
        address: &str,
        token: &str,
        ca_pem: &[u8],
        domain: &str,
        identity: Option<(&[u8], &[u8])>,
    ) -> Result<Self, ClientError> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca_pem))
            .domain_name(domain);
        if let Some((cert, key)) = identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        let endpoint =
            Self::endpoint(address)?
                .tls_config(tls)
                .map_err(|source| ClientError::Connect {
                    address: address.to_string(),
                    source,
                })?;
        Self::connect_endpoint(endpoint, token).await
    }

    /// Connects through a prepared endpoint.
    pub async fn connect_endpoint(endpoint: Endpoint, token: &str) -> Result<Self, ClientError> {
        Self::connect_with(endpoint, bearer(token)?).await
    }

    /// Connects to `endpoint`, every call carrying `auth`.
    async fn connect_with(endpoint: Endpoint, auth: BearerAuth) -> Result<Self, ClientError> {
        let address = endpoint.uri().to_string();
        let channel = endpoint
            .connect()
            .await
            .map_err(|source| ClientError::Connect { address, source })?;
        Ok(Client {
            channel,
            auth,
            endpoint,
        })
    }

    /// Another connection to the same broker with the same credential. The
    /// broker serves at most [`crate::wire::MAX_CONCURRENT_STREAMS_PER_CONNECTION`]
    /// concurrent streams (each request is one) per connection, so a client
    /// with more concurrent calls spreads them over several.
    pub async fn new_connection(&self) -> Result<Self, ClientError> {
        Self::connect_with(self.endpoint.clone(), self.auth.clone()).await
    }

    /// The same connection with another credential.
    pub fn with_token(&self, token: &str) -> Result<Self, ClientError> {
        Ok(Client {
            channel: self.channel.clone(),
            auth: bearer(token)?,
            endpoint: self.endpoint.clone(),
        })
    }

    /// The Broker service (data plane).
    pub fn broker(&self) -> BrokerClient<Authed> {
        BrokerClient::with_interceptor(self.channel.clone(), self.auth.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// The Admin service (topics and subscriptions).
    pub fn admin(&self) -> AdminClient<Authed> {
        AdminClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    /// The Operator service.
    pub fn operator(&self) -> OperatorClient<Authed> {
        OperatorClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    /// The Billing service.
    pub fn billing(&self) -> BillingClient<Authed> {
        BillingClient::with_interceptor(self.channel.clone(), self.auth.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// Produces a batch and returns the broker's answer (after it is durable).
    /// A rate refusal is retried after the wait the broker asks for (bounded);
    /// a batch refused for any other reason was not stored.
    pub async fn produce(
        &self,
        topic: &str,
        messages: Vec<pb::Message>,
    ) -> Result<pb::ProduceResponse, Status> {
        let request = pb::ProduceRequest {
            topic: topic.to_string(),
            messages,
        };
        with_retries(|| {
            let mut broker = self.broker();
            let request = request.clone();
            async move { broker.produce(request).await.map(|r| r.into_inner()) }
        })
        .await
    }

    /// Produces a batch once, without retries.
    pub async fn produce_once(
        &self,
        topic: &str,
        messages: Vec<pb::Message>,
    ) -> Result<pb::ProduceResponse, Status> {
        let response = self
            .broker()
            .produce(pb::ProduceRequest {
                topic: topic.to_string(),
                messages,
            })
            .await?;
        Ok(response.into_inner())
    }

    /// Opens a Consume stream on a subscription with a flow-control window.
    pub async fn consume(
        &self,
        topic: &str,
        subscription: &str,
        max_outstanding_messages: u32,
        max_outstanding_bytes: u64,
    ) -> Result<Consumer, Status> {
        let (tx, rx) = mpsc::channel(64);
        let start = pb::ConsumeRequest {
            request: Some(pb::consume_request::Request::Start(pb::ConsumeStart {
                topic: topic.to_string(),
                subscription: subscription.to_string(),
                max_outstanding_messages,
                max_outstanding_bytes,
            })),
        };
        tx.send(start)
            .await
            .map_err(|_| Status::internal("consume request channel closed"))?;
        let inbound = self
            .broker()
            .consume(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(Consumer { tx, inbound })
    }
}

fn bearer(token: &str) -> Result<BearerAuth, ClientError> {
    if token.is_empty() {
        return Ok(BearerAuth { value: None });
    }
    let value = format!("Bearer {token}")
        .parse()
        .map_err(|_| ClientError::Token)?;
    Ok(BearerAuth { value: Some(value) })
}

/// An open Consume stream.
#[derive(Debug)]
pub struct Consumer {
    tx: mpsc::Sender<pb::ConsumeRequest>,
    inbound: Streaming<pb::ConsumeResponse>,
}

impl Consumer {
    /// The next pushed deliveries; `None` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<Vec<pb::Delivery>>, Status> {
        Ok(self.inbound.message().await?.map(|r| r.deliveries))
    }

    async fn send(&self, request: pb::consume_request::Request) -> Result<(), Status> {
        self.tx
            .send(pb::ConsumeRequest {
                request: Some(request),
            })
            .await
            .map_err(|_| Status::unavailable("the Consume stream is closed"))
    }

    /// Acknowledges offsets (and frees their credit).
    pub async fn ack(&self, offsets: Vec<u64>) -> Result<(), Status> {
        self.send(pb::consume_request::Request::Ack(pb::AckOffsets {
            offsets,
        }))
        .await
    }

    /// Gives offsets back for redelivery after `delay_ms`.
    pub async fn nack(&self, offsets: Vec<u64>, delay_ms: u64) -> Result<(), Status> {
        self.send(pb::consume_request::Request::Nack(pb::NackOffsets {
            offsets,
            delay_ms,
        }))
        .await
    }

    /// Changes the flow-control window.
    pub async fn flow(&self, max_messages: u32, max_bytes: u64) -> Result<(), Status> {
        self.send(pb::consume_request::Request::Flow(pb::FlowControl {
            max_outstanding_messages: max_messages,
            max_outstanding_bytes: max_bytes,
        }))
        .await
    }

    /// Closes the client side of the stream.
    pub fn close(self) {}
}

/// Checks the hash chain of ledger entries as the Billing service lists them
/// (in order, from sequence 1): how many entries were checked, or the first
/// bad one. `tallyq ledger verify` and the tests use it.
pub fn verify_ledger(entries: &[pb::LedgerEntry]) -> Result<u64, ChainBroken> {
    verify_chain(entries.iter().map(hashed_form))
}

/// A wire entry back in the form its hash covers. The hashes travel as hex;
/// one that is not hex becomes empty, so the chain check names that entry.
fn hashed_form(e: &pb::LedgerEntry) -> LedgerEntry {
    LedgerEntry {
        sequence: e.sequence,
        node_id: e.node_id.clone(),
        tenant: e.tenant.clone(),
        kind: e.kind.clone(),
        day: e.day.clone(),
        meter: e.meter.clone(),
        quantity: e.quantity,
        free_applied: e.free_applied,
        billable: e.billable,
        unit_price_nano_minor: e.unit_price_nano_minor,
        amount_minor: e.amount_minor,
        currency: e.currency.clone(),
        idempotency_key: e.idempotency_key.clone(),
        created_ms: e.created_unix_ms,
        due_ms: e.due_unix_ms,
        produced_units: e.produced_units,
        delivered_units: e.delivered_units,
        redelivered_units: e.redelivered_units,
        note: e.note.clone(),
        prev_hash: hex::decode(&e.prev_hash).unwrap_or_default(),
        hash: hex::decode(&e.hash).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::ledger::{entry_hash, genesis_hash};

    /// A chain of `n` wire entries, hashed the way the server hashes them.
    fn wire_chain(n: u64) -> Vec<pb::LedgerEntry> {
        let mut prev = genesis_hash();
        (1..=n)
            .map(|sequence| {
                let mut wire = pb::LedgerEntry {
                    sequence,
                    tenant: "acme".into(),
                    kind: "charge".into(),
                    amount_minor: 100,
                    created_unix_ms: 1_000 * sequence as i64,
                    prev_hash: hex::encode(&prev),
                    ..Default::default()
                };
                let hash = entry_hash(&hashed_form(&wire));
                wire.hash = hex::encode(&hash);
                prev = hash;
                wire
            })
            .collect()
    }

    #[test]
    fn an_intact_wire_chain_verifies() {
        assert_eq!(verify_ledger(&wire_chain(4)), Ok(4));
        assert_eq!(verify_ledger(&[]), Ok(0));
    }

    #[test]
    fn an_edited_entry_is_named() {
        let mut entries = wire_chain(4);
        entries[1].amount_minor = 1;
        assert_eq!(verify_ledger(&entries).unwrap_err().sequence, 2);
    }

    #[test]
    fn a_hash_that_is_not_hex_is_named() {
        let mut entries = wire_chain(4);
        entries[2].hash = "not hex".into();
        assert_eq!(verify_ledger(&entries).unwrap_err().sequence, 3);
    }
}
