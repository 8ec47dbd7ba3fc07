//! The JSON shapes of the task endpoints, with their OpenAPI schemas and limits.

use chrono::{DateTime, Utc};
use domain::{
    Description, DueAt, EffortMinutes, Priority, Recurrence, RecurrenceMode, StartsAt, Tag,
    TaskChanges, TaskTitle, TimeZoneName,
};
use eventstore::RecordedEvent;
use projections::task_rows::TaskRecord;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::limits::{
    parse_instant, CancelReasonText, DescriptionText, DueAtInstant, QuickAddText,
    RecurrenceRuleText, TagText, TaskIdText, TimeZoneText, TitleText,
};
use crate::problem::{ApiError, InvalidField};

/// The priority names.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum PriorityName {
    /// Can wait.
    Low,
    /// The usual.
    Medium,
    /// Soon.
    High,
    /// Now.
    Urgent,
}

/// The status names.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum StatusName {
    /// Not being worked on.
    Open,
    /// Being worked on.
    InProgress,
    /// Started, not being worked on now.
    Paused,
    /// Done.
    Completed,
    /// Put away.
    Archived,
    /// Dropped without being done; can be reopened.
    Cancelled,
}

/// A new task. Unknown fields are refused (422 naming the field).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTaskRequest {
    /// The title.
    #[schema(value_type = TitleText)]
    pub title: String,
    /// A description, if any.
    #[schema(value_type = Option<DescriptionText>)]
    pub description: Option<String>,
    /// The priority, if any.
    #[schema(value_type = Option<PriorityName>)]
    pub priority: Option<String>,
    /// When it is due, if ever.
    #[schema(value_type = Option<DueAtInstant>)]
    pub due_at: Option<String>,
    /// When work on it may begin, if not at once (same range as `due_at`).
    #[schema(value_type = Option<DueAtInstant>)]
    pub starts_at: Option<String>,
    /// The owner's estimate, 1 to 100,000 minutes.
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 100000)]
    pub estimate_minutes: Option<WholeNumber>,
    /// At most 20 tags (as sent, duplicates included); duplicates are then dropped.
    #[serde(default)]
    #[schema(value_type = Vec<TagText>, max_items = 20)]
    pub tags: Vec<String>,
    /// The IANA time zone the owner works in (default `UTC`).
    #[schema(value_type = Option<TimeZoneText>)]
    pub time_zone: Option<String>,
    /// Make it a subtask of this task of yours (at most 4 levels deep).
    #[schema(value_type = Option<TaskIdText>)]
    pub parent_id: Option<String>,
    /// Make it repeat: when it is completed or cancelled, the next occurrence is created
    /// (with its subtasks). Without `due_at`, the first occurrence is due at the end of the
    /// first day from today that the rule allows.
    pub recurrence: Option<RecurrenceRequest>,
    /// When to remind you (at most 10; each must lie ahead). The scheduler fires each once, as
    /// a `ReminderDue` event on the live feed and to webhooks.
    #[serde(default)]
    #[schema(max_items = 10)]
    pub reminders: Vec<ReminderRequest>,
}

/// How a task repeats. Unknown fields are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecurrenceRequest {
    /// An RFC 5545 RRULE value such as `FREQ=WEEKLY;BYDAY=MO,WE` (an `RRULE:` prefix is
    /// accepted): daily or less often, at most 1,000 occurrences a year, no DTSTART (the due
    /// date is the first occurrence), an UNTIL in UTC.
    #[schema(value_type = RecurrenceRuleText)]
    pub rule: String,
    /// `fixed` (default): on the rule's calendar; `after_completion`: one interval after the
    /// previous occurrence was finished (FREQ, INTERVAL, COUNT and UNTIL only).
    #[schema(value_type = Option<RecurrenceModeName>)]
    pub mode: Option<String>,
}

/// The recurrence modes.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum RecurrenceModeName {
    /// On the calendar the rule describes.
    Fixed,
    /// One interval after the previous occurrence was finished.
    AfterCompletion,
}

