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
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid tenant id '{}': use 3 to 32 characters of a-z, 0-9 and '-', starting with a letter or digit",
            truncate(id)
        )))
    }
}

/// Topic and subscription names: `[A-Za-z0-9_-]{1,64}`.
pub fn validate_resource_name(kind: &str, name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid {kind} name '{}': use 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'",
            truncate(name)
        )))
    }
}

/// Device ids in bindings: 1 to 64 characters, no control characters.
pub fn validate_device_id(id: &str) -> Result<()> {
    let chars = id.chars().count();
    if (1..=64).contains(&chars) && !id.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid device_id '{}': use 1 to 64 printable characters",
            truncate(id)
        )))
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(70).collect()
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
    }
}
