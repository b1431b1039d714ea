//! `GET /metrics`: the daemon's counters, latency histogram and gauges in
//! the Prometheus/OpenMetrics text format, encoded by `prometheus-client`
//! from a custom collector that reads the lock-free snapshots at scrape
//! time. Names carry the `alternator_` prefix and base units (seconds,
//! bytes); counters get `_total` from the encoder.
//!
//! Invariant: a scrape only reads atomics and the admin thread's own state;
//! the histogram's count is the sum of its buckets, which equals the bins
//! decoded once the loop is idle.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::Shared;
use crate::daemon::telemetry::LATENCY_BOUNDS_NS;
use crate::wire::DropReason;

/// Reads the daemon's state on every scrape.
#[derive(Debug)]
pub struct DaemonCollector {
    shared: Arc<Shared>,
}

/// A registry holding only the daemon collector, prefix `alternator`.
pub fn registry(shared: Arc<Shared>) -> Registry {
    let mut r = Registry::with_prefix("alternator");
    r.register_collector(Box::new(DaemonCollector { shared }));
    r
}

/// Encodes the registry as text.
pub fn render(r: &Registry) -> Result<String, std::fmt::Error> {
    let mut s = String::with_capacity(8192);
    prometheus_client::encoding::text::encode(&mut s, r)?;
    Ok(s)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, unit: Option<&Unit>, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, unit, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, unit: Option<&Unit>, v: f64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, unit, g.metric_type())?)
}

/// A counter family with one label.
fn labelled(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    rows: &[(String, u64)],
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in rows {
        let labels = [(label.to_string(), value.clone())];
        ConstCounter::new(*n).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

impl DaemonCollector {
    fn counters(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let s = self.shared.control.counters().snapshot();
        let received = s.bins_in + s.dropped(DropReason::NonFinite) + s.dropped(DropReason::Duplicate);
        counter(
            e,
            "bins_received",
            "Timesteps the source handed to the decoder (decoded, non-finite or duplicate).",
            None,
            received,
        )?;
        counter(e, "bins_decoded", "Observed bins run through the model.", None, s.bins_in)?;
        counter(e, "bins_published", "Outputs published (decoded and imputed).", None, s.bins_out)?;
        counter(e, "bins_imputed", "Outputs imputed for missing or non-finite bins.", None, s.imputed)?;
        counter(e, "state_resets", "Decoder state resets (long gaps, stream restarts).", None, s.resets)?;
        counter(e, "behavior_bins_received", "True-behaviour bins received from the rig.", None, s.behavior_in)?;
        counter(e, "recorder_lost_items", "Items the recorder could not take (data loss).", None, s.record_lost)?;
        counter(e, "recorded", "Bin data written to session files.", Some(&Unit::Bytes), s.recorded_bytes)?;
        counter(e, "model_swaps", "Models swapped into the decode loop.", None, s.swaps)?;
        labelled(e, "frames_dropped", "Frames or bins dropped, by reason.", "reason", &s.drops)
    }

    fn retrain(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let st = self.shared.control.status().retrain.unwrap_or_default();
        let rows =
            [("accepted".to_string(), st.accepted), ("rejected".into(), st.rejected), ("failed".into(), st.failed)];
        labelled(e, "retrain_runs", "Finished retraining runs, by outcome.", "outcome", &rows)?;
        if let Some(g) = st.live_generation {
            gauge(
                e,
                "live_model_generation",
                "Generation number of the live model in the models directory.",
                None,
                g as f64,
            )?;
        }
        Ok(())
    }

    fn latency(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let snap = self.shared.control.counters().latency.snapshot();
        let mut buckets: Vec<(f64, u64)> =
            LATENCY_BOUNDS_NS.iter().zip(&snap.counts).map(|(&b, &n)| (b as f64 * 1e-9, n)).collect();
        buckets.push((f64::MAX, snap.counts[LATENCY_BOUNDS_NS.len()]));
        let mut m = e.encode_descriptor(
            "receive_to_publish_latency",
            "Time from receiving an observed bin to publishing its output.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            snap.sum_ns as f64 * 1e-9,
            snap.count(),
            &buckets,
            None,
        )
    }

    fn gauges(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let c = self.shared.control.counters();
        let rate = self.shared.bins_per_s();
        gauge(e, "bins_per_second", "Observed bins decoded per second over the last second.", None, rate)?;
        let last = c.last_bin_unix_ns.load(std::sync::atomic::Ordering::Relaxed);
        if let Some(age) = super::live::last_bin_age_s(last) {
            gauge(e, "last_bin_age", "Time since the last observed bin was decoded.", Some(&Unit::Seconds), age)?;
        }
        let bytes = c.session.file_bytes.load(std::sync::atomic::Ordering::Relaxed);
        gauge(
            e,
            "session_file",
            "Size on disk of the session file being written (0: none open).",
            Some(&Unit::Bytes),
            bytes as f64,
        )
    }
}

impl Collector for DaemonCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.counters(&mut e)?;
        self.retrain(&mut e)?;
        self.latency(&mut e)?;
        self.gauges(&mut e)
    }
}
