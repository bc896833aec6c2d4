//! Limit checks run on every value after decoding and before encoding.
//!
//! Each failure names the field by its path (for example
//! `inquiry.incident.indicators[3].domain`) so an operator or a peer's
//! developer can see exactly what was wrong.

use crate::codec::limits;
use crate::error::DecodeError;

/// Walks a value and records the first limit it breaks.
#[derive(Debug, Default)]
pub(crate) struct Validator {
    path: Vec<String>,
    first_error: Option<DecodeError>,
}

impl Validator {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        match self.first_error {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Runs `f` with `name` pushed onto the field path.
    pub(crate) fn field(&mut self, name: &str, f: impl FnOnce(&mut Self)) {
        if self.first_error.is_some() {
            return;
        }
        self.path.push(name.to_owned());
        f(self);
        self.path.pop();
    }

    fn here(&self) -> String {
        let mut out = String::new();
        for part in &self.path {
            if !out.is_empty() && !part.starts_with('[') {
                out.push('.');
            }
            out.push_str(part);
        }
        out
    }

    pub(crate) fn fail(&mut self, reason: impl Into<String>) {
        if self.first_error.is_none() {
            self.first_error = Some(DecodeError::InvalidField {
                field: self.here(),
                reason: reason.into(),
            });
        }
    }

    pub(crate) fn max_len(&mut self, name: &str, len: usize, max: usize) {
        if len > max {
            self.field(name, |v| v.fail(format!("{len} bytes; the limit is {max}")));
        }
    }

    pub(crate) fn short_text(&mut self, name: &str, text: &str) {
        self.max_len(name, text.len(), limits::MAX_SHORT_TEXT_BYTES);
    }

    pub(crate) fn optional_short_text(&mut self, name: &str, text: &Option<String>) {
        if let Some(text) = text {
            self.short_text(name, text);
        }
    }

    pub(crate) fn non_empty_short_text(&mut self, name: &str, text: &str) {
        if text.trim().is_empty() {
            self.field(name, |v| v.fail("must not be empty"));
        }
        self.short_text(name, text);
    }

    /// Checks a collection's length, then each element under `name[i]`.
    pub(crate) fn list<T: Validate>(&mut self, name: &str, items: &[T], max: usize) {
        if items.len() > max {
            self.field(name, |v| {
                v.fail(format!("{} entries; the limit is {max}", items.len()))
            });
            return;
        }
        self.field(name, |v| {
            for (i, item) in items.iter().enumerate() {
                v.field(&format!("[{i}]"), |v| item.validate(v));
            }
        });
    }
}

/// A value that knows its own limits.
pub(crate) trait Validate {
    fn validate(&self, v: &mut Validator);
}

impl<T: Validate> Validate for Option<T> {
    fn validate(&self, v: &mut Validator) {
        if let Some(inner) = self {
            inner.validate(v);
        }
    }
}
