//! Reading a recording in a child process (`alternator read-recording`).
//!
//! Two reasons not to open a recording in the process that needs it:
//! - damaged HDF5 metadata can crash the HDF5 C library itself (a segfault
//!   Rust cannot catch; the test suite keeps one such file). In a child, the
//!   crash kills only the child, and the file is refused with its path;
//! - the HDF5 library is serialised behind one process-wide lock. In the
//!   daemon, the retrainer reading last week's sessions would hold that lock
//!   for as long as each read takes — on a loaded machine, while running at
//!   idle priority, for tens of seconds — and the recorder, which needs the
//!   same lock to write, would stall behind it. A child has its own lock.
//!
//! The child reads and validates with [`Recording::read`] and writes the
//! result to its stdout in the small binary form below; the parent decodes it
//! without touching HDF5. Only done when running as the `alternator` binary
//! (library users and tests read directly unless they name the binary).
//!
//! Stream: `ALTREC1\n`, then `bin_seconds` (f64), `rows`, `cols` (u64), the
//! spikes row-major (f32); a presence byte and then behaviour `bcols` (u64) +
//! values (f32), label mask (one byte per row), timestamps (f64 per row).
//! A failure is `ALTERR1\n` followed by the error's text. Little-endian.

use std::io::{self, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{ReadOptions, Recording, RecordingError};
use crate::matrix::Matrix;

const OK_MAGIC: &[u8; 8] = b"ALTREC1\n";
const ERR_MAGIC: &[u8; 8] = b"ALTERR1\n";
/// Largest dimension the decoder accepts from a child (guards allocation).
const MAX_ELEMS: u64 = 1 << 34;

/// The `alternator` binary this process runs as, if it is one.
fn alternator_exe() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    (exe.file_stem()? == "alternator").then_some(exe)
}

impl Recording {
    /// [`Recording::read`] done in a child process when this process is the
    /// `alternator` binary (see the module docs), directly otherwise.
    pub fn read_checked(path: &Path, opts: &ReadOptions) -> Result<Recording, RecordingError> {
        match alternator_exe() {
            Some(exe) if path.exists() => read_in_child(&exe, path, opts),
            _ => Recording::read(path, opts),
        }
    }
}

/// Reads `path` by running `exe read-recording`; the child's crash or
/// error becomes a [`RecordingError`] naming the path.
pub fn read_in_child(exe: &Path, path: &Path, opts: &ReadOptions) -> Result<Recording, RecordingError> {
    let options = serde_json::to_string(opts).expect("invariant: read options serialise");
    let child = Command::new(exe)
        .arg("read-recording")
        .arg(path)
        .arg("--options")
        .arg(options)
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = child.map_err(|e| child_failed(path, format!("cannot start {}: {e}", exe.display())))?;
    let stdout = child.stdout.take().expect("invariant: stdout is piped");
    let decoded = decode(&mut io::BufReader::with_capacity(1 << 16, stdout));
    let status = child.wait().map_err(|e| child_failed(path, format!("waiting for the reader: {e}")))?;
    if let Some(sig) = status.signal() {
        return Err(RecordingError::InvalidValue {
            path: path.to_path_buf(),
            dataset: "/".into(),
            reason: format!("opening it crashed the HDF5 library (signal {sig}); the file is damaged"),
        });
    }
    match decoded {
        Ok(Ok(rec)) => Ok(rec),
        Ok(Err(message)) => Err(RecordingError::InChild { path: path.to_path_buf(), message }),
        Err(e) => Err(child_failed(path, format!("the reader's output is cut short or malformed ({e}); {status}"))),
    }
}

fn child_failed(path: &Path, what: String) -> RecordingError {
    RecordingError::InChild { path: path.to_path_buf(), message: format!("{}: {what}", path.display()) }
}

/// The child's side: reads `path` and writes the stream to `out`.
pub fn serve_read(path: &Path, options_json: &str, out: &mut impl Write) -> io::Result<()> {
    let result = serde_json::from_str::<ReadOptions>(options_json)
        .map_err(|e| format!("bad read options from the parent: {e}"))
        .and_then(|opts| Recording::read(path, &opts).map_err(|e| e.to_string()));
    match result {
        Ok(rec) => encode(&rec, out),
        Err(message) => {
            out.write_all(ERR_MAGIC)?;
            out.write_all(message.as_bytes())
        }
    }?;
    out.flush()
}

/// Writes `rec` in the stream form.
pub fn encode(rec: &Recording, out: &mut impl Write) -> io::Result<()> {
    out.write_all(OK_MAGIC)?;
    out.write_all(&rec.bin_seconds.to_le_bytes())?;
    write_matrix(&rec.spikes, out)?;
    out.write_all(&[u8::from(rec.behavior.is_some())])?;
    if let Some(b) = &rec.behavior {
        write_matrix(b, out)?;
    }
    out.write_all(&[u8::from(rec.behavior_valid.is_some())])?;
    if let Some(v) = &rec.behavior_valid {
        let bytes: Vec<u8> = v.iter().map(|&b| u8::from(b)).collect();
        out.write_all(&bytes)?;
    }
    out.write_all(&[u8::from(rec.timestamps.is_some())])?;
    if let Some(ts) = &rec.timestamps {
        for chunk in ts.chunks(8192) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|x| x.to_le_bytes()).collect();
            out.write_all(&bytes)?;
        }
    }
    Ok(())
}

