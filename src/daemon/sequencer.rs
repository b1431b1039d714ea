//! Sequence rules shared by every source: a timestep's seq is either the
//! next one, after a gap (imputed up to `max_gap_bins`, a reset beyond), a
//! restart of the rig (seq back to 0), or a duplicate / out-of-order repeat.
//! Pure logic, no I/O; the engine acts on the verdict.

/// What a seq means relative to the last accepted one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The first seq, or the one right after the last.
    Next,
    /// Seqs `first..seq` never arrived; impute them, then take `seq`.
    Gap { first: u64 },
    /// A gap longer than `max_gap_bins`: reset the state, then take `seq`.
    TooFar,
    /// seq 0 after a later seq: the rig restarted.
    Restart,
    /// Already seen or older: drop.
    Duplicate,
}

/// The last accepted seq and the gap rule.
#[derive(Debug, Clone)]
pub struct Sequencer {
    last: Option<u64>,
    max_gap: u64,
}

impl Sequencer {
    pub fn new(max_gap_bins: u64) -> Self {
        Self { last: None, max_gap: max_gap_bins }
    }

    /// Classifies `seq` without accepting it.
    #[inline]
    pub fn check(&self, seq: u64) -> Verdict {
        let Some(last) = self.last else {
            return Verdict::Next;
        };
        if seq == last.wrapping_add(1) {
            Verdict::Next
        } else if seq > last {
            if seq - last - 1 <= self.max_gap {
                Verdict::Gap { first: last + 1 }
            } else {
                Verdict::TooFar
            }
        } else if seq == 0 {
            Verdict::Restart
        } else {
            Verdict::Duplicate
        }
    }

    /// Makes `seq` the last accepted one.
    #[inline]
    pub fn accept(&mut self, seq: u64) {
        self.last = Some(seq);
    }

    /// Forgets the stream: the next seq starts a new one.
    pub fn forget(&mut self) {
        self.last = None;
    }

    /// The last accepted seq.
    pub fn last(&self) -> Option<u64> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verdict() {
        let mut s = Sequencer::new(3);
        assert_eq!(s.check(7), Verdict::Next);
        s.accept(7);
        assert_eq!(s.check(8), Verdict::Next);
        assert_eq!(s.check(11), Verdict::Gap { first: 8 });
        assert_eq!(s.check(12), Verdict::TooFar);
        assert_eq!(s.check(7), Verdict::Duplicate);
        assert_eq!(s.check(5), Verdict::Duplicate);
        assert_eq!(s.check(0), Verdict::Restart);
        s.forget();
        assert_eq!(s.check(3), Verdict::Next);
    }
}
