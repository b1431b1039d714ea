//! Seeded property tests of everything that reads untrusted bytes: the
//! protocol-v1 frame parser, the Open Ephys header parser, the config
//! loader and the HDF5 readers' metadata handling. Arbitrary and mutated
//! inputs must never panic, and every rejection must be one of the
//! documented reasons. `FUZZ_ITERS` sets the number of cases per property
//! (the test suite runs a few thousand; `bash bench/fuzz.sh` runs millions).

use std::path::Path;

use alternator::daemon::config::{ConfigError, ServeConfig};
use alternator::ingest::openephys::header::{self, HeaderProblem};
use alternator::recording::child::read_in_child;
use alternator::rng::Rng;
use alternator::wire::{encode_frame, Dtype, Frame, Header};

fn iters(default: usize) -> usize {
    std::env::var("FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn below(rng: &mut Rng, n: usize) -> usize {
    ((rng.uniform() * n as f64) as usize).min(n.saturating_sub(1))
}

/// A copy of `seed` with a few random edits: byte flips, insertions, deletions, truncation.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + below(rng, 4) {
        match below(rng, 4) {
            0 if !v.is_empty() => {
                let i = below(rng, v.len());
                v[i] = below(rng, 256) as u8;
            }
            1 => {
                let i = below(rng, v.len() + 1);
                v.insert(i, below(rng, 256) as u8);
            }
            2 if !v.is_empty() => {
                let i = below(rng, v.len());
                v.remove(i);
            }
            _ => {
                let n = below(rng, v.len() + 1);
                v.truncate(n);
            }
        }
    }
    v
}

fn random_bytes(rng: &mut Rng, max: usize) -> Vec<u8> {
    (0..below(rng, max + 1)).map(|_| below(rng, 256) as u8).collect()
}

#[test]
fn frame_parser_never_panics_and_names_a_documented_reason() {
    let doc = std::fs::read_to_string("docs/PROTOCOL.md").unwrap();
    let mut rng = Rng::new(1);
    let mut valid = Vec::new();
    let h = Header { version: 1, dtype: Dtype::U16, flags: 0, seq: 7, t_ns: 9, channels: 3, samples: 2 };
    encode_frame(&mut valid, &h, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let (mut ok, mut refused) = (0, 0);
    for i in 0..iters(20_000) {
        let body = if i % 2 == 0 { mutate(&mut rng, &valid) } else { random_bytes(&mut rng, 96) };
        match Frame::parse(&body, 1 << 20) {
            Ok(f) => {
                ok += 1;
                let mut row = vec![0f32; f.header.channels as usize];
                for s in 0..f.header.samples as usize {
                    f.sample(s, &mut row).expect("a parsed frame's samples are readable");
                }
            }
            Err(e) => {
                refused += 1;
                let name = e.reason().as_str();
                assert!(doc.contains(&format!("`{name}`")), "reason {name} ({e}) is not documented in PROTOCOL.md");
            }
        }
    }
    assert!(ok > 0 && refused > 0, "the cases should include both outcomes: {ok} / {refused}");
}

#[test]
fn open_ephys_header_parser_never_panics() {
    let seed = "{\r\n  \"message_num\": 12,\r\n  \"type\": \"data\",\r\n  \"content\": {\r\n    \"stream\": \"example_data\",\r\n    \"channel_num\": 3,\r\n    \"channel_name\": \"CH4\",\r\n    \"num_samples\": 1024,\r\n    \"sample_num\": 30720,\r\n    \"sample_rate\": 30000.0\r\n  },\r\n  \"data_size\": 4096,\r\n  \"timestamp\": 1700000000000\r\n}";
    let h = header::parse(seed.as_bytes()).unwrap();
    assert_eq!(h.content.as_ref().and_then(|c| c.sample_num), Some(30720));
    let mut rng = Rng::new(2);
    let (mut ok, mut bad) = (0, 0);
    for i in 0..iters(20_000) {
        let bytes = if i % 4 == 0 { random_bytes(&mut rng, 200) } else { mutate(&mut rng, seed.as_bytes()) };
        match header::parse(&bytes) {
            Ok(_) => ok += 1,
            Err(HeaderProblem::BadJson) | Err(HeaderProblem::MissingField) => bad += 1,
        }
    }
    assert!(ok > 0 && bad > 0, "{ok} / {bad}");
}

#[test]
fn config_loader_never_panics_and_refuses_by_field() {
    let text = std::fs::read_to_string("config/default.toml").unwrap();
    let sections = [
        "model.",
        "ingest.",
        "frontend.",
        "publish.",
        "record.",
        "decode.",
        "stats.",
        "retrain.",
        "control.",
        "watchdog.",
        "admin.",
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let mut rng = Rng::new(3);
    let (mut parsed, mut invalid) = (0, 0);
    for _ in 0..iters(2_000) {
        let bytes = mutate(&mut rng, text.as_bytes());
        std::fs::write(&path, &bytes).unwrap();
        match ServeConfig::load(&path) {
            Ok(c) => {
                parsed += 1;
                if let Err(ConfigError::Invalid { problems, .. }) = c.validate("fuzz") {
                    invalid += 1;
                    for p in problems {
                        assert!(sections.iter().any(|s| p.starts_with(s)), "a problem without its field path: {p}");
                    }
                }
            }
            Err(ConfigError::Parse { .. }) | Err(ConfigError::Read { .. }) => {}
            Err(e) => panic!("unexpected error kind: {e}"),
        }
    }
    assert!(parsed > 0, "no mutated config parsed at all");
    let _ = invalid;
}

#[test]
fn hdf5_readers_refuse_damaged_metadata_without_panicking() {
    let src = std::fs::read("recordings/demo-test.h5").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.h5");
    let mut rng = Rng::new(4);
    for _ in 0..iters(300) {
        let mut bytes = src.clone();
        // Damage the metadata region (superblock, object headers, B-trees) at the start of the file.
        for _ in 0..1 + below(&mut rng, 8) {
            let i = below(&mut rng, 4096.min(bytes.len()));
            bytes[i] = below(&mut rng, 256) as u8;
        }
        std::fs::write(&path, &bytes).unwrap();
        // The reader every command uses for files it is given: a child process,
        // because some damage crashes the HDF5 C library itself (a longer run
        // of this property finds such files; in-process that kills the caller).
        let exe = Path::new(env!("CARGO_BIN_EXE_alternator"));
        if let Err(e) = read_in_child(exe, Path::new(&path), &Default::default()) {
            let msg = e.to_string();
            assert!(msg.contains(path.to_str().unwrap()), "error does not name the file: {msg}");
            // A crash of the C library is reported as such; a cut-short stream
            // would mean our own reader panicked.
            assert!(!msg.contains("cut short"), "the reader panicked: {msg}");
        }
    }
}