fn write_matrix(m: &Matrix, out: &mut impl Write) -> io::Result<()> {
    out.write_all(&(m.rows as u64).to_le_bytes())?;
    out.write_all(&(m.cols as u64).to_le_bytes())?;
    for chunk in m.data.chunks(16384) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|x| x.to_le_bytes()).collect();
        out.write_all(&bytes)?;
    }
    Ok(())
}

/// Reads the stream: the recording, or the child's error text.
pub fn decode(input: &mut impl Read) -> io::Result<Result<Recording, String>> {
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic)?;
    if &magic == ERR_MAGIC {
        let mut text = String::new();
        input.read_to_string(&mut text)?;
        return Ok(Err(text));
    }
    if &magic != OK_MAGIC {
        return Err(invalid("unknown header"));
    }
    let bin_seconds = f64::from_le_bytes(read_array(input)?);
    let spikes = read_matrix(input)?;
    let rows = spikes.rows;
    let behavior = if read_flag(input)? { Some(read_matrix(input)?) } else { None };
    let behavior_valid = if read_flag(input)? {
        let mut bytes = vec![0u8; rows];
        input.read_exact(&mut bytes)?;
        Some(bytes.into_iter().map(|b| b != 0).collect())
    } else {
        None
    };
    let timestamps = if read_flag(input)? { Some(read_values(input, rows, f64::from_le_bytes)?) } else { None };
    Ok(Ok(Recording { spikes, behavior, behavior_valid, timestamps, bin_seconds }))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn read_array<const N: usize>(input: &mut impl Read) -> io::Result<[u8; N]> {
    let mut b = [0u8; N];
    input.read_exact(&mut b)?;
    Ok(b)
}

fn read_flag(input: &mut impl Read) -> io::Result<bool> {
    match read_array::<1>(input)?[0] {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(invalid("bad presence byte")),
    }
}

fn read_matrix(input: &mut impl Read) -> io::Result<Matrix> {
    let rows = u64::from_le_bytes(read_array(input)?);
    let cols = u64::from_le_bytes(read_array(input)?);
    let n = rows.checked_mul(cols).filter(|&n| n <= MAX_ELEMS).ok_or_else(|| invalid("implausible shape"))?;
    let data = read_values(input, n as usize, f32::from_le_bytes)?;
    Ok(Matrix::from_vec(rows as usize, cols as usize, data))
}

/// Reads `n` little-endian values in bounded chunks (no second full-size buffer).
fn read_values<T, const N: usize>(input: &mut impl Read, n: usize, conv: fn([u8; N]) -> T) -> io::Result<Vec<T>> {
    let mut out = Vec::with_capacity(n);
    let mut buf = vec![0u8; N * 8192];
    while out.len() < n {
        let take = (n - out.len()).min(8192);
        let bytes = &mut buf[..take * N];
        input.read_exact(bytes)?;
        out.extend(bytes.chunks_exact(N).map(|c| conv(c.try_into().expect("invariant: chunk of N bytes"))));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(with_extras: bool) -> Recording {
        let spikes = Matrix::from_vec(3, 2, vec![0.0, 1.0, 2.0, 3.0, 4.5, f32::MAX]);
        let behavior = with_extras.then(|| Matrix::from_vec(3, 1, vec![0.25, f32::NAN, -1.0]));
        Recording {
            spikes,
            behavior,
            behavior_valid: with_extras.then(|| vec![true, false, true]),
            timestamps: with_extras.then(|| vec![0.0, 0.02, 0.04]),
            bin_seconds: 0.02,
        }
    }

    fn round_trip(rec: &Recording) -> Recording {
        let mut bytes = Vec::new();
        encode(rec, &mut bytes).unwrap();
        decode(&mut bytes.as_slice()).unwrap().unwrap()
    }

    #[test]
    fn the_stream_round_trips_bit_for_bit() {
        let plain = sample(false);
        assert_eq!(round_trip(&plain), plain);
        let full = sample(true);
        let back = round_trip(&full);
        let bits = |m: &Matrix| m.data.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(back.behavior.as_ref().unwrap()), bits(full.behavior.as_ref().unwrap()));
        assert_eq!((back.behavior_valid, back.timestamps), (full.behavior_valid, full.timestamps));
    }

    #[test]
    fn a_cut_stream_or_an_error_is_not_taken_for_a_recording() {
        let mut bytes = Vec::new();
        encode(&sample(true), &mut bytes).unwrap();
        for cut in [4, 20, bytes.len() - 1] {
            assert!(decode(&mut &bytes[..cut]).is_err(), "cut at {cut} accepted");
        }
        let mut err = ERR_MAGIC.to_vec();
        err.extend_from_slice(b"x.h5: dataset `spikes` is missing");
        assert_eq!(decode(&mut err.as_slice()).unwrap().unwrap_err(), "x.h5: dataset `spikes` is missing");
    }
}
