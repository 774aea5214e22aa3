//! Quoting of SQL identifiers and literals: the one place where user-written names and values
//! become SQL text. Every statement pgherd builds goes through these two functions; nothing
//! pastes a user string into SQL any other way.

/// Why a string cannot be used in SQL at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    #[error("contains a NUL character, which PostgreSQL cannot store")]
    Nul,
    #[error("is empty")]
    Empty,
    #[error("is {0} bytes long; PostgreSQL names are at most 63 bytes")]
    TooLong(usize),
}

/// Longest identifier PostgreSQL keeps (NAMEDATALEN - 1).
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// A quoted identifier: `"name"`, with embedded `"` doubled. Always quoted, so case and
/// reserved words are kept as written; a name longer than PostgreSQL keeps is refused rather
/// than silently truncated.
pub fn quote_identifier(name: &str) -> Result<String, QuoteError> {
    if name.is_empty() {
        return Err(QuoteError::Empty);
    }
    if name.contains('\0') {
        return Err(QuoteError::Nul);
    }
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(QuoteError::TooLong(name.len()));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// A quoted string literal. Uses the `E'...'` form only when backslashes are present, so the
/// result means the same whatever `standard_conforming_strings` is.
pub fn quote_literal(value: &str) -> Result<String, QuoteError> {
    if value.contains('\0') {
        return Err(QuoteError::Nul);
    }
    let escaped = value.replace('\'', "''");
    if escaped.contains('\\') {
        Ok(format!("E'{}'", escaped.replace('\\', "\\\\")))
    } else {
        Ok(format!("'{escaped}'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert_eq!(quote_identifier("app").as_deref(), Ok("\"app\""));
        assert_eq!(quote_identifier("My Db").as_deref(), Ok("\"My Db\""));
        assert_eq!(
            quote_identifier("a\"; DROP ROLE x; --").as_deref(),
            Ok("\"a\"\"; DROP ROLE x; --\"")
        );
        assert_eq!(quote_identifier(""), Err(QuoteError::Empty));
        assert_eq!(quote_identifier("a\0b"), Err(QuoteError::Nul));
        assert_eq!(
            quote_identifier(&"x".repeat(64)),
            Err(QuoteError::TooLong(64))
        );
        assert!(quote_identifier(&"é".repeat(31)).is_ok());
        assert!(quote_identifier(&"é".repeat(32)).is_err());
    }

    #[test]
    fn literals() {
        assert_eq!(quote_literal("it's").as_deref(), Ok("'it''s'"));
        assert_eq!(quote_literal(r"a\b").as_deref(), Ok(r"E'a\\b'"));
        assert_eq!(quote_literal("").as_deref(), Ok("''"));
        assert_eq!(quote_literal("x\0"), Err(QuoteError::Nul));
    }
}
