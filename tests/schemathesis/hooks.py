"""Schemathesis hooks of tests/schemathesis.rs (loaded through SCHEMATHESIS_HOOKS).

One only: a list cursor is an opaque token that only the server makes (it names the sort it
was issued for and where the previous page ended), so no generator can produce a valid one
from the schema. Cases meant to be valid (positive mode) therefore ask for the first page;
invalid cases keep their generated cursor, which the server must refuse with 422.
"""

import schemathesis


@schemathesis.hook
def map_case(context, case):
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    if positive and case.method.upper() == "GET" and case.path == "/v1/tasks" and case.query:
        case.query.pop("cursor", None)
    return case
