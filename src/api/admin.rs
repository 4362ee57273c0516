//! The `tallyq.v1.Admin` service: a tenant's topics and subscriptions, its
//! usage and quotas, and the export of its data.

use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use super::auth::tenant_request;
use super::convert::{settled_day, start_at};
use super::{reply, ApiState, ResponseStream};
use crate::proto::v1 as pb;
use crate::proto::v1::admin_server::Admin as AdminApi;

/// Chunks an export may have ready before the client reads them.
const EXPORT_BUFFER: usize = 4;

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

#[tonic::async_trait]
impl AdminApi for AdminService {
    type ExportDataStream = ResponseStream<pb::ExportChunk>;

    async fn export_data(
        &self,
        request: Request<pb::ExportDataRequest>,
    ) -> Result<Response<Self::ExportDataStream>, Status> {
        let (key, _) = tenant_request(request)?;
        self.state.admit_control(&key.tenant)?;
        let broker = self.state.broker.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(EXPORT_BUFFER);
        self.state
            .tasks
            .spawn(async move { broker.export(&key, tx).await });
        let stream = ReceiverStream::new(rx).map(|item| {
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
        let (key, _) = tenant_request(request)?;
        self.state.admit_control(&key.tenant)?;
        let billing = &self.state.billing;
        let (mut lines, settled) = billing.live_usage(&key.tenant).await?;
        // A key limited to some topics sees their lines alone (SPEC §3).
        lines.retain(|line| key.may_see_slice(line.dimension.topic()));
        reply(pb::GetUsageResponse {
            lines: lines.into_iter().map(Into::into).collect(),
            settled_through: settled_day(settled, &billing.calendar()),
        })
    }

    async fn get_quota(
        &self,
        request: Request<pb::GetQuotaRequest>,
    ) -> Result<Response<pb::GetQuotaResponse>, Status> {
        let (key, _) = tenant_request(request)?;
        let (plan, items) = self.state.broker.get_quota(&key).await?;
        reply(pb::GetQuotaResponse {
            plan,
            quotas: items.into_iter().map(Into::into).collect(),
        })
    }

    async fn create_topic(
        &self,
        request: Request<pb::CreateTopicRequest>,
    ) -> Result<Response<pb::Topic>, Status> {
        let (key, req) = tenant_request(request)?;
        let settings = req.config.unwrap_or_default().into();
        let broker = &self.state.broker;
        reply(broker.create_topic(&key, &req.name, settings).await?)
    }

    async fn get_topic(
        &self,
        request: Request<pb::GetTopicRequest>,
    ) -> Result<Response<pb::Topic>, Status> {
        let (key, req) = tenant_request(request)?;
        reply(self.state.broker.get_topic(&key, &req.name).await?)
    }

    async fn list_topics(
        &self,
        request: Request<pb::ListTopicsRequest>,
    ) -> Result<Response<pb::ListTopicsResponse>, Status> {
        let (key, _) = tenant_request(request)?;
        let views = self.state.broker.list_topics(&key).await?;
        reply(pb::ListTopicsResponse {
            topics: views.into_iter().map(Into::into).collect(),
        })
    }

    async fn update_topic(
        &self,
        request: Request<pb::UpdateTopicRequest>,
    ) -> Result<Response<pb::Topic>, Status> {
        let (key, req) = tenant_request(request)?;
        let update = (&req).into();
        reply(
            self.state
                .broker
                .update_topic(&key, &req.name, update)
                .await?,
        )
    }

    async fn delete_topic(
        &self,
        request: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicResponse>, Status> {
        let (key, req) = tenant_request(request)?;
        self.state.broker.delete_topic(&key, &req.name).await?;
        reply(pb::DeleteTopicResponse {})
    }

    async fn create_subscription(
        &self,
        request: Request<pb::CreateSubscriptionRequest>,
    ) -> Result<Response<pb::Subscription>, Status> {
        let (key, req) = tenant_request(request)?;
        let settings = req.config.unwrap_or_default().into();
        let start = start_at(req.start)?;
        let broker = &self.state.broker;
        let view = broker
            .create_subscription(&key, &req.topic, &req.name, settings, start)
            .await?;
        reply(view)
    }

    async fn get_subscription(
        &self,
        request: Request<pb::GetSubscriptionRequest>,
    ) -> Result<Response<pb::Subscription>, Status> {
        let (key, req) = tenant_request(request)?;
        let broker = &self.state.broker;
        reply(broker.get_subscription(&key, &req.topic, &req.name).await?)
    }

    async fn list_subscriptions(
        &self,
        request: Request<pb::ListSubscriptionsRequest>,
    ) -> Result<Response<pb::ListSubscriptionsResponse>, Status> {
        let (key, req) = tenant_request(request)?;
        let views = self
            .state
            .broker
            .list_subscriptions(&key, &req.topic)
            .await?;
        reply(pb::ListSubscriptionsResponse {
            subscriptions: views.into_iter().map(Into::into).collect(),
        })
    }

    async fn update_subscription(
        &self,
        request: Request<pb::UpdateSubscriptionRequest>,
    ) -> Result<Response<pb::Subscription>, Status> {
        let (key, req) = tenant_request(request)?;
        let update = (&req).into();
        let broker = &self.state.broker;
        let view = broker
            .update_subscription(&key, &req.topic, &req.name, update)
            .await?;
        reply(view)
    }

    async fn delete_subscription(
        &self,
        request: Request<pb::DeleteSubscriptionRequest>,
    ) -> Result<Response<pb::DeleteSubscriptionResponse>, Status> {
        let (key, req) = tenant_request(request)?;
        let broker = &self.state.broker;
        broker
            .delete_subscription(&key, &req.topic, &req.name)
            .await?;
        reply(pb::DeleteSubscriptionResponse {})
    }
}
