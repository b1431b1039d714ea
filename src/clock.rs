//! Time helpers: the one monotonic clock the project stamps frames with
//! (CLOCK_MONOTONIC in nanoseconds, the clock Python's `time.monotonic_ns()`
//! and BRAND nodes read too, so stamps compare across processes on one
//! machine: replayer → daemon → subscriber latency, Redis `ts` fields), and
//! the one Unix-seconds → UTC calendar conversion (file names, NWB times).
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

/// A UTC calendar date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    pub year: i64,
    pub month: i64,
    pub day: i64,
    pub hour: i64,
    pub minute: i64,
    pub second: i64,
}

/// `unix_s` (whole seconds, may be negative) as a proleptic Gregorian UTC
/// date and time (Howard Hinnant's civil-from-days algorithm).
pub fn utc(unix_s: i64) -> Utc {
    let (days, sod) = (unix_s.div_euclid(86_400), unix_s.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Utc { year, month, day, hour: sod / 3600, minute: sod % 3600 / 60, second: sod % 60 }
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_dates() {
        let u = super::utc(951_782_400); // 2000-02-29, a leap day
        assert_eq!((u.year, u.month, u.day, u.hour), (2000, 2, 29, 0));
        let u = super::utc(1_796_003_281);
        assert_eq!((u.year, u.month, u.day, u.hour, u.minute, u.second), (2026, 11, 30, 1, 48, 1));
        assert_eq!(super::utc(-1).year, 1969);
    }

    #[test]
    fn monotonic_and_nonzero() {
        let a = super::monotonic_ns();
        let b = super::monotonic_ns();
        assert!(a > 0 && b >= a);
    }
}
