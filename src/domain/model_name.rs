//! How users name GPU models: case-insensitive, with spaces, dashes and underscores ignored, so
//! `RTX4090`, `rtx-4090` and `RTX 4090` are one model; in a filter `*` and `?` are wildcards and plain
//! text matches a substring.

/// The normalised form stored beside each GPU (`gpus.model_key`) and compared against.
pub fn model_key(model: &str) -> String {
    model
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '_'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// A user's model filter, parsed once. The store turns it into SQL; the simulator calls
/// [`matches`](Self::matches); both read the same parsed form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFilter {
    key: String,
    kind: FilterKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FilterKind {
    /// Plain text: the key contains it.
    Substring,
    /// `*` (any run) and `?` (one character), anchored at both ends.
    Wildcard,
    /// The exact key (a model's own key, not user text).
    Exact,
}

/// One piece of a filter, in order: what the store writes as a `LIKE` pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternPart {
    Literal(char),
    AnyRun,
    AnyOne,
}

impl ModelFilter {
    pub fn parse(text: &str) -> Self {
        let key = model_key(text);
        let kind = if key.contains(['*', '?']) {
            FilterKind::Wildcard
        } else {
            FilterKind::Substring
        };
        Self { key, kind }
    }

    /// Exactly one model key.
    pub fn exact(model_key: &str) -> Self {
        Self {
            key: model_key.to_owned(),
            kind: FilterKind::Exact,
        }
    }

    /// The filter as an anchored pattern: leading and trailing runs for a substring.
    pub fn pattern(&self) -> Vec<PatternPart> {
        let mut parts = Vec::with_capacity(self.key.len() + 2);
        let substring = self.kind == FilterKind::Substring;
        if substring {
            parts.push(PatternPart::AnyRun);
        }
        for c in self.key.chars() {
            parts.push(match (self.kind, c) {
                (FilterKind::Wildcard, '*') => PatternPart::AnyRun,
                (FilterKind::Wildcard, '?') => PatternPart::AnyOne,
                (_, c) => PatternPart::Literal(c),
            });
        }
        if substring {
            parts.push(PatternPart::AnyRun);
        }
        parts
    }

    /// Whether a model (any spelling) matches.
    pub fn matches(&self, model: &str) -> bool {
        let key: Vec<char> = model_key(model).chars().collect();
        matches_parts(&self.pattern(), &key)
    }
}

/// Glob matching over chars, iterative with backtracking to the last `AnyRun`.
fn matches_parts(pattern: &[PatternPart], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut resume: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(PatternPart::AnyRun) => {
                resume = Some((p, t));
                p += 1;
            }
            Some(PatternPart::AnyOne) => {
                p += 1;
                t += 1;
            }
            Some(PatternPart::Literal(c)) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match resume {
                Some((rp, rt)) => {
                    resume = Some((rp, rt + 1));
                    p = rp + 1;
                    t = rt + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|part| *part == PatternPart::AnyRun)
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
        assert!(ModelFilter::parse("RTX 40").matches("NVIDIA RTX 4090"));
        assert!(ModelFilter::parse("rtx*").matches("RTX 4090"));
        assert!(!ModelFilter::parse("rtx*").matches("NVIDIA RTX 4090"));
        assert!(ModelFilter::parse("A?00").matches("A100"));
        assert!(!ModelFilter::parse("A?00").matches("A1000"));
        assert!(ModelFilter::parse("*").matches("anything"));
        assert!(ModelFilter::exact("a100").matches("A-100"));
        assert!(!ModelFilter::exact("a100").matches("A1000"));
    }
}
