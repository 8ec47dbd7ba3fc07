//! The calendar feed: `GET /v1/calendar.ics?token=…` exports the user's unfinished tasks as
//! iCalendar VTODOs, so Apple Calendar, Thunderbird or any client that subscribes to a URL
//! shows them.
//!
//! A calendar client cannot send a bearer JWT (and a JWT expires within hours), so the feed
//! is read with a *feed token* instead: a random secret in the subscription URL that reads
//! that user's feed and nothing else, lives until revoked, and is minted and revoked with
//! the bearer token (`POST|GET /v1/calendar/tokens`, `DELETE /v1/calendar/tokens/{id}`).
//! The feed route is under `/v1` like the rest, so the rate limiter covers it; it carries no
//! bearer token, so it is limited by client address only.
//!
//! # Layout
//! - [`ics`]: the iCalendar writer (folding, escaping, UTC instants); pure.
//! - [`feed`]: the feed route and how a task becomes a VTODO.
//! - [`tokens`]: minting, listing and revoking feed tokens.
//!
//! # Feed tokens
//! 32 random bytes from the operating system, base64url without padding (43 characters),
//! answered once when minted. Only their SHA-256 hash is stored
//! ([`projections::feed_tokens`]), so the database cannot give a feed token away. Guessing
//! one is hopeless (2^256), which is why a plain hash (not a slow password hash) is right, and
//! why looking it up by hash leaks nothing through timing.

pub mod feed;
pub mod ics;
pub mod tokens;

use base64::Engine;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::problem::ApiError;
use crate::state::AppState;

/// Characters of a feed token: 32 bytes in base64url without padding.
pub const FEED_TOKEN_CHARS: usize = 43;

/// The routes of the calendar feed and its tokens, with their OpenAPI operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(feed::calendar_feed))
        .routes(routes!(tokens::mint_feed_token, tokens::list_feed_tokens))
        .routes(routes!(tokens::revoke_feed_token))
}

/// A new feed token: 32 bytes from the system's secure generator, as base64url.
pub(crate) fn new_feed_token() -> Result<String, ApiError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ApiError::Internal("the system's random generator failed".into()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether `text` has the shape of a feed token; anything else is refused before any lookup.
pub(crate) fn is_feed_token_shaped(text: &str) -> bool {
    text.len() == FEED_TOKEN_CHARS
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What the database keeps of a feed token: its SHA-256.
pub(crate) fn feed_token_hash(token: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest.as_ref());
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_tokens_are_43_base64url_characters_and_never_repeat() {
        let one = new_feed_token().unwrap();
        let two = new_feed_token().unwrap();
        assert_ne!(one, two);
        assert!(is_feed_token_shaped(&one), "{one}");
        assert!(is_feed_token_shaped(&two), "{two}");
        assert!(!is_feed_token_shaped(&one[1..]));
        assert!(!is_feed_token_shaped(&format!("{}=", &one[1..])));
        assert!(!is_feed_token_shaped(&format!("{}+", &one[1..])));
    }

    #[test]
    fn a_feed_token_is_stored_as_its_sha256() {
        // SHA-256 of "abc" (FIPS 180-2, appendix B.1).
        assert_eq!(
            feed_token_hash("abc")[..4],
            [0xba, 0x78, 0x16, 0xbf],
            "the hash is SHA-256"
        );
        assert_ne!(feed_token_hash("a"), feed_token_hash("b"));
    }
}
