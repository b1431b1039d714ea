//! liblsl, loaded at run time: the crate's only contact with the LSL C API.
//! Nothing LSL-related is needed to build the crate or to run other sources;
//! the library is looked for when an LSL inlet or outlet is opened.
//!
//! Search order ([`Lib::load`]): the configured path; `PYLSL_LIB` (the
//! variable pylsl itself honours); the usual names through the dynamic
//! loader (`liblsl.so`, `liblsl.so.2`, ...); common install prefixes; the
//! copy bundled in the `pylsl` wheel (`pylsl/lib/liblsl.so`), found through
//! `python3`. A miss lists every path tried.
//!
//! Safety: every `unsafe` block is here. Function pointers are copied out of
//! the `libloading::Library`, which the `Arc<Lib>` held by every handle keeps
//! loaded for as long as any pointer can be called. Handles (`Inlet`,
//! `Outlet`, `StreamInfo`) own one liblsl object each, destroyed exactly once
//! on drop; liblsl's inlet and outlet objects may be used from any thread
//! (one at a time, which `&mut self` ensures).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `lsl_channel_format_t` values.
pub mod format {
    pub const FLOAT32: i32 = 1;
    pub const DOUBLE64: i32 = 2;
    pub const STRING: i32 = 3;
    pub const INT32: i32 = 4;
    pub const INT16: i32 = 5;
    pub const INT8: i32 = 6;
    pub const INT64: i32 = 7;

    /// A name for logs and errors.
    pub fn name(f: i32) -> &'static str {
        match f {
            FLOAT32 => "float32",
            DOUBLE64 => "double64",
            STRING => "string",
            INT32 => "int32",
            INT16 => "int16",
            INT8 => "int8",
            INT64 => "int64",
            _ => "undefined",
        }
    }
}

/// `lsl_error_code_t`: the stream was lost (the outlet went away).
pub const LOST_ERROR: i32 = -2;

/// liblsl could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum FfiError {
    #[error("liblsl not found; tried: {}. Install pylsl (pip install pylsl) or set ingest.lsl.library / publish.lsl.library", tried.join(", "))]
    NotFound { tried: Vec<String> },
    #[error("{path} is not a usable liblsl: {message}")]
    BadLibrary { path: String, message: String },
    #[error("liblsl refused to create the {what}")]
    Create { what: &'static str },
    #[error("text for liblsl contains a NUL byte: {0:?}")]
    Nul(String),
}

type Handle = *mut c_void;

/// The C functions used, copied out of the library.
struct Fns {
    resolve_bypred: unsafe extern "C" fn(*mut Handle, u32, *const c_char, i32, f64) -> i32,
    create_streaminfo: unsafe extern "C" fn(*const c_char, *const c_char, i32, f64, i32, *const c_char) -> Handle,
    destroy_streaminfo: unsafe extern "C" fn(Handle),
    get_channel_count: unsafe extern "C" fn(Handle) -> i32,
    get_channel_format: unsafe extern "C" fn(Handle) -> i32,
    get_nominal_srate: unsafe extern "C" fn(Handle) -> f64,
    get_name: unsafe extern "C" fn(Handle) -> *const c_char,
    get_source_id: unsafe extern "C" fn(Handle) -> *const c_char,
    create_inlet: unsafe extern "C" fn(Handle, i32, i32, i32) -> Handle,
    destroy_inlet: unsafe extern "C" fn(Handle),
    open_stream: unsafe extern "C" fn(Handle, f64, *mut i32),
    time_correction: unsafe extern "C" fn(Handle, f64, *mut i32) -> f64,
    pull_sample_f: unsafe extern "C" fn(Handle, *mut f32, i32, f64, *mut i32) -> f64,
    pull_chunk_f: unsafe extern "C" fn(Handle, *mut f32, *mut f64, u64, u64, f64, *mut i32) -> u64,
    create_outlet: unsafe extern "C" fn(Handle, i32, i32) -> Handle,
    destroy_outlet: unsafe extern "C" fn(Handle),
    push_sample_ftp: unsafe extern "C" fn(Handle, *const f32, f64, i32) -> i32,
    have_consumers: unsafe extern "C" fn(Handle) -> i32,
    local_clock: unsafe extern "C" fn() -> f64,
    library_version: unsafe extern "C" fn() -> i32,
}

/// A loaded liblsl.
pub struct Lib {
    f: Fns,
    path: String,
    _lib: libloading::Library,
}

impl std::fmt::Debug for Lib {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lib({})", self.path)
    }
}

