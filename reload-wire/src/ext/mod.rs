//! Structures added by the RELOAD extension RFCs.
//!
//! - [`diagnostics`] — RFC 7851 overlay diagnostics (PathTrack, Diagnostic_Ping, Kind-IDs, dMFlags)
//! - [`routing`] — RFC 7263 (DRR) / RFC 7264 (RPR) `extensive_routing_mode` forwarding option
//! - [`self_tuning`] — RFC 7363 `self_tuning_data` message extension
//! - [`redir`] — RFC 7374 ReDiR `RedirServiceProvider` records
//! - [`sip`] — RFC 7904 `SipRegistration` (SIP-REGISTRATION Kind)
//! - [`share`] — RFC 8076 ShaRe `AccessControlListItem` and `ResourceNameExtension`
//! - [`coap`] — RFC 7650 CoAP usage (`CoAPRegistration`, `CoAPCaching`)
//!
//! Value structures (stored data, option values, extension contents) are not message
//! bodies: they are decoded from the opaque field that carries them, with [`crate::Wire`].

pub mod coap;
pub mod diagnostics;
pub mod redir;
pub mod routing;
pub mod self_tuning;
pub mod share;
pub mod sip;

use bytes::BufMut;

use crate::codec::{Cx, EncodeError, ErrorKind, In, Len, PResult, Wire, fail, put_vec, wire_vec};

/// `T items<min..2^n-1>`: a [`wire_vec`] whose byte length (the prefix) must be at least
/// `min`. A shorter region fails with [`ErrorKind::Invalid`]`(why)` at the prefix.
pub(crate) fn wire_vec_min<'a, T: Wire>(
    cx: &Cx<'a>,
    len: Len,
    min: usize,
    why: &'static str,
    i: In<'a>,
) -> PResult<'a, Vec<T>> {
    let (_, n) = len.read(i)?;
    if n < min {
        return fail(i, ErrorKind::Invalid(why));
    }
    wire_vec(cx, len, i)
}

/// Writes `T items<min..2^n-1>`, refusing a list whose encoded size is below `min`. The
/// [`EncodeError`] then carries the short length; `field` should name the range, since
/// the error's text speaks of the maximum.
pub(crate) fn put_vec_min<B: BufMut, T: Wire>(
    b: &mut B,
    len: Len,
    min: usize,
    items: &[T],
    field: &'static str,
) -> Result<(), EncodeError> {
    let n = crate::codec::items_len(items);
    if n < min {
        return Err(EncodeError {
            field,
            len: n,
            max: len.max(),
        });
    }
    put_vec(b, len, items, field)
}
