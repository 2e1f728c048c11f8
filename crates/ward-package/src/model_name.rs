//! The one rule for a model's name, wherever ward meets one: a manifest's `name`, a
//! served repository's model directory, the name `ward import` derives from a file name.
//!
//! A model name is 1 to [`MAX_LEN`] bytes of ASCII letters, digits, `.`, `_` and `-`,
//! starting with a letter or digit: safe as a file name, in a URL path, in an audit line
//! and in a metric label, and what a trust policy's globs match.
//!
//! The same shape of rule (other punctuation, other lengths) checks versions and framework
//! names: [`check_token`].

use crate::limits::MAX_MODEL_NAME_LEN;

/// Longest model name, in bytes.
pub const MAX_LEN: usize = MAX_MODEL_NAME_LEN;

/// The punctuation a model name may hold besides ASCII letters and digits.
pub const PUNCTUATION: [char; 3] = ['.', '_', '-'];

/// The name [`sanitize`] gives when nothing of its input is left.
pub const FALLBACK: &str = "model";

/// Why a name (or another token) is refused; the caller names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error("is longer than {max} bytes")]
    TooLong { max: usize },
    #[error("must start with an ASCII letter or digit")]
    Start,
    #[error("contains {found:?}; only ASCII letters, digits and {allowed:?} are allowed")]
    Character { found: char, allowed: String },
}

/// Checks a model name against the rule.
pub fn check(name: &str) -> Result<(), NameError> {
    check_token(name, MAX_LEN, &PUNCTUATION)
}

/// Makes a valid model name of any text (a file's stem): each character the rule does not
/// allow becomes `_`, leading punctuation is dropped, the result is cut to [`MAX_LEN`]
/// bytes, and an empty result is [`FALLBACK`]. `check(&sanitize(x))` always holds.
pub fn sanitize(raw: &str) -> String {
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || PUNCTUATION.contains(&c) {
                c
            } else {
                '_'
            }
        })
        .skip_while(|c| !c.is_ascii_alphanumeric())
        // Every character is ASCII now: a char is a byte.
        .take(MAX_LEN)
        .collect();
    if clean.is_empty() {
        FALLBACK.to_string()
    } else {
        clean
    }
}

/// Checks a token: non-empty, at most `max` bytes, only ASCII letters, digits and
/// `punctuation`, starting with a letter or digit.
pub fn check_token(value: &str, max: usize, punctuation: &[char]) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::Empty);
    }
    if value.len() > max {
        return Err(NameError::TooLong { max });
    }
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(NameError::Start);
    }
    if let Some(found) = value
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !punctuation.contains(c))
    {
        return Err(NameError::Character {
            found,
            allowed: punctuation.iter().collect(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_rule() {
        for good in [
            "resnet18_v1",
            "resnet-18_v1.2",
            "a",
            "0",
            "A.b-c_d",
            &"x".repeat(128),
        ] {
            assert_eq!(check(good), Ok(()), "{good:?}");
        }
        let refused: [(&str, NameError); 8] = [
            ("", NameError::Empty),
            (&"x".repeat(129), NameError::TooLong { max: 128 }),
            (".hidden", NameError::Start),
            ("-x", NameError::Start),
            ("_x", NameError::Start),
            ("a b", bad(' ')),
            ("../evil", NameError::Start),
            ("caf\u{e9}", bad('\u{e9}')),
        ];
        for (name, err) in refused {
            assert_eq!(check(name), Err(err), "{name:?}");
        }
        for name in ["a/b", "a\\b", "a:b", "a\nb", "a*", "a@b", "a+b"] {
            assert!(
                matches!(check(name), Err(NameError::Character { .. })),
                "{name:?}"
            );
        }
        // The message a manifest shows.
        assert_eq!(
            check("a b").unwrap_err().to_string(),
            r#"contains ' '; only ASCII letters, digits and "._-" are allowed"#
        );
    }

    fn bad(found: char) -> NameError {
        NameError::Character {
            found,
            allowed: "._-".into(),
        }
    }

    #[test]
    fn sanitize_gives_a_name_the_rule_accepts() {
        let cases = [
            ("resnet18", "resnet18"),
            ("my model (v2)", "my_model__v2_"),
            ("..hidden", "hidden"),
            ("_-.x", "x"),
            ("", FALLBACK),
            ("...", FALLBACK),
            ("\u{e9}t\u{e9}", "t_"),
            ("caf\u{e9}", "caf_"),
        ];
        for (raw, want) in cases {
            assert_eq!(sanitize(raw), want, "{raw:?}");
        }
        let long = "y".repeat(300);
        assert_eq!(sanitize(&long).len(), MAX_LEN);
        for raw in ["", "a b", "..", "\u{1F600}x", &long, "-", "ok"] {
            assert_eq!(check(&sanitize(raw)), Ok(()), "{raw:?}");
        }
    }
}
