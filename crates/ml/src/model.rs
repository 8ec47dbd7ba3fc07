//! A trained model version and the one prediction path that the API, `ml eval` and the
//! holdout evaluation all run.
//!
//! # The effort estimator
//! Two parts, in log-minutes:
//! 1. a **global ridge regression** over the features of [`crate::features`]: what tasks like
//!    this, estimated like this, by an owner who usually overruns like this, take;
//! 2. a **personal correction**: the owner's own recent completions that read like this task
//!    (cosine similarity of the text vectors), weighted by similarity and by recency (a
//!    half-life counted in the owner's completions), vote with their residuals (how far the
//!    ridge was off for them); the prediction moves by the weighted **median** of those votes,
//!    with a vote of "no correction" of weight `prior_weight`. A median because the error that
//!    matters is absolute (MAE), and the median is what minimises it.
//!
//! When every training effort is one of a few values (story points, or minutes people round
//! to 15/30/60), the prediction is snapped to the nearest of them: answering "4" when nobody
//! ever says 4 only adds error.
//!
//! # The priority suggester
//! One ridge regression per priority on one-hot targets (a least-squares classifier) over the
//! text and due-date features; the suggestion is the highest score. It shares the
//! sufficient-statistics machinery of the effort model.

use std::collections::HashMap;

use domain::{Priority, UserId};
use serde::{Deserialize, Serialize};

use crate::features::{
    feature_row, priority_from_index, priority_row, text_vector, OwnerHistory, SparseVector,
    TaskInput,
};

/// The owner's completions kept for the personal correction.
pub const RECENT_PER_OWNER: usize = 200;

/// How the effort estimator was tuned.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EffortParams {
    /// Ridge penalty.
    pub lambda: f64,
    /// Half-life of a neighbour's vote, in the owner's completions; `None`: no decay.
    pub half_life: Option<f64>,
    /// Neighbours that vote (the most similar), when `similarity_floor` is 0.
    pub neighbours: usize,
    /// When above 0, every recent completion votes, with weight similarity + this floor: the
    /// owner's recent work as a whole then shifts the estimate, similar work the most.
    #[serde(default)]
    pub similarity_floor: f64,
    /// Weight of the "no correction" vote.
    pub prior_weight: f64,
}

/// One of the owner's past completions, as the personal correction sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PastCompletion {
    /// Its text vector.
    pub text: SparseVector,
    /// ln(actual) − the ridge's prediction for it.
    pub residual: f32,
}

/// The effort estimator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffortModel {
    /// Ridge weights, one per feature column.
    pub weights: Vec<f32>,
    /// Tuned settings.
    pub params: EffortParams,
    /// The values efforts take when they take few (ascending), for snapping.
    pub labels: Option<Vec<u32>>,
    /// Per owner, their latest completions, oldest first.
    pub recent: HashMap<String, Vec<PastCompletion>>,
}

/// The priority suggester.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorityModel {
    /// Ridge weights per priority, low first.
    pub weights: Vec<Vec<f32>>,
    /// Ridge penalty.
    pub lambda: f64,
}

/// How a model did on its chronological holdout.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct EffortMetrics {
    /// Completions held out.
    pub holdout: usize,
    /// Mean absolute error, minutes.
    pub mae: f64,
    /// Median absolute error, minutes.
    pub mdae: f64,
    /// Standardised accuracy: 1 − MAE / MAE of random guessing from the training efforts, in %.
    pub sa: f64,
    /// MAE of always answering the training mean.
    pub mean_baseline_mae: f64,
    /// MAE of always answering the training median.
    pub median_baseline_mae: f64,
}

/// How the priority suggester did on its holdout.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct PriorityMetrics {
    /// Creations held out.
    pub holdout: usize,
    /// Share of suggestions equal to the owner's choice.
    pub accuracy: f64,
    /// Accuracy of always suggesting the most common priority.
    pub majority_baseline_accuracy: f64,
}

/// One trained version of both models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// Version number, increasing; 0 until published.
    pub version: u64,
    /// The stream sequence of the last event it learned from.
    pub trained_through: u64,
    /// When it was trained.
    pub trained_at: chrono::DateTime<chrono::Utc>,
    /// Completions it learned from.
    pub effort_examples: u64,
    /// The effort estimator.
    pub effort: EffortModel,
    /// The priority suggester, when any task had a priority to learn from.
    pub priority: Option<PriorityModel>,
    /// Holdout metrics of the effort estimator.
    pub effort_metrics: EffortMetrics,
    /// Holdout metrics of the priority suggester.
    pub priority_metrics: Option<PriorityMetrics>,
    /// Every owner's history as of `trained_through`.
    pub owners: HashMap<String, OwnerHistory>,
}

/// A prediction for one task.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// Expected effort, minutes.
    pub effort_minutes: u32,
    /// Suggested priority.
    pub priority: Option<Priority>,
    /// The model version that answered.
    pub model_version: u64,
}

impl Model {
    /// Predicts a stored task or a draft of `owner`. This is the path of the API.
    pub fn predict(&self, owner: &UserId, input: &TaskInput) -> Prediction {
        let text = text_vector(input);
        let history = self.owners.get(owner.as_str()).copied().unwrap_or_default();
        let row = feature_row(input, &text, &history);
        Prediction {
            effort_minutes: self.effort.predict_row(owner.as_str(), &row, &text),
            priority: self
                .priority
                .as_ref()
                .map(|model| model.predict_row(&priority_row(input, &text))),
            model_version: self.version,
        }
    }
}

