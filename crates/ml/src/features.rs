//! From a task to numbers: the features both models read.
//!
//! Text (title, description, tags) becomes a hashed bag of stemmed words: lower-cased words,
//! English stop words dropped (the NLTK list of `stop-words`), Snowball-stemmed
//! (`rust-stemmers`), hashed into [`TEXT_DIMENSIONS`] buckets with FNV-1a, weighted by
//! `1 + ln(count)` and L2-normalised, so a long description weighs no more than a short one.
//! Hashing instead of a vocabulary keeps a trained model independent of the words it saw: a
//! model version is just numbers, and a word first seen after training still lands somewhere.
//! Hashing a token is a few lines, so it is written here rather than pulled in.
//!
//! Numbers about the task and its owner follow the text: the owner's estimate (log), the
//! owner's history (the mean log ratio of actual to estimated effort over their earlier
//! completions, shrunk towards 0 while they have few), the priority and the due date.

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use domain::{Priority, Task};
use rust_stemmers::{Algorithm, Stemmer};
use serde::{Deserialize, Serialize};

/// Hashed buckets of the text.
pub const TEXT_DIMENSIONS: usize = 1024;
/// Characters of the description read: beyond them a description adds cost, not signal.
pub const DESCRIPTION_CHARS: usize = 4000;

/// The numeric features after the text, by column.
pub mod dense {
    use super::TEXT_DIMENSIONS;
    /// Always 1; the intercept (not penalised).
    pub const BIAS: usize = TEXT_DIMENSIONS;
    /// 1 when the owner gave an estimate.
    pub const HAS_ESTIMATE: usize = TEXT_DIMENSIONS + 1;
    /// ln(estimate minutes), 0 without one.
    pub const LOG_ESTIMATE: usize = TEXT_DIMENSIONS + 2;
    /// The owner's shrunk mean ln(actual / estimate) so far.
    pub const OWNER_BIAS: usize = TEXT_DIMENSIONS + 3;
    /// ln(1 + the owner's completions so far).
    pub const OWNER_EXPERIENCE: usize = TEXT_DIMENSIONS + 4;
    /// One column per priority, low first (none set: all 0).
    pub const PRIORITY: usize = TEXT_DIMENSIONS + 5;
    /// 1 when the task has a due date.
    pub const HAS_DUE: usize = TEXT_DIMENSIONS + 9;
    /// ln(1 + days from creation to due date), 0 without one or when due already.
    pub const LOG_DAYS_TO_DUE: usize = TEXT_DIMENSIONS + 10;
    /// ln(1 + characters of the description) / 10.
    pub const DESCRIPTION_LENGTH: usize = TEXT_DIMENSIONS + 11;
    /// Number of columns in all.
    pub const WIDTH: usize = TEXT_DIMENSIONS + 12;
}

/// What is known of a task when a prediction is asked for: a stored task or a draft.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskInput {
    /// The title.
    pub title: String,
    /// The description, if any.
    pub description: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Priority, if set.
    pub priority: Option<Priority>,
    /// The owner's estimate in minutes, if given.
    pub estimate_minutes: Option<u32>,
    /// Due date, if any.
    pub due_at: Option<DateTime<Utc>>,
    /// Creation time (for a draft: now).
    pub created_at: DateTime<Utc>,
}

impl From<&Task> for TaskInput {
    fn from(task: &Task) -> Self {
        Self {
            title: task.title.as_str().to_owned(),
            description: task.description.as_ref().map(|d| d.as_str().to_owned()),
            tags: task.tags.iter().map(|t| t.as_str().to_owned()).collect(),
            priority: task.priority,
            estimate_minutes: task.estimate_minutes.map(|e| e.get()),
            due_at: task.due_at,
            created_at: task.created_at,
        }
    }
}

/// A sparse vector: sorted distinct column indexes and their values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SparseVector {
    /// Column indexes, ascending.
    pub indexes: Vec<u32>,
    /// Values, one per index.
    pub values: Vec<f32>,
}

impl SparseVector {
    /// Builds one from unsorted (index, value) pairs, summing repeats.
    pub fn from_pairs(mut pairs: Vec<(u32, f32)>) -> Self {
        pairs.sort_unstable_by_key(|(index, _)| *index);
        let mut vector = SparseVector::default();
        for (index, value) in pairs {
            if vector.indexes.last() == Some(&index) {
                if let Some(last) = vector.values.last_mut() {
                    *last += value;
                }
            } else {
                vector.indexes.push(index);
                vector.values.push(value);
            }
        }
        vector
    }

