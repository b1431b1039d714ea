//! Unit tests of the wire format: the worked example of `docs/PROTOCOL.md`,
//! header and frame round trips, every validation error and its drop
//! reason, and the encoders.

use super::*;

const MAX: usize = 1 << 20;

fn header(dtype: Dtype, channels: u32, samples: u32) -> Header {
    Header { version: VERSION, dtype, flags: 0, seq: 7, t_ns: 1_000_000, channels, samples }
}

fn body(dtype: Dtype, channels: u32, samples: u32) -> Vec<u8> {
    let n = (channels * samples) as usize;
    let values: Vec<f32> = (0..n).map(|k| k as f32).collect();
    let mut out = Vec::new();
    encode_frame(&mut out, &header(dtype, channels, samples), &values);
    out
}

fn parse_err(b: &[u8]) -> FrameError {
    Frame::parse(b, MAX).unwrap_err()
}

/// The worked example of docs/PROTOCOL.md, written out by hand.
const WORKED_EXAMPLE: [u8; 40] = [
    0x41, 0x4c, 0x54, 0x52, // magic "ALTR"
    0x01, // version 1
    0x01, // dtype 1 = f32
    0x00, 0x00, // flags 0
    0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // seq 7
    0x40, 0x42, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, // t_ns 1_000_000 = 0x0f4240
    0x02, 0x00, 0x00, 0x00, // channels 2
    0x01, 0x00, 0x00, 0x00, // samples 1
    0x00, 0x00, 0xc0, 0x3f, // 1.5  = 0x3fc00000
    0x00, 0x00, 0x00, 0xc0, // -2.0 = 0xc0000000
];

#[test]
fn worked_example_bytes_are_exact() {
    let mut out = Vec::new();
    encode_f32(&mut out, 7, 1_000_000, 0, 2, &[1.5, -2.0]);
    assert_eq!(out, WORKED_EXAMPLE);

    let mut generic = Vec::new();
    encode_frame(&mut generic, &header(Dtype::F32, 2, 1), &[1.5, -2.0]);
    assert_eq!(generic, WORKED_EXAMPLE);

    let frame = Frame::parse(&WORKED_EXAMPLE, MAX).unwrap();
    assert_eq!(frame.header, header(Dtype::F32, 2, 1));
    assert_eq!(frame.payload(), &WORKED_EXAMPLE[32..]);
    let mut v = [0.0f32; 2];
    frame.sample(0, &mut v).unwrap();
    assert_eq!(v, [1.5, -2.0]);
}

/// Bytes produced by the Python sender in docs/PROTOCOL.md (3 samples × 4
/// channels of u16, seq 8), captured from a real pyzmq run.
#[test]
fn python_snippet_frame_parses() {
    let body: [u8; 56] = [
        0x41, 0x4c, 0x54, 0x52, 0x01, 0x02, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, 0x81,
        0x9e, 0x71, 0xf1, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00,
        0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,
        0x01, 0x00,
    ];
    let frame = Frame::parse(&body, MAX).unwrap();
    assert_eq!(frame.header.dtype, Dtype::U16);
    assert_eq!((frame.header.seq, frame.header.channels, frame.header.samples), (8, 4, 3));
    let expected = [[0.0, 2.0, 1.0, 0.0], [1.0, 0.0, 0.0, 3.0], [0.0, 0.0, 1.0, 1.0]];
    let mut row = [0.0f32; 4];
    for (i, want) in expected.iter().enumerate() {
        frame.sample(i, &mut row).unwrap();
        assert_eq!(&row, want, "sample {i}");
    }
}

#[test]
fn round_trip_every_dtype() {
    // Values exactly representable in every dtype under test.
    let cases: [(Dtype, [f32; 4]); 4] = [
        (Dtype::F32, [1.5, -2.25, 1e-30, f32::MAX]),
        (Dtype::U16, [0.0, 1.0, 65_535.0, 300.0]),
        (Dtype::U8, [0.0, 1.0, 255.0, 17.0]),
        (Dtype::I16, [-32_768.0, -1.0, 32_767.0, 0.0]),
    ];
    for (dtype, values) in cases {
        let h = Header { flags: 0xbeef, seq: u64::MAX - 3, t_ns: 42, ..header(dtype, 4, 1) };
        let mut out = Vec::new();
        encode_frame(&mut out, &h, &values);
        assert_eq!(out.len(), HEADER_LEN + 4 * dtype.size_bytes(), "{dtype:?}");
        let frame = Frame::parse(&out, MAX).unwrap();
        assert_eq!(frame.header, h, "{dtype:?}");
        let mut got = [0.0f32; 4];
        frame.sample(0, &mut got).unwrap();
        assert_eq!(got, values, "{dtype:?}");
        assert_eq!(Dtype::from_u8(dtype.as_u8()), Some(dtype));
    }
}

