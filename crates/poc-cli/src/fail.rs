//! Errors that say what went wrong and what to do next.

/// An error for the operator: what happened, what to do, and whether it is
/// a usage error (exit code 2) or a failure (exit code 1).
#[derive(Debug)]
pub(crate) struct Failure {
    /// What went wrong.
    pub(crate) message: String,
    /// What to do next.
    pub(crate) hint: Option<String>,
    /// A usage error: the command line (or a template file) is wrong.
    pub(crate) usage: bool,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// A failure (exit code 1) with a hint.
pub(crate) fn fail(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Failure {
        message: message.into(),
        hint: Some(hint.into()),
        usage: false,
    })
}

/// A usage error (exit code 2) with a hint.
pub(crate) fn usage(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Failure {
        message: message.into(),
        hint: Some(hint.into()),
        usage: true,
    })
}

/// Whether `error` is a usage error, and its hint if it has one.
pub(crate) fn classify(error: &anyhow::Error) -> (bool, Option<&str>) {
    let mut usage_error = false;
    let mut hint = None;
    for cause in error.chain() {
        if let Some(failure) = cause.downcast_ref::<Failure>() {
            usage_error |= failure.usage;
            if hint.is_none() {
                hint = failure.hint.as_deref();
            }
        }
    }
    (usage_error, hint)
}
