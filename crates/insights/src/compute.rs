//! The insights of one user, computed from their task rows: a pure function of the rows, the
//! owner's time zone, `now` and the read-model position, with no I/O and no clock, so every
//! number here can be pinned down by a given/when/then test.
//!
//! Windows are trailing and end at `now`: "in the last 7 days" means after `now - 7 days`.
//! Days and hours (focus hours, streak, active days) are the owner's local ones.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDate, Timelike, Utc};
use chrono_tz::Tz;
use domain::TaskStatus;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::advice;

/// How far back completed tasks are read: the longest window any metric looks at (estimation,
/// focus hours and the streak use it; the other windows are shorter).
pub const HISTORY_DAYS: i64 = 90;

/// What the computation needs of one task: a few columns of the tasks read model. Smaller than
/// a full row on purpose (no title or description), since a user's whole recent history is
/// read for every computation.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskFacts {
    /// Life-cycle status.
    pub status: TaskStatus,
    /// Tags, as stored.
    pub tags: Vec<String>,
    /// Due date, if any.
    pub due_at: Option<DateTime<Utc>>,
    /// The owner's estimate.
    pub estimate_minutes: Option<u32>,
    /// The actual effort recorded at completion.
    pub actual_minutes: Option<u32>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Completion time (kept when a completed task is archived).
    pub completed_at: Option<DateTime<Utc>>,
}

impl TaskFacts {
    /// Open, in progress or paused: not finished, not cancelled and not put away.
    fn is_unfinished(&self) -> bool {
        matches!(
            self.status,
            TaskStatus::Open | TaskStatus::InProgress | TaskStatus::Paused
        )
    }
}

/// Everything the computation reads.
#[derive(Debug, Clone)]
pub struct InsightsInput<'a> {
    /// The user's unfinished tasks and the tasks they completed in the last [`HISTORY_DAYS`]
    /// (others are ignored if present).
    pub tasks: &'a [TaskFacts],
    /// The IANA zone local days and hours are counted in (unknown names count as UTC).
    pub time_zone: &'a str,
    /// The instant the insights are computed for.
    pub now: DateTime<Utc>,
    /// The read-model position the rows reflect.
    pub position: u64,
}

/// Completions against what is still open, over a trailing window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WindowRate {
    /// `completed / (completed + still_open)`, 0..1; null when both are 0.
    pub rate: Option<f64>,
    /// Tasks completed in the window.
    pub completed: u32,
    /// Tasks created in the window that are still open, in progress or paused.
    pub still_open: u32,
}

/// Deadlines met over the last 30 days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OnTime {
    /// `on_time / with_due_date`, 0..1; null when no completed task had a due date.
    pub rate: Option<f64>,
    /// Completed on or before their due date.
    pub on_time: u32,
    /// Completed in the last 30 days with a due date.
    pub with_due_date: u32,
}

/// Which way estimates miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Bias {
    /// Tasks take longer than estimated (median ratio above 1.1).
    Underestimate,
    /// Tasks take less time than estimated (median ratio below 0.9).
    Overestimate,
    /// Within 10% either way.
    Accurate,
}

/// How well estimates match actual effort, over tasks completed in the last 90 days that have
/// both an estimate and an actual effort.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EstimateStats {
    /// Tasks measured.
    pub samples: u32,
    /// Median of `actual / estimate`: 1.4 means tasks take 1.4 times the estimate.
    pub median_ratio: Option<f64>,
    /// `(median_ratio - 1) × 100`: +40 means 40% longer than estimated (underestimating),
    /// -30 means 30% less time than estimated (overestimating).
    pub bias_percent: Option<f64>,
    /// The sign of the bias, with a ±10% band counted as accurate.
    pub bias: Option<Bias>,
    /// Accuracy: the share of tasks whose actual effort was within 25% of the estimate, 0..1.
    pub within_25_percent: Option<f64>,
}

