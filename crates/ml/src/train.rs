//! Training: tune on a chronological holdout, measure, refit on everything.
//!
//! 1. The examples are split in log order: the last ones (a fraction, or everything after a
//!    given position) are held out. Nothing is shuffled: a model is always judged on tasks
//!    completed after everything it learned from, as it will be used.
//! 2. The ridge penalty is chosen on the holdout, then the personal-correction settings
//!    (neighbours, half-life, weight of "no correction") over a small fixed grid. The grid is
//!    the same for every data set: no settings are fitted per file or per deployment by hand.
//! 3. The chosen settings' holdout errors are the version's metrics.
//! 4. The published model is refit on every example with those settings, so it knows the
//!    latest completions, as usual once a configuration has been validated.

use std::collections::HashMap;

use domain::UserId;
use eventstore::RecordedEvent;

use crate::dataset::{EffortExample, History, Observed, PriorityExample};
use crate::features::{dense::WIDTH, priority_index, OwnerHistory};
use crate::model::{
    snap, EffortMetrics, EffortModel, EffortParams, Model, PastCompletion, PriorityMetrics,
    PriorityModel, RECENT_PER_OWNER,
};
use crate::normal::NormalEquations;
use crate::MlError;

/// Ridge penalties tried, strongest first (ties keep the simpler model).
const LAMBDAS: [f64; 5] = [100.0, 30.0, 10.0, 3.0, 1.0];
/// Weights of the "no correction" vote, from "ignore the owner's history" down.
const PRIOR_WEIGHTS: [f64; 6] = [1e9, 1.0, 0.5, 0.2, 0.1, 0.05];
/// Half-lives of a neighbour's vote, in the owner's completions.
const HALF_LIVES: [Option<f64>; 4] = [None, Some(100.0), Some(50.0), Some(25.0)];
/// Who votes: the k most similar (floor 0), or everyone with similarity + floor.
const VOTERS: [(usize, f64); 6] = [
    (5, 0.0),
    (10, 0.0),
    (20, 0.0),
    (40, 0.0),
    (0, 0.05),
    (0, 0.2),
];
/// At most this many distinct efforts make them labels to snap to.
const MAX_LABELS: usize = 24;
/// Settings used when there is no holdout to tune on (too few examples).
const DEFAULT_PARAMS: EffortParams = EffortParams {
    lambda: 10.0,
    half_life: Some(50.0),
    neighbours: 10,
    similarity_floor: 0.0,
    prior_weight: 0.5,
};

/// Which examples are held out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Holdout {
    /// The newest fraction (0 to 0.5) of the examples.
    Fraction(f64),
    /// Every example after this stream sequence.
    After(u64),
}

/// Everything learnt from the log so far: the fold state and the examples.
#[derive(Debug, Default)]
pub struct TrainingSet {
    history: History,
    /// Effort examples, in log order.
    pub effort: Vec<EffortExample>,
    /// Priority examples, in log order.
    pub priority: Vec<PriorityExample>,
}

impl TrainingSet {
    /// Learns from one event (replay and live learning both come here).
    pub fn observe(&mut self, event: &RecordedEvent) {
        match self.history.observe(event) {
            Observed::Effort(example) => self.effort.push(example),
            Observed::Priority(example) => self.priority.push(example),
            Observed::Nothing => {}
        }
    }

    /// The stream sequence of the last event learnt from.
    pub fn position(&self) -> u64 {
        self.history.position()
    }

    /// Completions learnt from.
    pub fn completions(&self) -> usize {
        self.effort.len()
    }
}

/// A held-out completion and what the candidate predicted for it.
#[derive(Debug, Clone)]
pub struct HeldOut {
    /// The completion.
    pub example: EffortExample,
    /// The candidate's prediction (trained without the holdout), minutes.
    pub predicted: u32,
}

/// A freshly trained model with its holdout.
#[derive(Debug, Clone)]
pub struct Trained {
    /// The model, refit on everything (version 0 until published).
    pub model: Model,
    /// The effort holdout, with the candidate's predictions.
    pub holdout: Vec<HeldOut>,
}

