//! jws (in progress)