/// Estimation of the tasks carrying one tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TagEstimate {
    /// The tag.
    pub tag: String,
    /// Its statistics.
    #[serde(flatten)]
    pub stats: EstimateStats,
}

/// Estimation accuracy and bias, overall and per tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Estimation {
    /// Over every measured task.
    pub overall: EstimateStats,
    /// Per tag, most measured first (at most 20 tags).
    pub by_tag: Vec<TagEstimate>,
}

/// Cycle time: from a task's creation to its completion (the read model keeps a work
/// session's start only while it runs, so "started → completed" is not available), over tasks
/// completed in the last 30 days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CycleTime {
    /// Mean hours from creation to completion.
    pub average_hours: Option<f64>,
    /// Median hours from creation to completion.
    pub median_hours: Option<f64>,
    /// Tasks measured.
    pub samples: u32,
}

/// Tasks being worked on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkInProgress {
    /// `in_progress + paused`.
    pub total: u32,
    /// Started and running.
    pub in_progress: u32,
    /// Started, then paused.
    pub paused: u32,
}

/// When the user finishes tasks, by hour of their local day, over the last 90 days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FocusHours {
    /// 24 counts: completions at local hour 0, 1, …, 23.
    pub by_hour: Vec<u32>,
    /// Up to three hours with the most completions, busiest first (ties: earlier hour first).
    pub top_hours: Vec<u8>,
    /// Completions counted.
    pub completions: u32,
}

/// Per-user productivity insights, computed from the tasks read model.
///
/// **Productivity score** (0..100): a weighted mean of four components, each 0..1, over the
/// components that have data (weights re-normalised over those), times 100, rounded:
/// completion rate over 30 days (weight 0.40), on-time rate over 30 days (0.25), estimation
/// accuracy: the share of tasks within 25% of their estimate (0.15), and consistency: days with
/// at least one completion among the last 14 local days, divided by 10 and capped at 1 (0.20;
/// counted once the completion rate has data). Null when no component has data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(
    description = "Per-user productivity insights, computed from the tasks read model. \
    productivity_score (0..100) is a weighted mean, over the components that have data, of: \
    completion rate over 30 days (weight 0.40), on-time rate over 30 days (0.25), estimation \
    accuracy = share of tasks within 25% of their estimate (0.15), and consistency = days with \
    a completion among the last 14 local days / 10, capped at 1 (0.20); times 100, rounded; \
    null when no component has data. Windows are trailing and end at computed_at; days and \
    hours are in the owner's time zone."
)]
pub struct Insights {
    /// 0..100, see the type's description; null with no data.
    pub productivity_score: Option<u8>,
    /// Completed in the last 7 days against those plus tasks created in the last 7 days that
    /// are still open, in progress or paused.
    pub completion_rate_7d: WindowRate,
    /// The same over 30 days.
    pub completion_rate_30d: WindowRate,
    /// Tasks completed in the last 30 days on or before their due date.
    pub on_time: OnTime,
    /// Estimation accuracy and bias (actual / estimate), overall and per tag, 90 days.
    pub estimation: Estimation,
    /// Creation → completion, 30 days.
    pub cycle_time: CycleTime,
    /// Tasks in progress or paused now.
    pub work_in_progress: WorkInProgress,
    /// Open, in-progress or paused tasks whose due date has passed.
    pub overdue: u32,
    /// Completions by local hour of day, 90 days.
    pub focus_hours: FocusHours,
    /// Consecutive local days, up to today, with at least one completion. A day without one
    /// yet today does not break it (it counts from yesterday then); at most 90.
    pub streak_days: u32,
    /// The IANA zone the days and hours are counted in: that of the user's newest task.
    pub time_zone: String,
    /// Plain-language advice drawn from the numbers above (only from enough data).
    pub advice: Vec<String>,
    /// When this was computed.
    pub computed_at: DateTime<Utc>,
    /// The read-model position (stream sequence) these numbers reflect: every event up to it.
    pub position: u64,
}