#[test]
fn multi_sample_frame() {
    let values = [1.0, 2.0, 3.0, 10.0, 20.0, 30.0, 100.0, 200.0, 300.0];
    let h = Header { seq: 100, ..header(Dtype::U16, 3, 3) };
    let mut out = Vec::new();
    encode_frame(&mut out, &h, &values);
    let frame = Frame::parse(&out, MAX).unwrap();
    let mut row = [0.0f32; 3];
    for i in 0..3 {
        frame.sample(i, &mut row).unwrap();
        assert_eq!(row, values[3 * i..3 * i + 3], "sample {i}");
        assert_eq!(frame.seq_of(i), 100 + i as u64);
    }
    assert_eq!(frame.sample(3, &mut row), Err(FrameError::SampleOutOfRange { index: 3, samples: 3 }));
    let mut short = [0.0f32; 2];
    let err = frame.sample(0, &mut short).unwrap_err();
    assert_eq!(err, FrameError::WrongChannels { expected: 2, got: 3 });
    assert_eq!(err.reason(), DropReason::WrongChannels);
    assert_eq!(err.to_string(), "frame has 3 channels: expected 2");
}

#[test]
fn integer_encoding_rounds_and_saturates() {
    let cases: [(Dtype, [f32; 6], [f32; 6]); 3] = [
        (Dtype::U8, [-3.0, 300.0, 1.5, 2.4, f32::NAN, f32::INFINITY], [0.0, 255.0, 2.0, 2.0, 0.0, 255.0]),
        (
            Dtype::U16,
            [-1.0, 70_000.0, 0.5, 65_534.6, f32::NAN, f32::NEG_INFINITY],
            [0.0, 65_535.0, 1.0, 65_535.0, 0.0, 0.0],
        ),
        (Dtype::I16, [-40_000.0, 40_000.0, 2.5, -2.5, f32::NAN, -0.4], [-32_768.0, 32_767.0, 3.0, -3.0, 0.0, 0.0]),
    ];
    for (dtype, input, expected) in cases {
        let mut out = Vec::new();
        encode_frame(&mut out, &header(dtype, 6, 1), &input);
        let mut got = [9.0f32; 6];
        Frame::parse(&out, MAX).unwrap().sample(0, &mut got).unwrap();
        assert_eq!(got, expected, "{dtype:?}");
    }
}

#[test]
fn f32_payload_keeps_non_finite_values_for_the_caller() {
    let mut out = Vec::new();
    encode_f32(&mut out, 0, 0, 0, 2, &[f32::NAN, f32::NEG_INFINITY]);
    let mut got = [0.0f32; 2];
    Frame::parse(&out, MAX).unwrap().sample(0, &mut got).unwrap();
    assert!(got[0].is_nan());
    assert_eq!(got[1], f32::NEG_INFINITY);
}

#[test]
fn encode_f32_sets_flags_and_reuses_capacity() {
    let mut out = Vec::with_capacity(64);
    let ptr = out.as_ptr();
    encode_f32(&mut out, 9, 5, FLAG_IMPUTED | FLAG_RESET, 3, &[0.0, 1.0, 2.0]);
    let frame = Frame::parse(&out, MAX).unwrap();
    assert_eq!(frame.header.flags, 3);
    assert_eq!((frame.header.seq, frame.header.t_ns, frame.header.samples), (9, 5, 1));
    // A second, smaller message clears the old one and keeps the buffer.
    encode_f32(&mut out, 10, 6, 0, 1, &[4.0]);
    assert_eq!(out.as_ptr(), ptr);
    assert_eq!(out.len(), HEADER_LEN + 4);
    assert_eq!(Frame::parse(&out, MAX).unwrap().header.flags, 0);
}

