//! The `tallyq.v1.Admin` service: a tenant's topics and subscriptions.

use tonic::{Request, Response, Status};

use super::auth::tenant_key;
use super::convert::{subscription_message, topic_message};
use super::ApiState;
use crate::billing::pricing::milli_gib_hours;
use crate::broker::admin::{
    StartAt, SubscriptionSettings, SubscriptionUpdate, TopicSettings, TopicUpdate,
};
use crate::error::Error;
use crate::metering::Dimension;
use crate::proto::v1 as pb;
use crate::proto::v1::admin_server::Admin as AdminApi;
use crate::tenancy::Scope;

/// The Admin service.
pub struct AdminService {
    state: ApiState,
}

impl AdminService {
    /// A service over `state`.
    pub fn new(state: ApiState) -> Self {
        AdminService { state }
    }
}

type ExportStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::ExportChunk, Status>> + Send>>;

#[tonic::async_trait]
impl AdminApi for AdminService {
    type ExportDataStream = ExportStream;

    async fn export_data(
        &self,
        request: Request<pb::ExportDataRequest>,
    ) -> Result<Response<Self::ExportDataStream>, Status> {
        let key = tenant_key(&request)?;
        key.require(Scope::Manage, None)?;
        let broker = self.state.broker.clone();
        broker
            .admission()
            .admit_control(&key.tenant, &broker.tenancy().plan_of(&key.tenant))?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        self.state
            .tasks
            .spawn(async move { broker.export(&key.tenant, tx).await });
        let stream =
            tokio_stream::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), |item| {
                item.map(|jsonl| pb::ExportChunk {
                    jsonl: jsonl.into(),
                })
                .map_err(Status::from)
            });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_usage(
        &self,
        request: Request<pb::GetUsageRequest>,
    ) -> Result<Response<pb::GetUsageResponse>, Status> {
        let key = tenant_key(&request)?;
        key.require(Scope::Manage, None)?;
        let broker = &self.state.broker;
        broker
            .admission()
            .admit_control(&key.tenant, &broker.tenancy().plan_of(&key.tenant))?;
        let (lines, settled) = self.state.billing.live_usage(&key.tenant).await?;
        let calendar = self.state.billing.calendar();
        Ok(Response::new(pb::GetUsageResponse {
            lines: lines
                .into_iter()
                .map(|line| {
                    let (dimension, name) = match line.dimension {
                        Dimension::Total => ("total", String::new()),
                        Dimension::Topic(t) => ("topic", t),
                        Dimension::Device(d) => ("device", d),
                    };
                    let u = line.usage;
                    pb::UsageLine {
                        day: line.day,
                        dimension: dimension.into(),
                        name,
                        message_units: u.message_units(),
                        produced_units: u.produced_units,
                        delivered_units: u.delivered_units,
                        redelivered_units: u.redelivered_units,
                        produced_messages: u.produced_messages,
                        delivered_messages: u.delivered_messages,
                        storage_milli_gib_hours: milli_gib_hours(u.storage_byte_ms),
                    }
                })
                .collect(),
            settled_through: settled.map(|d| calendar.day_name(d)).unwrap_or_default(),
        }))
    }

    async fn get_quota(
        &self,
        request: Request<pb::GetQuotaRequest>,
    ) -> Result<Response<pb::GetQuotaResponse>, Status> {
        let key = tenant_key(&request)?;
        let (plan, items) = self.state.broker.get_quota(&key).await?;
        Ok(Response::new(pb::GetQuotaResponse {
            plan,
            quotas: items
                .into_iter()
                .map(|q| pb::QuotaItem {
                    name: q.name.to_string(),
                    limit: q.limit,
                    used: q.used,
                    unit: q.unit.to_string(),
                })
                .collect(),
        }))
    }

    async fn create_topic(
        &self,
        request: Request<pb::CreateTopicRequest>,
    ) -> Result<Response<pb::Topic>, Status> {
        let key = tenant_key(&request)?;
        let req = request.into_inner();
        let config = req.config.unwrap_or_default();
        let view = self
            .state
            .broker
            .create_topic(
                &key,
                &req.name,
                TopicSettings {
                    expiry_seconds: config.message_expiry_seconds,
                    max_bytes: config.max_bytes,
                    overflow_policy: config.overflow_policy,
                    dedup_window_seconds: config.dedup_window_seconds,
                },
            )
            .await?;
        Ok(Response::new(topic_message(view)))
    }

    async fn get_topic(
        &self,
        request: Request<pb::GetTopicRequest>,
    ) -> Result<Response<pb::Topic>, Status> {
        let key = tenant_key(&request)?;
        let view = self
            .state
            .broker
            .get_topic(&key, &request.into_inner().name)
            .await?;
        Ok(Response::new(topic_message(view)))
    }

    async fn list_topics(
        &self,
        request: Request<pb::ListTopicsRequest>,
    ) -> Result<Response<pb::ListTopicsResponse>, Status> {
        let key = tenant_key(&request)?;
        let views = self.state.broker.list_topics(&key).await?;
        Ok(Response::new(pb::ListTopicsResponse {
            topics: views.into_iter().map(topic_message).collect(),
        }))
    }

    async fn update_topic(
        &self,
        request: Request<pb::UpdateTopicRequest>,
    ) -> Result<Response<pb::Topic>, Status> {
        let key = tenant_key(&request)?;
        let req = request.into_inner();
        let view = self
            .state
            .broker
            .update_topic(
                &key,
                &req.name,
                TopicUpdate {
                    expiry_seconds: req.message_expiry_seconds,
                    max_bytes: req.max_bytes,
                    overflow_policy: req.overflow_policy,
                    dedup_window_seconds: req.dedup_window_seconds,
                },
            )
            .await?;
        Ok(Response::new(topic_message(view)))
    }

    async fn delete_topic(
        &self,
        request: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicResponse>, Status> {
        let key = tenant_key(&request)?;
        self.state
            .broker
            .delete_topic(&key, &request.into_inner().name)
            .await?;
        Ok(Response::new(pb::DeleteTopicResponse {}))
    }

    async fn create_subscription(
        &self,
        request: Request<pb::CreateSubscriptionRequest>,
    ) -> Result<Response<pb::Subscription>, Status> {
        let key = tenant_key(&request)?;
        let req = request.into_inner();
        let config = req.config.unwrap_or_default();
        let start = match pb::StartPosition::try_from(req.start) {
            Ok(pb::StartPosition::Unspecified | pb::StartPosition::Earliest) => StartAt::Earliest,
            Ok(pb::StartPosition::Latest) => StartAt::Latest,
            Err(_) => {
                return Err(Error::invalid(format!(
                    "unknown start position {}: use EARLIEST or LATEST",
                    req.start
                ))
                .into())
            }
        };
        let view = self
            .state
            .broker
            .create_subscription(
                &key,
                &req.topic,
                &req.name,
                SubscriptionSettings {
                    lock_seconds: config.lock_seconds,
                    max_delivery_attempts: config.max_delivery_attempts,
                    dead_letter_topic: config.dead_letter_topic,
                },
                start,
            )
            .await?;
        Ok(Response::new(subscription_message(view)))
    }

    async fn get_subscription(
        &self,
        request: Request<pb::GetSubscriptionRequest>,
    ) -> Result<Response<pb::Subscription>, Status> {
        let key = tenant_key(&request)?;
        let req = request.into_inner();
        let view = self
            .state
            .broker
            .get_subscription(&key, &req.topic, &req.name)
            .await?;
        Ok(Response::new(subscription_message(view)))
    }

    async fn list_subscriptions(
        &self,
        request: Request<pb::ListSubscriptionsRequest>,
    ) -> Result<Response<pb::ListSubscriptionsResponse>, Status> {
        let key = tenant_key(&request)?;
        let views = self
            .state
            .broker
            .list_subscriptions(&key, &request.into_inner().topic)
            .await?;
        Ok(Response::new(pb::ListSubscriptionsResponse {
            subscriptions: views.into_iter().map(subscription_message).collect(),
        }))
    }

    async fn update_subscription(
        &self,
        request: Request<pb::UpdateSubscriptionRequest>,
    ) -> Result<Response<pb::Subscription>, Status> {
        let key = tenant_key(&request)?;
        let req = request.into_inner();
        let view = self
            .state
            .broker
            .update_subscription(
                &key,
                &req.topic,
                &req.name,
                SubscriptionUpdate {
                    lock_seconds: req.lock_seconds,
                    max_delivery_attempts: req.max_delivery_attempts,
                    dead_letter_topic: req.dead_letter_topic,
                },
            )
            .await?;
        Ok(Response::new(subscription_message(view)))
    }

    async fn delete_subscription(
        &self,
        request: Request<pb::DeleteSubscriptionRequest>,
    ) -> Result<Response<pb::DeleteSubscriptionResponse>, Status> {
        let key = tenant_key(&request)?;
        let req = request.into_inner();
        self.state
            .broker
            .delete_subscription(&key, &req.topic, &req.name)
            .await?;
        Ok(Response::new(pb::DeleteSubscriptionResponse {}))
    }
}