impl RecurrenceRequest {
    fn validate(&self) -> Result<Recurrence, domain::FieldError> {
        let mode = match self.mode.as_deref() {
            None | Some("fixed") => RecurrenceMode::Fixed,
            Some("after_completion") => RecurrenceMode::AfterCompletion,
            Some(_) => {
                return Err(domain::FieldError::new(
                    "recurrence.mode",
                    "must be fixed or after_completion",
                ))
            }
        };
        Recurrence::parse(&self.rule, mode)
    }
}

/// A new task read from one line of text (quick add): `Pay rent every month on the 1st at 9am
/// #home !high ~30m`. The title, due and start dates, recurrence, tags, priority and estimate
/// come from the text (preview the reading with `POST /v1/tasks/parse`); words that are not
/// syntax stay in the title. Unknown fields are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuickAddTaskRequest {
    /// The line to read.
    #[schema(value_type = QuickAddText)]
    pub text: String,
    /// A description, if any.
    #[schema(value_type = Option<DescriptionText>)]
    pub description: Option<String>,
    /// The IANA time zone the text's dates and times are read in, and the owner works in
    /// (default `UTC`).
    #[schema(value_type = Option<TimeZoneText>)]
    pub time_zone: Option<String>,
    /// Make it a subtask of this task of yours (at most 4 levels deep).
    #[schema(value_type = Option<TaskIdText>)]
    pub parent_id: Option<String>,
    /// When to remind you (at most 10; each must lie ahead; a lead time needs the due date
    /// the text gives).
    #[serde(default)]
    #[schema(max_items = 10)]
    pub reminders: Vec<ReminderRequest>,
}

/// The body of `POST /v1/tasks`: the fields of a task, or one line of text to read them from.
/// `title` and `text` exclude each other (422 naming `text` when both are sent, `title` when
/// neither is).
///
/// It documents the body only (`oneOf` the two shapes); the server reads [`CreateTaskInput`].
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum CreateTaskBody {
    /// The fields, given one by one.
    Fields(CreateTaskRequest),
    /// One line of text.
    Text(QuickAddTaskRequest),
}

/// What `POST /v1/tasks` reads: either shape of [`CreateTaskBody`], told apart by `title` and
/// `text`, so that every mistake is a 422 naming its field (an untagged enum would only say
/// that neither shape fits).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTaskInput {
    // The fields only one shape has are read as present (even as `null`) or absent, since the
    // other shape refuses them whatever their value.
    #[serde(default, deserialize_with = "present")]
    title: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    text: Option<Option<String>>,
    description: Option<String>,
    #[serde(default, deserialize_with = "present")]
    priority: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    due_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    starts_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    estimate_minutes: Option<Option<WholeNumber>>,
    /// A list, never `null` (as the document has it).
    #[serde(default, deserialize_with = "present_list")]
    tags: Option<Vec<String>>,
    time_zone: Option<String>,
    parent_id: Option<String>,
    #[serde(default, deserialize_with = "present")]
    recurrence: Option<Option<RecurrenceRequest>>,
    #[serde(default)]
    reminders: Vec<ReminderRequest>,
}

fn present_list<'de, D>(deserializer: D) -> Result<Option<Vec<String>>, D::Error>
where
    D: Deserializer<'de>,
{
    Vec::<String>::deserialize(deserializer).map(Some)
}

/// A line to read without creating anything. Unknown fields are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ParseTaskRequest {
    /// The line to read.
    #[schema(value_type = QuickAddText)]
    pub text: String,
    /// The IANA time zone its dates and times are read in (default `UTC`).
    #[schema(value_type = Option<TimeZoneText>)]
    pub time_zone: Option<String>,
}