/// Trains both models on `set`.
pub fn train(
    set: &TrainingSet,
    holdout: Holdout,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Trained, MlError> {
    let split = split_at(set.effort.iter().map(|e| e.position), holdout);
    let (fit, held) = set.effort.split_at(split);
    let (params, effort_metrics, predictions) = tune_effort(fit, held)?;
    let effort = fit_effort(&set.effort, params)?;

    let priority_split = split_at(set.priority.iter().map(|e| e.position), holdout);
    let (priority, priority_metrics) = if set.priority.is_empty() {
        (None, None)
    } else {
        let (fit, held) = set.priority.split_at(priority_split);
        let (lambda, metrics) = tune_priority(fit, held)?;
        let weights = priority_equations(&set.priority).solve(lambda)?;
        (Some(PriorityModel { weights, lambda }), metrics)
    };

    let owners: HashMap<String, OwnerHistory> = set
        .history
        .owners()
        .iter()
        .map(|(owner, history)| (owner.as_str().to_owned(), *history))
        .collect();
    Ok(Trained {
        model: Model {
            version: 0,
            trained_through: set.position(),
            trained_at: now,
            effort_examples: set.effort.len() as u64,
            effort,
            priority,
            effort_metrics,
            priority_metrics,
            owners,
        },
        holdout: held
            .iter()
            .cloned()
            .zip(predictions)
            .map(|(example, predicted)| HeldOut { example, predicted })
            .collect(),
    })
}

fn split_at(positions: impl ExactSizeIterator<Item = u64>, holdout: Holdout) -> usize {
    let n = positions.len();
    match holdout {
        Holdout::Fraction(fraction) => {
            let held = (n as f64 * fraction.clamp(0.0, 0.5)).ceil() as usize;
            // Fewer than 10 examples cannot be split into anything meaningful.
            if n < 10 {
                n
            } else {
                n - held
            }
        }
        Holdout::After(position) => positions.take_while(|&p| p <= position).count(),
    }
}

fn log_target(example: &EffortExample) -> f64 {
    f64::from(example.actual_minutes.max(1)).ln()
}

fn effort_equations(examples: &[EffortExample]) -> NormalEquations {
    let mut equations = NormalEquations::new(WIDTH, 1);
    for example in examples {
        equations.add(&example.row, &[log_target(example)]);
    }
    equations
}

fn labels_of(examples: &[EffortExample]) -> Option<Vec<u32>> {
    let mut labels: Vec<u32> = examples.iter().map(|e| e.actual_minutes).collect();
    labels.sort_unstable();
    labels.dedup();
    (!labels.is_empty() && labels.len() <= MAX_LABELS).then_some(labels)
}

/// The owners' latest completions with their residuals under `weights`, capped per owner.
fn recent_completions(
    examples: &[EffortExample],
    weights: &[f32],
) -> HashMap<String, Vec<PastCompletion>> {
    let mut recent: HashMap<String, Vec<PastCompletion>> = HashMap::new();
    for example in examples {
        let residual = log_target(example) - f64::from(example.row.dot_dense(weights));
        let past = recent.entry(example.owner.as_str().to_owned()).or_default();
        past.push(PastCompletion {
            text: example.text.clone(),
            residual: residual as f32,
        });
        if past.len() > 2 * RECENT_PER_OWNER {
            past.drain(..past.len() - RECENT_PER_OWNER);
        }
    }
    for past in recent.values_mut() {
        if past.len() > RECENT_PER_OWNER {
            past.drain(..past.len() - RECENT_PER_OWNER);
        }
    }
    recent
}

fn fit_effort(examples: &[EffortExample], params: EffortParams) -> Result<EffortModel, MlError> {
    let weights = effort_equations(examples).solve(params.lambda)?.remove(0);
    Ok(EffortModel {
        recent: recent_completions(examples, &weights),
        labels: labels_of(examples),
        weights,
        params,
    })
}

fn mean_absolute(errors: &[f64]) -> f64 {
    if errors.is_empty() {
        0.0
    } else {
        errors.iter().sum::<f64>() / errors.len() as f64
    }
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_unstable_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// MAE, MdAE, SA and the two constant baselines of predictions against a holdout.
pub fn effort_metrics(training: &[u32], actual: &[u32], predicted: &[u32]) -> EffortMetrics {
    let errors: Vec<f64> = actual
        .iter()
        .zip(predicted)
        .map(|(&a, &p)| (f64::from(a) - f64::from(p)).abs())
        .collect();
    let train: Vec<f64> = training.iter().map(|&t| f64::from(t)).collect();
    let mean = if train.is_empty() {
        0.0
    } else {
        train.iter().sum::<f64>() / train.len() as f64
    };
    let train_median = median(&mut train.clone());
    let against = |constant: f64| {
        mean_absolute(
            &actual
                .iter()
                .map(|&a| (f64::from(a) - constant).abs())
                .collect::<Vec<_>>(),
        )
    };
    // Random guessing: the expected |y − y_j| with y_j drawn uniformly from the training
    // efforts, computed exactly (sorted efforts and prefix sums) rather than sampled.
    let random = {
        let mut sorted = train.clone();
        sorted.sort_unstable_by(f64::total_cmp);
        let mut prefix = Vec::with_capacity(sorted.len() + 1);
        prefix.push(0.0);
        for value in &sorted {
            prefix.push(prefix.last().copied().unwrap_or(0.0) + value);
        }
        let total = prefix.last().copied().unwrap_or(0.0);
        let n = sorted.len() as f64;
        let expected = |a: f64| {
            let below = sorted.partition_point(|&t| t <= a);
            let (count, sum) = (below as f64, prefix[below]);
            (a * count - sum + (total - sum) - a * (n - count)) / n
        };
        if sorted.is_empty() {
            0.0
        } else {
            mean_absolute(
                &actual
                    .iter()
                    .map(|&a| expected(f64::from(a)))
                    .collect::<Vec<_>>(),
            )
        }
    };
    let mae = mean_absolute(&errors);
    EffortMetrics {
        holdout: actual.len(),
        mae,
        mdae: median(&mut errors.clone()),
        sa: if random > 0.0 {
            (1.0 - mae / random) * 100.0
        } else {
            0.0
        },
        mean_baseline_mae: against(mean),
        median_baseline_mae: against(train_median),
    }
}

/// Held-out completions the settings are tuned on (the newest): enough to rank settings, few
/// enough that the grid costs seconds at a million events.
const TUNING_CASES: usize = 3000;

/// One vote of a held-out completion's personal correction, precomputed for the grid.
struct Vote {
    residual: f64,
    similarity: f64,
    /// Its rank by similarity (as [`crate::model::personal_correction_from`] orders them); `usize::MAX`
    /// when not similar at all (never among the k nearest).
    rank: usize,
    /// The recency decay under each of [`HALF_LIVES`].
    decays: [f64; HALF_LIVES.len()],
    /// The "no correction" vote, whose weight is a setting.
    prior: bool,
}

/// A held-out completion prepared for scoring under one ridge fit: the votes sorted by
/// residual once, so each setting of the grid costs two linear scans instead of two sorts.
struct Case {
    votes: Vec<Vote>,
    base: f64,
}

fn cases(
    held: &[EffortExample],
    recent: &HashMap<String, Vec<PastCompletion>>,
    weights: &[f32],
) -> Vec<Case> {
    held.iter()
        .map(|e| {
            let past = recent.get(e.owner.as_str()).map_or(&[][..], Vec::as_slice);
            let similarities: Vec<f32> = past.iter().map(|p| p.text.dot(&e.text)).collect();
            let mut by_similarity: Vec<usize> =
                (0..past.len()).filter(|&i| similarities[i] > 0.0).collect();
            by_similarity.sort_unstable_by(|&a, &b| {
                similarities[b].total_cmp(&similarities[a]).then(b.cmp(&a))
            });
            let mut rank = vec![usize::MAX; past.len()];
            for (position, &i) in by_similarity.iter().enumerate() {
                rank[i] = position;
            }
            let newest = past.len().saturating_sub(1);
            let mut votes: Vec<Vote> = past
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let age = (newest - i) as f64;
                    Vote {
                        residual: f64::from(p.residual),
                        similarity: f64::from(similarities[i]),
                        rank: rank[i],
                        decays: HALF_LIVES.map(|h| h.map_or(1.0, |h| 0.5f64.powf(age / h))),
                        prior: false,
                    }
                })
                .collect();
            votes.push(Vote {
                residual: 0.0,
                similarity: 0.0,
                rank: 0,
                decays: [1.0; HALF_LIVES.len()],
                prior: true,
            });
            votes.sort_unstable_by(|a, b| a.residual.total_cmp(&b.residual));
            Case {
                votes,
                base: f64::from(e.row.dot_dense(weights)),
            }
        })
        .collect()
}