impl EffortModel {
    /// The ridge's prediction, ln(minutes).
    pub fn base(&self, row: &SparseVector) -> f64 {
        f64::from(row.dot_dense(&self.weights))
    }

    /// The whole estimate for a feature row, in minutes.
    pub fn predict_row(&self, owner: &str, row: &SparseVector, text: &SparseVector) -> u32 {
        let correction = self
            .recent
            .get(owner)
            .map_or(0.0, |past| personal_correction(past, text, &self.params));
        let minutes = (self.base(row) + correction).exp().clamp(1.0, 100_000.0);
        snap(minutes, self.labels.as_deref())
    }
}

impl PriorityModel {
    /// The priority with the highest score.
    pub fn predict_row(&self, row: &SparseVector) -> Priority {
        let best = self
            .weights
            .iter()
            .map(|weights| row.dot_dense(weights))
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map_or(1, |(index, _)| index);
        priority_from_index(best)
    }
}

/// The weighted median of the residuals of the owner's most similar recent completions.
pub fn personal_correction(
    past: &[PastCompletion],
    text: &SparseVector,
    params: &EffortParams,
) -> f64 {
    let similarities: Vec<f32> = past.iter().map(|p| p.text.dot(text)).collect();
    personal_correction_from(past, &similarities, params)
}

/// [`personal_correction`] with the similarities already computed (tuning tries many
/// settings over the same similarities).
pub fn personal_correction_from(
    past: &[PastCompletion],
    similarities: &[f32],
    params: &EffortParams,
) -> f64 {
    let order: Vec<usize> = if params.similarity_floor > 0.0 {
        (0..past.len()).collect()
    } else {
        let mut similar: Vec<usize> = (0..past.len()).filter(|&i| similarities[i] > 0.0).collect();
        similar
            .sort_unstable_by(|&a, &b| similarities[b].total_cmp(&similarities[a]).then(b.cmp(&a)));
        similar.truncate(params.neighbours);
        similar
    };
    let newest = past.len().saturating_sub(1);
    let mut votes: Vec<(f64, f64)> = order
        .into_iter()
        .map(|i| {
            let age = (newest - i) as f64;
            let decay = params.half_life.map_or(1.0, |h| 0.5f64.powf(age / h));
            let similarity = f64::from(similarities[i]) + params.similarity_floor;
            (f64::from(past[i].residual), similarity * decay)
        })
        .collect();
    votes.push((0.0, params.prior_weight));
    weighted_median(&mut votes)
}

/// The weighted median of (value, weight) pairs: the smallest value whose cumulative weight
/// reaches half the total.
pub fn weighted_median(pairs: &mut [(f64, f64)]) -> f64 {
    pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = pairs.iter().map(|p| p.1).sum();
    let mut cumulative = 0.0;
    for &(value, weight) in pairs.iter() {
        cumulative += weight;
        if cumulative >= total / 2.0 {
            return value;
        }
    }
    pairs.last().map_or(0.0, |p| p.0)
}

/// The nearest of `labels`, or the rounded minutes when efforts take many values.
pub fn snap(minutes: f64, labels: Option<&[u32]>) -> u32 {
    match labels {
        Some(labels) if !labels.is_empty() => labels
            .iter()
            .copied()
            .min_by(|&a, &b| {
                (f64::from(a) - minutes)
                    .abs()
                    .total_cmp(&(f64::from(b) - minutes).abs())
            })
            .unwrap_or(1),
        _ => minutes.round() as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_weighted_median_minimises_absolute_error() {
        assert_eq!(
            weighted_median(&mut [(1.0, 1.0), (2.0, 1.0), (10.0, 1.0)]),
            2.0
        );
        assert_eq!(
            weighted_median(&mut [(1.0, 5.0), (2.0, 1.0), (10.0, 1.0)]),
            1.0
        );
    }

    #[test]
    fn snapping_picks_the_nearest_label_and_rounds_without_labels() {
        assert_eq!(snap(3.9, Some(&[1, 2, 3, 5, 8])), 3);
        assert_eq!(snap(4.1, Some(&[1, 2, 3, 5, 8])), 5);
        assert_eq!(snap(47.6, None), 48);
    }

    #[test]
    fn similar_recent_completions_pull_the_estimate_towards_their_residuals() {
        let text = |i: u32| SparseVector {
            indexes: vec![i],
            values: vec![1.0],
        };
        // given an owner whose tasks about topic 1 ran 2x over and about topic 2 as predicted
        let past: Vec<PastCompletion> = (0..6)
            .map(|i| PastCompletion {
                text: text(1 + i % 2),
                residual: if i % 2 == 0 { 2f32.ln() } else { 0.0 },
            })
            .collect();
        let params = EffortParams {
            lambda: 1.0,
            half_life: Some(10.0),
            neighbours: 5,
            similarity_floor: 0.0,
            prior_weight: 0.5,
        };
        // then a task about topic 1 is corrected by ln 2, one about topic 2 not at all
        assert!((personal_correction(&past, &text(1), &params) - 2f64.ln()).abs() < 1e-6);
        assert_eq!(personal_correction(&past, &text(2), &params), 0.0);
        // and a task about nothing they did before is left to the ridge
        assert_eq!(personal_correction(&past, &text(9), &params), 0.0);
    }
}
