//! Every limit on what a client sends, stated in the OpenAPI document exactly as the server
//! checks it: the schemas of the validated strings of the bodies, and the documented query
//! parameters and headers with their lengths, ranges and patterns.
//!
//! The numbers come from the constants the checks use (`domain`'s values, [`MAX_PAGE_SIZE`],
//! [`MAX_POSITION`]…), so the document cannot drift from them. The patterns restate the checks
//! as regular expressions that mean the same in ECMA-262 (what OpenAPI names) and in the
//! dialects of the tools that read them (Python's `re`, Rust's `fancy-regex`); the tests hold
//! the two sides together by sending what each pattern accepts and refuses.
//!
//! Unknown query parameters are refused (422, like unknown JSON fields) by
//! [`crate::middleware::refuse_unknown_query_parameters`], which reads the names each
//! operation documents here: a parameter the document does not list cannot be sent.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use domain::{Description, FieldError, Tag, TaskTitle, TimeZoneName};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn, ParameterStyle};
use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr, Required};
use utoipa::{IntoParams, PartialSchema, ToSchema};

/// Largest page a list may ask for (`limit`).
pub const MAX_PAGE_SIZE: u32 = 200;
/// Page size when the client does not ask.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Largest stream position or task version a client may name (`Tm-Min-Position`,
/// `Last-Event-ID`, `as_of_version`): what PostgreSQL's `bigint` holds, where positions are
/// stored, and far beyond any stream. A larger number is refused rather than wrapped.
pub const MAX_POSITION: u64 = i64::MAX as u64;
/// Longest full-text query (`q`), in characters.
pub const MAX_SEARCH_CHARS: usize = 200;
/// Longest RFC 3339 instant accepted in a query parameter or body, in characters (an instant
/// with microseconds and an offset takes 32).
pub const MAX_INSTANT_CHARS: usize = 64;
/// Longest comma-separated `status` or `priority` filter, in characters.
pub const MAX_FILTER_CHARS: usize = 64;
/// Longest cursor, in characters (the ones the server issues take about 120).
pub const MAX_CURSOR_CHARS: usize = 512;
/// Longest `Idempotency-Key`, in characters.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;
/// Longest `Tm-Correlation-Id`, in characters.
pub const MAX_CORRELATION_ID: usize = 128;
/// Longest `If-Match`: `W/"` and the 19 digits of the largest version, and a quote.
pub const MAX_IF_MATCH: usize = 24;

/// A line of text that is not blank and holds no control character (Unicode category Cc,
/// Rust's `char::is_control`): titles and tags. "Not blank" means one character that is
/// neither a control character nor white space as `str::trim` counts it.
pub const LINE_PATTERN: &str = concat!(
    r"^[^\u0000-\u001f\u007f-\u009f]*",
    r"[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]",
    r"[^\u0000-\u001f\u007f-\u009f]*$"
);
/// Text without control characters, blank allowed: the full-text query.
pub const NO_CONTROL_PATTERN: &str = r"^[^\u0000-\u001f\u007f-\u009f]*$";
/// A description: line breaks and tabs are kept, other control characters refused.
pub const DESCRIPTION_PATTERN: &str = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$";
/// `UTC` or the shape of an IANA zone name (see [`TimeZoneName::parse`]).
pub const TIME_ZONE_PATTERN: &str = r"^(UTC|[A-Z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){1,2})$";
/// A due date's year as written, 1970 to 9999, and not an offset that moves the first or the
/// last day of that range outside it (see [`domain::DueAt::parse`], which checks the instant).
pub const DUE_AT_PATTERN: &str =
    r"^(?!1970-01-01T[^+]*\+(?!00:00))(?!9999-12-31T[^-]*-(?!00:00))(19[7-9][0-9]|[2-9][0-9]{3})-";
/// A comma-separated list of statuses (empty: no filter).
pub const STATUS_LIST_PATTERN: &str = concat!(
    r"^((open|in_progress|paused|completed|archived|cancelled)",
    r"(,(open|in_progress|paused|completed|archived|cancelled))*)?$"
);
/// A comma-separated list of priorities (empty: no filter).
pub const PRIORITY_LIST_PATTERN: &str =
    r"^((low|medium|high|urgent)(,(low|medium|high|urgent))*)?$";
