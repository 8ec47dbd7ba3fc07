//! Reminders: when to tell the owner about a task, as an instant or as a lead time before its
//! due date. A lead time moves with the due date; the scheduler fires each resolved instant of
//! a task at most once ([`crate::TaskCommand::FireReminder`]).

use chrono::Duration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::FieldError;
use crate::values::Timestamp;

/// One reminder: `{"at": "2030-01-31T08:00:00Z"}` or `{"before_due_minutes": 30}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Reminder {
    /// At this instant.
    At(Timestamp),
    /// This many minutes before the task's due date (0 to 525,600: a year).
    BeforeDueMinutes(#[schemars(range(max = 525600))] u32),
}

impl Reminder {
    /// Most reminders on one task: a few is what people set, and each one is a pending
    /// entry of the scheduler.
    pub const MAX_PER_TASK: usize = 10;
    /// Longest lead time, in minutes: a year.
    pub const MAX_LEAD_MINUTES: u32 = 525_600;

    /// The instant it fires for a task due at `due_at`; `None` for a lead time on a task
    /// without a due date.
    pub fn instant(&self, due_at: Option<Timestamp>) -> Option<Timestamp> {
        match *self {
            Reminder::At(at) => Some(at),
            Reminder::BeforeDueMinutes(minutes) => {
                due_at.map(|due| due - Duration::minutes(i64::from(minutes)))
            }
        }
    }

    /// Checks the shape of a list sent by a client: at most [`Self::MAX_PER_TASK`], lead
    /// times within a year, instants in the range of a due date; duplicates are dropped.
    /// Whether they lie in the future is decided with the command (it needs the due date).
    pub fn parse_list(reminders: &[Reminder]) -> Result<Vec<Reminder>, FieldError> {
        if reminders.len() > Self::MAX_PER_TASK {
            return Err(FieldError::new(
                "reminders",
                "at most 10 reminders per task",
            ));
        }
        let mut out: Vec<Reminder> = Vec::with_capacity(reminders.len());
        for reminder in reminders {
            let reminder = match *reminder {
                Reminder::BeforeDueMinutes(m) if m > Self::MAX_LEAD_MINUTES => {
                    return Err(FieldError::new(
                        "reminders",
                        "before_due_minutes must be between 0 and 525600 (a year)",
                    ))
                }
                // Kept to the microsecond, like every instant of a task.
                Reminder::At(at) => {
                    Reminder::At(crate::values::DueAt::parse(at).map_err(|_| {
                        FieldError::new("reminders", "at must lie between 1970 and 9999")
                    })?)
                }
                lead => lead,
            };
            if !out.contains(&reminder) {
                out.push(reminder);
            }
        }
        Ok(out)
    }
}

/// How late a reminder may fire and still count as on time: beyond this it is marked late
/// (the scheduler was down or far behind at its time).
pub const LATE_AFTER: Duration = Duration::seconds(5);