/// How a line reads: what `POST /v1/tasks` with the same `text` and `time_zone` would create,
/// as of now.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuickAddResponse {
    /// The text without the syntax that was read, white space collapsed (the whole text when
    /// nothing else is left).
    pub title: String,
    /// When it is due.
    pub due_at: Option<DateTime<Utc>>,
    /// When work on it may begin.
    pub starts_at: Option<DateTime<Utc>>,
    /// The `#tags`, in the order given, duplicates dropped.
    pub tags: Vec<String>,
    /// From `!low` … `!urgent` or `p1` … `p4`.
    #[schema(value_type = Option<PriorityName>)]
    pub priority: Option<&'static str>,
    /// From `~30m`, `~2h`, `for 45 min`.
    pub estimate_minutes: Option<u32>,
    /// From `every …`, `daily`, …; `every!` or `after completion` for the after-completion mode.
    pub recurrence: Option<RecurrenceResponse>,
    /// Words that looked like syntax (`#`, `!`, `~`, `every`) but could not be read; they stay
    /// in the title.
    pub unparsed: Vec<String>,
    /// The zone the text was read in.
    pub time_zone: String,
}

impl QuickAddResponse {
    /// The answer for `reading`, read in `zone`.
    pub fn new(reading: domain::QuickAdd, zone: &TimeZoneName) -> Self {
        Self {
            title: reading.title,
            due_at: reading.due_at,
            starts_at: reading.starts_at,
            tags: reading.tags,
            priority: reading.priority.map(Priority::as_str),
            estimate_minutes: reading.estimate_minutes,
            recurrence: reading.recurrence.map(|r| RecurrenceResponse {
                rule: r.rule,
                mode: r.mode.as_str(),
            }),
            unparsed: reading.unparsed,
            time_zone: zone.as_str().to_owned(),
        }
    }
}

/// The quick-add text as sent: not blank, no control characters, at most as long as a title
/// ([`crate::limits::QuickAddText`]).
pub(crate) fn quick_add_text(text: &str) -> Result<&str, domain::FieldError> {
    if text.chars().count() > TaskTitle::MAX_CHARS
        || text.chars().any(char::is_control)
        || text.trim().is_empty()
    {
        return Err(domain::FieldError::new(
            "text",
            "must be 1 to 200 characters, not blank, without control characters",
        ));
    }
    Ok(text)
}

/// A time zone field as sent, `UTC` when absent.
pub(crate) fn time_zone(zone: Option<&str>) -> Result<TimeZoneName, domain::FieldError> {
    match zone {
        Some(zone) => TimeZoneName::parse(zone),
        None => Ok(TimeZoneName::utc()),
    }
}

/// Where to move a task. Unknown fields are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveTaskRequest {
    /// The new parent (a task of yours), or `null` for the top level. Required.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<TaskIdText>)]
    pub parent_id: Option<Option<String>>,
}

/// A task id as a request field names it: a UUID, or `parent_id` is refused (422).
pub(crate) fn parent_id(text: &str) -> Result<domain::TaskId, domain::FieldError> {
    domain::TaskId::parse(text).map_err(|_| domain::FieldError::new("parent_id", "must be a UUID"))
}

/// A whole number as JSON may write it: `90`, or `90.0` (JSON Schema counts both as an
/// integer, and some clients send every number as a float). A fraction, or a number past
/// `i64`, is refused naming the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WholeNumber(pub i64);

impl<'de> Deserialize<'de> for WholeNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl serde::de::Visitor<'_> for Visitor {
            type Value = WholeNumber;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a whole number")
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<WholeNumber, E> {
                Ok(WholeNumber(value))
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<WholeNumber, E> {
                // Out of any range the API accepts either way; the range check says so.
                Ok(WholeNumber(i64::try_from(value).unwrap_or(i64::MAX)))
            }

            fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<WholeNumber, E> {
                // ±2^63 are exact in f64; 2^63 is the first value past i64.
                const I64_RANGE: std::ops::Range<f64> =
                    -9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0;
                if value.fract() == 0.0 && I64_RANGE.contains(&value) {
                    Ok(WholeNumber(value as i64))
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Float(value), &self))
                }
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Changes to a task: absent fields stay as they are, `null` clears an optional field.
/// Unknown fields are refused (422 naming the field).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTaskRequest {
    /// New title (cannot be cleared; `null` changes nothing).
    #[schema(value_type = Option<TitleText>)]
    pub title: Option<String>,
    /// New description, or `null` to clear.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DescriptionText>)]
    pub description: Option<Option<String>>,
    /// New priority, or `null` to clear.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<PriorityName>)]
    pub priority: Option<Option<String>>,
    /// New due date, or `null` to clear.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DueAtInstant>)]
    pub due_at: Option<Option<String>>,
    /// New start date, or `null` to clear.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DueAtInstant>)]
    pub starts_at: Option<Option<String>>,
    /// New estimate, or `null` to clear.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 100000)]
    pub estimate_minutes: Option<Option<WholeNumber>>,
    /// The complete new tag list (`null` changes nothing).
    #[schema(value_type = Option<Vec<TagText>>, max_items = 20)]
    pub tags: Option<Vec<String>>,
    /// The complete new reminder list (`null` changes nothing, `[]` removes them all); new
    /// ones must lie ahead.
    #[schema(max_items = 10)]
    pub reminders: Option<Vec<ReminderRequest>>,
}

