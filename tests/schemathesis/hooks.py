"""Schemathesis hooks of tests/schemathesis.rs (loaded through SCHEMATHESIS_HOOKS).

A list cursor is an opaque token that only the server makes (it names the sort it
was issued for and where the previous page ended), so no generator can produce a valid one
from the schema. Cases meant to be valid (positive mode) therefore ask for the first page;
invalid cases keep their generated cursor, which the server must refuse with 422.

Likewise a parent task id: a schema-valid UUID names no task of the caller's, which the server
refuses (422 naming `parent_id`), so valid cases of POST /v1/tasks leave it out and valid
moves go to the top level; invalid cases keep it.

Likewise a recurrence rule: the document bounds its shape (KEY=VALUE parts), but whether it is
a rule RFC 5545 and the server accept (known keys, a frequency of daily or less, at most 1,000
occurrences a year) no pattern can say, so valid cases that carry one send a known good rule.

Likewise reminders: whether one lies ahead, and whether a lead time has a due date to count
back from, depends on the clock and on the task, which no schema can say, so valid cases that
carry reminders send one instant far ahead.

Likewise a webhook URL: the document bounds its shape, and valid cases register the discard
port on loopback, so that nothing this run registers could ever be called outside the
machine (the instance runs no delivery worker either).

Likewise a calendar feed token is a secret only the server makes: a generated one is always
refused (401, as documented), so valid cases of GET /v1/calendar.ics read the feed with a live
token the test minted (TASKMASTER_SCHEMATHESIS_FEED_TOKEN, of another user than the one
schemathesis runs as, so that no generated DELETE can revoke it) and the 200 answer is checked
too. Invalid cases keep their generated token.
"""

import os

import schemathesis

FEED_TOKEN = os.environ.get("TASKMASTER_SCHEMATHESIS_FEED_TOKEN")


def _with_valid_references(case):
    """`case` (a valid one) with the server-made references replaced or dropped."""
    if case.method.upper() == "GET" and case.path == "/v1/tasks" and case.query:
        case.query.pop("cursor", None)
    if case.method.upper() == "POST" and isinstance(case.body, dict):
        recurrence = case.body.get("recurrence")
        if case.path in ("/v1/tasks", "/v1/predictions") and isinstance(recurrence, dict):
            recurrence["rule"] = "FREQ=WEEKLY;INTERVAL=2"
        if case.path == "/v1/tasks":
            case.body.pop("parent_id", None)
        if case.path in ("/v1/tasks", "/v1/predictions") and "reminders" in case.body:
            case.body["reminders"] = [{"at": "2099-06-01T09:00:00Z"}]
        if case.path == "/v1/webhooks" and "url" in case.body:
            case.body["url"] = "http://127.0.0.1:9/schemathesis"
        elif case.path == "/v1/tasks/{id}/move":
            case.body["parent_id"] = None
    if (
        case.method.upper() == "PATCH"
        and case.path == "/v1/tasks/{id}"
        and isinstance(case.body, dict)
        and case.body.get("reminders")
    ):
        case.body["reminders"] = [{"at": "2099-06-01T09:00:00Z"}]
    if FEED_TOKEN and case.method.upper() == "GET" and case.path == "/v1/calendar.ics":
        case.query = {**(case.query or {}), "token": FEED_TOKEN}
    return case


@schemathesis.hook
def map_case(context, case):
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    return _with_valid_references(case) if positive else case


@schemathesis.hook
def before_add_examples(context, examples):
    """The examples phase (built from the document's examples, all meant to be valid) does not
    go through `map_case`."""
    for case in examples:
        _with_valid_references(case)
