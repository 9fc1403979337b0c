//! Placeholder, replaced by the format's implementation.

use super::{AttestError, AttestationObject, ChainCache, Challenge, Evidence, TrustRoots};

/// Verifies a `apple` statement.
///
/// # Errors
/// [`AttestError`] saying why the statement is refused.
pub(crate) fn verify(
    obj: &AttestationObject,
    _challenge: &Challenge<'_>,
    _roots: &TrustRoots,
    _cache: &ChainCache,
) -> Result<Evidence, AttestError> {
    Err(AttestError::Format(obj.fmt.clone()))
}