/// A reminder: at an instant, or a lead time before the due date (which it moves with).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ReminderRequest {
    /// At an instant (it must lie ahead).
    At(ReminderAt),
    /// Minutes before the due date; needs a due date.
    BeforeDue(ReminderBeforeDue),
}

/// A reminder at an instant. Unknown fields are refused.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReminderAt {
    /// When.
    #[schema(value_type = DueAtInstant)]
    pub at: String,
}

/// A reminder some minutes before the due date. Unknown fields are refused.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReminderBeforeDue {
    /// How long before, 0 to 525,600 minutes (a year).
    #[schema(value_type = i64, minimum = 0, maximum = 525600)]
    pub before_due_minutes: WholeNumber,
}

/// Reads a reminder list as sent.
fn reminders(list: &[ReminderRequest]) -> Result<Vec<domain::Reminder>, domain::FieldError> {
    let read: Vec<domain::Reminder> = list
        .iter()
        .map(|r| match r {
            ReminderRequest::At(ReminderAt { at }) => {
                parse_instant("reminders", at).map(domain::Reminder::At)
            }
            ReminderRequest::BeforeDue(ReminderBeforeDue { before_due_minutes }) => {
                u32::try_from(before_due_minutes.0)
                    .map(domain::Reminder::BeforeDueMinutes)
                    .map_err(|_| {
                        domain::FieldError::new(
                            "reminders",
                            "before_due_minutes must be between 0 and 525600 (a year)",
                        )
                    })
            }
        })
        .collect::<Result<_, _>>()?;
    domain::Reminder::parse_list(&read)
}

/// Completion details; the body may be omitted (or be `null`). Unknown fields are refused.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteTaskRequest {
    /// The effort it took, 1 to 100,000 minutes; derived from tracked time when absent.
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 100000)]
    pub actual_minutes: Option<WholeNumber>,
    /// Complete the open subtasks too (each exactly once, by the automation runtime, right
    /// after); without it, open subtasks refuse the completion with a 409 naming them.
    #[serde(default)]
    pub cascade: bool,
}

/// Cancellation details; the body may be omitted (or be `null`). Unknown fields are refused.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelTaskRequest {
    /// Why the task will not be done.
    #[schema(value_type = Option<CancelReasonText>)]
    pub reason: Option<String>,
}

/// Collects every field error instead of stopping at the first.
#[derive(Default)]
pub(crate) struct Checks(Vec<InvalidField>);

impl Checks {
    pub(crate) fn take<T>(&mut self, result: Result<T, domain::FieldError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.0.push(error.into());
                None
            }
        }
    }

    pub(crate) fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.0))
        }
    }
}

/// The validated fields of a create.
pub(crate) struct NewTask {
    pub title: TaskTitle,
    pub description: Option<Description>,
    pub priority: Option<Priority>,
    pub due_at: Option<DateTime<Utc>>,
    pub starts_at: Option<DateTime<Utc>>,
    pub estimate_minutes: Option<EffortMinutes>,
    pub tags: Vec<Tag>,
    pub time_zone: TimeZoneName,
    pub parent_id: Option<domain::TaskId>,
    pub recurrence: Option<Recurrence>,
    pub reminders: Vec<domain::Reminder>,
}

