//! Name rules of SPEC §1, checked without a regex engine.

use crate::error::{Error, Result};

/// Tenant ids: `[a-z0-9][a-z0-9-]{2,31}`.
pub fn validate_tenant_id(id: &str) -> Result<()> {
    let bytes = id.as_bytes();
    let ok = (3..=32).contains(&bytes.len())
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    require(
        ok,
        "tenant id",
        id,
        "3 to 32 characters of a-z, 0-9 and '-', starting with a letter or digit",
    )
}

/// Topic and subscription names: `[A-Za-z0-9_-]{1,64}`.
pub fn validate_resource_name(kind: &str, name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    require(
        ok,
        format_args!("{kind} name"),
        name,
        "1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'",
    )
}

/// Device ids in bindings: 1 to 64 characters, no control characters.
pub fn validate_device_id(id: &str) -> Result<()> {
    let ok = (1..=64).contains(&id.chars().count()) && !id.chars().any(char::is_control);
    require(ok, "device_id", id, "1 to 64 printable characters")
}

/// INVALID_ARGUMENT "invalid <what> '<value>': use <rule>" unless `ok`; the
/// value is cut to 70 characters so a huge name does not flood the reply.
/// `what` is only formatted on refusal, so the check allocates nothing.
fn require(ok: bool, what: impl std::fmt::Display, value: &str, rule: &str) -> Result<()> {
    if ok {
        return Ok(());
    }
    let shown: String = value.chars().take(70).collect();
    Err(Error::invalid(format!(
        "invalid {what} '{shown}': use {rule}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids() {
        for ok in ["abc", "a-1", "0ab", "abcdefghijabcdefghijabcdefghijab"] {
            assert!(validate_tenant_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "-ab",
            "Abc",
            "a_b",
            "abcdefghijabcdefghijabcdefghijabc",
            "",
        ] {
            assert!(validate_tenant_id(bad).is_err(), "{bad}");
        }
        assert_eq!(
            validate_tenant_id("a_b").unwrap_err().to_string(),
            Error::invalid(
                "invalid tenant id 'a_b': use 3 to 32 characters of a-z, 0-9 and '-', \
                 starting with a letter or digit"
            )
            .to_string()
        );
    }

    #[test]
    fn device_ids() {
        assert!(validate_device_id("imei-1").is_ok());
        assert!(validate_device_id("").is_err());
        assert!(validate_device_id("a\nb").is_err());
        let long = "x".repeat(100);
        let err = validate_device_id(&long).unwrap_err().to_string();
        assert!(err.contains(&format!("'{}'", "x".repeat(70))), "{err}");
        assert!(!err.contains(&"x".repeat(71)), "{err}");
    }

    #[test]
    fn resource_names() {
        assert!(validate_resource_name("topic", "a").is_ok());
        assert!(validate_resource_name("topic", "Sensor_data-01").is_ok());
        assert!(validate_resource_name("topic", &"x".repeat(64)).is_ok());
        assert!(validate_resource_name("topic", &"x".repeat(65)).is_err());
        assert!(validate_resource_name("topic", "").is_err());
        assert!(validate_resource_name("topic", "a.b").is_err());
        assert!(validate_resource_name("topic", "a/b").is_err());
        let err = validate_resource_name("subscription", "a.b").unwrap_err();
        assert!(
            err.to_string()
                .contains("invalid subscription name 'a.b': use 1 to 64 characters"),
            "{err}"
        );
    }
}