/// Weights of the productivity score's components.
const SCORE_COMPLETION: f64 = 0.40;
const SCORE_ON_TIME: f64 = 0.25;
const SCORE_ESTIMATION: f64 = 0.15;
const SCORE_CONSISTENCY: f64 = 0.20;
/// Active days among the last 14 that count as fully consistent.
const CONSISTENT_DAYS: f64 = 10.0;
/// Tags listed in [`Estimation::by_tag`].
const MAX_TAGS: usize = 20;

/// Computes a user's insights. Pure: the same input always gives the same output.
pub fn compute(input: &InsightsInput<'_>) -> Insights {
    let tz: Tz = input.time_zone.parse().unwrap_or(Tz::UTC);
    let now = input.now;
    let since = |days: i64| now - Duration::days(days);
    let history: Vec<&TaskFacts> = input
        .tasks
        .iter()
        .filter(|t| t.completed_at.is_some_and(|c| c > since(HISTORY_DAYS)))
        .collect();
    let completed_within = |days: i64| {
        history
            .iter()
            .copied()
            .filter(move |t| t.completed_at.is_some_and(|c| c > since(days)))
    };

    let window_rate = |days: i64| {
        let completed = completed_within(days).count() as u32;
        let still_open = input
            .tasks
            .iter()
            .filter(|t| t.is_unfinished() && t.created_at > since(days))
            .count() as u32;
        WindowRate {
            rate: ratio(completed, completed + still_open),
            completed,
            still_open,
        }
    };
    let completion_rate_7d = window_rate(7);
    let completion_rate_30d = window_rate(30);

    let due: Vec<(DateTime<Utc>, DateTime<Utc>)> = completed_within(30)
        .filter_map(|t| Some((t.completed_at?, t.due_at?)))
        .collect();
    let on_time_count = due.iter().filter(|(done, due)| done <= due).count() as u32;
    let on_time = OnTime {
        rate: ratio(on_time_count, due.len() as u32),
        on_time: on_time_count,
        with_due_date: due.len() as u32,
    };

    let estimation = estimation(&history);

    let mut cycle_hours: Vec<f64> = completed_within(30)
        .filter_map(|t| {
            let seconds = (t.completed_at? - t.created_at).num_seconds().max(0);
            Some(seconds as f64 / 3600.0)
        })
        .collect();
    let cycle_time = CycleTime {
        average_hours: mean(&cycle_hours).map(|h| round(h, 1)),
        median_hours: median(&mut cycle_hours).map(|h| round(h, 1)),
        samples: cycle_hours.len() as u32,
    };

    let count_status =
        |status: TaskStatus| input.tasks.iter().filter(|t| t.status == status).count() as u32;
    let (in_progress, paused) = (
        count_status(TaskStatus::InProgress),
        count_status(TaskStatus::Paused),
    );
    let work_in_progress = WorkInProgress {
        total: in_progress + paused,
        in_progress,
        paused,
    };
    let overdue = input
        .tasks
        .iter()
        .filter(|t| t.is_unfinished() && t.due_at.is_some_and(|d| d < now))
        .count() as u32;

    let local_completions: Vec<DateTime<Tz>> = history
        .iter()
        .filter_map(|t| t.completed_at)
        .map(|c| c.with_timezone(&tz))
        .collect();
    let focus_hours = focus_hours(&local_completions);
    let days: BTreeSet<NaiveDate> = local_completions.iter().map(|c| c.date_naive()).collect();
    let today = now.with_timezone(&tz).date_naive();
    let streak_days = streak(&days, today);
    let active_days_14 = days.range(today - Duration::days(13)..=today).count() as f64;

    let consistency = completion_rate_30d
        .rate
        .map(|_| (active_days_14 / CONSISTENT_DAYS).min(1.0));
    let components = [
        (SCORE_COMPLETION, completion_rate_30d.rate),
        (SCORE_ON_TIME, on_time.rate),
        (SCORE_ESTIMATION, estimation.overall.within_25_percent),
        (SCORE_CONSISTENCY, consistency),
    ];
    let weight: f64 = components
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(w, _)| w)
        .sum();
    let productivity_score = (weight > 0.0).then(|| {
        let sum: f64 = components
            .iter()
            .filter_map(|(w, v)| v.map(|v| w * v))
            .sum();
        (sum / weight * 100.0).round().clamp(0.0, 100.0) as u8
    });

    let mut insights = Insights {
        productivity_score,
        completion_rate_7d,
        completion_rate_30d,
        on_time,
        estimation,
        cycle_time,
        work_in_progress,
        overdue,
        focus_hours,
        streak_days,
        time_zone: tz.name().to_owned(),
        advice: Vec::new(),
        computed_at: now,
        position: input.position,
    };
    insights.advice = advice::advise(&insights);
    insights
}