/// The same weighted median as [`crate::model::personal_correction_from`], over presorted votes.
fn tuned_correction(case: &Case, params: &EffortParams, half_life: usize) -> f64 {
    let weight = |vote: &Vote| {
        if vote.prior {
            params.prior_weight
        } else if params.similarity_floor > 0.0 {
            (vote.similarity + params.similarity_floor) * vote.decays[half_life]
        } else if vote.rank < params.neighbours {
            vote.similarity * vote.decays[half_life]
        } else {
            0.0
        }
    };
    let total: f64 = case.votes.iter().map(weight).sum();
    let mut cumulative = 0.0;
    for vote in &case.votes {
        cumulative += weight(vote);
        if cumulative >= total / 2.0 {
            return vote.residual;
        }
    }
    0.0
}

fn predict_cases(
    cases: &[Case],
    params: &EffortParams,
    half_life: usize,
    labels: Option<&[u32]>,
) -> Vec<u32> {
    cases
        .iter()
        .map(|case| {
            let correction = tuned_correction(case, params, half_life);
            snap((case.base + correction).exp().clamp(1.0, 100_000.0), labels)
        })
        .collect()
}

/// Picks the effort settings on the holdout; returns them, their metrics and their
/// predictions for the held-out examples.
fn tune_effort(
    fit: &[EffortExample],
    held: &[EffortExample],
) -> Result<(EffortParams, EffortMetrics, Vec<u32>), MlError> {
    if held.is_empty() || fit.is_empty() {
        return Ok((DEFAULT_PARAMS, EffortMetrics::default(), vec![]));
    }
    let equations = effort_equations(fit);
    let labels = labels_of(fit);
    let tuning = &held[held.len().saturating_sub(TUNING_CASES)..];
    let tuning_actual: Vec<u32> = tuning.iter().map(|e| e.actual_minutes).collect();
    let mut chosen: Option<(f64, EffortParams)> = None;
    for lambda in LAMBDAS {
        let weights = equations.solve(lambda)?.remove(0);
        // Similarities do not depend on the voting settings: computed once per penalty.
        let recent = recent_completions(fit, &weights);
        let cases = cases(tuning, &recent, &weights);
        for prior_weight in PRIOR_WEIGHTS {
            for (half_life_index, half_life) in HALF_LIVES.into_iter().enumerate() {
                for (neighbours, similarity_floor) in VOTERS {
                    let params = EffortParams {
                        lambda,
                        half_life,
                        neighbours,
                        similarity_floor,
                        prior_weight,
                    };
                    let predicted =
                        predict_cases(&cases, &params, half_life_index, labels.as_deref());
                    let mae = effort_metrics(&[], &tuning_actual, &predicted).mae;
                    if chosen.as_ref().is_none_or(|(b, _)| mae < *b) {
                        chosen = Some((mae, params));
                    }
                }
            }
        }
    }
    let Some((_, params)) = chosen else {
        return Err(MlError::Training("no setting to try".into()));
    };
    // The chosen setting's predictions for the whole holdout, through the serving path.
    let weights = equations.solve(params.lambda)?.remove(0);
    let recent = recent_completions(fit, &weights);
    let serving = EffortModel {
        weights,
        params,
        labels: labels.clone(),
        recent,
    };
    let predicted: Vec<u32> = held
        .iter()
        .map(|e| serving.predict_row(e.owner.as_str(), &e.row, &e.text))
        .collect();
    let actual: Vec<u32> = held.iter().map(|e| e.actual_minutes).collect();
    let training: Vec<u32> = fit.iter().map(|e| e.actual_minutes).collect();
    Ok((
        params,
        effort_metrics(&training, &actual, &predicted),
        predicted,
    ))
}

