//! The topics each tenant request names, so the key's topic allow-list is
//! checked on all of them in one place ([`super::auth::tenant_request`])
//! before a handler runs. Which scope each RPC needs is the table in
//! `tenancy/access.rs`, applied by the auth interceptor.
//!
//! Every tenant request type implements [`NamesTopics`]; `tenant_request`
//! accepts no other, so a new tenant RPC cannot forget its topics.

use crate::proto::v1 as pb;

/// The topics a request names (a dead-letter topic included): each must be
/// on the caller's allow-list.
pub trait NamesTopics {
    /// Every topic name in the request, empty ones left out.
    fn topics(&self) -> Vec<&str>;
}

/// Leaves out the empty names (a field left unset).
fn named<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    names.into_iter().filter(|n| !n.is_empty()).collect()
}

macro_rules! names_no_topic {
    ($($t:ty),* $(,)?) => {$(
        impl NamesTopics for $t {
            fn topics(&self) -> Vec<&str> {
                Vec::new()
            }
        }
    )*};
}

macro_rules! names_field {
    ($field:ident: $($t:ty),* $(,)?) => {$(
        impl NamesTopics for $t {
            fn topics(&self) -> Vec<&str> {
                named([self.$field.as_str()])
            }
        }
    )*};
}

// Listings and tenant-wide reads name no topic: the domain filters what
// they show by the allow-list instead.
names_no_topic!(
    pb::ExportDataRequest,
    pb::GetUsageRequest,
    pb::GetQuotaRequest,
    pb::ListTopicsRequest,
);

names_field!(topic: pb::ProduceRequest, pb::FetchRequest, pb::AckRequest, pb::NackRequest,
    pb::SeekRequest, pb::ConsumeStart, pb::GetSubscriptionRequest,
    pb::ListSubscriptionsRequest, pb::DeleteSubscriptionRequest);

names_field!(name: pb::CreateTopicRequest, pb::GetTopicRequest, pb::UpdateTopicRequest,
    pb::DeleteTopicRequest);

impl NamesTopics for pb::CreateSubscriptionRequest {
    fn topics(&self) -> Vec<&str> {
        let dead_letters = self.config.as_ref().map(|c| c.dead_letter_topic.as_str());
        named([self.topic.as_str()].into_iter().chain(dead_letters))
    }
}

impl NamesTopics for pb::UpdateSubscriptionRequest {
    fn topics(&self) -> Vec<&str> {
        named(
            [self.topic.as_str()]
                .into_iter()
                .chain(self.dead_letter_topic.as_deref()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_topics_count_and_empty_names_do_not() {
        let create = pb::CreateSubscriptionRequest {
            topic: "a".into(),
            config: Some(pb::SubscriptionConfig {
                dead_letter_topic: "dlq".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(create.topics(), vec!["a", "dlq"]);
        let update = pb::UpdateSubscriptionRequest {
            topic: "a".into(),
            dead_letter_topic: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(update.topics(), vec!["a"]);
        assert!(pb::ListTopicsRequest {}.topics().is_empty());
    }
}