/// A due date as sent: an RFC 3339 instant in the range [`DueAt::parse`] accepts.
fn due_at(text: &str) -> Result<DateTime<Utc>, domain::FieldError> {
    DueAt::parse(parse_instant("due_at", text)?)
}

/// A start date as sent: an RFC 3339 instant in the range [`StartsAt::parse`] accepts.
fn starts_at(text: &str) -> Result<DateTime<Utc>, domain::FieldError> {
    StartsAt::parse(parse_instant("starts_at", text)?)
}

impl CreateTaskRequest {
    /// The task these fields describe (a draft to predict, say); every invalid field is named.
    pub(crate) fn validate(self) -> Result<NewTask, ApiError> {
        CreateTaskInput {
            title: Some(Some(self.title)),
            text: None,
            description: self.description,
            priority: Some(self.priority),
            due_at: Some(self.due_at),
            starts_at: Some(self.starts_at),
            estimate_minutes: Some(self.estimate_minutes),
            tags: Some(self.tags),
            time_zone: self.time_zone,
            parent_id: self.parent_id,
            recurrence: Some(self.recurrence),
            reminders: self.reminders,
        }
        .fields()
    }
}

impl CreateTaskInput {
    /// The task this body describes, its text read as of `now` when it is a quick add; every
    /// invalid field is named.
    pub(crate) fn validate(self, now: DateTime<Utc>) -> Result<NewTask, ApiError> {
        match (&self.title, &self.text) {
            (Some(_), Some(_)) => Err(ApiError::field(
                "text",
                "cannot be sent with title: send the fields (title, …) or one line of text",
            )),
            (None, None) => Err(ApiError::field(
                "title",
                "is required, unless the task is read from one line of text (text)",
            )),
            (Some(None), None) => Err(ApiError::field("title", "must be a string")),
            (None, Some(None)) => Err(ApiError::field("text", "must be a string")),
            (Some(Some(_)), None) => self.fields(),
            (None, Some(Some(_))) => self.quick_add(now),
        }
    }

    fn fields(self) -> Result<NewTask, ApiError> {
        let mut checks = Checks::default();
        let title = checks.take(TaskTitle::parse(
            self.title
                .as_ref()
                .and_then(Option::as_deref)
                .unwrap_or_default(),
        ));
        let description = match &self.description {
            Some(d) => checks.take(Description::parse(d)).flatten(),
            None => None,
        };
        let priority = self
            .priority
            .flatten()
            .and_then(|p| checks.take(Priority::parse(&p)));
        let due_at = self.due_at.flatten().and_then(|d| checks.take(due_at(&d)));
        let starts_at = self
            .starts_at
            .flatten()
            .and_then(|d| checks.take(starts_at(&d)));
        let estimate_minutes = self
            .estimate_minutes
            .flatten()
            .and_then(|m| checks.take(EffortMinutes::parse(m.0, "estimate_minutes")));
        let tags = checks.take(Tag::parse_list(self.tags.as_deref().unwrap_or_default()));
        let time_zone = checks.take(time_zone(self.time_zone.as_deref()));
        let parent_id = self
            .parent_id
            .as_deref()
            .and_then(|p| checks.take(parent_id(p)));
        let recurrence = self
            .recurrence
            .flatten()
            .and_then(|r| checks.take(r.validate()));
        let reminders = checks.take(reminders(&self.reminders)).unwrap_or_default();
        checks.finish()?;
        match (title, tags, time_zone) {
            (Some(title), Some(tags), Some(time_zone)) => Ok(NewTask {
                title,
                description,
                priority,
                due_at,
                starts_at,
                estimate_minutes,
                tags,
                time_zone,
                parent_id,
                recurrence,
                reminders,
            }),
            _ => Err(ApiError::field("title", "invalid")),
        }
    }

