//! Standard Webhooks signatures: `v1,` and the base64 HMAC-SHA256 of
//! `"{webhook-id}.{webhook-timestamp}.{body}"`, keyed with the secret's bytes (the part of
//! `whsec_<base64>` after the prefix, decoded).

use base64::Engine;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// The prefix of a secret as the endpoint's owner sees it.
pub const SECRET_PREFIX: &str = "whsec_";

/// A fresh secret: 32 random bytes, as `whsec_<base64>`.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    // The system's generator only fails on a broken platform; then there is no safe secret.
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random generator works");
    format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The key bytes of a `whsec_` secret (a secret without the prefix is taken as base64 too).
fn key_bytes(secret: &str) -> Vec<u8> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap_or_else(|_| encoded.as_bytes().to_vec())
}

/// The `webhook-signature` value of a message.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &key_bytes(secret));
    let mut context = hmac::Context::with_key(&key);
    context.update(id.as_bytes());
    context.update(b".");
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    let tag = context.sign();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    )
}

/// Whether `header` (space-separated `v1,<sig>` entries) holds a valid signature of the
/// message: what a receiver checks, in constant time.
pub fn verify(secret: &str, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &key_bytes(secret));
    let message = [
        id.as_bytes(),
        b".",
        timestamp.to_string().as_bytes(),
        b".",
        body,
    ]
    .concat();
    header.split(' ').any(|entry| {
        entry
            .strip_prefix("v1,")
            .and_then(|sig| base64::engine::general_purpose::STANDARD.decode(sig).ok())
            .is_some_and(|sig| hmac::verify(&key, &message, &sig).is_ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn given_the_specification_example_when_signed_then_the_signature_is_the_published_one() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(secret, id, 1614265330, body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(verify(secret, id, 1614265330, body, &signature));
        assert!(!verify(secret, id, 1614265331, body, &signature));
        assert!(!verify(secret, id, 1614265330, b"{}", &signature));
    }

    #[test]
    fn given_two_fresh_secrets_then_they_differ_and_carry_the_prefix() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(a.starts_with(SECRET_PREFIX));
        assert_eq!(key_bytes(&a).len(), 32);
    }
}
