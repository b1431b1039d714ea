//! Small dense `f64` linear algebra for the baseline decoders
//! ([`crate::baselines`]): BLAS-like helpers on row-major buffers and
//! symmetric positive-definite solves and inverses through a Cholesky factor
//! with a diagonal-jitter fallback. Nothing here depends on an external
//! linear-algebra crate.
//!
//! Invariants:
//! - Every matrix is a row-major `[f64]` slice whose shape is passed
//!   alongside (`n × n` unless stated); a slice shorter than its shape is a
//!   caller bug and panics on indexing.
//! - An SPD factorisation is tried on `a` as given, then with a diagonal
//!   jitter growing from 1e-12 to 1e-3 times the mean |diagonal|; when every
//!   attempt fails (indefinite, NaN or inf) the solve or inverse reports it
//!   (`None` / `false`) and the caller names the matrix in its own error.
//! - A Cholesky factor lives in the lower triangle only; its strict upper
//!   triangle is scratch and never read.

/// Jitter attempts after a failed Cholesky: the added diagonal grows from
/// 1e-12 to 1e-3 times the mean diagonal, in steps of 10×.
const JITTER_STEPS: i32 = 10;

pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `y += alpha · x`.
pub(crate) fn axpy(y: &mut [f64], alpha: f64, x: &[f64]) {
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv += alpha * xv;
    }
}

/// `m += alpha · u vᵀ` for `m` of shape `len(u) × len(v)`.
pub(crate) fn outer_add(m: &mut [f64], u: &[f64], v: &[f64], alpha: f64) {
    let cols = v.len();
    for (i, &ui) in u.iter().enumerate() {
        axpy(&mut m[i * cols..(i + 1) * cols], alpha * ui, v);
    }
}

/// `out = m v` for `m` of shape `rows × cols`.
pub(crate) fn mat_vec(m: &[f64], rows: usize, cols: usize, v: &[f64], out: &mut [f64]) {
    for (r, o) in out.iter_mut().enumerate().take(rows) {
        *o = dot(&m[r * cols..(r + 1) * cols], v);
    }
}

/// `out = a b` for `a` `n × k` and `b` `k × m`.
pub(crate) fn mat_mul(a: &[f64], b: &[f64], n: usize, k: usize, m: usize, out: &mut [f64]) {
    out[..n * m].iter_mut().for_each(|v| *v = 0.0);
    for i in 0..n {
        for l in 0..k {
            axpy(&mut out[i * m..(i + 1) * m], a[i * k + l], &b[l * m..(l + 1) * m]);
        }
    }
}

/// `out = a bᵀ` for `a` `n × k` and `b` `m × k`.
pub(crate) fn mat_mul_bt(a: &[f64], b: &[f64], n: usize, k: usize, m: usize, out: &mut [f64]) {
    for i in 0..n {
        for j in 0..m {
            out[i * m + j] = dot(&a[i * k..(i + 1) * k], &b[j * k..(j + 1) * k]);
        }
    }
}

pub(crate) fn transpose(m: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut out = vec![0.0; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = m[r * cols + c];
        }
    }
    out
}

/// Replaces `m` by `(m + mᵀ) / 2` to stop rounding from breaking symmetry.
pub(crate) fn symmetrise(m: &mut [f64], n: usize) {
    for i in 0..n {
        for j in 0..i {
            let v = 0.5 * (m[i * n + j] + m[j * n + i]);
            m[i * n + j] = v;
            m[j * n + i] = v;
        }
    }
}

/// Overwrites the lower triangle of `a` with its Cholesky factor `L`
/// (`a = L Lᵀ`); the strict upper triangle is left untouched and must not be
/// read as part of `L`. Returns `false` if a pivot is not positive (or NaN).
fn cholesky_in_place(a: &mut [f64], n: usize) -> bool {
    for i in 0..n {
        let (done, rest) = a.split_at_mut(i * n);
        let row_i = &mut rest[..n];
        for j in 0..i {
            let row_j = &done[j * n..j * n + j + 1];
            let v = (row_i[j] - dot(&row_i[..j], &row_j[..j])) / row_j[j];
            row_i[j] = v;
        }
        let d = row_i[i] - dot(&row_i[..i], &row_i[..i]);
        if !(d > 0.0 && d.is_finite()) {
            return false;
        }
        row_i[i] = d.sqrt();
    }
    true
}

