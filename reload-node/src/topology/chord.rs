//! CHORD-RELOAD (RFC 6940 §10). Being written.
