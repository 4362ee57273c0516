//! `tallyq key`: issue, list and revoke API keys.

use anyhow::Result;
use clap::{Subcommand, ValueEnum};

use super::print::{key_line, print_key};
use tallyq::client::Client;
use tallyq::proto::v1 as pb;

/// Key scopes on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScopeArg {
    /// Produce messages.
    Produce,
    /// Consume messages.
    Consume,
    /// Manage topics and subscriptions.
    Manage,
}

/// API key commands.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Issue a key; its secret is printed once.
    Create {
        /// Tenant id.
        tenant: String,
        /// Scopes (repeat or comma-separate).
        #[arg(long = "scope", value_enum, value_delimiter = ',', required = true)]
        scopes: Vec<ScopeArg>,
        /// Restrict the key to these topics (repeatable).
        #[arg(long = "topic")]
        topics: Vec<String>,
        /// Description.
        #[arg(long, default_value = "", hide_default_value = true)]
        description: String,
    },
    /// List a tenant's keys.
    List {
        /// Tenant id.
        tenant: String,
    },
    /// Revoke a key.
    Revoke {
        /// Key id (key_...).
        id: String,
    },
}

/// Runs a `tallyq key` command; a new secret goes to stdout, the rest to stderr.
pub(super) async fn key(client: &Client, cmd: &KeyCommand) -> Result<()> {
    match cmd {
        KeyCommand::Create {
            tenant,
            scopes,
            topics,
            description,
        } => {
            let scopes = scopes
                .iter()
                .map(|s| match s {
                    ScopeArg::Produce => pb::Scope::Produce as i32,
                    ScopeArg::Consume => pb::Scope::Consume as i32,
                    ScopeArg::Manage => pb::Scope::Manage as i32,
                })
                .collect();
            let created = call!(
                client,
                operator,
                create_api_key,
                pb::CreateApiKeyRequest {
                    tenant: tenant.clone(),
                    scopes,
                    topics: topics.clone(),
                    description: description.clone(),
                }
            );
            if let Some(k) = &created.key {
                eprintln!("created {}", key_line(k));
            }
            eprintln!("the secret below is shown only now; store it safely:");
            println!("{}", created.secret);
        }
        KeyCommand::List { tenant } => {
            for k in call!(
                client,
                operator,
                list_api_keys,
                pb::ListApiKeysRequest {
                    tenant: tenant.clone(),
                }
            )
            .keys
            {
                print_key(&k);
            }
        }
        KeyCommand::Revoke { id } => {
            let k = call!(
                client,
                operator,
                revoke_api_key,
                pb::RevokeApiKeyRequest { id: id.clone() }
            );
            if let Some(k) = k.key {
                print_key(&k);
            }
        }
    }
    Ok(())
}
