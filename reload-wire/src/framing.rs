//! The framing header of RFC 6940 §6.6.2, used on TLS/TCP and DTLS/UDP links.

use bytes::{BufMut, Bytes};

use crate::codec::{
    Cx, EncodeError, ErrorKind, In, Len, PResult, Wire, fail, field, opaque, put_opaque, u8_, u32_,
};

/// `FramedMessageType` data (RFC 6940 §6.6.2).
pub const FRAME_DATA: u8 = 128;
/// `FramedMessageType` ack (RFC 6940 §6.6.2).
pub const FRAME_ACK: u8 = 129;
/// Bytes before the message in a data frame: type, sequence, 24-bit length.
pub const DATA_FRAME_OVERHEAD: usize = 8;
/// Size of an ack frame.
pub const ACK_FRAME_LEN: usize = 9;

/// `FramedMessage` (RFC 6940 §6.6.2).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum FramedMessage {
    /// A RELOAD message with the link's sequence number.
    Data {
        sequence: u32,
        #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
        message: Bytes,
    },
    /// Acknowledges `ack_sequence`; bit n of `received` says whether sequence
    /// `ack_sequence - n - 1` was among the last 32 frames received (§6.6.3.2).
    Ack { ack_sequence: u32, received: u32 },
}

impl FramedMessage {
    /// Length of the first complete frame at the front of a byte stream, `Ok(None)` if more
    /// bytes are needed, or an error if the stream does not start with a frame type. Lets
    /// a TCP reader split the stream before decoding; `max_message_size` bounds what it
    /// will wait for.
    pub fn frame_len(stream: &[u8], max_message_size: usize) -> Result<Option<usize>, ErrorKind> {
        let Some(&t) = stream.first() else {
            return Ok(None);
        };
        match t {
            FRAME_ACK => Ok((stream.len() >= ACK_FRAME_LEN).then_some(ACK_FRAME_LEN)),
            FRAME_DATA => {
                if stream.len() < DATA_FRAME_OVERHEAD {
                    return Ok(None);
                }
                let len = u32::from_be_bytes([0, stream[5], stream[6], stream[7]]) as usize;
                if len > max_message_size {
                    return Err(ErrorKind::TooLarge {
                        size: len,
                        max: max_message_size,
                    });
                }
                let total = DATA_FRAME_OVERHEAD + len;
                Ok((stream.len() >= total).then_some(total))
            }
            _ => Err(ErrorKind::Invalid("unknown framed message type")),
        }
    }
}

impl Wire for FramedMessage {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("FramedMessage", i, |i| {
            let (r, t) = field("type", i, u8_)?;
            match t {
                FRAME_DATA => {
                    let (r, sequence) = field("sequence", r, u32_)?;
                    let (r, message) = field("message", r, |r| opaque(cx, Len::U24, r))?;
                    Ok((r, FramedMessage::Data { sequence, message }))
                }
                FRAME_ACK => {
                    let (r, ack_sequence) = field("ack_sequence", r, u32_)?;
                    let (r, received) = field("received", r, u32_)?;
                    Ok((
                        r,
                        FramedMessage::Ack {
                            ack_sequence,
                            received,
                        },
                    ))
                }
                _ => fail(i, ErrorKind::Invalid("unknown framed message type")),
            }
        })
    }

    fn encoded_len(&self) -> usize {
        match self {
            FramedMessage::Data { message, .. } => DATA_FRAME_OVERHEAD + message.len(),
            FramedMessage::Ack { .. } => ACK_FRAME_LEN,
        }
    }

    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        match self {
            FramedMessage::Data { sequence, message } => {
                b.put_u8(FRAME_DATA);
                b.put_u32(*sequence);
                put_opaque(b, Len::U24, message, "FramedMessage.message")
            }
            FramedMessage::Ack {
                ack_sequence,
                received,
            } => {
                b.put_u8(FRAME_ACK);
                b.put_u32(*ack_sequence);
                b.put_u32(*received);
                Ok(())
            }
        }
    }
}