/// Where liblsl is looked for after the configured path.
fn candidates() -> Vec<String> {
    let mut v: Vec<String> = std::env::var("PYLSL_LIB").into_iter().filter(|s| !s.is_empty()).collect();
    v.extend(["liblsl.so", "liblsl.so.2", "liblsl.so.1", "liblsl64.so", "liblsl.dylib"].map(String::from));
    v.extend(["/usr/local/lib/liblsl.so", "/usr/lib/liblsl.so", "/opt/lsl/lib/liblsl.so"].map(String::from));
    v.extend(pylsl_lib_dirs().into_iter().map(|d| d.join("liblsl.so").display().to_string()));
    v
}

/// `pylsl/lib` directories: the one `python3` imports, then site-packages globs.
fn pylsl_lib_dirs() -> Vec<PathBuf> {
    let mut v = Vec::new();
    let out = std::process::Command::new("python3")
        .args(["-c", "import os, pylsl; print(os.path.dirname(pylsl.__file__))"])
        .stderr(std::process::Stdio::null())
        .output();
    if let Ok(o) = out {
        let dir = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if o.status.success() && !dir.is_empty() {
            v.push(Path::new(&dir).join("lib"));
        }
    }
    for root in ["/usr/local/lib", "/usr/lib"] {
        let Ok(rd) = std::fs::read_dir(root) else { continue };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with("python3") {
                for sub in ["site-packages", "dist-packages"] {
                    v.push(e.path().join(sub).join("pylsl").join("lib"));
                }
            }
        }
    }
    v
}

impl Lib {
    /// Loads liblsl from `configured` if given, else from the first candidate that loads.
    pub fn load(configured: Option<&Path>) -> Result<Arc<Lib>, FfiError> {
        let list = match configured {
            Some(p) => vec![p.display().to_string()],
            None => candidates(),
        };
        let mut tried = Vec::new();
        for path in list {
            // SAFETY: loading runs the library's initialisers; liblsl's only
            // start a few static objects. Any candidate that is not liblsl is
            // refused below when its symbols are missing.
            match unsafe { libloading::Library::new(&path) } {
                Ok(lib) => return Self::bind(lib, path).map(Arc::new),
                Err(_) => tried.push(path),
            }
        }
        Err(FfiError::NotFound { tried })
    }

    fn bind(lib: libloading::Library, path: String) -> Result<Lib, FfiError> {
        macro_rules! sym {
            ($name:literal) => {
                // SAFETY: the pointer types above match liblsl's C header
                // (lsl_c.h, API 1.1x); the symbol is copied out as a plain fn
                // pointer and `Lib` keeps `lib` loaded as long as it lives.
                *unsafe { lib.get(concat!($name, "\0").as_bytes()) }.map_err(|e| FfiError::BadLibrary {
                    path: path.clone(),
                    message: format!("no symbol {}: {e}", $name),
                })?
            };
        }
        let f = Fns {
            resolve_bypred: sym!("lsl_resolve_bypred"),
            create_streaminfo: sym!("lsl_create_streaminfo"),
            destroy_streaminfo: sym!("lsl_destroy_streaminfo"),
            get_channel_count: sym!("lsl_get_channel_count"),
            get_channel_format: sym!("lsl_get_channel_format"),
            get_nominal_srate: sym!("lsl_get_nominal_srate"),
            get_name: sym!("lsl_get_name"),
            get_source_id: sym!("lsl_get_source_id"),
            create_inlet: sym!("lsl_create_inlet"),
            destroy_inlet: sym!("lsl_destroy_inlet"),
            open_stream: sym!("lsl_open_stream"),
            time_correction: sym!("lsl_time_correction"),
            pull_sample_f: sym!("lsl_pull_sample_f"),
            pull_chunk_f: sym!("lsl_pull_chunk_f"),
            create_outlet: sym!("lsl_create_outlet"),
            destroy_outlet: sym!("lsl_destroy_outlet"),
            push_sample_ftp: sym!("lsl_push_sample_ftp"),
            have_consumers: sym!("lsl_have_consumers"),
            local_clock: sym!("lsl_local_clock"),
            library_version: sym!("lsl_library_version"),
        };
        Ok(Lib { f, path, _lib: lib })
    }

    /// The file the library was loaded from.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// liblsl's version (e.g. 116 for 1.16).
    pub fn version(&self) -> i32 {
        // SAFETY: no arguments, no state.
        unsafe { (self.f.library_version)() }
    }

    /// LSL's clock (seconds), the clock timestamps are in.
    pub fn local_clock(&self) -> f64 {
        // SAFETY: no arguments, no state.
        unsafe { (self.f.local_clock)() }
    }

