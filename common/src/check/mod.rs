//! The validation machinery every concept's `validate.rs` uses: [`Problem`] and
//! [`ValidationError`], the capped `Problems` collector and `check_unique`, the entry points
//! for raw input ([`raw`]) and the bounds ([`limits`]).
//!
//! The public paths are [`crate::validate`]'s, where the conventions every validator follows
//! are written down. The validators themselves live with their concept
//! (`workload/validate.rs`, `site/validate.rs`, ...).

use std::fmt;

use serde::{Deserialize, Serialize};

pub mod limits;
pub mod raw;

/// One thing wrong with a value: where, and what is allowed instead.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Problem {
    /// Path of the offending field (`constraints.spread.min_sites`, `expose[1].port`).
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl Problem {
    /// A problem at `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Everything wrong with one value; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError(pub Vec<Problem>);

impl ValidationError {
    /// The problems.
    pub fn problems(&self) -> &[Problem] {
        &self.0
    }

    /// The field paths of the problems, in order.
    pub fn fields(&self) -> Vec<&str> {
        self.0.iter().map(|p| p.field.as_str()).collect()
    }
}

impl From<Problem> for ValidationError {
    fn from(p: Problem) -> Self {
        Self(vec![p])
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} problem{}: ", if n == 1 { "" } else { "s" })?;
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Collects problems; caps how many it keeps so hostile input cannot make the report huge.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    kept: Vec<Problem>,
    dropped: usize,
}

impl Problems {
    pub(crate) fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        if self.kept.len() < limits::MAX_PROBLEMS {
            self.kept.push(Problem::new(field, message));
        } else {
            self.dropped += 1;
        }
    }

    pub(crate) fn add(&mut self, p: Problem) {
        self.push(p.field, p.message);
    }

    /// Checks `min <= value <= max`.
    pub(crate) fn range<T: PartialOrd + fmt::Display>(
        &mut self,
        field: impl Into<String>,
        value: T,
        min: T,
        max: T,
    ) {
        if value < min || value > max {
            self.push(
                field,
                format!("must be between {min} and {max}, got {value}"),
            );
        }
    }

    /// Checks `value <= max`.
    pub(crate) fn at_most<T: PartialOrd + fmt::Display>(
        &mut self,
        field: impl Into<String>,
        value: T,
        max: T,
        unit: &str,
    ) {
        if value > max {
            self.push(
                field,
                format!("must be at most {max}{unit}, got {value}{unit}"),
            );
        }
    }

    /// Checks a list length.
    pub(crate) fn max_len(&mut self, field: &str, len: usize, max: usize) {
        if len > max {
            self.push(
                field,
                format!("at most {max} entries are allowed, got {len}"),
            );
        }
    }

    pub(crate) fn finish(mut self) -> Result<(), ValidationError> {
        if self.dropped > 0 {
            let more = self.dropped;
            self.kept.push(Problem::new(
                "",
                format!("{more} more problems not shown; fix the ones above first"),
            ));
        }
        if self.kept.is_empty() {
            Ok(())
        } else {
            Err(ValidationError(self.kept))
        }
    }
}

/// Reports duplicates in `items` as `field[i]` for each repeat after the first.
pub(crate) fn check_unique<T: Ord>(
    problems: &mut Problems,
    field: &str,
    items: impl IntoIterator<Item = T>,
    what: &str,
) {
    let mut seen = std::collections::BTreeSet::new();
    for (i, item) in items.into_iter().enumerate() {
        if !seen.insert(item) {
            problems.push(
                format!("{field}[{i}]"),
                format!("duplicate {what}; list each once"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_lists_every_problem() {
        let e = ValidationError(vec![
            Problem::new("replicas", "must be between 1 and 10000, got 0"),
            Problem::new("image", "must start with https://, http:// or oci://"),
        ]);
        assert_eq!(
            e.to_string(),
            "2 problems: replicas: must be between 1 and 10000, got 0; \
             image: must start with https://, http:// or oci://"
        );
        assert_eq!(e.fields(), vec!["replicas", "image"]);
    }

    #[test]
    fn collector_caps_output() {
        let mut p = Problems::default();
        for i in 0..10_000 {
            p.push(format!("x[{i}]"), "bad");
        }
        let e = p.finish().unwrap_err();
        assert_eq!(e.0.len(), limits::MAX_PROBLEMS + 1);
        assert!(e.0.last().unwrap().message.contains("more problems"));
        assert!(Problems::default().finish().is_ok());
    }
}