    /// The fields read from `text`. The fields the text carries cannot be sent beside it:
    /// which of the two would win is a guess the API does not make.
    fn quick_add(self, now: DateTime<Utc>) -> Result<NewTask, ApiError> {
        let mut checks = Checks::default();
        let carried = [
            ("priority", self.priority.is_some()),
            ("due_at", self.due_at.is_some()),
            ("starts_at", self.starts_at.is_some()),
            ("estimate_minutes", self.estimate_minutes.is_some()),
            ("tags", self.tags.is_some()),
            ("recurrence", self.recurrence.is_some()),
        ];
        for (field, sent) in carried {
            if sent {
                checks.0.push(InvalidField {
                    field: field.to_owned(),
                    message: "is read from text; to give it, send title instead of text".into(),
                });
            }
        }
        let text = checks.take(quick_add_text(
            self.text
                .as_ref()
                .and_then(Option::as_deref)
                .unwrap_or_default(),
        ));
        let description = match &self.description {
            Some(d) => checks.take(Description::parse(d)).flatten(),
            None => None,
        };
        let time_zone = checks.take(time_zone(self.time_zone.as_deref()));
        let parent_id = self
            .parent_id
            .as_deref()
            .and_then(|p| checks.take(parent_id(p)));
        let reminders = checks.take(reminders(&self.reminders)).unwrap_or_default();
        checks.finish()?;
        let (Some(text), Some(time_zone)) = (text, time_zone) else {
            return Err(ApiError::field("text", "invalid"));
        };
        let reading = domain::quickadd::parse(text, now, time_zone.tz());
        // What the text gave is checked like the same fields sent one by one, each refusal
        // naming `text`, where it came from.
        fn read<T>(
            refusals: &mut Vec<InvalidField>,
            result: Result<T, domain::FieldError>,
        ) -> Option<T> {
            result
                .map_err(|error| {
                    refusals.push(InvalidField {
                        field: "text".to_owned(),
                        message: format!("gives a {} that {}", error.field, error.message),
                    })
                })
                .ok()
        }
        let mut refusals = Vec::new();
        let title = read(&mut refusals, TaskTitle::parse(&reading.title));
        let tags = read(&mut refusals, Tag::parse_list(&reading.tags));
        let estimate_minutes = reading.estimate_minutes.and_then(|m| {
            read(
                &mut refusals,
                EffortMinutes::parse(i64::from(m), "estimate_minutes"),
            )
        });
        let due_at = reading
            .due_at
            .and_then(|d| read(&mut refusals, DueAt::parse(d)));
        let starts_at = reading
            .starts_at
            .and_then(|d| read(&mut refusals, StartsAt::parse(d)));
        if !refusals.is_empty() {
            return Err(ApiError::Validation(refusals));
        }
        match (title, tags) {
            (Some(title), Some(tags)) => Ok(NewTask {
                title,
                description,
                priority: reading.priority,
                due_at,
                starts_at,
                estimate_minutes,
                tags,
                time_zone,
                parent_id,
                recurrence: reading.recurrence,
                reminders,
            }),
            _ => Err(ApiError::field("text", "invalid")),
        }
    }
}

impl UpdateTaskRequest {
    pub(crate) fn validate(self) -> Result<TaskChanges, ApiError> {
        let mut checks = Checks::default();
        let changes = TaskChanges {
            title: self
                .title
                .as_deref()
                .and_then(|t| checks.take(TaskTitle::parse(t))),
            description: match self.description {
                Some(Some(d)) => checks.take(Description::parse(&d)),
                Some(None) => Some(None),
                None => None,
            },
            priority: match self.priority {
                Some(Some(p)) => checks.take(Priority::parse(&p)).map(Some),
                Some(None) => Some(None),
                None => None,
            },
            due_at: match self.due_at {
                Some(Some(d)) => checks.take(due_at(&d)).map(Some),
                Some(None) => Some(None),
                None => None,
            },
            starts_at: match self.starts_at {
                Some(Some(d)) => checks.take(starts_at(&d)).map(Some),
                Some(None) => Some(None),
                None => None,
            },
            estimate_minutes: match self.estimate_minutes {
                Some(Some(m)) => checks
                    .take(EffortMinutes::parse(m.0, "estimate_minutes"))
                    .map(Some),
                Some(None) => Some(None),
                None => None,
            },
            tags: self
                .tags
                .as_deref()
                .and_then(|t| checks.take(Tag::parse_list(t))),
            reminders: self
                .reminders
                .as_deref()
                .and_then(|r| checks.take(reminders(r))),
        };
        checks.finish()?;
        Ok(changes)
    }
}

