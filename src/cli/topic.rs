//! `tallyq topic` and `tallyq sub`: topics and their subscriptions.

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};

use super::print::{print_sub, print_topic};
use tallyq::client::Client;
use tallyq::proto::v1 as pb;

/// Overflow policy on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OverflowArg {
    /// Reclaim the oldest messages.
    Reclaim,
    /// Refuse new produce.
    Refuse,
}

impl OverflowArg {
    fn value(self) -> i32 {
        match self {
            OverflowArg::Reclaim => pb::OverflowPolicy::ReclaimOldest as i32,
            OverflowArg::Refuse => pb::OverflowPolicy::RefuseProduce as i32,
        }
    }
}

/// Topic settings on the command line.
#[derive(Debug, Args)]
pub struct TopicSettingsArgs {
    /// Message expiry in seconds (30..604800).
    #[arg(long)]
    pub expiry_seconds: Option<u64>,
    /// Size cap in bytes.
    #[arg(long)]
    pub max_bytes: Option<u64>,
    /// What to do when full.
    #[arg(long, value_enum)]
    pub overflow: Option<OverflowArg>,
    /// Dedup window in seconds (1..3600).
    #[arg(long)]
    pub dedup_window_seconds: Option<u64>,
}

/// Topic commands.
#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        /// Topic name.
        name: String,
        /// Settings.
        #[command(flatten)]
        settings: TopicSettingsArgs,
    },
    /// List topics.
    List,
    /// Show a topic with its figures.
    Get {
        /// Topic name.
        name: String,
    },
    /// Change a topic's settings.
    Update {
        /// Topic name.
        name: String,
        /// Settings to change.
        #[command(flatten)]
        settings: TopicSettingsArgs,
    },
    /// Delete a topic with its messages and subscriptions.
    Delete {
        /// Topic name.
        name: String,
    },
}

/// Subscription settings on the command line.
#[derive(Debug, Args)]
pub struct SubSettingsArgs {
    /// 0 = at-most-once; otherwise at-least-once with this lock (10..60 s).
    #[arg(long)]
    pub lock_seconds: Option<u32>,
    /// Deliveries before a message moves to the dead-letter topic.
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Dead-letter topic.
    #[arg(long)]
    pub dead_letter_topic: Option<String>,
}

/// Start position on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StartArg {
    /// Oldest retained message.
    Earliest,
    /// Only new messages.
    Latest,
}

/// Subscription commands.
#[derive(Debug, Subcommand)]
pub enum SubCommand {
    /// Create a subscription.
    Create {
        /// Topic name.
        topic: String,
        /// Subscription name.
        name: String,
        /// Settings.
        #[command(flatten)]
        settings: SubSettingsArgs,
        /// Where it starts.
        #[arg(long, value_enum, default_value = "earliest")]
        start: StartArg,
    },
    /// List a topic's subscriptions.
    List {
        /// Topic name.
        topic: String,
    },
    /// Show a subscription with its figures.
    Get {
        /// Topic name.
        topic: String,
        /// Subscription name.
        name: String,
    },
    /// Change a subscription's settings.
    Update {
        /// Topic name.
        topic: String,
        /// Subscription name.
        name: String,
        /// Settings to change.
        #[command(flatten)]
        settings: SubSettingsArgs,
    },
    /// Delete a subscription.
    Delete {
        /// Topic name.
        topic: String,
        /// Subscription name.
        name: String,
    },
}

/// Runs a `tallyq topic` command and prints the topic(s) it returns.
pub(super) async fn topic(client: &Client, cmd: &TopicCommand) -> Result<()> {
    match cmd {
        TopicCommand::Create { name, settings } => {
            let t = call!(
                client,
                admin,
                create_topic,
                pb::CreateTopicRequest {
                    name: name.clone(),
                    config: Some(pb::TopicConfig {
                        message_expiry_seconds: settings.expiry_seconds.unwrap_or(0),
                        max_bytes: settings.max_bytes.unwrap_or(0),
                        overflow_policy: settings.overflow.map(|o| o.value()).unwrap_or(0),
                        dedup_window_seconds: settings.dedup_window_seconds.unwrap_or(0),
                    }),
                }
            );
            print_topic(&t);
        }
        TopicCommand::List => {
            for t in call!(client, admin, list_topics, pb::ListTopicsRequest {}).topics {
                print_topic(&t);
            }
        }
        TopicCommand::Get { name } => {
            let t = call!(
                client,
                admin,
                get_topic,
                pb::GetTopicRequest { name: name.clone() }
            );
            print_topic(&t);
        }
        TopicCommand::Update { name, settings } => {
            let t = call!(
                client,
                admin,
                update_topic,
                pb::UpdateTopicRequest {
                    name: name.clone(),
                    message_expiry_seconds: settings.expiry_seconds,
                    max_bytes: settings.max_bytes,
                    overflow_policy: settings.overflow.map(|o| o.value()),
                    dedup_window_seconds: settings.dedup_window_seconds,
                }
            );
            print_topic(&t);
        }
        TopicCommand::Delete { name } => {
            call!(
                client,
                admin,
                delete_topic,
                pb::DeleteTopicRequest { name: name.clone() }
            );
            println!("deleted topic {name}");
        }
    }
    Ok(())
}

/// Runs a `tallyq sub` command and prints the subscription(s) it returns.
pub(super) async fn sub(client: &Client, cmd: &SubCommand) -> Result<()> {
    match cmd {
        SubCommand::Create {
            topic,
            name,
            settings,
            start,
        } => {
            let s = call!(
                client,
                admin,
                create_subscription,
                pb::CreateSubscriptionRequest {
                    topic: topic.clone(),
                    name: name.clone(),
                    config: Some(pb::SubscriptionConfig {
                        lock_seconds: settings.lock_seconds.unwrap_or(0),
                        max_delivery_attempts: settings.max_attempts.unwrap_or(0),
                        dead_letter_topic: settings.dead_letter_topic.clone().unwrap_or_default(),
                    }),
                    start: match start {
                        StartArg::Earliest => pb::StartPosition::Earliest as i32,
                        StartArg::Latest => pb::StartPosition::Latest as i32,
                    },
                }
            );
            print_sub(&s);
        }
        SubCommand::List { topic } => {
            for s in call!(
                client,
                admin,
                list_subscriptions,
                pb::ListSubscriptionsRequest {
                    topic: topic.clone(),
                }
            )
            .subscriptions
            {
                print_sub(&s);
            }
        }
        SubCommand::Get { topic, name } => {
            let s = call!(
                client,
                admin,
                get_subscription,
                pb::GetSubscriptionRequest {
                    topic: topic.clone(),
                    name: name.clone(),
                }
            );
            print_sub(&s);
        }
        SubCommand::Update {
            topic,
            name,
            settings,
        } => {
            let s = call!(
                client,
                admin,
                update_subscription,
                pb::UpdateSubscriptionRequest {
                    topic: topic.clone(),
                    name: name.clone(),
                    lock_seconds: settings.lock_seconds,
                    max_delivery_attempts: settings.max_attempts,
                    dead_letter_topic: settings.dead_letter_topic.clone(),
                }
            );
            print_sub(&s);
        }
        SubCommand::Delete { topic, name } => {
            call!(
                client,
                admin,
                delete_subscription,
                pb::DeleteSubscriptionRequest {
                    topic: topic.clone(),
                    name: name.clone(),
                }
            );
            println!("deleted subscription {topic}/{name}");
        }
    }
    Ok(())
}
