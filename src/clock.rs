//! The one monotonic clock the project stamps frames with: CLOCK_MONOTONIC
//! in nanoseconds, the clock Python's `time.monotonic_ns()` and BRAND nodes
//! read too, so stamps compare across processes on one machine (replayer →
//! daemon → subscriber latency, Redis `ts` fields).
#![allow(unsafe_code)]

/// CLOCK_MONOTONIC now, in nanoseconds (0 if the clock cannot be read).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer to plain data; CLOCK_MONOTONIC
    // always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn monotonic_and_nonzero() {
        let a = super::monotonic_ns();
        let b = super::monotonic_ns();
        assert!(a > 0 && b >= a);
    }
}