#[test]
#[should_panic(expected = "non-zero multiple of channels")]
fn encode_f32_rejects_ragged_values() {
    encode_f32(&mut Vec::new(), 0, 0, 0, 2, &[1.0, 2.0, 3.0]);
}

#[test]
fn too_large_is_checked_first() {
    let mut b = body(Dtype::F32, 2, 1);
    b[0] = b'X'; // also bad magic, but size wins
    let err = Frame::parse(&b, 39).unwrap_err();
    assert_eq!(err, FrameError::TooLarge { limit: 39, got: 40 });
    assert_eq!(err.reason(), DropReason::TooLarge);
    assert_eq!(err.to_string(), "frame body is 40 bytes: expected at most 39 (the configured limit)");
    assert!(Frame::parse(&body(Dtype::F32, 2, 1), 40).is_ok());
}

#[test]
fn too_short() {
    for len in [0, 1, 31] {
        let err = parse_err(&WORKED_EXAMPLE[..len]);
        assert_eq!(err, FrameError::TooShort { got: len });
        assert_eq!(err.reason(), DropReason::Truncated);
    }
    assert_eq!(parse_err(&[]).to_string(), "frame body is 0 bytes: expected at least 32 (the header)");
}

#[test]
fn bad_magic() {
    let mut b = WORKED_EXAMPLE;
    b[..4].copy_from_slice(b"ALTQ");
    b[4] = 9; // bad version too: magic is checked first
    let err = parse_err(&b);
    assert_eq!(err, FrameError::BadMagic { got: *b"ALTQ" });
    assert_eq!(err.reason(), DropReason::BadMagic);
    assert_eq!(err.to_string(), "frame magic 41 4c 54 51 unrecognised: expected 41 4c 54 52 (\"ALTR\")");
}

#[test]
fn bad_version() {
    let mut b = Vec::new();
    encode_frame(&mut b, &Header { version: 2, ..header(Dtype::F32, 2, 1) }, &[1.0, 2.0]);
    b[5] = 0; // bad dtype too: version is checked first
    let err = parse_err(&b);
    assert_eq!(err, FrameError::BadVersion { got: 2 });
    assert_eq!(err.reason(), DropReason::BadVersion);
    assert_eq!(err.to_string(), "frame version 2 unsupported: expected 1");
}

#[test]
fn bad_dtype() {
    for code in [0u8, 5, 255] {
        let mut b = WORKED_EXAMPLE;
        b[5] = code;
        let err = parse_err(&b);
        assert_eq!(err, FrameError::BadDtype { got: code });
        assert_eq!(err.reason(), DropReason::BadDtype);
    }
}

#[test]
fn zero_samples_and_zero_channels() {
    let mut b = WORKED_EXAMPLE;
    b[28..32].copy_from_slice(&0u32.to_le_bytes());
    b[24..28].copy_from_slice(&0u32.to_le_bytes()); // samples checked first
    assert_eq!(parse_err(&b), FrameError::ZeroSamples);
    assert_eq!(parse_err(&b).reason(), DropReason::Malformed);

    let mut b = [0u8; HEADER_LEN];
    encode_header(&header(Dtype::F32, 0, 1), &mut b);
    assert_eq!(parse_err(&b), FrameError::ZeroChannels);
    assert_eq!(parse_err(&b).reason(), DropReason::Malformed);
}

#[test]
fn truncated_payload() {
    let b = body(Dtype::I16, 3, 2); // payload 12 bytes
    let err = parse_err(&b[..b.len() - 1]);
    assert_eq!(err, FrameError::Truncated { expected: 12, got: 11 });
    assert_eq!(err.reason(), DropReason::Truncated);
    assert_eq!(parse_err(&b[..HEADER_LEN]), FrameError::Truncated { expected: 12, got: 0 });
}

#[test]
fn trailing_bytes_are_a_length_mismatch() {
    let mut b = body(Dtype::U8, 3, 2); // payload 6 bytes
    b.push(0);
    let err = parse_err(&b);
    assert_eq!(err, FrameError::LengthMismatch { expected: 6, got: 7 });
    assert_eq!(err.reason(), DropReason::Malformed);
}

