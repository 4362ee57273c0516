//! How a failed command ends: one `error:` line on standard error (for a
//! refusal, the gRPC code's name and the server's message, nothing else; no
//! backtrace whatever `RUST_BACKTRACE` says), a hint where one helps, and an
//! exit code that says what kind of failure it was.
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | done |
//! | 1 | the broker refused the request (any gRPC status it answered) |
//! | 2 | usage: bad arguments or options (clap's own code too) |
//! | 3 | the broker could not be reached, or the connection failed |
//! | 4 | a local failure: a file could not be read or written, `serve` could not start |
//! | 5 | a check failed: `ledger verify` found the hash chain broken |

use std::fmt::Write as _;
use std::process::ExitCode;

use tallyq::billing::ledger::ChainBroken;
use tallyq::client::ClientError;

/// The exit codes, as the table in this module's doc and `--help` give them.
pub const EXIT_CODES: &str =
    "Exit codes: 0 done; 1 refused by the broker (the error line names the \
gRPC code); 2 usage (bad arguments); 3 broker unreachable or the connection failed; 4 a local \
failure (a file, or `serve` could not start); 5 a check failed (`ledger verify`).";

/// Refused by the broker.
const REFUSED: u8 = 1;
/// Bad arguments.
const USAGE: u8 = 2;
/// Broker unreachable or transport failure.
const UNREACHABLE: u8 = 3;
/// A local failure.
const LOCAL: u8 = 4;
/// A check failed.
const CHECK_FAILED: u8 = 5;

/// A mistake in how the command was called that clap cannot see (e.g. a
/// choice between options that none of them made): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// What [`report`] knows about the call beyond the error.
#[derive(Debug, Default, Clone, Copy)]
pub struct Context {
    /// No credential was given (no `--token`, no `TALLYQ_TOKEN`, no token file).
    pub no_credential: bool,
}

/// Prints `error` as one `error:` line (plus a hint when one helps) and
/// returns the exit code for it.
pub fn report(error: &anyhow::Error, context: Context) -> ExitCode {
    let (line, code) = describe(error);
    eprintln!("error: {line}");
    if let Some(status) = status_of(error) {
        if status.code() == tonic::Code::Unauthenticated && context.no_credential {
            eprintln!(
                "hint: no credential was sent. Pass --token KEY or set TALLYQ_TOKEN (a tenant \
                 API key, or the operator credential), or --token-file FILE; without them the \
                 CLI reads ./data/operator.token, which `tallyq serve` writes on its first start."
            );
        }
    }
    ExitCode::from(code)
}

/// The error line and the exit code for `error`.
fn describe(error: &anyhow::Error) -> (String, u8) {
    if let Some(status) = status_of(error) {
        let name = tallyq::wire::code_name(status.code() as i32);
        if std::error::Error::source(status).is_some() {
            // Made on this side from a transport failure, not sent by the broker.
            return (format!("{name}: {}", chain_text(error)), UNREACHABLE);
        }
        let line = if status.message().is_empty() {
            name.to_string()
        } else {
            format!("{name}: {}", status.message())
        };
        return (line, REFUSED);
    }
    let code = error
        .chain()
        .find_map(|cause| {
            if cause.is::<UsageError>() {
                Some(USAGE)
            } else if let Some(client) = cause.downcast_ref::<ClientError>() {
                Some(match client {
                    ClientError::Connect { .. } => UNREACHABLE,
                    ClientError::Address(_) | ClientError::Token => USAGE,
                })
            } else if cause.is::<ChainBroken>() {
                Some(CHECK_FAILED)
            } else {
                None
            }
        })
        .unwrap_or(LOCAL);
    (chain_text(error), code)
}

/// The gRPC status in the error's chain, if any.
fn status_of(error: &anyhow::Error) -> Option<&tonic::Status> {
    error.chain().find_map(|cause| cause.downcast_ref())
}

/// The error and its causes on one line, each cause said once: a cause
/// whose text the line already holds (many errors print their source in
/// their own message) is not repeated.
fn chain_text(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        let text = text.trim_end();
        if text.is_empty() || line.contains(text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        let _ = write!(line, "{text}");
    }
    line
}

/// For client commands: a panic (a bug) prints one `error:` line with where
/// it happened, never a backtrace, and the process ends with Rust's 101.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: tallyq crashed (a bug; please report it): {info}");
    }));
}