    /// The first stream matching an XPath `predicate`, waiting up to `timeout_s`.
    pub fn resolve(self: &Arc<Self>, predicate: &str, timeout_s: f64) -> Result<Option<StreamInfo>, FfiError> {
        let pred = CString::new(predicate).map_err(|_| FfiError::Nul(predicate.into()))?;
        let mut buf: [Handle; 1] = [std::ptr::null_mut()];
        // SAFETY: `buf` has room for the 1 element passed; `pred` is a valid C
        // string for the call; liblsl writes at most that many handles.
        let n = unsafe { (self.f.resolve_bypred)(buf.as_mut_ptr(), 1, pred.as_ptr(), 1, timeout_s) };
        Ok((n >= 1 && !buf[0].is_null()).then(|| StreamInfo { lib: self.clone(), h: buf[0] }))
    }

    /// A new stream description for an outlet.
    pub fn stream_info(
        self: &Arc<Self>,
        name: &str,
        kind: &str,
        channels: usize,
        srate: f64,
        source_id: &str,
    ) -> Result<StreamInfo, FfiError> {
        let c = |s: &str| CString::new(s).map_err(|_| FfiError::Nul(s.into()));
        let (n, t, sid) = (c(name)?, c(kind)?, c(source_id)?);
        // SAFETY: the strings are valid for the call (liblsl copies them).
        let h = unsafe {
            (self.f.create_streaminfo)(n.as_ptr(), t.as_ptr(), channels as i32, srate, format::FLOAT32, sid.as_ptr())
        };
        if h.is_null() {
            return Err(FfiError::Create { what: "stream info" });
        }
        Ok(StreamInfo { lib: self.clone(), h })
    }
}

/// An `lsl_streaminfo`.
pub struct StreamInfo {
    lib: Arc<Lib>,
    h: Handle,
}

// SAFETY: a stream info is a heap object with no thread affinity; it is
// only used through `&self`/`&mut self` of this owner.
unsafe impl Send for StreamInfo {}

fn c_text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: liblsl returns a NUL-terminated string owned by the info,
    // valid while the info lives; it is copied at once.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

impl StreamInfo {
    pub fn channels(&self) -> usize {
        // SAFETY: `h` is a live stream info.
        unsafe { (self.lib.f.get_channel_count)(self.h) }.max(0) as usize
    }
    pub fn format(&self) -> i32 {
        // SAFETY: as above.
        unsafe { (self.lib.f.get_channel_format)(self.h) }
    }
    pub fn nominal_srate(&self) -> f64 {
        // SAFETY: as above.
        unsafe { (self.lib.f.get_nominal_srate)(self.h) }
    }
    pub fn name(&self) -> String {
        // SAFETY: as above.
        c_text(unsafe { (self.lib.f.get_name)(self.h) })
    }
    pub fn source_id(&self) -> String {
        // SAFETY: as above.
        c_text(unsafe { (self.lib.f.get_source_id)(self.h) })
    }

    /// An inlet on this stream (the outlet's own timestamps, recovering
    /// after a lost connection), opened within `open_timeout_s`. The first
    /// clock offset estimate is waited for here (~0.5 s of probes), so that
    /// [`Inlet::refresh_offset`] never waits on the decode thread.
    pub fn inlet(&self, max_buffered_s: i32, open_timeout_s: f64) -> Result<Inlet, FfiError> {
        // SAFETY: `h` is live; liblsl copies the info into the inlet.
        let h = unsafe { (self.lib.f.create_inlet)(self.h, max_buffered_s, 0, 1) };
        if h.is_null() {
            return Err(FfiError::Create { what: "inlet" });
        }
        let mut inlet = Inlet { lib: self.lib.clone(), h, channels: self.channels(), offset_s: 0.0 };
        let mut ec = 0i32;
        // SAFETY: `inlet.h` is live; `ec` is a valid out-pointer.
        unsafe { (self.lib.f.open_stream)(h, open_timeout_s, &mut ec) };
        if ec != 0 {
            return Err(FfiError::Create { what: "inlet's connection (open_stream timed out)" });
        }
        // SAFETY: as above.
        let offset = unsafe { (self.lib.f.time_correction)(h, open_timeout_s, &mut ec) };
        if ec != 0 || !offset.is_finite() {
            return Err(FfiError::Create { what: "inlet's clock offset estimate (time_correction timed out)" });
        }
        inlet.offset_s = offset;
        Ok(inlet)
    }

