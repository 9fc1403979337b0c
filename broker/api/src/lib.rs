//! postern-api
