//! csr (in progress)
