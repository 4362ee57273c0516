//! The pricing arithmetic over a plan's rate card ([`crate::plan::RateCard`]),
//! in integers only: prices are billionths of a minor unit per quantity unit,
//! amounts are minor units, and a line's amount is truncated toward zero to
//! the minor unit. Amounts (and [`format_minor`], which prints them) belong
//! to billing, not to the plan: a plan holds prices, billing computes money.

/// Bytes in a GiB.
const GIB: u128 = 1 << 30;
/// Milliseconds in an hour.
const HOUR_MS: u128 = 3_600_000;

// Old path of the rate card, kept while other branches still name it.
pub use crate::plan::RateCard;

/// The amount of `billable` quantity at `unit_price_nano_minor`, truncated
/// toward zero to the minor unit.
pub fn amount_minor(billable: u64, unit_price_nano_minor: u64) -> i64 {
    let nano = billable as u128 * unit_price_nano_minor as u128;
    (nano / 1_000_000_000).min(i64::MAX as u128) as i64
}

/// Byte-milliseconds as milli-GiB-hours (truncated).
pub fn milli_gib_hours(byte_ms: u64) -> u64 {
    (byte_ms as u128 * 1000 / (GIB * HOUR_MS)) as u64
}

/// How much of `quantity` the remaining free allowance covers.
pub fn free_applied(quantity: u64, free_remaining: u64) -> u64 {
    quantity.min(free_remaining)
}

/// "4.21" for 421 minor units (two decimals).
pub fn format_minor(amount: i64) -> String {
    let sign = if amount < 0 { "-" } else { "" };
    let abs = amount.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_example_is_exact() {
        // 3,514,540 units in a day at 1.20 per million = 4.21.
        let card = RateCard::default();
        let amount = amount_minor(3_514_540, card.message_unit_price_nano_minor);
        assert_eq!(amount, 421);
        assert_eq!(format_minor(amount), "4.21");
    }

    #[test]
    fn topic_days_and_truncation() {
        let card = RateCard::default();
        assert_eq!(amount_minor(3, card.topic_day_price_nano_minor), 600);
        // 8,333 units cost 0.99996 fen: truncated to 0.
        assert_eq!(amount_minor(8_333, card.message_unit_price_nano_minor), 0);
        assert_eq!(amount_minor(8_334, card.message_unit_price_nano_minor), 1);
        assert_eq!(format_minor(-5), "-0.05");
    }

    #[test]
    fn free_allowance_covers_up_to_what_remains() {
        assert_eq!(free_applied(5, 20), 5);
        assert_eq!(free_applied(30, 20), 20);
        assert_eq!(free_applied(30, 0), 0);
    }

    #[test]
    fn storage_converts_to_milli_gib_hours() {
        assert_eq!(milli_gib_hours((1u64 << 30) * 3_600_000), 1000);
        assert_eq!(milli_gib_hours(0), 0);
    }
}