    /// An outlet publishing this stream, buffering at most `max_buffered_s`.
    pub fn outlet(&self, max_buffered_s: i32) -> Result<Outlet, FfiError> {
        // SAFETY: `h` is live; liblsl copies the info into the outlet.
        let h = unsafe { (self.lib.f.create_outlet)(self.h, 1, max_buffered_s) };
        if h.is_null() {
            return Err(FfiError::Create { what: "outlet" });
        }
        Ok(Outlet { lib: self.lib.clone(), h })
    }
}

impl Drop for StreamInfo {
    fn drop(&mut self) {
        // SAFETY: `h` is owned by this value and destroyed once.
        unsafe { (self.lib.f.destroy_streaminfo)(self.h) }
    }
}

/// An `lsl_inlet` of `channels` channels.
pub struct Inlet {
    lib: Arc<Lib>,
    h: Handle,
    channels: usize,
    /// liblsl's latest estimate of the outlet's clock offset (s): outlet
    /// timestamp + offset = local LSL clock.
    offset_s: f64,
}

// SAFETY: liblsl inlets may be used from any thread, one call at a time
// (`&mut self` below).
unsafe impl Send for Inlet {}

impl Inlet {
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The outlet's clock offset (s) as last refreshed.
    pub fn offset_s(&self) -> f64 {
        self.offset_s
    }

    /// Takes liblsl's current offset estimate (kept up to date by its
    /// background probes; after the first estimate, which `inlet` waited
    /// for, this returns at once). A failed or non-finite read keeps the
    /// previous value.
    pub fn refresh_offset(&mut self) {
        let mut ec = 0i32;
        // SAFETY: `h` is live; `ec` is a valid out-pointer.
        let offset = unsafe { (self.lib.f.time_correction)(self.h, 0.0, &mut ec) };
        if ec == 0 && offset.is_finite() {
            self.offset_s = offset;
        }
    }

    /// One sample into `row` (len = channels), waiting up to `timeout_s`;
    /// Ok(None) on timeout, Err(code) if the stream was lost.
    pub fn pull_sample(&mut self, row: &mut [f32], timeout_s: f64) -> Result<Option<f64>, i32> {
        debug_assert_eq!(row.len(), self.channels);
        let mut ec = 0i32;
        // SAFETY: `row` holds `channels` f32s as passed; `ec` is valid.
        let ts = unsafe { (self.lib.f.pull_sample_f)(self.h, row.as_mut_ptr(), row.len() as i32, timeout_s, &mut ec) };
        match ec {
            0 => Ok((ts != 0.0).then_some(ts)),
            -1 => Ok(None),
            e => Err(e),
        }
    }

    /// Samples already received, without waiting: fills `data` (row-major,
    /// channels per row) and `ts`; the number of samples.
    pub fn pull_chunk(&mut self, data: &mut [f32], ts: &mut [f64]) -> Result<usize, i32> {
        let rows = (data.len() / self.channels.max(1)).min(ts.len());
        let mut ec = 0i32;
        // SAFETY: the buffer sizes passed are the slices' lengths (in
        // elements), so liblsl writes within them; `ec` is valid.
        let n = unsafe {
            (self.lib.f.pull_chunk_f)(
                self.h,
                data.as_mut_ptr(),
                ts.as_mut_ptr(),
                (rows * self.channels) as u64,
                rows as u64,
                0.0,
                &mut ec,
            )
        };
        match ec {
            0 | -1 => Ok(n as usize / self.channels.max(1)),
            e => Err(e),
        }
    }
}

impl Drop for Inlet {
    fn drop(&mut self) {
        // SAFETY: `h` is owned by this value and destroyed once.
        unsafe { (self.lib.f.destroy_inlet)(self.h) }
    }
}

/// An `lsl_outlet` of float32 samples.
pub struct Outlet {
    lib: Arc<Lib>,
    h: Handle,
}

// SAFETY: liblsl outlets may be used from any thread, one call at a time.
unsafe impl Send for Outlet {}

impl Outlet {
    /// Pushes one sample stamped `timestamp` (LSL clock, s); false if refused.
    pub fn push(&mut self, values: &[f32], timestamp: f64) -> bool {
        // SAFETY: `values` is valid for its length, which the outlet's
        // channel count equals (checked by the caller at creation).
        unsafe { (self.lib.f.push_sample_ftp)(self.h, values.as_ptr(), timestamp, 1) == 0 }
    }

    /// Whether any inlet is connected.
    pub fn has_consumers(&self) -> bool {
        // SAFETY: `h` is live.
        unsafe { (self.lib.f.have_consumers)(self.h) != 0 }
    }
}

impl Drop for Outlet {
    fn drop(&mut self) {
        // SAFETY: `h` is owned by this value and destroyed once.
        unsafe { (self.lib.f.destroy_outlet)(self.h) }
    }
}
