//! Operator switches: maintenance mode and the manual clock.

use clap::{Subcommand, ValueEnum};

/// on / off.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnOff {
    /// Enable.
    On,
    /// Disable.
    Off,
}

/// Clock commands.
#[derive(Debug, Subcommand)]
pub enum ClockCommand {
    /// Move the manual clock forward.
    Advance {
        /// Milliseconds to move.
        ms: u64,
    },
}
