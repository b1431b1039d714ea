//! Damaged HDF5 metadata can crash the HDF5 C library itself (a segfault
//! Rust cannot catch; the test suite keeps one such file). Before a
//! long-running or user-facing process reads a recording, it is opened once
//! in a child process (`alternator check-recording FILE`): if the child
//! dies by a signal, the file is refused with a clear error and the caller
//! lives on. Only done when running as the `alternator` binary (library
//! users and tests read directly).

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::{ReadOptions, Recording, RecordingError};

/// The `alternator` binary this process runs as, if it is one.
fn alternator_exe() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    (exe.file_stem()? == "alternator").then_some(exe)
}

/// Opens `path` in a child process; an error if the child was killed by a
/// signal (the HDF5 library crashed on the file).
pub fn probe_in_child(path: &Path) -> Result<(), RecordingError> {
    let Some(exe) = alternator_exe() else {
        return Ok(());
    };
    let status = Command::new(exe)
        .arg("check-recording")
        .arg(path)
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match status.ok().and_then(|s| s.signal()) {
        Some(sig) => Err(RecordingError::InvalidValue {
            path: path.to_path_buf(),
            dataset: "/".into(),
            reason: format!("opening it crashed the HDF5 library (signal {sig}); the file is damaged"),
        }),
        None => Ok(()),
    }
}

impl Recording {
    /// [`Recording::read`] after [`probe_in_child`]: a file that would crash
    /// the HDF5 library is refused with an error instead.
    pub fn read_checked(path: &Path, opts: &ReadOptions) -> Result<Recording, RecordingError> {
        if path.exists() {
            probe_in_child(path)?;
        }
        Recording::read(path, opts)
    }
}
