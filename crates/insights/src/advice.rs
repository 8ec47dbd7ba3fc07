//! Plain-language advice drawn from computed insights.
//!
//! Each rule speaks only with enough data behind it (a minimum sample per rule) and only when
//! the number is far enough from normal to be worth a sentence, so a user with two completed
//! tasks is never told they "always" do something. The most actionable rules come first.

use crate::compute::{Bias, EstimateStats, Insights};

/// Estimated-and-measured tasks needed before estimation advice (overall or per tag).
pub const MIN_ESTIMATE_SAMPLES: u32 = 5;
/// Smallest estimation bias, in percent either way, worth a sentence.
pub const MIN_BIAS_PERCENT: f64 = 20.0;
/// Tag-level estimation sentences given at most.
const MAX_TAG_ADVICE: usize = 2;
/// Completed tasks with a due date needed before on-time advice.
const MIN_DUE_SAMPLES: u32 = 5;
/// On-time rate below which it is worth a sentence.
const ON_TIME_BELOW: f64 = 0.7;
/// Overdue tasks that make a sentence.
const MIN_OVERDUE: u32 = 2;
/// Tasks in progress or paused that make a sentence.
const MAX_HEALTHY_WIP: u32 = 5;
/// Tasks in each window (completed + still open) needed to compare the two completion rates.
const MIN_TREND_SAMPLES_30D: u32 = 8;
const MIN_TREND_SAMPLES_7D: u32 = 4;
/// Drop of the 7-day completion rate below the 30-day one that makes a sentence.
const MIN_TREND_DROP: f64 = 0.2;
/// Completions needed before focus-hour advice, and the share the top hours must hold.
const MIN_FOCUS_COMPLETIONS: u32 = 10;
const MIN_FOCUS_SHARE: f64 = 0.4;
/// A streak worth mentioning.
const MIN_STREAK: u32 = 3;
/// Sentences given at most.
pub const MAX_ADVICE: usize = 6;

/// The advice for `insights`, most actionable first, at most [`MAX_ADVICE`] sentences.
pub fn advise(insights: &Insights) -> Vec<String> {
    let mut advice = Vec::new();

    let mut tags: Vec<(&str, &EstimateStats)> = insights
        .estimation
        .by_tag
        .iter()
        .filter(|t| biased(&t.stats).is_some())
        .map(|t| (t.tag.as_str(), &t.stats))
        .collect();
    tags.sort_by(|a, b| {
        let size = |s: &EstimateStats| s.bias_percent.unwrap_or(0.0).abs();
        size(b.1).total_cmp(&size(a.1))
    });
    for (tag, stats) in tags.iter().take(MAX_TAG_ADVICE) {
        if let Some(sentence) = estimate_sentence(&format!("tasks tagged {tag}"), stats) {
            advice.push(sentence);
        }
    }
    if tags.is_empty() {
        if let Some(sentence) = estimate_sentence("your tasks", &insights.estimation.overall) {
            advice.push(sentence);
        }
    }

    if insights.overdue >= MIN_OVERDUE {
        advice.push(format!(
            "{} tasks are overdue: finish them or move their due dates before starting new work.",
            insights.overdue
        ));
    }

    if insights.work_in_progress.total >= MAX_HEALTHY_WIP {
        advice.push(format!(
            "You have {} tasks in progress or paused: finishing some before starting others \
             shortens how long each one takes.",
            insights.work_in_progress.total
        ));
    }

    let on_time = &insights.on_time;
    if let Some(rate) = on_time.rate {
        if on_time.with_due_date >= MIN_DUE_SAMPLES && rate < ON_TIME_BELOW {
            advice.push(format!(
                "Only {} of {} tasks with a due date were finished on time in the last 30 days: \
                 start them earlier or set later due dates.",
                on_time.on_time, on_time.with_due_date
            ));
        }
    }

    let (week, month) = (&insights.completion_rate_7d, &insights.completion_rate_30d);
    if let (Some(w), Some(m)) = (week.rate, month.rate) {
        let enough = week.completed + week.still_open >= MIN_TREND_SAMPLES_7D
            && month.completed + month.still_open >= MIN_TREND_SAMPLES_30D;
        if enough && m - w >= MIN_TREND_DROP {
            advice.push(format!(
                "Your completion rate fell to {}% over the last 7 days from {}% over 30 days: \
                 fewer new tasks this week would help you catch up.",
                percent(w),
                percent(m)
            ));
        }
    }

    let focus = &insights.focus_hours;
    if focus.completions >= MIN_FOCUS_COMPLETIONS && !focus.top_hours.is_empty() {
        let in_top: u32 = focus
            .top_hours
            .iter()
            .map(|h| focus.by_hour[usize::from(*h)])
            .sum();
        if f64::from(in_top) / f64::from(focus.completions) >= MIN_FOCUS_SHARE {
            let hours: Vec<String> = focus
                .top_hours
                .iter()
                .map(|h| format!("{h:02}:00"))
                .collect();
            advice.push(format!(
                "You finish most tasks in the hours starting {} ({} time): keep those hours \
                 free for focused work.",
                join(&hours),
                insights.time_zone
            ));
        }
    }

    if insights.streak_days >= MIN_STREAK {
        advice.push(format!(
            "You have completed tasks {} days in a row: keep the streak going.",
            insights.streak_days
        ));
    }

    advice.truncate(MAX_ADVICE);
    advice
}

