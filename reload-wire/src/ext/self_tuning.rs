//! Self-tuning CHORD-RELOAD (RFC 7363): the `SelfTuningData` estimates (§6.5) that
//! Probe requests and answers carry in a `self_tuning_data` message extension (type 0x3,
//! §9.1).
//!
//! Reading notes:
//! - §6.5 says the extension's `critical` field MUST be False. [`SelfTuningData::to_message_extension`]
//!   always writes False; [`SelfTuningData::from_message_extension`] still decodes an
//!   extension marked critical, since the layout does not depend on the flag (a node that
//!   wants to police the rule can look at `MessageExtension::critical` itself).
//! - The contents must be exactly the 12 bytes of the structure: trailing bytes in
//!   `extension_contents` are refused.

use bytes::BufMut;

use crate::codec::{Cx, DecodeError, DecodeOptions, EncodeError, In, PResult, Wire, field, u32_};
use crate::message::{MessageExtension, MessageExtensionType};

/// `SelfTuningData` (RFC 7363 §6.5): the sender's latest estimates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SelfTuningData {
    /// Estimated number of peers in the overlay (§6.1).
    pub network_size: u32,
    /// Joins per 24 hours, rounded up (§6.4, §6.5).
    pub join_rate: u32,
    /// Failures (leaves) per 24 hours, rounded up (§6.3, §6.5).
    pub leave_rate: u32,
}

impl SelfTuningData {
    /// A rate in events per second as the per-24-hours integer of RFC 7363 §6.5: the
    /// ceiling of `86400 × per_second` (0.123/s → 10628), saturating at `u32::MAX`;
    /// negative or NaN rates give 0.
    pub fn rate_per_day(per_second: f64) -> u32 {
        let v = (per_second * 86_400.0).ceil();
        if v.is_nan() || v <= 0.0 {
            0
        } else if v >= u32::MAX as f64 {
            u32::MAX
        } else {
            v as u32
        }
    }

    /// The `self_tuning_data` extension carrying these estimates, with `critical` False
    /// (RFC 7363 §6.5).
    pub fn to_message_extension(&self) -> Result<MessageExtension, EncodeError> {
        Ok(MessageExtension {
            extension_type: MessageExtensionType::SELF_TUNING_DATA,
            critical: false,
            extension_contents: self.to_bytes()?,
        })
    }

    /// Decodes the contents of `ext` if it is a `self_tuning_data` extension; `Ok(None)`
    /// for any other extension type.
    pub fn from_message_extension(
        ext: &MessageExtension,
        opts: &DecodeOptions,
    ) -> Result<Option<Self>, DecodeError> {
        if ext.extension_type != MessageExtensionType::SELF_TUNING_DATA {
            return Ok(None);
        }
        Self::decode(&ext.extension_contents, opts).map(Some)
    }

    /// The estimates of the first `self_tuning_data` extension in `extensions` (the
    /// `extensions` of a Probe request's or answer's `MessageContents`).
    pub fn find_in(
        extensions: &[MessageExtension],
        opts: &DecodeOptions,
    ) -> Result<Option<Self>, DecodeError> {
        match extensions
            .iter()
            .find(|e| e.extension_type == MessageExtensionType::SELF_TUNING_DATA)
        {
            Some(e) => Self::from_message_extension(e, opts),
            None => Ok(None),
        }
    }
}

impl Wire for SelfTuningData {
    fn decode_from<'a>(_cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("SelfTuningData", i, |i| {
            let (i, network_size) = field("network_size", i, u32_)?;
            let (i, join_rate) = field("join_rate", i, u32_)?;
            let (i, leave_rate) = field("leave_rate", i, u32_)?;
            Ok((
                i,
                SelfTuningData {
                    network_size,
                    join_rate,
                    leave_rate,
                },
            ))
        })
    }
    fn encoded_len(&self) -> usize {
        12
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        b.put_u32(self.network_size);
        b.put_u32(self.join_rate);
        b.put_u32(self.leave_rate);
        Ok(())
    }
}
