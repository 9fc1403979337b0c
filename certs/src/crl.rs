//! crl (in progress)