/// Cholesky factor of `a` into `l`, retrying with a growing diagonal jitter
/// (1e-12 … 1e-3 times the mean |diagonal|) if `a` is numerically singular.
fn factor_with_jitter(a: &[f64], n: usize, l: &mut [f64]) -> bool {
    let mean_diag = (0..n).map(|i| a[i * n + i].abs()).sum::<f64>() / n.max(1) as f64;
    if !mean_diag.is_finite() {
        return false;
    }
    let base = if mean_diag > 0.0 { mean_diag } else { 1.0 };
    for attempt in 0..=JITTER_STEPS {
        l.copy_from_slice(a);
        if attempt > 0 {
            let jitter = base * 1e-12 * 10f64.powi(attempt - 1);
            for i in 0..n {
                l[i * n + i] += jitter;
            }
        }
        if cholesky_in_place(l, n) {
            return true;
        }
    }
    false
}

/// Solves `L Lᵀ X = R` in place for `R` of shape `n × m` (row-major).
fn cholesky_solve_in_place(l: &[f64], n: usize, rhs: &mut [f64], m: usize) {
    // Forward: L Y = R.
    for i in 0..n {
        let (done, rest) = rhs.split_at_mut(i * m);
        let ri = &mut rest[..m];
        for k in 0..i {
            axpy(ri, -l[i * n + k], &done[k * m..(k + 1) * m]);
        }
        ri.iter_mut().for_each(|v| *v /= l[i * n + i]);
    }
    // Backward: Lᵀ X = Y, column-oriented so L is read by rows.
    for i in (0..n).rev() {
        let (head, rest) = rhs.split_at_mut(i * m);
        let ri = &mut rest[..m];
        ri.iter_mut().for_each(|v| *v /= l[i * n + i]);
        for k in 0..i {
            axpy(&mut head[k * m..(k + 1) * m], -l[i * n + k], ri);
        }
    }
}

/// Solves `a X = rhs` for symmetric positive-definite `a` (`n × n`) and
/// `rhs` `n × m`, with the jitter fallback of [`factor_with_jitter`]; `None`
/// if `a` cannot be factored even with the largest jitter.
pub(crate) fn solve_spd(a: &[f64], n: usize, rhs: &[f64], m: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    if !factor_with_jitter(a, n, &mut l) {
        return None;
    }
    let mut x = rhs.to_vec();
    cholesky_solve_in_place(&l, n, &mut x, m);
    Some(x)
}
/// Writes `a⁻¹` into `out` for symmetric positive-definite `a`, using
/// `factor` (`n × n`) as scratch; `false` if `a` cannot be factored.
pub(crate) fn invert_spd(a: &[f64], n: usize, out: &mut [f64], factor: &mut [f64]) -> bool {
    if !factor_with_jitter(a, n, factor) {
        return false;
    }
    for i in 0..n {
        for j in 0..n {
            out[i * n + j] = if i == j { 1.0 } else { 0.0 };
        }
    }
    cholesky_solve_in_place(factor, n, out, n);
    symmetrise(out, n);
    true
}

// ---------------------------------------------------------------------------
// Test-only reference
// ---------------------------------------------------------------------------

/// Independent reference solver: Gaussian elimination with partial
/// pivoting on a dense `n × n` system with `m` right-hand sides.
#[cfg(test)]
pub(crate) fn gauss_solve(a: &[f64], n: usize, b: &[f64], m: usize) -> Vec<f64> {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    for col in 0..n {
        let piv = (col..n).max_by(|&i, &j| a[i * n + col].abs().total_cmp(&a[j * n + col].abs())).unwrap();
        for k in 0..n {
            a.swap(col * n + k, piv * n + k);
        }
        for k in 0..m {
            b.swap(col * m + k, piv * m + k);
        }
        for r in col + 1..n {
            let f = a[r * n + col] / a[col * n + col];
            for k in col..n {
                a[r * n + k] -= f * a[col * n + k];
            }
            for k in 0..m {
                b[r * m + k] -= f * b[col * m + k];
            }
        }
    }
    for r in (0..n).rev() {
        for k in 0..m {
            let mut v = b[r * m + k];
            for j in r + 1..n {
                v -= a[r * n + j] * b[j * m + k];
            }
            b[r * m + k] = v / a[r * n + r];
        }
    }
    b
}