/// A task id: a UUID in its hyphenated form.
pub const UUID_PATTERN: &str =
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
/// The `parent` filter: a task id, or `none` for top-level tasks.
pub const PARENT_FILTER_PATTERN: &str =
    r"^(none|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$";
/// The shape of a recurrence rule: `KEY=VALUE` parts joined by `;`, an optional `RRULE:`
/// prefix, letters, digits and the punctuation RRULE values use.
pub const RRULE_PATTERN: &str =
    r"^(RRULE:)?[A-Za-z]+=[A-Za-z0-9,+-]+(;[A-Za-z]+=[A-Za-z0-9,+-]+)*;?$";
/// What a cursor is made of (base64url without padding); only the server makes valid ones.
pub const CURSOR_PATTERN: &str = r"^[A-Za-z0-9_-]+$";
/// Visible ASCII, spaces inside only (HTTP drops them around a header value).
pub const HEADER_TOKEN_PATTERN: &str = r"^[!-~]([ -~]*[!-~])?$";
/// A task version as `If-Match` takes it: `3`, `"3"`, `W/"3"`, or `*` for any.
pub const IF_MATCH_PATTERN: &str = r#"^(\*|[0-9]{1,19}|(W/)?"[0-9]{1,19}")$"#;

/// Parses an RFC 3339 instant (`T` between date and time, as the `date-time` format has it;
/// at most [`MAX_INSTANT_CHARS`]), naming `field` when it is not one.
pub fn parse_instant(field: &'static str, text: &str) -> Result<DateTime<Utc>, FieldError> {
    let refused = || {
        FieldError::new(
            field,
            "must be an RFC 3339 instant, e.g. 2030-01-31T17:00:00Z",
        )
    };
    if text.len() > MAX_INSTANT_CHARS || text.as_bytes().get(10) == Some(&b' ') {
        return Err(refused());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|instant| instant.with_timezone(&Utc))
        .map_err(|_| refused())
}

/// Parses a stream position or a task version (`0` to [`MAX_POSITION`], digits only, no sign).
pub fn parse_position(text: &str) -> Option<u64> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| text.parse::<u64>().ok())
        .flatten()
        .filter(|p| *p <= MAX_POSITION)
}

fn string(max_length: usize, pattern: Option<&str>) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(max_length))
        .pattern(pattern)
}

fn date_time(pattern: Option<&str>) -> ObjectBuilder {
    string(MAX_INSTANT_CHARS, pattern)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
}

fn integer(minimum: u64, maximum: u64) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(minimum as f64))
        .maximum(Some(maximum as f64))
}