/// The answer to every command.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandResponse {
    /// The task.
    pub id: Uuid,
    /// The task's version after the command; send it as `If-Match` to guard the next one.
    pub version: u64,
    /// The stream position of the command's event; send it as `Tm-Min-Position` to read your
    /// own write.
    pub position: u64,
}

/// A task as the read model holds it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskResponse {
    /// Id.
    pub id: Uuid,
    /// Title.
    pub title: String,
    /// Description.
    pub description: Option<String>,
    /// Priority.
    #[schema(value_type = Option<PriorityName>)]
    pub priority: Option<&'static str>,
    /// Due date.
    pub due_at: Option<DateTime<Utc>>,
    /// The owner's estimate.
    pub estimate_minutes: Option<u32>,
    /// Tags.
    pub tags: Vec<String>,
    /// The owner's time zone at creation.
    pub time_zone: String,
    /// Status.
    #[schema(value_type = StatusName)]
    pub status: &'static str,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Time of the last change.
    pub updated_at: DateTime<Utc>,
    /// Start of the running work session, while in progress.
    pub started_at: Option<DateTime<Utc>>,
    /// Seconds tracked in finished work sessions.
    pub tracked_seconds: i64,
    /// Completion time.
    pub completed_at: Option<DateTime<Utc>>,
    /// Actual effort, set on completion.
    pub actual_minutes: Option<u32>,
    /// Archive time.
    pub archived_at: Option<DateTime<Utc>>,
    /// When work may begin; `null` means at once.
    pub starts_at: Option<DateTime<Utc>>,
    /// Cancellation time, while cancelled (or archived after a cancellation).
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Why it was cancelled, if said.
    pub cancel_reason: Option<String>,
    /// The task it is a subtask of; `null` at the top level.
    pub parent_id: Option<Uuid>,
    /// How it repeats; `null` when it does not.
    pub recurrence: Option<RecurrenceResponse>,
    /// Its series and place in it, for an occurrence of a repeating task.
    pub series: Option<SeriesResponse>,
    /// Its reminders, as set.
    #[schema(value_type = Vec<Object>)]
    pub reminders: Vec<domain::Reminder>,
    /// The next reminder instant still to fire; `null` when none is pending.
    pub next_reminder_at: Option<DateTime<Utc>>,
    /// How its direct subtasks stand; `null` when it has none.
    pub subtasks: Option<SubtaskSummary>,
    /// Number of events so far; the `If-Match` value.
    pub version: u64,
    /// Stream position of the task's last event.
    pub position: u64,
    /// Predicted effort and priority of a task still to be done (single-task reads only;
    /// `null` for lists, for done tasks, and until a model has been published).
    pub prediction: Option<crate::predictions::PredictionResponse>,
}

impl From<TaskRecord> for TaskResponse {
    fn from(record: TaskRecord) -> Self {
        let task = record.task;
        let next_reminder_at = task.next_reminder();
        TaskResponse {
            id: task.id.0,
            title: task.title.as_str().to_owned(),
            description: task.description.map(|d| d.as_str().to_owned()),
            priority: task.priority.map(Priority::as_str),
            due_at: task.due_at,
            estimate_minutes: task.estimate_minutes.map(EffortMinutes::get),
            tags: task.tags.iter().map(|t| t.as_str().to_owned()).collect(),
            time_zone: task.time_zone.as_str().to_owned(),
            status: task.status.as_str(),
            created_at: task.created_at,
            updated_at: task.updated_at,
            started_at: task.started_at,
            tracked_seconds: task.tracked_seconds,
            completed_at: task.completed_at,
            actual_minutes: task.actual_minutes.map(EffortMinutes::get),
            archived_at: task.archived_at,
            starts_at: task.starts_at,
            cancelled_at: task.cancelled_at,
            cancel_reason: task.cancel_reason.map(|r| r.as_str().to_owned()),
            parent_id: task.parent_id.map(|p| p.0),
            recurrence: task.recurrence.map(|r| RecurrenceResponse {
                rule: r.rule,
                mode: r.mode.as_str(),
            }),
            series: task.series.map(|s| SeriesResponse {
                id: s.series_id.0,
                occurrence: s.occurrence,
            }),
            reminders: task.reminders,
            next_reminder_at,
            subtasks: None,
            version: task.version,
            position: record.position,
            prediction: None,
        }
    }
}

