//! A minimal dense, row-major `f32` matrix shared by recordings, models and
//! decoders. It owns its data; rows are contiguous, so one timestep of a
//! recording is one slice.
//!
//! Invariant: `data.len() == rows * cols`.

/// Row-major `rows × cols` matrix of `f32`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    /// A matrix of zeros.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self { rows, cols, data: vec![0.0; rows * cols] }
    }

    /// Wraps `data`; panics if its length is not `rows * cols` (a caller bug).
    pub fn from_vec(rows: usize, cols: usize, data: Vec<f32>) -> Self {
        assert_eq!(data.len(), rows * cols, "invariant: matrix data length must be rows*cols");
        Self { rows, cols, data }
    }

    /// Row `r` as a slice.
    #[inline]
    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// Row `r` as a mutable slice.
    #[inline]
    pub fn row_mut(&mut self, r: usize) -> &mut [f32] {
        &mut self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// Element `(r, c)`.
    #[inline]
    pub fn get(&self, r: usize, c: usize) -> f32 {
        self.data[r * self.cols + c]
    }

    /// Rows `start..end` as a new matrix.
    pub fn slice_rows(&self, start: usize, end: usize) -> Matrix {
        Matrix::from_vec(end - start, self.cols, self.data[start * self.cols..end * self.cols].to_vec())
    }

    /// The rows at `rows` (in that order) as a new matrix.
    pub fn select_rows(&self, rows: &[usize]) -> Matrix {
        Matrix::from_vec(rows.len(), self.cols, rows.iter().flat_map(|&i| self.row(i).iter().copied()).collect())
    }

    /// Stacks matrices with equal column counts vertically.
    pub fn vstack(parts: &[&Matrix]) -> Matrix {
        let cols = parts.first().map(|m| m.cols).unwrap_or(0);
        let mut data = Vec::new();
        let mut rows = 0;
        for m in parts {
            assert_eq!(m.cols, cols, "invariant: vstack needs equal column counts");
            data.extend_from_slice(&m.data);
            rows += m.rows;
        }
        Matrix::from_vec(rows, cols, data)
    }

    /// Column `c` copied out.
    pub fn col(&self, c: usize) -> Vec<f32> {
        (0..self.rows).map(|r| self.get(r, c)).collect()
    }
}