    /// The dot product with another sparse vector (a merge of the two index lists).
    pub fn dot(&self, other: &SparseVector) -> f32 {
        let (mut i, mut j, mut sum) = (0, 0, 0.0);
        while i < self.indexes.len() && j < other.indexes.len() {
            match self.indexes[i].cmp(&other.indexes[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    sum += self.values[i] * other.values[j];
                    i += 1;
                    j += 1;
                }
            }
        }
        sum
    }

    /// The dot product with dense weights.
    pub fn dot_dense(&self, weights: &[f32]) -> f32 {
        self.indexes
            .iter()
            .zip(&self.values)
            .map(|(&index, &value)| weights.get(index as usize).copied().unwrap_or(0.0) * value)
            .sum()
    }

    /// Iterates (index, value).
    pub fn iter(&self) -> impl Iterator<Item = (usize, f32)> + '_ {
        self.indexes
            .iter()
            .zip(&self.values)
            .map(|(&index, &value)| (index as usize, value))
    }
}

/// What the models know of an owner at a point in the log: their completions so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct OwnerHistory {
    /// Completions with an actual effort.
    pub completions: u32,
    /// Of those, how many had an estimate.
    pub estimated: u32,
    /// Sum of ln(actual / estimate) over the estimated ones.
    pub log_ratio_sum: f64,
}

/// Pseudo-count pulling an owner's estimation bias towards 0 while they have few data points.
const OWNER_BIAS_PRIOR: f64 = 3.0;

impl OwnerHistory {
    /// Counts one completion.
    pub fn record(&mut self, actual_minutes: u32, estimate_minutes: Option<u32>) {
        self.completions += 1;
        if let Some(estimate) = estimate_minutes {
            self.estimated += 1;
            self.log_ratio_sum += (f64::from(actual_minutes) / f64::from(estimate)).ln();
        }
    }

    /// The owner's mean ln(actual / estimate), shrunk towards 0 (no bias) by a prior of a few
    /// completions, so one odd task does not define a person.
    pub fn shrunk_log_ratio(&self) -> f64 {
        self.log_ratio_sum / (f64::from(self.estimated) + OWNER_BIAS_PRIOR)
    }
}

fn stemmer() -> &'static Stemmer {
    static STEMMER: OnceLock<Stemmer> = OnceLock::new();
    STEMMER.get_or_init(|| Stemmer::create(Algorithm::English))
}

fn stop_words() -> &'static std::collections::HashSet<String> {
    static WORDS: OnceLock<std::collections::HashSet<String>> = OnceLock::new();
    WORDS.get_or_init(|| {
        stop_words::get(stop_words::LANGUAGE::English)
            .into_iter()
            .collect()
    })
}

