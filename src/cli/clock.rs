//! `tallyq clock`: read the broker's clock, and move the manual test clock
//! forward (operator).

use anyhow::{bail, Result};
use clap::{Args, Subcommand};

use tallyq::client::Client;
use tallyq::proto::v1 as pb;

/// `tallyq clock` options: no subcommand shows the clock.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ClockArgs {
    /// What to do with the clock (default: show it).
    #[command(subcommand)]
    pub command: Option<ClockCommand>,
}

/// Clock commands.
#[derive(Debug, Subcommand)]
pub enum ClockCommand {
    /// Print the broker's time and whether its clock is system or manual.
    Show,
    /// Move the manual clock forward (only with clock = "manual") and print
    /// the new time.
    Advance {
        /// How far: milliseconds (`86400000`) or a number with a unit:
        /// `ms`, `s`, `m`, `h`, `d` (`1d`, `90m`).
        by: String,
    },
}

/// Runs `tallyq clock`.
pub(super) async fn clock(client: &Client, args: &ClockArgs) -> Result<()> {
    match &args.command {
        None | Some(ClockCommand::Show) => show(client).await,
        Some(ClockCommand::Advance { by }) => advance(client, by).await,
    }
}

/// Prints `<RFC 3339> (<Unix ms>) <mode> clock`.
async fn show(client: &Client) -> Result<()> {
    let clock = call!(client, operator, get_clock, pb::GetClockRequest {});
    let mode = match pb::ClockMode::try_from(clock.mode) {
        Ok(pb::ClockMode::Manual) => "manual",
        Ok(pb::ClockMode::System) => "system",
        _ => "unknown",
    };
    println!("{} ({} Unix ms) {mode} clock", clock.now, clock.now_unix_ms);
    Ok(())
}

/// Moves the manual clock and prints the new time.
async fn advance(client: &Client, by: &str) -> Result<()> {
    let advance_ms = parse_duration_ms(by)?;
    let now = call!(
        client,
        operator,
        advance_clock,
        pb::AdvanceClockRequest { advance_ms }
    )
    .now_unix_ms;
    println!(
        "{} ({now} Unix ms) manual clock",
        tallyq::clock::format_rfc3339_ms(now)
    );
    Ok(())
}

/// `86400000`, `1500ms`, `30s`, `90m`, `24h`, `1d` as milliseconds.
fn parse_duration_ms(text: &str) -> Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let Ok(number) = number.parse::<u64>() else {
        bail!("'{text}' is not a duration: use milliseconds or a number with ms, s, m, h or d");
    };
    let scale = match unit {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => bail!("unknown unit '{unit}' in '{text}': use ms, s, m, h or d"),
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| anyhow::anyhow!("'{text}' is too long"))
}