fn priority_equations(examples: &[PriorityExample]) -> NormalEquations {
    let mut equations = NormalEquations::new(WIDTH, 4);
    for example in examples {
        let mut targets = [0.0; 4];
        targets[priority_index(example.priority)] = 1.0;
        equations.add(&example.row, &targets);
    }
    equations
}

fn tune_priority(
    fit: &[PriorityExample],
    held: &[PriorityExample],
) -> Result<(f64, Option<PriorityMetrics>), MlError> {
    if held.is_empty() || fit.is_empty() {
        return Ok((10.0, None));
    }
    let equations = priority_equations(fit);
    let mut counts = [0usize; 4];
    for example in fit {
        counts[priority_index(example.priority)] += 1;
    }
    let majority = (0..4).max_by_key(|&i| counts[i]).unwrap_or(1);
    let share = |hits: usize| hits as f64 / held.len() as f64;
    let baseline = share(
        held.iter()
            .filter(|e| priority_index(e.priority) == majority)
            .count(),
    );
    let mut best: Option<(f64, f64)> = None;
    for lambda in LAMBDAS {
        let model = PriorityModel {
            weights: equations.solve(lambda)?,
            lambda,
        };
        let accuracy = share(
            held.iter()
                .filter(|e| model.predict_row(&e.row) == e.priority)
                .count(),
        );
        if best.is_none_or(|(b, _)| accuracy > b) {
            best = Some((accuracy, lambda));
        }
    }
    let (accuracy, lambda) = best.unwrap_or((0.0, 10.0));
    Ok((
        lambda,
        Some(PriorityMetrics {
            holdout: held.len(),
            accuracy,
            majority_baseline_accuracy: baseline,
        }),
    ))
}