/// The bias of `stats` when it has enough samples and is large enough to mention.
fn biased(stats: &EstimateStats) -> Option<(Bias, f64)> {
    let bias_percent = stats.bias_percent?;
    (stats.samples >= MIN_ESTIMATE_SAMPLES && bias_percent.abs() >= MIN_BIAS_PERCENT)
        .then_some((stats.bias?, bias_percent))
}

/// "You underestimate tasks tagged bug by 40% (median of 6 tasks): plan 1.4× your estimate."
fn estimate_sentence(what: &str, stats: &EstimateStats) -> Option<String> {
    let (bias, bias_percent) = biased(stats)?;
    let verb = match bias {
        Bias::Underestimate => "underestimate",
        Bias::Overestimate => "overestimate",
        Bias::Accurate => return None,
    };
    let factor = stats.median_ratio?;
    Some(format!(
        "You {verb} {what} by {}% (median of {} tasks): plan about {factor:.1}× your estimate.",
        bias_percent.abs().round(),
        stats.samples
    ))
}

fn percent(rate: f64) -> i64 {
    (rate * 100.0).round() as i64
}

/// `a`, `a and b`, `a, b and c`.
fn join(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::{compute, InsightsInput, TaskFacts};
    use chrono::{Duration, TimeZone, Utc};
    use domain::TaskStatus;

    fn now() -> chrono::DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 15, 12, 0, 0).unwrap()
    }

    fn task(status: TaskStatus) -> TaskFacts {
        TaskFacts {
            status,
            tags: Vec::new(),
            due_at: None,
            estimate_minutes: None,
            actual_minutes: None,
            created_at: now() - Duration::days(40),
            completed_at: None,
        }
    }

    fn done(hours_ago: i64) -> TaskFacts {
        TaskFacts {
            completed_at: Some(now() - Duration::hours(hours_ago)),
            ..task(TaskStatus::Completed)
        }
    }

    fn advice_for(tasks: &[TaskFacts]) -> Vec<String> {
        compute(&InsightsInput {
            tasks,
            time_zone: "UTC",
            now: now(),
            position: 1,
        })
        .advice
    }

    #[test]
    fn given_overdue_and_piled_up_work_then_both_are_pointed_out() {
        let overdue = TaskFacts {
            due_at: Some(now() - Duration::days(1)),
            ..task(TaskStatus::Open)
        };
        let mut tasks = vec![overdue.clone(), overdue];
        tasks.extend((0..5).map(|_| task(TaskStatus::InProgress)));
        let advice = advice_for(&tasks);
        assert!(advice.iter().any(|a| a.starts_with("2 tasks are overdue")));
        assert!(advice
            .iter()
            .any(|a| a.starts_with("You have 5 tasks in progress or paused")));
        // One overdue task or four in progress are not worth a sentence.
        let calm = advice_for(&[
            TaskFacts {
                due_at: Some(now() - Duration::days(1)),
                ..task(TaskStatus::Open)
            },
            task(TaskStatus::InProgress),
        ]);
        assert!(calm.is_empty(), "{calm:?}");
    }

    #[test]
    fn given_mostly_late_completions_then_the_on_time_rate_is_pointed_out() {
        let late = TaskFacts {
            due_at: Some(now() - Duration::days(3)),
            ..done(24)
        };
        let tasks: Vec<TaskFacts> = (0..5).map(|_| late.clone()).collect();
        let advice = advice_for(&tasks);
        assert!(
            advice.iter().any(|a| a.starts_with("Only 0 of 5 tasks")),
            "{advice:?}"
        );
        // Four late tasks are not enough to say so.
        assert!(!advice_for(&tasks[..4])
            .iter()
            .any(|a| a.contains("on time")));
    }

    #[test]
    fn given_a_week_far_below_the_month_then_the_drop_is_pointed_out() {
        // 30 days: 6 completed (two weeks ago) + 4 open created this week = 60%;
        // 7 days: 0 completed + 4 open = 0%.
        let mut tasks: Vec<TaskFacts> = (0..6).map(|_| done(24 * 14)).collect();
        tasks.extend((0..4).map(|_| TaskFacts {
            created_at: now() - Duration::days(1),
            ..task(TaskStatus::Open)
        }));
        let advice = advice_for(&tasks);
        assert!(
            advice
                .iter()
                .any(|a| a
                    .starts_with("Your completion rate fell to 0% over the last 7 days from 60%")),
            "{advice:?}"
        );
    }

    #[test]
    fn given_completions_bunched_in_the_morning_then_focus_hours_are_named() {
        // Ten completions at 09:xx on different days (one a day, so also a 10-day streak).
        let tasks: Vec<TaskFacts> = (1..=10).map(|d| done(24 * d + 3)).collect();
        let advice = advice_for(&tasks);
        assert!(
            advice
                .iter()
                .any(|a| a
                    .starts_with("You finish most tasks in the hours starting 09:00 (UTC time)")),
            "{advice:?}"
        );
        assert!(advice
            .iter()
            .any(|a| a.starts_with("You have completed tasks 10 days in a row")));
        // Nine are not enough for focus advice.
        assert!(!advice_for(&tasks[..9]).iter().any(|a| a.contains("hours")));
    }

    #[test]
    fn lists_read_naturally() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(join(&s(&["a"])), "a");
        assert_eq!(join(&s(&["a", "b"])), "a and b");
        assert_eq!(join(&s(&["a", "b", "c"])), "a, b and c");
    }
}
