//! A pre-parse check for JSON from outside: how deep it nests, found before any parser
//! recurses into it.

/// The byte offset of the first `[` or `{` that nests deeper than `limit`, or `None`.
/// Brackets inside strings do not count; the scan is linear and allocation-free. It
/// validates nothing else: the JSON parser does, afterwards.
pub fn nesting_exceeds(json: &[u8], limit: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (offset, &byte) in json.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Some(offset);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}