/// How a candidate and the serving model compare on completions neither learnt from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// Held-out completions newer than the serving model.
    pub fresh: usize,
    /// The candidate's MAE on them.
    pub candidate_mae: f64,
    /// The serving model's MAE on them.
    pub current_mae: f64,
}

/// Fewer fresh completions than this cannot tell two models apart.
pub const MIN_FRESH: usize = 10;

impl Comparison {
    /// Compares on the held-out completions after the serving model's training position.
    pub fn of(candidate: &Trained, current: &Model) -> Self {
        let fresh: Vec<&HeldOut> = candidate
            .holdout
            .iter()
            .filter(|h| h.example.position > current.trained_through)
            .collect();
        let error = |a: u32, p: u32| (f64::from(a) - f64::from(p)).abs();
        let candidate_errors: Vec<f64> = fresh
            .iter()
            .map(|h| error(h.example.actual_minutes, h.predicted))
            .collect();
        let current_errors: Vec<f64> = fresh
            .iter()
            .map(|h| {
                let owner: &UserId = &h.example.owner;
                let predicted =
                    current
                        .effort
                        .predict_row(owner.as_str(), &h.example.row, &h.example.text);
                error(h.example.actual_minutes, predicted)
            })
            .collect();
        Self {
            fresh: fresh.len(),
            candidate_mae: mean_absolute(&candidate_errors),
            current_mae: mean_absolute(&current_errors),
        }
    }

    /// Whether the candidate should replace the serving model: it beats it on enough
    /// completions that neither has seen.
    pub fn candidate_wins(&self) -> bool {
        self.fresh >= MIN_FRESH && self.candidate_mae < self.current_mae
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::{feature_row, text_vector, TaskInput};

    fn example(
        position: u64,
        owner: &str,
        title: &str,
        estimate: u32,
        actual: u32,
    ) -> EffortExample {
        let input = TaskInput {
            title: title.into(),
            description: None,
            tags: vec![],
            priority: None,
            estimate_minutes: Some(estimate),
            due_at: None,
            created_at: chrono::DateTime::UNIX_EPOCH,
        };
        let text = text_vector(&input);
        EffortExample {
            position,
            owner: domain::FromTrusted::from_trusted(owner.to_owned()),
            row: feature_row(&input, &text, &OwnerHistory::default()),
            text,
            actual_minutes: actual,
        }
    }

    /// Reports take twice their estimate, bugs what was said: 200 completions alternating.
    fn history() -> TrainingSet {
        let mut set = TrainingSet::default();
        for i in 0..200u64 {
            set.effort.push(if i % 2 == 0 {
                example(i + 1, "ann", "Write the report", 60, 120)
            } else {
                example(i + 1, "ann", "Fix the bug", 30, 30)
            });
        }
        set
    }

    #[test]
    fn training_learns_the_overrun_and_measures_it_on_the_newest_fifth() {
        // given a consistent history, when trained with a 20 % holdout
        let trained = train(&history(), Holdout::Fraction(0.2), chrono::Utc::now()).unwrap();
        // then the holdout is the newest 40 completions, predicted almost perfectly
        assert_eq!(trained.holdout.len(), 40);
        assert_eq!(trained.holdout[0].example.position, 161);
        let metrics = trained.model.effort_metrics;
        assert_eq!(metrics.holdout, 40);
        assert!(metrics.mae < 5.0, "{metrics:?}");
        assert!(metrics.mae < metrics.median_baseline_mae);
        // and the refit model predicts the overrun for a new report
        let owner = domain::FromTrusted::from_trusted("ann".to_owned());
        let report = TaskInput {
            title: "Write the report".into(),
            description: None,
            tags: vec![],
            priority: None,
            estimate_minutes: Some(60),
            due_at: None,
            created_at: chrono::DateTime::UNIX_EPOCH,
        };
        let minutes = trained.model.predict(&owner, &report).effort_minutes;
        assert!((100..=140).contains(&minutes), "{minutes}");
    }

    #[test]
    fn the_holdout_can_start_after_a_position() {
        let trained = train(&history(), Holdout::After(150), chrono::Utc::now()).unwrap();
        assert_eq!(trained.holdout.len(), 50);
    }

    #[test]
    fn too_few_examples_train_without_a_holdout() {
        let mut set = history();
        set.effort.truncate(6);
        let trained = train(&set, Holdout::Fraction(0.2), chrono::Utc::now()).unwrap();
        assert!(trained.holdout.is_empty());
        assert_eq!(trained.model.effort_metrics.holdout, 0);
        assert_eq!(trained.model.effort_examples, 6);
    }

    #[test]
    fn a_candidate_replaces_the_serving_model_only_by_beating_it_on_fresh_completions() {
        let trained = train(&history(), Holdout::Fraction(0.2), chrono::Utc::now()).unwrap();
        // A serving model that says 1 minute to everything, trained through position 100.
        let mut bad = trained.model.clone();
        bad.effort.weights.iter_mut().for_each(|w| *w = 0.0);
        bad.effort.recent.clear();
        bad.trained_through = 100;
        let comparison = Comparison::of(&trained, &bad);
        assert_eq!(comparison.fresh, 40);
        assert!(comparison.candidate_wins(), "{comparison:?}");

        // The same model cannot beat itself.
        let mut same = trained.model.clone();
        same.trained_through = 100;
        assert!(!Comparison::of(&trained, &same).candidate_wins());

        // A serving model newer than most of the holdout leaves too little to judge on.
        bad.trained_through = 195;
        let comparison = Comparison::of(&trained, &bad);
        assert_eq!(comparison.fresh, 5);
        assert!(!comparison.candidate_wins());
    }

    #[test]
    fn metrics_match_their_definitions() {
        // training efforts 1, 2, 3; holdout 2 and 4 predicted as 2 and 2
        let metrics = effort_metrics(&[1, 2, 3], &[2, 4], &[2, 2]);
        assert_eq!(metrics.mae, 1.0);
        assert_eq!(metrics.mdae, 1.0);
        assert_eq!(metrics.mean_baseline_mae, 1.0);
        assert_eq!(metrics.median_baseline_mae, 1.0);
        // random guessing: E|2 − {1,2,3}| = 2/3, E|4 − {1,2,3}| = 2 → 4/3
        assert!((metrics.sa - (1.0 - 1.0 / (4.0 / 3.0)) * 100.0).abs() < 1e-9);
    }
}

#[cfg(test)]
mod tuning_tests {
    use super::*;
    use crate::features::{feature_row, text_vector, TaskInput};
    use crate::model::personal_correction_from;

