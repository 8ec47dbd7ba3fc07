//! Ridge regression through its sufficient statistics.
//!
//! A ridge fit needs only `XᵀX` and `Xᵀy`, which are sums over examples: adding a completion is
//! adding one outer product, so the model learns incrementally at the cost of the row's
//! non-zeros squared (a few hundred multiply-adds), and a full refit at any moment is one
//! Cholesky solve of a `WIDTH × WIDTH` system, whatever the number of examples. That is what
//! makes "retrain by replaying a million events" a matter of seconds. linfa's solvers take a
//! dense design matrix (a million rows of 1,036 columns would not fit in memory) and do not
//! update incrementally, so the accumulation is written here; the solve is linfa-linalg's
//! Cholesky on ndarray.

use linfa_linalg::cholesky::SolveCInplace;
use ndarray::{Array2, Axis};

use crate::features::{dense, SparseVector};
use crate::MlError;

/// `XᵀX` and `XᵀY` for one or more targets, summed over the examples seen.
#[derive(Debug, Clone)]
pub struct NormalEquations {
    width: usize,
    targets: usize,
    /// Upper triangle of `XᵀX`, row-major, full square for simple indexing.
    gram: Vec<f64>,
    /// `XᵀY`, `width × targets`.
    moment: Vec<f64>,
    examples: u64,
}

impl NormalEquations {
    /// Empty statistics for rows of `width` columns and `targets` outputs.
    pub fn new(width: usize, targets: usize) -> Self {
        Self {
            width,
            targets,
            gram: vec![0.0; width * width],
            moment: vec![0.0; width * targets],
            examples: 0,
        }
    }

    /// Examples added so far.
    pub fn examples(&self) -> u64 {
        self.examples
    }

    /// Adds one example.
    pub fn add(&mut self, row: &SparseVector, targets: &[f64]) {
        debug_assert_eq!(targets.len(), self.targets);
        let entries: Vec<(usize, f64)> = row.iter().map(|(i, v)| (i, f64::from(v))).collect();
        for (a, &(i, vi)) in entries.iter().enumerate() {
            let line = &mut self.gram[i * self.width..(i + 1) * self.width];
            for &(j, vj) in &entries[a..] {
                line[j] += vi * vj;
            }
            for (t, target) in targets.iter().enumerate() {
                self.moment[i * self.targets + t] += vi * target;
            }
        }
        self.examples += 1;
    }

    /// Solves `(XᵀX + λI) w = XᵀY`, leaving the intercept column unpenalised. Returns one
    /// weight vector per target.
    pub fn solve(&self, lambda: f64) -> Result<Vec<Vec<f32>>, MlError> {
        let n = self.width;
        let mut gram = Array2::<f64>::zeros((n, n));
        for i in 0..n {
            for j in i..n {
                let value = self.gram[i * n + j];
                gram[[i, j]] = value;
                gram[[j, i]] = value;
            }
            // A tiny ridge on the intercept too keeps an empty model solvable.
            gram[[i, i]] += if i == dense::BIAS { 1e-6 } else { lambda };
        }
        let mut rhs = Array2::<f64>::zeros((n, self.targets));
        for i in 0..n {
            for t in 0..self.targets {
                rhs[[i, t]] = self.moment[i * self.targets + t];
            }
        }
        gram.solvec_inplace(&mut rhs)
            .map_err(|e| MlError::Training(format!("ridge solve: {e}")))?;
        Ok(rhs
            .axis_iter(Axis(1))
            .map(|column| column.iter().map(|&w| w as f32).collect())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::dense::WIDTH;

    fn row(pairs: &[(usize, f32)]) -> SparseVector {
        SparseVector::from_pairs(pairs.iter().map(|&(i, v)| (i as u32, v)).collect())
    }

    #[test]
    fn a_noiseless_linear_target_is_recovered() {
        // given y = 2 + 3·x₀ − x₁ on a handful of rows
        let mut equations = NormalEquations::new(WIDTH, 1);
        for (x0, x1) in [(1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (2.0, 0.5), (0.5, 2.0)] {
            let y = 2.0 + 3.0 * f64::from(x0) - f64::from(x1);
            equations.add(&row(&[(0, x0), (1, x1), (dense::BIAS, 1.0)]), &[y]);
        }
        // when solved with a negligible ridge
        let weights = &equations.solve(1e-9).unwrap()[0];
        // then the coefficients come back
        assert!((weights[0] - 3.0).abs() < 1e-3, "{}", weights[0]);
        assert!((weights[1] + 1.0).abs() < 1e-3, "{}", weights[1]);
        assert!((weights[dense::BIAS] - 2.0).abs() < 1e-3);
    }

    #[test]
    fn the_ridge_shrinks_weights_but_not_the_intercept() {
        let mut equations = NormalEquations::new(WIDTH, 1);
        for x in [0.0f32, 1.0, 0.0, 1.0] {
            equations.add(&row(&[(0, x), (dense::BIAS, 1.0)]), &[5.0 + f64::from(x)]);
        }
        let weights = &equations.solve(1e6).unwrap()[0];
        assert!(weights[0].abs() < 1e-3);
        assert!((weights[dense::BIAS] - 5.5).abs() < 1e-2);
    }

    #[test]
    fn an_empty_model_solves_to_zero() {
        let weights = NormalEquations::new(WIDTH, 2).solve(1.0).unwrap();
        assert_eq!(weights.len(), 2);
        assert!(weights[1].iter().all(|w| *w == 0.0));
    }
}
