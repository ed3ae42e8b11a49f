//! The report buffer, read from the agent's store at scrape time: how many reports wait for
//! central's acknowledgement, and how many the bound has dropped.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::store::AgentStore;

/// See the module documentation.
#[derive(Debug)]
pub struct ReportBuffer(pub AgentStore);

impl Collector for ReportBuffer {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let depth = ConstGauge::new(i64::try_from(self.0.buffered()).unwrap_or(i64::MAX));
        let metric = encoder.encode_descriptor(
            "report_buffer_depth",
            "Reports in the agent's buffer, not yet acknowledged by central",
            None,
            depth.metric_type(),
        )?;
        depth.encode(metric)?;
        // A failed read leaves the counter out of this scrape rather than reporting 0.
        if let Ok(dropped) = self.0.dropped() {
            let dropped = ConstCounter::new(dropped);
            let metric = encoder.encode_descriptor(
                "reports_dropped",
                "Reports dropped because the buffer was full (report_buffer_max), ever",
                None,
                dropped.metric_type(),
            )?;
            dropped.encode(metric)?;
        }
        Ok(())
    }
}