/// The `n × n` identity matrix.
#[cfg(test)]
pub(crate) fn identity(n: usize) -> Vec<f64> {
    (0..n * n).map(|i| if i % (n + 1) == 0 { 1.0 } else { 0.0 }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn cholesky_solves_hand_checked_3x3() {
        // A = [[4,2,2],[2,5,3],[2,3,6]] = L Lᵀ with L = [[2,0,0],[1,2,0],[1,1,2]]
        // (L11 = √4, L21 = 2/2, L31 = 2/2, L22 = √(5−1), L32 = (3−1)/2,
        // L33 = √(6−1−1)). With x = [1,2,3], b = A x = [14, 21, 26].
        let a = [4.0, 2.0, 2.0, 2.0, 5.0, 3.0, 2.0, 3.0, 6.0];
        let mut l = a;
        assert!(cholesky_in_place(&mut l, 3));
        for (i, want) in [(0, 2.0), (3, 1.0), (4, 2.0), (6, 1.0), (7, 1.0), (8, 2.0)] {
            assert!((l[i] - want).abs() < 1e-12, "L entry {i}: {} vs {want}", l[i]);
        }
        let x = solve_spd(&a, 3, &[14.0, 21.0, 26.0], 1).unwrap();
        for (got, want) in x.iter().zip([1.0, 2.0, 3.0]) {
            assert!((got - want).abs() < 1e-12, "{x:?}");
        }
        // Two right-hand sides at once: columns x and 2x.
        let x2 = solve_spd(&a, 3, &[14.0, 28.0, 21.0, 42.0, 26.0, 52.0], 2).unwrap();
        assert!(x2.iter().zip([1.0, 2.0, 2.0, 4.0, 3.0, 6.0]).all(|(g, w)| (g - w).abs() < 1e-12));
        let (mut inv, mut f) = (vec![0.0; 9], vec![0.0; 9]);
        assert!(invert_spd(&a, 3, &mut inv, &mut f));
        let mut prod = vec![0.0; 9];
        mat_mul(&a, &inv, 3, 3, 3, &mut prod);
        assert!(prod.iter().zip(identity(3)).all(|(g, w)| (g - w).abs() < 1e-12), "{prod:?}");
    }

    #[test]
    fn jitter_rescues_semidefinite_but_not_indefinite() {
        // [[1,1],[1,1]] is PSD and singular: the jitter makes it solvable.
        assert!(solve_spd(&[1.0, 1.0, 1.0, 1.0], 2, &[2.0, 2.0], 1).is_some());
        // [[1,2],[2,1]] has eigenvalue −1: no small jitter helps.
        assert!(solve_spd(&[1.0, 2.0, 2.0, 1.0], 2, &[1.0, 1.0], 1).is_none());
        // A NaN on the diagonal is never factored.
        assert!(solve_spd(&[f64::NAN, 0.0, 0.0, 1.0], 2, &[1.0, 1.0], 1).is_none());
    }

    #[test]
    fn cholesky_matches_gaussian_elimination_on_random_spd() {
        let mut rng = Rng::new(7);
        let n = 12;
        let g: Vec<f64> = (0..n * n).map(|_| rng.normal()).collect();
        let mut a = vec![0.0; n * n];
        mat_mul_bt(&g, &g, n, n, n, &mut a);
        (0..n).for_each(|i| a[i * n + i] += 0.1);
        let b: Vec<f64> = (0..n * 2).map(|_| rng.normal()).collect();
        let x = solve_spd(&a, n, &b, 2).unwrap();
        let reference = gauss_solve(&a, n, &b, 2);
        assert!(x.iter().zip(&reference).all(|(g, w)| (g - w).abs() < 1e-8), "{x:?} vs {reference:?}");
    }
}
