//! What a load run measured and how it is reported: latency histograms, the
//! broker's CPU time and peak RSS read from /proc, and the one `key=value`
//! line that benches/compare.sh parses.

use hdrhistogram::Histogram;

/// What a run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Messages whose produce was acknowledged.
    pub produced: u64,
    /// Messages delivered to the consumers.
    pub delivered: u64,
    /// Seconds of producing.
    pub seconds: f64,
    /// Acknowledged messages per second.
    pub msgs_per_sec: f64,
    /// Acknowledged payload MB (10^6 bytes) per second.
    pub mb_per_sec: f64,
    /// produce->ack latency percentiles in microseconds (p50, p99, p999).
    pub ack_us: (u64, u64, u64),
    /// produce->deliver latency percentiles in microseconds (p50, p99, p999).
    pub deliver_us: (u64, u64, u64),
    /// Broker CPU seconds during the run (user + system), when its pid was given.
    pub server_cpu_seconds: Option<f64>,
    /// Broker peak resident set size in bytes, when its pid was given.
    pub server_peak_rss: Option<u64>,
}

/// A latency histogram in microseconds, 1 µs to 120 s, 3 significant digits.
pub(super) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

/// p50, p99 and p99.9 of a histogram.
pub(super) fn percentiles(h: &Histogram<u64>) -> (u64, u64, u64) {
    (
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
    )
}

/// (CPU seconds, peak RSS bytes) of a process, from /proc.
pub fn process_usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    // Linux reports CPU time in clock ticks of 100 Hz on every common platform.
    Some((ticks as f64 / 100.0, hwm_kb * 1024))
}

impl LoadReport {
    /// One line of `key=value` pairs (what compare.sh parses).
    pub fn line(&self) -> String {
        format!(
            "produced={} delivered={} seconds={:.2} msgs_per_sec={:.0} mb_per_sec={:.1} ack_p50_us={} ack_p99_us={} ack_p999_us={} deliver_p50_us={} deliver_p99_us={} deliver_p999_us={} server_cpu_s={} server_peak_rss_mb={}",
            self.produced,
            self.delivered,
            self.seconds,
            self.msgs_per_sec,
            self.mb_per_sec,
            self.ack_us.0,
            self.ack_us.1,
            self.ack_us.2,
            self.deliver_us.0,
            self.deliver_us.1,
            self.deliver_us.2,
            self.server_cpu_seconds
                .map(|s| format!("{s:.2}"))
                .unwrap_or_else(|| "-".into()),
            self.server_peak_rss
                .map(|b| format!("{:.0}", b as f64 / 1e6))
                .unwrap_or_else(|| "-".into()),
        )
    }
}
