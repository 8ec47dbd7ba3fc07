//! `taskmaster ml eval --csv <file>`: the effort estimator judged on story-point data.
//!
//! The rows (`issuekey,title,description,storypoint,split_mark`, in creation order) become the
//! history of one user in a throw-away stream prefix: each row a `TaskCreated` (title and
//! description) followed by a `TaskCompleted` whose actual effort is the label. Training is
//! the same replay-and-train as the `ml` role's, with the log read up to the last `val` row
//! and the `val` rows as the holdout the settings are tuned on; the `test` rows are then
//! predicted through [`Model::predict`], the API's path, as the open tasks they were when
//! created. Their labels are in the log (as the file is) but after the training position, so
//! no model ever reads them. The same fixed grid serves every file.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use domain::{
    CompleteTask, CreateTask, Description, EffortMinutes, TaskCommand, TaskId, TaskTitle,
    TimeZoneName, UserId,
};
use eventstore::{store::StoreOptions, CommandMeta, EventStore, Naming, StreamOptions};
use futures::StreamExt;
use serde::Serialize;

use crate::features::TaskInput;
use crate::model::{EffortMetrics, EffortParams};
use crate::train::{effort_metrics, train, Holdout, TrainingSet};
use crate::MlError;

/// Which part of the file a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Learnt from.
    Train,
    /// Tuned on.
    Val,
    /// Predicted and scored.
    Test,
}

/// One row of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct StoryRow {
    /// Issue key, for messages.
    pub key: String,
    /// Title.
    pub title: String,
    /// Description (may be empty).
    pub description: String,
    /// The label.
    pub points: u32,
    /// Its split.
    pub split: Split,
}

/// Reads and checks the file; every problem is one line naming the row.
pub fn read_csv(path: &Path) -> Result<Vec<StoryRow>, MlError> {
    let mut reader = csv::Reader::from_path(path)
        .map_err(|e| MlError::Input(format!("{}: {e}", path.display())))?;
    let headers = reader
        .headers()
        .map_err(|e| MlError::Input(format!("{}: {e}", path.display())))?
        .clone();
    let column = |name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            MlError::Input(format!(
                "{}: no column {name:?} (expected issuekey,title,description,storypoint,split_mark)",
                path.display()
            ))
        })
    };
    let (key, title, description, points, split) = (
        column("issuekey")?,
        column("title")?,
        column("description")?,
        column("storypoint")?,
        column("split_mark")?,
    );
    let mut rows = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let line = index + 2;
        let record =
            record.map_err(|e| MlError::Input(format!("{}:{line}: {e}", path.display())))?;
        let field = |i: usize| record.get(i).unwrap_or("").to_owned();
        let label = field(points);
        let Some(label) = label.trim().parse::<f64>().ok().filter(|p| *p >= 0.0) else {
            return Err(MlError::Input(format!(
                "{}:{line}: storypoint {label:?} is not a non-negative number",
                path.display()
            )));
        };
        let split = match field(split).trim() {
            "train" => Split::Train,
            "val" => Split::Val,
            "test" => Split::Test,
            other => {
                return Err(MlError::Input(format!(
                    "{}:{line}: split_mark {other:?} is not train, val or test",
                    path.display()
                )))
            }
        };
        rows.push(StoryRow {
            key: field(key),
            title: field(title),
            description: field(description),
            points: (label.round() as u32).max(1),
            split,
        });
    }
    for needed in [Split::Train, Split::Test] {
        if !rows.iter().any(|r| r.split == needed) {
            return Err(MlError::Input(format!(
                "{}: no {needed:?} rows",
                path.display()
            )));
        }
    }
    Ok(rows)
}

/// What `ml eval` prints.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Rows per split.
    pub rows: RowCounts,
    /// The settings tuned on `val`.
    pub params: EffortParams,
    /// Scores on `val` (the holdout the settings were chosen on).
    pub validation: EffortMetrics,
    /// Scores on `test`, with the training-set Mean and Median baselines and SA.
    pub test: EffortMetrics,
    /// Test MAE of random guessing from the training labels (the SA denominator).
    pub random_guess_mae: f64,
    /// Events imported and the time taken, seconds.
    pub events: u64,
    /// Wall time of import + replay + training + prediction, seconds.
    pub seconds: f64,
}

/// Rows per split.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RowCounts {
    /// Learnt from.
    pub train: usize,
    /// Tuned on.
    pub val: usize,
    /// Scored.
    pub test: usize,
}

fn clean(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                ' '
            } else {
                c
            }
        })
        .collect()
}

fn truncated(text: &str, chars: usize) -> String {
    text.chars().take(chars).collect()
}

fn input_of(row: &StoryRow) -> Result<(TaskTitle, Option<Description>), MlError> {
    let title = TaskTitle::parse(&truncated(&clean(&row.title), 200))
        .or_else(|_| TaskTitle::parse(&row.key))
        .map_err(|e| MlError::Input(format!("{}: title: {e}", row.key)))?;
    let description = Description::parse(&truncated(&clean(&row.description), 10_000))
        .map_err(|e| MlError::Input(format!("{}: description: {e}", row.key)))?;
    Ok((title, description))
}

