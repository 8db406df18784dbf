//! What the server accepts as an overlay name and as an account name.
//!
//! RFC 6940 §11.3: enrollment servers SHOULD allow only legal characters in user names
//! (no embedded NULs …) rather than accept any name. An account `NAME` has the user name
//! `NAME@<overlay>` — an rfc822Name (RFC 5280 §4.2.1.6: an RFC 5322 addr-spec) that is also
//! the user's SIP AOR without `sip:` (RFC 7904 §3.2) — so NAME is held to characters that are
//! valid unquoted in both a mailbox local part and a SIP user part.

use crate::{Error, Result};

/// Longest account name.
pub const MAX_ACCOUNT_NAME: usize = 64;

/// Checks an account name: 1 to 64 characters, ASCII letters, digits, `.`, `_`, `-`, `+`,
/// starting with a letter or digit, no `..`, not ending with `.`.
pub fn check_account_name(name: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::new(format!("invalid account name {name:?}: {why}")));
    if name.is_empty() || name.len() > MAX_ACCOUNT_NAME {
        return bad(&format!("it must have 1 to {MAX_ACCOUNT_NAME} characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
    {
        return bad(
            "only ASCII letters, digits and . _ - + are allowed (it becomes NAME@overlay, an rfc822Name and SIP AOR)",
        );
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return bad("it must start with a letter or digit");
    }
    if name.contains("..") || name.ends_with('.') {
        return bad("no two dots in a row and no dot at the end (RFC 5322 dot-atom)");
    }
    Ok(())
}

/// Checks an overlay name. It is a DNS host name (the HTTPS certificate is issued for it and
/// §11.2 looks up `_reload-config._tcp.NAME`), in lower case (DNS is case-insensitive but the
/// overlay hash of §6.3.2 is not, so one spelling is enforced).
pub fn check_overlay_name(name: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::new(format!("invalid overlay name {name:?}: {why}")));
    if name.is_empty() || name.len() > 253 {
        return bad("a DNS name has 1 to 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("each dot-separated label has 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return bad(
                "only lower-case letters, digits and - are allowed in a label (it is the HTTPS server's DNS name)",
            );
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label cannot start or end with -");
        }
    }
    if name.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return bad("an overlay name is a DNS name, not an IP address");
    }
    Ok(())
}

/// The user name of an account (`NAME@overlay`, §11.3).
pub fn user_name(account: &str, overlay: &str) -> String {
    format!("{account}@{overlay}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names() {
        for ok in ["alice", "bob.smith", "a", "x_y-z+1", "A1"] {
            assert!(check_account_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".a",
            "a..b",
            "a.",
            "a b",
            "a@b",
            "a\0",
            "é",
            &"x".repeat(65),
        ] {
            assert!(check_account_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn overlay_names() {
        for ok in ["overlay.test", "a", "my-overlay.example.org", "x1.y2"] {
            assert!(check_overlay_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Overlay.test",
            "a..b",
            "-a.b",
            "a-.b",
            "a_b",
            "127.0.0.1",
            "a b",
            &"x".repeat(64),
        ] {
            assert!(check_overlay_name(bad).is_err(), "{bad:?}");
        }
    }
}
