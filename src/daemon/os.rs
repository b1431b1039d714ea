//! Thin wrappers over the OS calls the daemon needs that std lacks:
//! lowering a thread's scheduling priority (the retrainer), pinning a
//! thread to a core (the decode loop) and reading CLOCK_MONOTONIC (Redis
//! output timestamps). With `ingest::lsl::ffi` (liblsl at run time) these
//! are the crate's only `unsafe` blocks; each is a single libc call on the
//! calling thread with plain integer arguments or an out-pointer.
#![allow(unsafe_code)]

/// Sets the calling thread's nice value (Linux: per thread). 0..=19.
pub fn set_current_thread_nice(nice: i32) -> std::io::Result<()> {
    // SAFETY: setpriority reads only its integer arguments; who = 0 with
    // PRIO_PROCESS on Linux means the calling thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Moves the calling thread to the `SCHED_IDLE` policy: it runs only when
/// no normal thread wants the CPU, and any normal thread that wakes up
/// preempts it at once (stronger than nice 19).
pub fn set_current_thread_sched_idle() -> std::io::Result<()> {
    // SAFETY: sched_param is plain data; sched_setscheduler reads it; pid 0
    // is the calling thread on Linux.
    let rc = unsafe {
        let param: libc::sched_param = std::mem::zeroed();
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether the calling thread runs under `SCHED_IDLE`.
pub fn current_thread_is_sched_idle() -> bool {
    // SAFETY: sched_getscheduler only reads its integer argument.
    unsafe { libc::sched_getscheduler(0) == libc::SCHED_IDLE }
}

/// The calling thread's nice value.
pub fn current_thread_nice() -> i32 {
    // SAFETY: getpriority only reads its integer arguments.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
}

/// Pins the calling thread to CPU `core`.
pub fn pin_current_thread(core: usize) -> std::io::Result<()> {
    if core >= libc::CPU_SETSIZE as usize {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("core {core} out of range")));
    }
    // SAFETY: cpu_set_t is plain data, zero-initialised is a valid empty set;
    // CPU_SET writes inside it (core checked above); sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

/// Bytes available to an unprivileged writer on the file system holding `dir`.
pub fn free_bytes(dir: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call;
    // statvfs writes only into the zeroed plain-data struct we pass.
    let (rc, st) = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(c.as_ptr(), &mut st), st)
    };
    if rc == 0 {
        Ok(st.f_bavail * st.f_frsize)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Returns freed heap memory to the operating system (glibc keeps large
/// freed arenas otherwise, so a retraining run's peak would stay resident).
pub fn release_free_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it
    // takes no pointers from us and is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_applies_to_the_calling_thread_only() {
        let before = current_thread_nice();
        let inner = std::thread::spawn(|| {
            set_current_thread_nice(7).unwrap();
            current_thread_nice()
        })
        .join()
        .unwrap();
        assert_eq!(inner, 7);
        assert_eq!(current_thread_nice(), before);
    }

    #[test]
    fn sched_idle_applies_to_the_calling_thread_only() {
        let inner = std::thread::spawn(|| {
            set_current_thread_sched_idle().unwrap();
            current_thread_is_sched_idle()
        })
        .join()
        .unwrap();
        assert!(inner);
        assert!(!current_thread_is_sched_idle());
    }
}
