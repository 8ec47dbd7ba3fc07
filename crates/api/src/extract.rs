//! Request extractors that answer every failure as problem+json: JSON bodies (400 malformed,
//! 413 too large, 415 not JSON, 422 naming the field), command headers and `Tm-Min-Position`.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::limits::{parse_position, MAX_CORRELATION_ID, MAX_IDEMPOTENCY_KEY, MAX_POSITION};
use crate::problem::ApiError;

/// Header carrying the client's idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Header carrying the position a query must see.
pub const MIN_POSITION: &str = "tm-min-position";
/// Header carrying the correlation id.
pub const CORRELATION_ID: &str = "tm-correlation-id";

/// A JSON request body. Unknown fields are refused (422), so a typo is never silently ignored.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

/// A JSON request body that may be empty or `null` (then `T::default()`), for commands whose
/// fields are all optional.
#[derive(Debug)]
pub struct OptionalJsonBody<T>(pub T);

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

async fn body_bytes<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    check_content_type(request.headers())?;
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest(format!(
                    "could not read the body: {}",
                    rejection.body_text()
                ))
            }
        })
}

/// The field named in serde's "missing field `x`" / "unknown field `x`" messages.
fn quoted_field(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let end = start + message[start..].find('`')?;
    Some(&message[start..end])
}

/// Parses JSON, telling malformed syntax (400) from well-formed JSON with a bad field (422).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde would read a struct from an array of its fields in order; bodies are objects.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object, not an array".into(),
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let message = inner.to_string();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path == "." {
                    if message.starts_with("missing field") || message.starts_with("unknown field")
                    {
                        quoted_field(&message).map(str::to_owned)
                    } else {
                        None
                    }
                } else if path.starts_with('[') {
                    // The top level is an array, not an object: malformed, not a bad field.
                    None
                } else {
                    Some(path)
                };
                match field {
                    Some(field) => {
                        let message = message.split(" at line ").next().unwrap_or(&message);
                        ApiError::field(&field, message)
                    }
                    None => {
                        ApiError::BadRequest(format!("the body must be a JSON object: {message}"))
                    }
                }
            }
            _ => ApiError::BadRequest(format!("malformed JSON: {message}")),
        }
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
    Ok(value)
}

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(request, state).await?;
        if bytes.is_empty() {
            return Err(ApiError::BadRequest("a JSON body is required".into()));
        }
        parse_json(&bytes).map(JsonBody)
    }
}

impl<S, T> FromRequest<S> for OptionalJsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(T::default()));
        }
        parse_json::<Option<T>>(&bytes).map(|body| OptionalJsonBody(body.unwrap_or_default()))
    }
}

/// The headers every command reads.
#[derive(Debug, Clone, Default)]
pub struct CommandHeaders {
    /// `Idempotency-Key`: repeats of the same key answer like the first time.
    pub idempotency_key: Option<String>,
    /// `If-Match`: the version the client expects the task to be at.
    pub if_match: Option<u64>,
    /// `Tm-Correlation-Id`, or a fresh one.
    pub correlation_id: String,
    /// The caller's `traceparent`, if any.
    pub traceparent: Option<String>,
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::BadRequest(format!("header {name} must be visible ASCII")))
        })
        .transpose()
}

/// A header holding a token of visible ASCII, spaces inside only, 1 to `max` characters
/// ([`crate::limits::HEADER_TOKEN_PATTERN`]).
fn header_token<'h>(
    headers: &'h HeaderMap,
    name: &str,
    max: usize,
) -> Result<Option<&'h str>, ApiError> {
    let Some(value) = header_str(headers, name)? else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    let valid = (1..=max).contains(&bytes.len())
        && bytes.iter().all(|b| (b' '..=b'~').contains(b))
        && bytes[0] != b' '
        && bytes[bytes.len() - 1] != b' ';
    if valid {
        Ok(Some(value))
    } else {
        Err(ApiError::BadRequest(format!(
            "header {name} must be 1 to {max} visible ASCII characters"
        )))
    }
}

