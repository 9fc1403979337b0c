//! ocsp (in progress)
