//! Structures added by the RELOAD extension RFCs.

pub mod diagnostics;