/// FNV-1a, 32 bits: stable across releases and platforms, which a stored model relies on.
fn fnv1a(salt: u8, bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for &byte in std::iter::once(&salt).chain(bytes) {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// The stemmed, stop-word-free words of a text, in order.
pub fn words(text: &str) -> Vec<String> {
    let stop = stop_words();
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty() && word.chars().count() <= 40)
        .map(str::to_lowercase)
        .filter(|word| !stop.contains(word))
        .map(|word| stemmer().stem(&word).into_owned())
        .collect()
}

/// The hashed, normalised bag of words of a task's title, description and tags.
pub fn text_vector(input: &TaskInput) -> SparseVector {
    let mut counts: HashMap<u32, f32> = HashMap::new();
    let mut add = |salt: u8, token: &str| {
        let bucket = fnv1a(salt, token.as_bytes()) % TEXT_DIMENSIONS as u32;
        *counts.entry(bucket).or_default() += 1.0;
    };
    for word in words(&input.title) {
        add(0, &word);
    }
    if let Some(description) = &input.description {
        let end = description
            .char_indices()
            .nth(DESCRIPTION_CHARS)
            .map_or(description.len(), |(at, _)| at);
        for word in words(&description[..end]) {
            add(0, &word);
        }
    }
    for tag in &input.tags {
        add(1, &tag.to_lowercase());
    }
    let mut pairs: Vec<(u32, f32)> = counts
        .into_iter()
        .map(|(bucket, count)| (bucket, 1.0 + count.ln()))
        .collect();
    let norm = pairs.iter().map(|(_, v)| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        for (_, value) in &mut pairs {
            *value /= norm;
        }
    }
    SparseVector::from_pairs(pairs)
}

/// The full feature row of a task: its text vector followed by the numeric columns.
pub fn feature_row(input: &TaskInput, text: &SparseVector, owner: &OwnerHistory) -> SparseVector {
    let mut pairs: Vec<(u32, f32)> = text.iter().map(|(i, v)| (i as u32, v)).collect();
    let mut set = |column: usize, value: f64| {
        if value != 0.0 {
            pairs.push((column as u32, value as f32));
        }
    };
    set(dense::BIAS, 1.0);
    if let Some(estimate) = input.estimate_minutes {
        set(dense::HAS_ESTIMATE, 1.0);
        set(dense::LOG_ESTIMATE, f64::from(estimate.max(1)).ln());
    }
    set(dense::OWNER_BIAS, owner.shrunk_log_ratio());
    set(
        dense::OWNER_EXPERIENCE,
        (1.0 + f64::from(owner.completions)).ln(),
    );
    if let Some(priority) = input.priority {
        set(dense::PRIORITY + priority_index(priority), 1.0);
    }
    if let Some(due) = input.due_at {
        set(dense::HAS_DUE, 1.0);
        let days = (due - input.created_at).num_minutes() as f64 / 1440.0;
        set(dense::LOG_DAYS_TO_DUE, days.max(0.0).ln_1p());
    }
    let description_chars = input
        .description
        .as_ref()
        .map_or(0, |d| d.chars().count().min(DESCRIPTION_CHARS));
    set(
        dense::DESCRIPTION_LENGTH,
        (description_chars as f64).ln_1p() / 10.0,
    );
    SparseVector::from_pairs(pairs)
}

/// The priority suggester's features: the text and the due date, not the priority itself.
pub fn priority_row(input: &TaskInput, text: &SparseVector) -> SparseVector {
    let without_priority = TaskInput {
        priority: None,
        estimate_minutes: None,
        ..input.clone()
    };
    feature_row(&without_priority, text, &OwnerHistory::default())
}

/// 0 for low up to 3 for urgent.
pub fn priority_index(priority: Priority) -> usize {
    match priority {
        Priority::Low => 0,
        Priority::Medium => 1,
        Priority::High => 2,
        Priority::Urgent => 3,
    }
}

/// The inverse of [`priority_index`].
pub fn priority_from_index(index: usize) -> Priority {
    match index {
        0 => Priority::Low,
        1 => Priority::Medium,
        2 => Priority::High,
        _ => Priority::Urgent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(title: &str, description: Option<&str>) -> TaskInput {
        TaskInput {
            title: title.into(),
            description: description.map(Into::into),
            tags: vec![],
            priority: None,
            estimate_minutes: None,
            due_at: None,
            created_at: DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn words_are_stemmed_lower_cased_and_stop_words_dropped() {
        assert_eq!(
            words("The Reports are being Generated"),
            vec!["report", "generat"]
        );
    }

    #[test]
    fn a_text_vector_has_unit_length_and_similar_texts_are_close() {
        let a = text_vector(&draft("Fix the login bug", Some("Users cannot log in")));
        let b = text_vector(&draft("Fixing login bugs", None));
        let c = text_vector(&draft("Write quarterly report", None));
        assert!((a.dot(&a) - 1.0).abs() < 1e-5);
        assert!(a.dot(&b) > 0.5, "{}", a.dot(&b));
        assert!(a.dot(&c) < 0.2, "{}", a.dot(&c));
    }

    #[test]
    fn the_hash_of_a_word_is_pinned_because_stored_models_depend_on_it() {
        assert_eq!(fnv1a(0, b"report") % TEXT_DIMENSIONS as u32, 97);
    }

    #[test]
    fn an_owner_bias_is_shrunk_while_the_history_is_short() {
        let mut owner = OwnerHistory::default();
        owner.record(120, Some(60));
        let one = owner.shrunk_log_ratio();
        for _ in 0..20 {
            owner.record(120, Some(60));
        }
        assert!(one > 0.0 && one < 2f64.ln() / 2.0);
        assert!((owner.shrunk_log_ratio() - 2f64.ln()).abs() < 0.15);
    }

    #[test]
    fn the_feature_row_carries_the_estimate_and_the_due_date() {
        let mut input = draft("Plan", None);
        input.estimate_minutes = Some(60);
        input.due_at = Some(DateTime::UNIX_EPOCH + chrono::Duration::days(3));
        input.priority = Some(Priority::High);
        let row = feature_row(&input, &text_vector(&input), &OwnerHistory::default());
        let get = |column: usize| {
            row.iter()
                .find(|(i, _)| *i == column)
                .map(|(_, v)| v)
                .unwrap_or(0.0)
        };
        assert_eq!(get(dense::BIAS), 1.0);
        assert!((get(dense::LOG_ESTIMATE) - 60f32.ln()).abs() < 1e-5);
        assert_eq!(get(dense::PRIORITY + 2), 1.0);
        assert!((get(dense::LOG_DAYS_TO_DUE) - 4f32.ln()).abs() < 1e-5);
        let suggest = priority_row(&input, &text_vector(&input));
        assert!(suggest.iter().all(|(i, _)| i != dense::PRIORITY + 2));
    }
}
