//! keyfile (in progress)
