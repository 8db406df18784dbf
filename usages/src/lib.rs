//! # reload-usages
//!
//! Usages of the RELOAD overlay, built on `reload-node`'s public API only. First the SIP
//! usage (RFC 7904): registering an address of record as a SIP-REGISTRATION Kind,
//! AppAttach for SIP (Application-ID 5060/5061), GRUUs; later ReDiR (RFC 7374), ShaRe
//! (RFC 8076) and the CoAP usage (RFC 7650).
//!
//! Today it is empty: its wire structures already live in `reload-wire::ext`.
