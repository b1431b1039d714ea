//! TEMPORARY interface placeholder, replaced by the real front end on merge.
#![allow(dead_code, unused_variables)]
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrontendConfig {
    pub band_low_hz: f64,
    pub band_high_hz: f64,
    pub filter_order: usize,
    pub common_average: bool,
    pub threshold_k: f64,
    pub calibration_s: f64,
    pub thresholds_uv: Vec<f32>,
    pub thresholds_from: Option<std::path::PathBuf>,
    pub refractory_ms: f64,
}
impl Default for FrontendConfig {
    fn default() -> Self {
        Self {
            band_low_hz: 250.0,
            band_high_hz: 5000.0,
            filter_order: 4,
            common_average: false,
            threshold_k: 4.5,
            calibration_s: 1.0,
            thresholds_uv: vec![],
            thresholds_from: None,
            refractory_ms: 1.0,
        }
    }
}
impl FrontendConfig {
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        vec![]
    }
}
#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    #[error("backwards")]
    Backwards,
}
pub struct FrontEnd {
    c: usize,
    spb: u64,
    next: u64,
    counts: Vec<f32>,
}
impl FrontEnd {
    pub fn new(
        cfg: &FrontendConfig,
        channels: usize,
        sample_rate_hz: f64,
        bin_seconds: f64,
    ) -> Result<Self, FrontendError> {
        Ok(Self {
            c: channels,
            spb: (sample_rate_hz * bin_seconds).round() as u64,
            next: 0,
            counts: vec![0.0; channels],
        })
    }
    pub fn channels(&self) -> usize {
        self.c
    }
    pub fn samples_per_bin(&self) -> u64 {
        self.spb
    }
    pub fn sample_rate_hz(&self) -> f64 {
        0.0
    }
    pub fn next_sample(&self) -> u64 {
        self.next
    }
    pub fn process(
        &mut self,
        first_sample: u64,
        block: &[f32],
        n: usize,
        emit: &mut dyn FnMut(u64, &[f32]),
    ) -> Result<(), FrontendError> {
        for i in 0..n {
            let s = first_sample + i as u64;
            for c in 0..self.c {
                if block[c * n + i] < -50.0 {
                    self.counts[c] += 1.0;
                }
            }
            if (s + 1) % self.spb == 0 {
                emit(s / self.spb, &self.counts);
                self.counts.iter_mut().for_each(|x| *x = 0.0);
            }
        }
        self.next = first_sample + n as u64;
        Ok(())
    }
    pub fn restart(&mut self, first_sample: u64) {
        self.next = first_sample;
    }
    pub fn thresholds(&self) -> Option<&[f32]> {
        None
    }
    pub fn sos(&self) -> &[[f64; 6]] {
        &[]
    }
    pub fn store(&self, group: &hdf5_metno::Group) -> hdf5_metno::Result<()> {
        Ok(())
    }
}
