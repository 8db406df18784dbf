//! Ring arithmetic of CHORD-RELOAD (RFC 6940 §10.1, §10.3, §10.7.4.2) on 128-bit
//! positions.
//!
//! Every ID is placed on the ring by its first 16 bytes, big-endian (Node-IDs of 16
//! bytes and Chord Resource-IDs, SHA-1 truncated to 128 bits, §10.2, map exactly; longer
//! Node-IDs use their most significant 128 bits, shorter IDs are zero-padded on the
//! right). All arithmetic is modulo 2^128: `u128` wrapping operations.

/// The ring position of an ID: its first 16 bytes, big-endian, zero-padded.
pub(crate) fn pos(id: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    let n = id.len().min(16);
    b[..n].copy_from_slice(&id[..n]);
    u128::from_be_bytes(b)
}

/// Clockwise distance from `from` to `to` (mod 2^128); 0 when they are equal.
pub(crate) fn dist(from: u128, to: u128) -> u128 {
    to.wrapping_sub(from)
}

/// `x ∈ (a, b]` on the ring. `(a, a]` is the whole ring: a lone node is responsible for
/// every ID (§10.1: pred < k ≤ me with pred = me).
pub(crate) fn in_open_closed(x: u128, a: u128, b: u128) -> bool {
    if a == b {
        return true;
    }
    let d = dist(a, x);
    d != 0 && d <= dist(a, b)
}

/// `x ∈ (a, b)` on the ring. `(a, a)` is the whole ring except `a`.
pub(crate) fn in_open(x: u128, a: u128, b: u128) -> bool {
    let d = dist(a, x);
    d != 0 && (a == b || d < dist(a, b))
}

/// Size of the interval of finger `i` (1-based, §10.7.4.2): 2^(128-i).
pub(crate) fn finger_span(i: usize) -> u128 {
    debug_assert!((1..=128).contains(&i));
    1u128 << (128 - i.clamp(1, 128))
}

/// The first ID of finger `i`'s interval: `me + 2^(128-i)` (§10.5: "JN MUST send an
/// Attach to peer n+2^(128-i)"; finger 1 is half-way round).
pub(crate) fn finger_start(me: u128, i: usize) -> u128 {
    me.wrapping_add(finger_span(i))
}

/// Finger `i`'s valid range `[me + 2^(128-i), me + 2^(128-(i-1)) - 1]` (§10.7.4.2), as
/// (first, last). For i = 1 the last ID is `me - 1`. ([`finger_slot`] is its inverse.)
#[cfg(test)]
pub(crate) fn finger_interval(me: u128, i: usize) -> (u128, u128) {
    let lo = finger_start(me, i);
    let hi = lo.wrapping_add(finger_span(i)).wrapping_sub(1);
    (lo, hi)
}

/// The finger slot (1..=128) a peer at clockwise distance `d` from us falls in: the `i`
/// with `2^(128-i) ≤ d < 2^(129-i)`. `None` for `d = 0` (ourselves).
pub(crate) fn finger_slot(d: u128) -> Option<usize> {
    if d == 0 {
        None
    } else {
        Some(d.leading_zeros() as usize + 1)
    }
}

/// A point drawn from finger `i`'s interval with the random value `r` (§10.7.4.2: "the
/// peer SHOULD send the Ping to a Node-ID selected randomly from that range").
pub(crate) fn random_in_finger(me: u128, i: usize, r: u128) -> u128 {
    let span = finger_span(i);
    finger_start(me, i).wrapping_add(r & (span - 1))
}
