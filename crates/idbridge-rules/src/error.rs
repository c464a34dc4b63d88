//! Load-time and evaluation-time errors.

/// A problem in a rules file, positioned for the admin who wrote it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct RuleError {
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    pub message: String,
}

impl RuleError {
    /// Positions `message` at byte `offset` of `text`.
    pub(crate) fn at(file: &str, text: &str, offset: usize, message: impl Into<String>) -> Self {
        let before = text.get(..offset.min(text.len())).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).unwrap_or("").chars().count() + 1;
        Self {
            file: file.to_string(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// A per-object evaluation failure; it names the rule and flow so the admin can fix the
/// rule or the data. Never a panic: bad data fails one object, not the sync run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rule \"{rule}\", {}: {message}", target.as_deref().map_or_else(|| "scope".to_string(), |t| format!("flow to {t}")))]
pub struct EvalError {
    pub rule: String,
    /// The flow's target attribute, or `None` when the scope condition failed.
    pub target: Option<String>,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        let text = "a = 1\nné = 'x'\n";
        let e = RuleError::at("f.toml", text, text.find('\'').unwrap(), "m");
        assert_eq!((e.line, e.column), (2, 6));
        assert_eq!(e.to_string(), "f.toml:2:6: m");
        let end = RuleError::at("f.toml", text, 999, "m");
        assert_eq!((end.line, end.column), (3, 1));
    }
}
