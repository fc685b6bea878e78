//! How users name GPU models: case-insensitive, with spaces, dashes and underscores ignored, so `RTX4090`,
//! `rtx-4090` and `RTX 4090` are one model; `*` and `?` are wildcards, plain text matches a substring.

/// The form stored in `gpus.model_key` and compared against.
pub fn model_key(model: &str) -> String {
    model
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '_'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// A SQL `LIKE` pattern (escape `\`) over model keys for a user's filter.
pub fn like_pattern(filter: &str) -> String {
    let key = model_key(filter);
    let wildcard = key.contains(['*', '?']);
    let mut pattern = String::with_capacity(key.len() + 2);
    if !wildcard {
        pattern.push('%');
    }
    for c in key.chars() {
        match c {
            '*' => pattern.push('%'),
            '?' => pattern.push('_'),
            '%' | '_' | '\\' => {
                pattern.push('\\');
                pattern.push(c);
            }
            c => pattern.push(c),
        }
    }
    if !wildcard {
        pattern.push('%');
    }
    pattern
}

/// A `LIKE` pattern over the lower-cased JSON text of a capability list that matches one whole element.
pub fn capability_pattern(capability: &str) -> String {
    let quoted = serde_json::to_string(&capability.to_lowercase()).unwrap_or_default();
    let mut pattern = String::from("%");
    for c in quoted.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_model_share_a_key() {
        assert_eq!(model_key("RTX 4090"), "rtx4090");
        assert_eq!(model_key("rtx-4090"), "rtx4090");
        assert_eq!(model_key("RTX4090"), "rtx4090");
    }

    #[test]
    fn plain_text_is_a_substring_and_wildcards_anchor() {
        assert_eq!(like_pattern("RTX 40"), "%rtx40%");
        assert_eq!(like_pattern("RTX*"), "rtx%");
        assert_eq!(like_pattern("A?00"), "a_00");
        assert_eq!(like_pattern("50%"), "%50\\%%");
    }

    #[test]
    fn capability_matches_a_whole_quoted_element() {
        assert_eq!(capability_pattern("FP16"), "%\"fp16\"%");
    }
}
