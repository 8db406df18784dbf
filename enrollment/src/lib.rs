//! # reload-enroll
//!
//! The enrollment and configuration server of RFC 6940 §11.2–§11.3: the overlay's root CA,
//! the signed configuration document at `/.well-known/reload-config`, the HTTPS enrollment
//! POST that turns a CSR into a certificate with random Node-IDs, and SQLite-backed
//! accounts — plus the client side used by `reload-node enroll`.
//!
//! Today it is empty.