/// Documents a schema type for a validated string of the request bodies, by the name it has
/// in the document.
macro_rules! text_schema {
    ($(#[$doc:meta])* $type:ident, $name:literal, $schema:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $type;

        impl PartialSchema for $type {
            fn schema() -> RefOr<Schema> {
                $schema.into()
            }
        }

        impl ToSchema for $type {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

text_schema!(
    /// A task title as the document states it ([`TaskTitle::parse`]).
    TitleText,
    "Title",
    string(TaskTitle::MAX_CHARS, Some(LINE_PATTERN))
        .min_length(Some(1))
        .description(Some(
            "At most 200 characters as sent, not blank, no control characters; stored trimmed."
        ))
        .examples([serde_json::json!("Write the quarterly report")])
);
text_schema!(
    /// A description as the document states it ([`Description::parse`]).
    DescriptionText,
    "Description",
    string(Description::MAX_CHARS, Some(DESCRIPTION_PATTERN)).description(Some(
        "At most 10,000 characters; line breaks and tabs are kept, other control characters \
         refused; a blank description means none."
    ))
);
text_schema!(
    /// A cancellation reason as the document states it ([`domain::CancelReason::parse`]).
    CancelReasonText,
    "CancelReason",
    string(domain::CancelReason::MAX_CHARS, Some(NO_CONTROL_PATTERN)).description(Some(
        "At most 500 characters as sent, no control characters; stored trimmed, a blank \
         reason means none."
    ))
);
text_schema!(
    /// Quick-add text as the document states it ([`crate::tasks::dto::quick_add_text`]): no
    /// longer than a title, since the title is read from it, so that any text the document
    /// accepts makes a valid task.
    QuickAddText,
    "QuickAddText",
    string(TaskTitle::MAX_CHARS, Some(LINE_PATTERN))
        .min_length(Some(1))
        .description(Some(
            "One line such as `Pay rent every month on the 1st at 9am #home !high ~30m`: at \
             most 200 characters as sent (a title's limit, since the title is read from it), \
             not blank, no control characters."
        ))
        .examples([serde_json::json!("Pay rent every month on the 1st at 9am #home !high ~30m")])
);
text_schema!(
    /// A tag as the document states it ([`Tag::parse`]).
    TagText,
    "Tag",
    string(Tag::MAX_CHARS, Some(LINE_PATTERN))
        .min_length(Some(1))
        .description(Some(
            "At most 32 characters as sent, not blank, no control characters; stored trimmed."
        ))
);
text_schema!(
    /// A task id as a request body names it.
    TaskIdText,
    "TaskId",
    string(36, Some(UUID_PATTERN))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
        .description(Some("A task id (UUID)."))
);

text_schema!(
    /// A recurrence rule as the document states it ([`domain::Recurrence::parse`]); the
    /// pattern names the shape, the server checks the rest (frequency, density, UNTIL).
    RecurrenceRuleText,
    "RecurrenceRule",
    string(domain::Recurrence::MAX_CHARS, Some(RRULE_PATTERN))
        .min_length(Some(1))
        .description(Some(
            "An RFC 5545 RRULE value, at most 500 characters: FREQ of DAILY, WEEKLY, MONTHLY or \
             YEARLY, at most 1,000 occurrences a year, no DTSTART, UNTIL in UTC \
             (`YYYYMMDDTHHMMSSZ`); `after_completion` takes FREQ, INTERVAL, COUNT and UNTIL only."
        ))
        .examples([serde_json::json!("FREQ=WEEKLY;BYDAY=MO,WE")])
);
text_schema!(
    /// A webhook URL as the document states it ([`webhooks::TargetPolicy::check`]).
    WebhookUrlText,
    "WebhookUrl",
    string(webhooks::target::MAX_URL_CHARS, Some(webhooks::target::URL_PATTERN))
        .description(Some(
            "An absolute http or https URL without credentials, at most 2048 characters; in \
             production not a loopback, private or link-local address (nor a name resolving to one)."
        ))
        .examples([serde_json::json!("https://example.com/hooks/taskmaster")])
);
text_schema!(
    /// An event type as a webhook names it.
    EventTypeName,
    "EventType",
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(crate::webhooks::event_types()))
        .max_length(Some(32))
);
text_schema!(
    /// A time zone name as the document states it ([`TimeZoneName::parse`]).
    TimeZoneText,
    "TimeZone",
    string(TimeZoneName::MAX_LEN, Some(TIME_ZONE_PATTERN))
        .description(Some(
            "`UTC` or an IANA time zone name such as `Europe/Paris` (its shape is checked, not \
             the zone database)."
        ))
        .examples([serde_json::json!("Europe/Paris")])
);
text_schema!(
    /// A due date as the document states it ([`domain::DueAt::parse`]).
    DueAtInstant,
    "DueAt",
    date_time(Some(DUE_AT_PATTERN)).description(Some(
        "An RFC 3339 instant between 1970-01-01T00:00:00Z and the end of 9999, kept to the \
         microsecond."
    ))
);
text_schema!(
    /// A feed token's label as the document states it
    /// ([`crate::calendar::tokens::MintFeedTokenRequest`]).
    FeedTokenLabelText,
    "FeedTokenLabel",
    string(crate::calendar::tokens::MAX_LABEL_CHARS, Some(NO_CONTROL_PATTERN)).description(Some(
        "At most 100 characters as sent, no control characters; stored trimmed, a blank \
         label means none."
    ))
);

/// One documented parameter, never required (every parameter of this API is optional).
fn parameter(
    name: &str,
    location: ParameterIn,
    description: &str,
    schema: impl Into<RefOr<Schema>>,
) -> ParameterBuilder {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(location)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
}

/// `Idempotency-Key`.
fn idempotency_key(description: &str) -> Parameter {
    parameter(
        "Idempotency-Key",
        ParameterIn::Header,
        description,
        string(MAX_IDEMPOTENCY_KEY, Some(HEADER_TOKEN_PATTERN)).min_length(Some(1)),
    )
    .build()
}

/// `Tm-Correlation-Id`.
fn correlation_id() -> Parameter {
    parameter(
        "Tm-Correlation-Id",
        ParameterIn::Header,
        "Correlates the events this request causes (1 to 128 visible ASCII characters); echoed \
         back, and a new one is made when absent",
        string(MAX_CORRELATION_ID, Some(HEADER_TOKEN_PATTERN)).min_length(Some(1)),
    )
    .build()
}

/// `Tm-Min-Position`.
fn min_position(description: &str) -> Parameter {
    parameter(
        "Tm-Min-Position",
        ParameterIn::Header,
        description,
        integer(0, MAX_POSITION),
    )
    .build()
}

const MIN_POSITION_WAIT: &str = "Wait (bounded) until the read model has applied this stream \
    position (the `position` of a command's answer); a position past the end of the log is \
    refused with 409";

/// The headers of `POST /v1/tasks`.
#[derive(Debug)]
pub struct CreateHeaders;

impl IntoParams for CreateHeaders {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            idempotency_key(
                "Repeats with the same key create one task and get the same answer (1 to 255 \
                 visible ASCII characters)",
            ),
            correlation_id(),
        ]
    }
}

/// The headers of the commands on an existing task.
#[derive(Debug)]
pub struct TaskCommandHeaders;

impl IntoParams for TaskCommandHeaders {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            parameter(
                "If-Match",
                ParameterIn::Header,
                "Refuse with 409 unless the task is at this version: `3`, `\"3\"` or \
                 `W/\"3\"` (the `ETag` of a read); `*` for any version",
                string(MAX_IF_MATCH, Some(IF_MATCH_PATTERN)),
            )
            .build(),
            idempotency_key(
                "Repeats with the same key apply once and get the same answer (1 to 255 \
                 visible ASCII characters)",
            ),
            correlation_id(),
        ]
    }
}