/// Imports `rows` under a fresh prefix of `client`'s NATS, trains and scores; the prefix's
/// stream is deleted afterwards, also on failure.
pub async fn evaluate(
    client: async_nats::Client,
    rows: &[StoryRow],
) -> Result<EvalReport, MlError> {
    let started = std::time::Instant::now();
    let token = uuid::Uuid::new_v4().simple().to_string();
    let naming = Naming::new(&format!("mleval{}", &token[..12]))?;
    let jetstream = async_nats::jetstream::new(client.clone());
    eventstore::apply_stream_definitions(&jetstream, &naming, StreamOptions { replicas: 1 })
        .await
        .map_err(MlError::EventLog)?;
    let result = evaluate_in(client, naming.clone(), rows).await;
    let _ = jetstream.delete_stream(naming.stream()).await;
    result.map(|mut report| {
        report.seconds = started.elapsed().as_secs_f64();
        report
    })
}

async fn evaluate_in(
    client: async_nats::Client,
    naming: Naming,
    rows: &[StoryRow],
) -> Result<EvalReport, MlError> {
    let store = EventStore::open(client, naming, StoreOptions::default()).await?;
    let owner = UserId::parse("eval").map_err(|e| MlError::Input(e.to_string()))?;
    let origin: DateTime<Utc> = DateTime::from_timestamp(1_500_000_000, 0).unwrap_or_default();
    let zone = TimeZoneName::parse("UTC").map_err(|e| MlError::Input(e.to_string()))?;
    let mut completed_at = Vec::with_capacity(rows.len());
    let mut inputs = Vec::with_capacity(rows.len());
    for (index, row) in rows.iter().enumerate() {
        let (title, description) = input_of(row)?;
        let at = origin + Duration::hours(index as i64);
        let task_id = TaskId(uuid::Uuid::new_v4());
        inputs.push(TaskInput {
            title: title.as_str().to_owned(),
            description: description.as_ref().map(|d| d.as_str().to_owned()),
            tags: vec![],
            priority: None,
            estimate_minutes: None,
            due_at: None,
            created_at: at,
        });
        let create = TaskCommand::Create(CreateTask {
            task_id,
            owner: owner.clone(),
            title,
            description,
            priority: None,
            due_at: None,
            estimate_minutes: None,
            tags: vec![],
            starts_at: None,
            time_zone: zone.clone(),
            at,
            placement: None,
            recurrence: None,
            series: None,
            reminders: Vec::new(),
        });
        let actual = EffortMinutes::parse(i64::from(row.points.min(100_000)), "storypoint")
            .map_err(|e| MlError::Input(format!("{}: {e}", row.key)))?;
        let complete = TaskCommand::Complete(CompleteTask {
            actual_minutes: Some(actual),
            at: at + Duration::minutes(30),
            open_children: Vec::new(),
            cascade: false,
        });
        store
            .execute(&owner, task_id, &create, None, &meta())
            .await?;
        let done = store
            .execute(&owner, task_id, &complete, None, &meta())
            .await?;
        completed_at.push(done.position);
    }

    let last_of = |split: Split| {
        rows.iter()
            .zip(&completed_at)
            .filter(|(r, _)| r.split == split)
            .map(|(_, p)| *p)
            .max()
    };
    let train_end = last_of(Split::Train).unwrap_or(0);
    let learn_until = last_of(Split::Val).unwrap_or(train_end).max(train_end);

    // Replay exactly as the ml role does, stopping at the training position.
    let mut set = TrainingSet::default();
    let messages = store.read_from(None, 1).await?;
    futures::pin_mut!(messages);
    while let Some(event) = messages.next().await {
        let event = event?;
        if event.position > learn_until {
            break;
        }
        set.observe(&event);
        if event.position == learn_until {
            break;
        }
    }
    let trained = tokio::task::spawn_blocking(move || {
        train(&set, Holdout::After(train_end), chrono::Utc::now())
    })
    .await
    .map_err(|e| MlError::Training(e.to_string()))??;
    let model = trained.model;

    let labels = |split: Split| -> Vec<u32> {
        rows.iter()
            .filter(|r| r.split == split)
            .map(|r| r.points)
            .collect()
    };
    let training = labels(Split::Train);
    let test_actual = labels(Split::Test);
    let predicted: Vec<u32> = rows
        .iter()
        .zip(&inputs)
        .filter(|(r, _)| r.split == Split::Test)
        .map(|(_, input)| model.predict(&owner, input).effort_minutes)
        .collect();
    let test = effort_metrics(&training, &test_actual, &predicted);
    let random_guess_mae = if test.sa < 100.0 && test.sa != 0.0 {
        test.mae / (1.0 - test.sa / 100.0)
    } else {
        0.0
    };
    Ok(EvalReport {
        rows: RowCounts {
            train: training.len(),
            val: labels(Split::Val).len(),
            test: test_actual.len(),
        },
        params: model.effort.params,
        validation: model.effort_metrics,
        test,
        random_guess_mae,
        events: completed_at.len() as u64 * 2,
        seconds: 0.0,
    })
}

fn meta() -> CommandMeta {
    let id = uuid::Uuid::new_v4().to_string();
    CommandMeta {
        command_id: id.clone(),
        correlation_id: id,
        traceparent: None,
        client_supplied_id: false,
    }
}