/// How a task repeats.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecurrenceResponse {
    /// The RRULE value.
    pub rule: String,
    /// `fixed` or `after_completion`.
    #[schema(value_type = RecurrenceModeName)]
    pub mode: &'static str,
}

/// Where an occurrence stands in its series.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesResponse {
    /// The series: the id of its first occurrence (list them with `?series=`).
    pub id: Uuid,
    /// This occurrence's number, from 1.
    pub occurrence: u32,
}

/// How a task's direct subtasks stand (archived ones left out).
#[derive(Debug, Serialize, ToSchema)]
pub struct SubtaskSummary {
    /// Subtasks that are not archived.
    pub total: u32,
    /// Still to be done: open, in progress or paused.
    pub open: u32,
    /// Completed.
    pub completed: u32,
    /// Cancelled.
    pub cancelled: u32,
    /// Completed over the subtasks that will be done (cancelled ones left out), 0 to 1;
    /// `null` when every subtask is cancelled.
    pub progress: Option<f64>,
}

impl From<projections::queries::ChildCounts> for SubtaskSummary {
    fn from(counts: projections::queries::ChildCounts) -> Self {
        SubtaskSummary {
            total: counts.total,
            open: counts.open,
            completed: counts.completed,
            cancelled: counts.cancelled,
            progress: counts.progress(),
        }
    }
}

/// A page of tasks.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskList {
    /// The tasks.
    pub items: Vec<TaskResponse>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// One event of a task's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryEvent {
    /// Stream position.
    pub position: u64,
    /// The task's version after this event.
    pub version: u64,
    /// Event type, e.g. `TaskCreated`.
    pub event_type: String,
    /// Payload version as stored.
    pub event_version: u32,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// When it was stored.
    pub recorded_at: DateTime<Utc>,
    /// The command that caused it.
    pub command_id: Option<String>,
    /// The request it belongs to.
    pub correlation_id: Option<String>,
    /// The W3C trace context of the span that appended it: its trace id finds the command's
    /// whole trace (request, append, projection, workers) in the tracing backend.
    pub traceparent: Option<String>,
    /// The payload, upcast to the current version (see `events/`).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl HistoryEvent {
    pub(crate) fn new(version: u64, recorded: RecordedEvent) -> Self {
        HistoryEvent {
            position: recorded.position,
            version,
            event_type: recorded.event.event_type().to_owned(),
            event_version: recorded.event_version,
            occurred_at: recorded.event.occurred_at(),
            recorded_at: recorded.recorded_at,
            command_id: recorded.command_id,
            correlation_id: recorded.correlation_id,
            traceparent: recorded.traceparent,
            data: recorded.event.to_json(),
        }
    }
}

/// A task's events, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskHistory {
    /// The events.
    pub items: Vec<HistoryEvent>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_number_may_be_written_as_a_float_but_not_with_a_fraction() {
        let read = |json: &str| serde_json::from_str::<WholeNumber>(json).map(|n| n.0);
        assert_eq!(read("90").unwrap(), 90);
        assert_eq!(read("90.0").unwrap(), 90);
        assert_eq!(read("-0.0").unwrap(), 0);
        assert_eq!(read("1e3").unwrap(), 1000);
        // Past i64: the range check of the field refuses it with its own message.
        assert_eq!(read("18446744073709551615").unwrap(), i64::MAX);
        for refused in ["90.5", "1e300", "-1e300", "\"90\"", "null", "true"] {
            assert!(read(refused).is_err(), "{refused}");
        }
    }
}