/// The header of the queries that read the read model.
#[derive(Debug)]
pub struct ReadHeaders;

impl IntoParams for ReadHeaders {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![min_position(MIN_POSITION_WAIT)]
    }
}

/// The header of `GET /v1/events`.
#[derive(Debug)]
pub struct LiveHeaders;

impl IntoParams for LiveHeaders {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![parameter(
            "Last-Event-ID",
            ParameterIn::Header,
            "Resume after this stream position (the id of the last event received)",
            integer(0, MAX_POSITION),
        )
        .build()]
    }
}

/// The parameters of `GET /v1/tasks/{id}` besides the id.
#[derive(Debug)]
pub struct TaskReadParams;

impl IntoParams for TaskReadParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            parameter(
                "as_of_version",
                ParameterIn::Query,
                "Time travel: the task as it was at this version, rebuilt from its events \
                 (404 if it never had it, or, with `as_of`, not yet at that instant)",
                integer(1, MAX_POSITION),
            )
            .build(),
            parameter(
                "as_of",
                ParameterIn::Query,
                "Time travel: the task as it was at this RFC 3339 instant, rebuilt from its \
                 events (404 if it did not exist yet)",
                date_time(None),
            )
            .build(),
            min_position(
                "Without time travel: wait (bounded) until the read model has \
                applied this stream position; a position past the end of the log is refused \
                with 409",
            ),
        ]
    }
}

/// The parameters of `GET /v1/tasks`.
#[derive(Debug)]
pub struct ListParams;

