//! The string-level matching primitives of the leak scan (the rules are documented on
//! [`super`]); none of them allocates per call.

use std::collections::HashSet;

/// The shortest word sequence looked for, in letters and digits.
pub(super) const MIN_NAME_CHARS: usize = 3;
/// The shortest bounded value looked for, in characters.
pub(super) const MIN_VALUE_CHARS: usize = 6;
/// The longest FHIR id.
pub(super) const MAX_ID_CHARS: usize = 64;
/// The fewest digits a phone number needs to be looked for.
pub(super) const MIN_PHONE_DIGITS: usize = 7;
/// A phone is compared on this many trailing digits at most.
pub(super) const PHONE_DIGITS: usize = 10;
/// A run may carry a country code of up to this many digits before the number.
const COUNTRY_CODE_DIGITS: usize = 3;
/// The fewest decimals a coordinate needs to be looked for.
pub(super) const MIN_COORDINATE_DECIMALS: usize = 4;

/// The class of a value's edge character, which its neighbours must not continue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CharClass {
    Digit,
    Letter,
    Other,
}

/// The class of `c`.
pub(super) fn class(c: char) -> CharClass {
    if c.is_ascii_digit() {
        CharClass::Digit
    } else if c.is_alphabetic() {
        CharClass::Letter
    } else {
        CharClass::Other
    }
}

/// Writes the words of `text` into `out` in lower case, one space between words and one at
/// each end (` kansas city `), so that a pattern normalised the same way matches only whole
/// words in a row.
pub(super) fn normalize_into(text: &str, out: &mut String) {
    out.clear();
    out.push(' ');
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.ends_with(' ') {
            out.push(' ');
        }
    }
    if !out.ends_with(' ') {
        out.push(' ');
    }
}

/// The number of letters and digits in `text`.
pub(super) fn word_chars(text: &str) -> usize {
    text.chars().filter(|c| c.is_alphanumeric()).count()
}

/// Whether the hit `start..end` of a value with edge classes `first` and `last` stands on its
/// own in `haystack`: the neighbours do not continue the edge's class.
pub(super) fn is_bounded(
    haystack: &str,
    start: usize,
    end: usize,
    first: CharClass,
    last: CharClass,
) -> bool {
    let open = |edge: CharClass, neighbour: Option<char>| {
        edge == CharClass::Other || neighbour.is_none_or(|n| class(n) != edge)
    };
    let before = haystack.get(..start).and_then(|h| h.chars().next_back());
    let after = haystack.get(end..).and_then(|h| h.chars().next());
    open(first, before) && open(last, after)
}

/// Whether a token of `text` (a run of FHIR id characters) is one of `ids` (lower case).
pub(super) fn has_id(text: &str, ids: &HashSet<String>) -> bool {
    if ids.is_empty() {
        return false;
    }
    let mut lower = [0u8; MAX_ID_CHARS];
    text.as_bytes()
        .split(|&b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
        .filter(|token| (MIN_VALUE_CHARS..=MAX_ID_CHARS).contains(&token.len()))
        .any(|token| {
            let lower = &mut lower[..token.len()];
            for (slot, byte) in lower.iter_mut().zip(token) {
                *slot = byte.to_ascii_lowercase();
            }
            std::str::from_utf8(lower).is_ok_and(|token| ids.contains(token))
        })
}

/// The last [`PHONE_DIGITS`] digits of `value`, when it has at least [`MIN_PHONE_DIGITS`].
pub(super) fn phone_digits(value: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = value.bytes().filter(u8::is_ascii_digit).collect();
    if digits.len() < MIN_PHONE_DIGITS {
        return None;
    }
    Some(digits[digits.len().saturating_sub(PHONE_DIGITS)..].to_vec())
}

/// Whether a run of digits and phone punctuation in `text` holds one of `phones`.
pub(super) fn has_phone(text: &str, phones: &[Vec<u8>]) -> bool {
    const MAX_RUN: usize = PHONE_DIGITS + COUNTRY_CODE_DIGITS;
    let is_run_char = |b: u8| b.is_ascii_digit() || b" ()+-./".contains(&b);
    text.as_bytes().split(|&b| !is_run_char(b)).any(|run| {
        let count = run.iter().filter(|b| b.is_ascii_digit()).count();
        if !(MIN_PHONE_DIGITS..=MAX_RUN).contains(&count) {
            return false;
        }
        let mut digits = [0u8; MAX_RUN];
        for (slot, digit) in digits
            .iter_mut()
            .zip(run.iter().copied().filter(u8::is_ascii_digit))
        {
            *slot = digit;
        }
        let digits = &digits[..count];
        phones
            .iter()
            .any(|phone| digits.ends_with(phone) && count <= phone.len() + COUNTRY_CODE_DIGITS)
    })
}

/// Whether a token of `text` is one of the ZIP codes (`zip`, `zip-dddd` or `zipdddd`).
pub(super) fn has_zip(text: &str, zip5: &[String]) -> bool {
    text.split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .map(|t| t.trim_matches(|c: char| "().:\"'[]".contains(c)))
        .any(|token| zip5.iter().any(|zip| zip_matches(token, zip)))
}

fn zip_matches(token: &str, zip5: &str) -> bool {
    let Some(rest) = token.strip_prefix(zip5) else {
        return false;
    };
    let plus_four = rest.strip_prefix('-').unwrap_or(rest);
    rest.is_empty() || (plus_four.len() == 4 && plus_four.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether a postal code is a ZIP3: three digits, then nothing, zeros or `*`.
pub(super) fn is_zip3_form(postal_code: &str) -> bool {
    let code = postal_code.trim().as_bytes();
    code.len() >= 3
        && code[..3].iter().all(u8::is_ascii_digit)
        && code[3..].iter().all(|&b| b == b'0' || b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalising_keeps_whole_words_apart() {
        let mut out = String::new();
        for (text, expected) in [
            ("Kansas City", " kansas city "),
            ("  Van-der  BERG. ", " van der berg "),
            ("", " "),
            ("Zoë Ångström", " zoë ångström "),
        ] {
            normalize_into(text, &mut out);
            assert_eq!(out, expected, "{text}");
        }
    }

    #[test]
    fn zip3_forms_are_recognised() {
        for (code, zip3) in [
            ("980", true),
            ("98000", true),
            ("980**", true),
            ("000", true),
            ("98053", false),
            ("98", false),
            ("A1B 2C3", false),
        ] {
            assert_eq!(is_zip3_form(code), zip3, "{code}");
        }
    }
}