    #[test]
    fn the_presorted_grid_path_gives_exactly_the_serving_paths_correction() {
        // given an owner's varied history and a ridge fit
        let titles = [
            "Write the report",
            "Fix the bug",
            "Fix the report",
            "Plan the week",
            "Review the bug fix",
        ];
        let examples: Vec<EffortExample> = (0..60u64)
            .map(|i| {
                let input = TaskInput {
                    title: titles[(i % 5) as usize].into(),
                    description: None,
                    tags: vec![],
                    priority: None,
                    estimate_minutes: Some(30),
                    due_at: None,
                    created_at: chrono::DateTime::UNIX_EPOCH,
                };
                let text = text_vector(&input);
                EffortExample {
                    position: i + 1,
                    owner: domain::FromTrusted::from_trusted("ann".to_owned()),
                    row: feature_row(&input, &text, &OwnerHistory::default()),
                    text,
                    actual_minutes: 10 + ((i * 37) % 90) as u32,
                }
            })
            .collect();
        let (fit, held) = examples.split_at(45);
        let weights = effort_equations(fit).solve(3.0).unwrap().remove(0);
        let recent = recent_completions(fit, &weights);
        let past = &recent["ann"];
        let prepared = cases(held, &recent, &weights);
        // then every setting of the grid corrects every case as the serving path does
        for (case, example) in prepared.iter().zip(held) {
            let similarities: Vec<f32> = past.iter().map(|p| p.text.dot(&example.text)).collect();
            for prior_weight in PRIOR_WEIGHTS {
                for (h, half_life) in HALF_LIVES.into_iter().enumerate() {
                    for (neighbours, similarity_floor) in VOTERS {
                        let params = EffortParams {
                            lambda: 3.0,
                            half_life,
                            neighbours,
                            similarity_floor,
                            prior_weight,
                        };
                        assert_eq!(
                            tuned_correction(case, &params, h),
                            personal_correction_from(past, &similarities, &params),
                            "{params:?}"
                        );
                    }
                }
            }
        }
    }
}