/// `part / whole` rounded to 3 decimals; `None` when `whole` is 0.
fn ratio(part: u32, whole: u32) -> Option<f64> {
    (whole > 0).then(|| round(f64::from(part) / f64::from(whole), 3))
}

fn round(value: f64, decimals: i32) -> f64 {
    let factor = 10f64.powi(decimals);
    (value * factor).round() / factor
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// The median (mean of the two middle values for an even count); sorts `values`.
fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len() % 2 == 0 {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    })
}

/// Statistics of a set of `actual / estimate` ratios.
fn estimate_stats(mut ratios: Vec<f64>) -> EstimateStats {
    let samples = ratios.len() as u32;
    let within = ratios.iter().filter(|r| (0.75..=1.25).contains(*r)).count() as u32;
    let median_ratio = median(&mut ratios).map(|m| round(m, 3));
    let bias_percent = median_ratio.map(|m| round((m - 1.0) * 100.0, 1));
    let bias = median_ratio.map(|m| {
        if m > 1.1 {
            Bias::Underestimate
        } else if m < 0.9 {
            Bias::Overestimate
        } else {
            Bias::Accurate
        }
    });
    EstimateStats {
        samples,
        median_ratio,
        bias_percent,
        bias,
        within_25_percent: ratio(within, samples),
    }
}

fn estimation(history: &[&TaskFacts]) -> Estimation {
    let mut overall = Vec::new();
    let mut by_tag: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for task in history {
        let (Some(estimate), Some(actual)) = (task.estimate_minutes, task.actual_minutes) else {
            continue;
        };
        if estimate == 0 {
            continue;
        }
        let ratio = f64::from(actual) / f64::from(estimate);
        overall.push(ratio);
        for tag in &task.tags {
            by_tag.entry(tag.as_str()).or_default().push(ratio);
        }
    }
    let mut by_tag: Vec<TagEstimate> = by_tag
        .into_iter()
        .map(|(tag, ratios)| TagEstimate {
            tag: tag.to_owned(),
            stats: estimate_stats(ratios),
        })
        .collect();
    // Most measured first; the sort is stable, so equal counts stay in tag order.
    by_tag.sort_by_key(|t| std::cmp::Reverse(t.stats.samples));
    by_tag.truncate(MAX_TAGS);
    Estimation {
        overall: estimate_stats(overall),
        by_tag,
    }
}

fn focus_hours(local_completions: &[DateTime<Tz>]) -> FocusHours {
    let mut by_hour = vec![0u32; 24];
    for completion in local_completions {
        by_hour[completion.hour() as usize] += 1;
    }
    let mut ranked: Vec<(u8, u32)> = (0u8..24)
        .zip(by_hour.iter().copied())
        .filter(|(_, n)| *n > 0)
        .collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    FocusHours {
        top_hours: ranked.iter().take(3).map(|(hour, _)| *hour).collect(),
        completions: local_completions.len() as u32,
        by_hour,
    }
}

