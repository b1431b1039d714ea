//! The JSON headers of the Open Ephys ZMQ Interface plugin (v1.0.0), parsed
//! in place: strings borrow from the message unless they contain escapes,
//! unknown fields are skipped, so a well-formed header costs no allocation.
//!
//! Shapes (frame 1 of a multipart message; see docs/OPENEPHYS.md):
//! - continuous data: `{"message_num", "type": "data", "content": {"stream",
//!   "channel_num", "channel_name", "num_samples", "sample_num",
//!   "sample_rate"}, "data_size", "timestamp"}`;
//! - spikes: `{"message_num", "type": "spike", "spike": {"stream",
//!   "source_node", "electrode", "sample_num", "num_channels",
//!   "num_samples", "sorted_id", "threshold"}, "timestamp"}`;
//! - events (TTL): `{"message_num", "type": "event", "content": {"stream",
//!   "source_node", "type": 3, "sample_num"}, "data_size": 10, "timestamp"}`,
//!   payload `[line u8][state u8][TTL word u64 LE]`.
//!
//! The plugin writes these with JUCE's JSON writer: multi-line, CRLF, keys
//! in the order above; the parser does not depend on the layout.

use std::borrow::Cow;

use serde::Deserialize;

/// Any header; which optional part is present depends on `kind`.
#[derive(Debug, Deserialize)]
pub struct Header<'a> {
    /// One counter over every message; the plugin restarts it at 1 when acquisition starts.
    #[serde(default)]
    pub message_num: Option<u64>,
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(default, borrow)]
    pub content: Option<Content<'a>>,
    #[serde(default, borrow)]
    pub spike: Option<SpikeInfo<'a>>,
    #[serde(default)]
    pub data_size: Option<u64>,
    /// Wall-clock milliseconds at the rig.
    #[serde(default)]
    pub timestamp: Option<f64>,
}

/// `content` of a continuous-data header (one channel's block) or of an
/// event header (`type` 3 = TTL); fields a kind does not have are `None`.
#[derive(Debug, Deserialize)]
pub struct Content<'a> {
    #[serde(default, borrow)]
    pub stream: Cow<'a, str>,
    #[serde(default)]
    pub channel_num: Option<i64>,
    /// Absent in plugin builds before channel names were added.
    #[serde(default, borrow)]
    pub channel_name: Cow<'a, str>,
    #[serde(default)]
    pub num_samples: Option<i64>,
    #[serde(default)]
    pub sample_num: Option<i64>,
    #[serde(default)]
    pub sample_rate: Option<f64>,
    /// Event type (3 = TTL).
    #[serde(default, rename = "type")]
    pub event_type: Option<i64>,
}

/// `spike` of a spike header.
#[derive(Debug, Deserialize)]
pub struct SpikeInfo<'a> {
    #[serde(default, borrow)]
    pub stream: Cow<'a, str>,
    #[serde(borrow)]
    pub electrode: Cow<'a, str>,
    pub sample_num: i64,
    #[serde(default)]
    pub sorted_id: i64,
}

/// Why a header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderProblem {
    /// Not UTF-8, not JSON, or a field of the wrong type.
    BadJson,
    /// A field the message kind needs is absent.
    MissingField,
}

/// Parses a header frame.
pub fn parse(bytes: &[u8]) -> Result<Header<'_>, HeaderProblem> {
    serde_json::from_slice::<Header>(bytes).map_err(|e| {
        if e.is_data() && e.to_string().starts_with("missing field") {
            HeaderProblem::MissingField
        } else {
            HeaderProblem::BadJson
        }
    })
}