#[test]
fn size_overflow_is_malformed_not_a_panic() {
    let mut b = [0u8; HEADER_LEN];
    encode_header(&header(Dtype::F32, u32::MAX, u32::MAX), &mut b);
    let err = parse_err(&b);
    if usize::BITS == 64 {
        // u32::MAX² fits in u64 but ×4 does not.
        assert_eq!(err, FrameError::SizeOverflow { channels: u32::MAX, samples: u32::MAX });
    }
    assert!(matches!(err, FrameError::SizeOverflow { .. } | FrameError::Truncated { .. }));
    // Huge but representable: an honest Truncated, not an overflow.
    encode_header(&header(Dtype::U8, u32::MAX, 2), &mut b);
    assert_eq!(parse_err(&b), FrameError::Truncated { expected: 2 * u32::MAX as usize, got: 0 });
}

#[test]
fn input_flags_are_carried_not_judged() {
    let mut b = WORKED_EXAMPLE;
    b[6..8].copy_from_slice(&0xffffu16.to_le_bytes());
    assert_eq!(Frame::parse(&b, MAX).unwrap().header.flags, 0xffff);
}

#[test]
fn drop_reasons_are_indexed_and_named_uniquely() {
    for (i, r) in DropReason::ALL.iter().enumerate() {
        assert_eq!(r.index(), i, "{r:?}");
        assert_eq!(r.to_string(), r.as_str());
        for other in &DropReason::ALL[i + 1..] {
            assert_ne!(r.as_str(), other.as_str());
        }
    }
    assert_eq!(DropReason::NonFinite.as_str(), "non_finite");
}

#[test]
fn topics_round_trip_and_reject_prefixes() {
    for t in [Topic::Spikes, Topic::Behavior, Topic::Decoded] {
        assert_eq!(Topic::from_bytes(t.as_bytes()), Some(t));
    }
    assert_eq!(Topic::from_bytes(b"spike"), None);
    assert_eq!(Topic::from_bytes(b"spikes2"), None);
    assert_eq!(Topic::from_bytes(b"behaviour"), None);
}

/// xorshift64*: enough randomness to shake the parser, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_and_mutated_bodies_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut ok, mut err) = (0u32, 0u32);
    let mut buf = Vec::new();
    let mut row = vec![0.0f32; 256];
    for round in 0..20_000 {
        match round % 3 {
            // Pure noise.
            0 => {
                let len = rng.below(96) as usize;
                buf.clear();
                buf.extend((0..len).map(|_| rng.next() as u8));
            }
            // A valid header with small random fields, random payload length.
            1 => {
                let h = Header {
                    version: VERSION,
                    dtype: Dtype::from_u8(1 + rng.below(4) as u8).unwrap(),
                    flags: rng.next() as u16,
                    seq: rng.next(),
                    t_ns: rng.next(),
                    channels: rng.below(5) as u32,
                    samples: rng.below(5) as u32,
                };
                let mut head = [0u8; HEADER_LEN];
                encode_header(&h, &mut head);
                buf.clear();
                buf.extend_from_slice(&head);
                let extra = rng.below(80) as usize;
                buf.extend((0..extra).map(|_| rng.next() as u8));
            }
            // A valid frame with a few bytes flipped.
            _ => {
                let (c, s) = (1 + rng.below(4) as u32, 1 + rng.below(4) as u32);
                buf = body(Dtype::from_u8(1 + rng.below(4) as u8).unwrap(), c, s);
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(buf.len() as u64) as usize;
                    buf[at] ^= 1 << rng.below(8);
                }
            }
        }
        let limit = 16 + rng.below(128) as usize;
        match Frame::parse(&buf, limit) {
            Ok(frame) => {
                ok += 1;
                let h = frame.header;
                assert!(buf.len() <= limit);
                assert_eq!(frame.payload().len(), h.payload_len().unwrap());
                assert_eq!(buf.len(), HEADER_LEN + frame.payload().len());
                let out = &mut row[..h.channels as usize];
                for i in 0..h.samples as usize {
                    frame.sample(i, out).unwrap();
                }
                assert!(frame.sample(h.samples as usize, out).is_err());
            }
            Err(e) => {
                err += 1;
                // Every error maps to a counter and renders a message.
                assert!(e.reason().index() < DropReason::ALL.len());
                assert!(!e.to_string().is_empty());
            }
        }
    }
    assert!(ok > 1_000 && err > 1_000, "poor coverage: ok={ok} err={err}");
}