/// Consecutive days with a completion ending today, or yesterday when today has none yet.
fn streak(days: &BTreeSet<NaiveDate>, today: NaiveDate) -> u32 {
    let mut day = if days.contains(&today) {
        today
    } else {
        today - Duration::days(1)
    };
    let mut streak = 0;
    while days.contains(&day) {
        streak += 1;
        day -= Duration::days(1);
    }
    streak
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// Monday 2026-06-15, 12:00 UTC.
    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 15, 12, 0, 0).unwrap()
    }

    fn hours_ago(hours: i64) -> DateTime<Utc> {
        now() - Duration::hours(hours)
    }

    fn open(created_hours_ago: i64) -> TaskFacts {
        TaskFacts {
            status: TaskStatus::Open,
            tags: Vec::new(),
            due_at: None,
            estimate_minutes: None,
            actual_minutes: None,
            created_at: hours_ago(created_hours_ago),
            completed_at: None,
        }
    }

    fn completed(created_hours_ago: i64, completed_hours_ago: i64) -> TaskFacts {
        TaskFacts {
            status: TaskStatus::Completed,
            completed_at: Some(hours_ago(completed_hours_ago)),
            ..open(created_hours_ago)
        }
    }

    fn estimated(tag: &str, estimate: u32, actual: u32) -> TaskFacts {
        TaskFacts {
            tags: vec![tag.to_owned()],
            estimate_minutes: Some(estimate),
            actual_minutes: Some(actual),
            ..completed(48, 24)
        }
    }

    fn given(tasks: &[TaskFacts]) -> Insights {
        given_in(tasks, "UTC")
    }

    fn given_in(tasks: &[TaskFacts], time_zone: &str) -> Insights {
        compute(&InsightsInput {
            tasks,
            time_zone,
            now: now(),
            position: 42,
        })
    }

    #[test]
    fn given_no_history_then_every_rate_is_null_the_score_is_null_and_there_is_no_advice() {
        let insights = given(&[]);
        assert_eq!(insights.productivity_score, None);
        assert_eq!(insights.completion_rate_7d.rate, None);
        assert_eq!(insights.completion_rate_30d.rate, None);
        assert_eq!(insights.on_time.rate, None);
        assert_eq!(insights.estimation.overall.samples, 0);
        assert_eq!(insights.estimation.overall.median_ratio, None);
        assert!(insights.estimation.by_tag.is_empty());
        assert_eq!(insights.cycle_time.average_hours, None);
        assert_eq!(insights.work_in_progress.total, 0);
        assert_eq!(insights.overdue, 0);
        assert_eq!(insights.focus_hours.by_hour, vec![0; 24]);
        assert!(insights.focus_hours.top_hours.is_empty());
        assert_eq!(insights.streak_days, 0);
        assert!(insights.advice.is_empty());
        assert_eq!(insights.computed_at, now());
        assert_eq!(insights.position, 42);
        assert_eq!(insights.time_zone, "UTC");
    }

    #[test]
    fn given_completions_and_open_tasks_then_completion_rates_count_each_window() {
        let tasks = [
            completed(24 * 3, 24 * 2),   // in both windows
            completed(24 * 20, 24 * 10), // 30 days only
            completed(24 * 60, 24 * 40), // neither
            open(24),                    // created in both windows
            open(24 * 15),               // created in the 30-day window
            open(24 * 45),               // created before both
        ];
        let insights = given(&tasks);
        assert_eq!(
            insights.completion_rate_7d,
            WindowRate {
                rate: Some(0.5),
                completed: 1,
                still_open: 1
            }
        );
        assert_eq!(
            insights.completion_rate_30d,
            WindowRate {
                rate: Some(0.5),
                completed: 2,
                still_open: 2
            }
        );
    }

    #[test]
    fn given_cancelled_tasks_then_completion_rates_and_work_in_progress_leave_them_out() {
        let cancelled = |created_hours_ago: i64| TaskFacts {
            status: TaskStatus::Cancelled,
            due_at: Some(hours_ago(1)),
            ..open(created_hours_ago)
        };
        let insights = given(&[completed(48, 24), open(24), cancelled(24), cancelled(30)]);
        assert_eq!(
            insights.completion_rate_7d,
            WindowRate {
                rate: Some(0.5),
                completed: 1,
                still_open: 1
            }
        );
        assert_eq!(insights.work_in_progress.total, 0);
        // A cancelled task past its due date is not overdue: nobody will do it.
        assert_eq!(insights.overdue, 0);
    }

    #[test]
    fn given_due_dates_then_on_time_counts_completions_at_or_before_the_due_date() {
        let due = |completed_hours_ago: i64, due_hours_ago: i64| TaskFacts {
            due_at: Some(hours_ago(due_hours_ago)),
            ..completed(100, completed_hours_ago)
        };
        let tasks = [
            due(10, 5),         // early
            due(10, 10),        // exactly on the due date
            due(10, 20),        // late
            completed(100, 10), // no due date: not counted
        ];
        let on_time = given(&tasks).on_time;
        assert_eq!(on_time.on_time, 2);
        assert_eq!(on_time.with_due_date, 3);
        assert_eq!(on_time.rate, Some(0.667));
    }

    #[test]
    fn given_bugs_take_forty_percent_longer_then_the_advice_says_so_by_tag() {
        let mut tasks: Vec<TaskFacts> = (0..5).map(|_| estimated("bug", 60, 84)).collect();
        tasks.extend((0..5).map(|_| estimated("docs", 60, 60)));
        let insights = given(&tasks);
        let bug = insights
            .estimation
            .by_tag
            .iter()
            .find(|t| t.tag == "bug")
            .unwrap();
        assert_eq!(bug.stats.samples, 5);
        assert_eq!(bug.stats.median_ratio, Some(1.4));
        assert_eq!(bug.stats.bias_percent, Some(40.0));
        assert_eq!(bug.stats.bias, Some(Bias::Underestimate));
        assert_eq!(bug.stats.within_25_percent, Some(0.0));
        assert!(
            insights
                .advice
                .iter()
                .any(|a| a.starts_with("You underestimate tasks tagged bug by 40%")),
            "{:?}",
            insights.advice
        );
        assert!(!insights.advice.iter().any(|a| a.contains("tagged docs")));
        assert_eq!(insights.estimation.overall.samples, 10);
        assert_eq!(insights.estimation.overall.median_ratio, Some(1.2));
    }

    #[test]
    fn given_tasks_done_faster_than_estimated_then_the_bias_is_an_overestimate() {
        let tasks: Vec<TaskFacts> = (0..6).map(|_| estimated("ops", 100, 70)).collect();
        let insights = given(&tasks);
        assert_eq!(insights.estimation.overall.bias, Some(Bias::Overestimate));
        assert_eq!(insights.estimation.overall.bias_percent, Some(-30.0));
        assert!(insights
            .advice
            .iter()
            .any(|a| a.starts_with("You overestimate tasks tagged ops by 30%")));
    }

    #[test]
    fn given_too_few_samples_then_no_estimation_advice_is_given() {
        let tasks: Vec<TaskFacts> = (0..4).map(|_| estimated("bug", 60, 120)).collect();
        let insights = given(&tasks);
        assert_eq!(
            insights.estimation.by_tag[0].stats.bias_percent,
            Some(100.0)
        );
        assert!(
            !insights.advice.iter().any(|a| a.contains("estimate")),
            "{:?}",
            insights.advice
        );
        let one = given(&[estimated("bug", 10, 100)]);
        assert!(one.advice.is_empty(), "{:?}", one.advice);
    }

    #[test]
    fn given_the_median_then_outliers_do_not_drive_the_bias() {
        let mut tasks: Vec<TaskFacts> = (0..4).map(|_| estimated("x", 60, 60)).collect();
        tasks.push(estimated("x", 60, 6000));
        let overall = given(&tasks).estimation.overall;
        assert_eq!(overall.median_ratio, Some(1.0));
        assert_eq!(overall.bias, Some(Bias::Accurate));
        assert_eq!(overall.within_25_percent, Some(0.8));
    }

    #[test]
    fn given_a_zero_estimate_then_the_task_is_not_measured() {
        let overall = given(&[estimated("x", 0, 30)]).estimation.overall;
        assert_eq!(overall.samples, 0);
    }

    #[test]
    fn given_started_paused_and_overdue_tasks_then_wip_and_overdue_count_them() {
        let tasks = [
            TaskFacts {
                status: TaskStatus::InProgress,
                due_at: Some(hours_ago(1)),
                ..open(10)
            },
            TaskFacts {
                status: TaskStatus::Paused,
                ..open(10)
            },
            TaskFacts {
                due_at: Some(hours_ago(-1)), // due in an hour
                ..open(10)
            },
            TaskFacts {
                due_at: Some(hours_ago(30)),
                ..completed(40, 5) // late but done: not overdue
            },
            TaskFacts {
                status: TaskStatus::Archived,
                due_at: Some(hours_ago(30)),
                ..open(40)
            },
        ];
        let insights = given(&tasks);
        assert_eq!(
            insights.work_in_progress,
            WorkInProgress {
                total: 2,
                in_progress: 1,
                paused: 1
            }
        );
        assert_eq!(insights.overdue, 1);
    }

    #[test]
    fn given_completions_then_cycle_time_runs_from_creation_to_completion() {
        let tasks = [
            completed(10, 0),
            completed(30, 0),
            completed(24 * 40, 24 * 35),
        ];
        let cycle = given(&tasks).cycle_time;
        assert_eq!(cycle.samples, 2);
        assert_eq!(cycle.average_hours, Some(20.0));
        assert_eq!(cycle.median_hours, Some(20.0));
    }

    #[test]
    fn given_a_time_zone_then_focus_hours_are_local_hours() {
        // 07:30 UTC is 09:30 in Paris in June (UTC+2).
        let at = |h: u32, m: u32| TaskFacts {
            completed_at: Some(Utc.with_ymd_and_hms(2026, 6, 14, h, m, 0).unwrap()),
            ..completed(100, 0)
        };
        let tasks = [at(7, 30), at(7, 45), at(12, 0)];
        let paris = given_in(&tasks, "Europe/Paris");
        assert_eq!(paris.time_zone, "Europe/Paris");
        assert_eq!(paris.focus_hours.by_hour[9], 2);
        assert_eq!(paris.focus_hours.by_hour[14], 1);
        assert_eq!(paris.focus_hours.top_hours, vec![9, 14]);
        assert_eq!(paris.focus_hours.completions, 3);
        let utc = given(&tasks);
        assert_eq!(utc.focus_hours.top_hours, vec![7, 12]);
    }

    #[test]
    fn given_an_unknown_time_zone_then_utc_is_used() {
        let insights = given_in(&[completed(10, 1)], "Mars/Olympus_Mons");
        assert_eq!(insights.time_zone, "UTC");
        assert_eq!(insights.focus_hours.by_hour[11], 1);
    }

    #[test]
    fn given_completions_on_consecutive_local_days_then_the_streak_counts_them() {
        let on = |day: u32, hour: u32| TaskFacts {
            completed_at: Some(Utc.with_ymd_and_hms(2026, 6, day, hour, 0, 0).unwrap()),
            ..completed(24 * 20, 0)
        };
        // now is 2026-06-15 12:00 UTC; completions on the 15th, 14th and 13th, none on the 12th.
        let tasks = [on(15, 8), on(14, 8), on(13, 8), on(11, 8)];
        assert_eq!(given(&tasks).streak_days, 3);
        // Nothing yet today: the streak still counts back from yesterday.
        assert_eq!(given(&tasks[1..]).streak_days, 2);
        // Nothing today or yesterday: broken.
        assert_eq!(given(&tasks[2..]).streak_days, 0);
    }

    #[test]
    fn given_completions_across_midnight_then_the_streak_follows_the_local_date() {
        // now is 2026-06-15 12:00 UTC: 21:00 in Tokyo (UTC+9), 08:00 in New York (UTC-4).
        let at = |day: u32, hour: u32, minute: u32| TaskFacts {
            completed_at: Some(Utc.with_ymd_and_hms(2026, 6, day, hour, minute, 0).unwrap()),
            ..completed(24 * 20, 0)
        };
        // An hour apart across UTC midnight: two UTC days, but one local day in Tokyo (the
        // 15th, 08:30 and 09:30) and in New York (the 14th, 19:30 and 20:30).
        let around_utc_midnight = [at(14, 23, 30), at(15, 0, 30)];
        assert_eq!(given(&around_utc_midnight).streak_days, 2);
        assert_eq!(given_in(&around_utc_midnight, "Asia/Tokyo").streak_days, 1);
        assert_eq!(
            given_in(&around_utc_midnight, "America/New_York").streak_days,
            1
        );
        // 02:00 and 13:00 UTC on the 14th: one UTC day, but in New York 22:00 on the 13th and
        // 09:00 on the 14th, two local days (nothing yet today, so counted from yesterday).
        let around_local_midnight = [at(14, 2, 0), at(14, 13, 0)];
        assert_eq!(given(&around_local_midnight).streak_days, 1);
        assert_eq!(
            given_in(&around_local_midnight, "America/New_York").streak_days,
            2
        );
    }

    #[test]
    fn given_every_component_then_the_score_is_their_weighted_mean() {
        // 30 days: 4 completed, 1 still open -> completion 0.8.
        // 2 of the completions had due dates, 1 met -> on time 0.5.
        // 2 estimated, 1 within 25% -> accuracy 0.5.
        // Active days in the last 14: 4 distinct days -> consistency 0.4.
        let tasks = [
            TaskFacts {
                due_at: Some(hours_ago(0)),
                estimate_minutes: Some(60),
                actual_minutes: Some(60),
                ..completed(100, 1)
            },
            TaskFacts {
                due_at: Some(hours_ago(30)),
                estimate_minutes: Some(60),
                actual_minutes: Some(120),
                ..completed(100, 25)
            },
            completed(100, 49),
            completed(100, 73),
            open(10),
        ];
        let insights = given(&tasks);
        let expected: f64 = (0.40 * 0.8 + 0.25 * 0.5 + 0.15 * 0.5 + 0.20 * 0.4) * 100.0;
        assert_eq!(insights.productivity_score, Some(expected.round() as u8));
    }

    #[test]
    fn given_only_open_tasks_then_the_score_is_zero_not_null() {
        let insights = given(&[open(5), open(6)]);
        assert_eq!(insights.completion_rate_30d.rate, Some(0.0));
        assert_eq!(insights.productivity_score, Some(0));
    }

    #[test]
    fn given_completions_older_than_the_history_then_they_are_ignored() {
        let insights = given(&[completed(24 * 200, 24 * 100)]);
        assert_eq!(insights.focus_hours.completions, 0);
        assert_eq!(insights.productivity_score, None);
    }

    #[test]
    fn the_insights_survive_a_json_round_trip() {
        let tasks: Vec<TaskFacts> = (0..5).map(|_| estimated("bug", 60, 84)).collect();
        let insights = given(&tasks);
        let json = serde_json::to_string(&insights).unwrap();
        let back: Insights = serde_json::from_str(&json).unwrap();
        assert_eq!(back, insights);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["estimation"]["by_tag"][0]["tag"], "bug");
        assert_eq!(value["estimation"]["by_tag"][0]["median_ratio"], 1.4);
    }
}