impl IntoParams for ListParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let query = |name: &str, description: &str, schema: ObjectBuilder| {
            parameter(name, ParameterIn::Query, description, schema).build()
        };
        let sorts: Vec<String> = ["created_at", "updated_at", "due_at", "priority"]
            .into_iter()
            .flat_map(|key| [key.to_owned(), format!("-{key}")])
            .collect();
        vec![
            query(
                "status",
                "Comma-separated statuses: open, in_progress, paused, completed, archived, \
                 cancelled \
                 (empty: all)",
                string(MAX_FILTER_CHARS, Some(STATUS_LIST_PATTERN)),
            ),
            query(
                "priority",
                "Comma-separated priorities: low, medium, high, urgent (empty: all)",
                string(MAX_FILTER_CHARS, Some(PRIORITY_LIST_PATTERN)),
            ),
            parameter(
                "tag",
                ParameterIn::Query,
                "Only tasks carrying this tag (compared trimmed); repeat for several, all \
                 must match (at most 20)",
                ArrayBuilder::new()
                    .items(Ref::from_schema_name(TagText::name()))
                    .max_items(Some(Tag::MAX_PER_TASK)),
            )
            .style(Some(ParameterStyle::Form))
            .explode(Some(true))
            .build(),
            query(
                "due_after",
                "Due at or after this RFC 3339 instant",
                date_time(None),
            ),
            query(
                "due_before",
                "Due before this RFC 3339 instant",
                date_time(None),
            ),
            query(
                "available",
                "`true`: only tasks that can be worked on now (open, in progress or paused, \
                 with no start date or one that has come); `false`: only unfinished tasks whose \
                 start date is still ahead",
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::String))
                    .enum_values(Some(["true", "false"]))
                    .max_length(Some("false".len())),
            ),
            query(
                "parent",
                "`none`: only top-level tasks; a task id: only that task's direct subtasks",
                string(36, Some(PARENT_FILTER_PATTERN)),
            ),
            query(
                "series",
                "Only the occurrences of this repeating series (its id is the first \
                 occurrence's task id, as `series.id` on a task)",
                string(36, Some(UUID_PATTERN)),
            ),
            query(
                "subtree",
                "Only this task and every task below it",
                string(36, Some(UUID_PATTERN)),
            ),
            query(
                "q",
                "Full-text search over title and description (web-search syntax: words, \
                 \"phrases\", `or`, `-word`; at most 200 characters, no control characters)",
                string(MAX_SEARCH_CHARS, Some(NO_CONTROL_PATTERN)),
            ),
            query(
                "sort",
                "The order: a field, prefixed with `-` for descending (default `-created_at`)",
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::String))
                    .enum_values(Some(sorts))
                    .max_length(Some("-created_at".len())),
            ),
            query(
                "limit",
                "Page size, 1 to 200 (default 50)",
                integer(1, u64::from(MAX_PAGE_SIZE)),
            ),
            query(
                "cursor",
                "The `next_cursor` of the previous page, with the same `sort` (cursors are \
                 made by the server; any other is refused)",
                string(MAX_CURSOR_CHARS, Some(CURSOR_PATTERN)).min_length(Some(1)),
            ),
            min_position(MIN_POSITION_WAIT),
        ]
    }
}

/// A feed token as the query string carries it: 43 base64url characters.
pub const FEED_TOKEN_PATTERN: &str = r"^[A-Za-z0-9_-]{43}$";

/// The parameter of `GET /v1/calendar.ics`.
#[derive(Debug)]
pub struct FeedParams;

impl IntoParams for FeedParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let chars = crate::calendar::FEED_TOKEN_CHARS;
        vec![parameter(
            "token",
            ParameterIn::Query,
            "A feed token from `POST /v1/calendar/tokens` (43 base64url characters). A missing, \
             malformed, unknown or revoked token is answered 401, never 422: it is a \
             credential, and its shape tells nothing about whether it is one",
            string(chars, Some(FEED_TOKEN_PATTERN)).min_length(Some(chars)),
        )
        .required(Required::True)
        .build()]
    }
}