/// Parses `If-Match`: `3`, `"3"` or `W/"3"`; `*` means "any version"
/// ([`crate::limits::IF_MATCH_PATTERN`]).
pub fn parse_if_match(value: &str) -> Result<Option<u64>, ApiError> {
    if value == "*" {
        return Ok(None);
    }
    let unquoted = match value.strip_prefix("W/").unwrap_or(value).strip_prefix('"') {
        Some(quoted) => quoted.strip_suffix('"'),
        None if !value.starts_with("W/") => Some(value),
        None => None,
    };
    unquoted
        .filter(|digits| (1..=19).contains(&digits.len()))
        .and_then(|digits| digits.bytes().all(|b| b.is_ascii_digit()).then_some(digits))
        .and_then(|digits| digits.parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| ApiError::BadRequest("If-Match must be a task version, e.g. \"3\"".into()))
}

impl<S: Send + Sync> FromRequestParts<S> for CommandHeaders {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let headers = &parts.headers;
        let idempotency_key =
            header_token(headers, IDEMPOTENCY_KEY, MAX_IDEMPOTENCY_KEY)?.map(str::to_owned);
        let if_match = match header_str(headers, "if-match")? {
            Some(value) => parse_if_match(value)?,
            None => None,
        };
        // Checked here, where it becomes part of the events; other requests only echo it.
        header_token(headers, CORRELATION_ID, MAX_CORRELATION_ID)?;
        Ok(CommandHeaders {
            idempotency_key,
            if_match,
            correlation_id: correlation_id(headers),
            traceparent: header_str(headers, "traceparent")?.map(str::to_owned),
        })
    }
}

/// The request's correlation id: the client's (when it is short and printable) or a new one.
pub fn correlation_id(headers: &HeaderMap) -> String {
    headers
        .get(CORRELATION_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_CORRELATION_ID)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// `Tm-Min-Position`: the stream position the read model must have applied before answering.
#[derive(Debug, Clone, Copy, Default)]
pub struct MinPosition(pub Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for MinPosition {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match header_str(&parts.headers, MIN_POSITION)? {
            None => Ok(MinPosition(None)),
            Some(value) => parse_position(value.trim())
                .map(|p| MinPosition(Some(p)))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "Tm-Min-Position must be a stream position, 0 to {MAX_POSITION}"
                    ))
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        title: String,
        estimate_minutes: Option<i64>,
    }

    fn status(result: Result<Body, ApiError>) -> (u16, Option<String>) {
        match result {
            Ok(_) => (200, None),
            Err(ApiError::Validation(fields)) => (422, Some(fields[0].field.clone())),
            Err(other) => (other.status().as_u16(), None),
        }
    }

    #[test]
    fn malformed_json_is_400_and_a_bad_field_is_422_naming_it() {
        assert_eq!(status(parse_json(br#"{"title": "x""#)), (400, None));
        assert_eq!(status(parse_json(br#"[1]"#)), (400, None));
        assert_eq!(status(parse_json(br#" ["x", 5]"#)), (400, None));
        assert_eq!(status(parse_json(br#"{"title": "x"} {}"#)), (400, None));
        assert_eq!(
            status(parse_json(br#"{"title": 5}"#)),
            (422, Some("title".into()))
        );
        assert_eq!(status(parse_json(br#"{}"#)), (422, Some("title".into())));
        assert_eq!(
            status(parse_json(br#"{"title": "x", "estimate_minute": 3}"#)),
            (422, Some("estimate_minute".into()))
        );
        assert_eq!(status(parse_json(br#"{"title": "x"}"#)), (200, None));
    }

    #[test]
    fn if_match_accepts_plain_quoted_and_weak_versions() {
        assert_eq!(parse_if_match("3").unwrap(), Some(3));
        assert_eq!(parse_if_match("\"3\"").unwrap(), Some(3));
        assert_eq!(parse_if_match("W/\"3\"").unwrap(), Some(3));
        assert_eq!(parse_if_match("*").unwrap(), None);
        assert!(parse_if_match("three").is_err());
        // Exactly the documented forms: no stray or doubled quotes, no sign, no 20 digits.
        for refused in [
            "",
            "\"3",
            "3\"",
            "\"\"3\"\"",
            "W/3",
            "+3",
            "W/\"\"",
            "1".repeat(20).as_str(),
        ] {
            assert!(parse_if_match(refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn an_optional_body_may_be_empty_or_null_but_not_another_json_value() {
        let parse = |bytes: &[u8]| parse_json::<Option<Body>>(bytes).map(|b| b.is_some());
        assert!(!parse(b"null").unwrap());
        assert!(parse(br#"{"title": "x"}"#).unwrap());
        assert!(parse(b"[]").is_err());
    }
}
