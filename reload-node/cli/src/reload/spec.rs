//! What the `reload` command line names, read into protocol values: Kinds (registered name
//! or number), Resource-IDs, dictionary keys, array indexes and ranges, values. Pure
//! functions, so that every operator input gets an answer or a readable error.

use bytes::Bytes;
use reload_proto::config::{AccessPolicy, KindDefinition, registered_kind};
use reload_proto::overlay::Overlay;
use reload_wire::ResourceId;
use reload_wire::storage::{
    ArrayEntry, ArrayRange, DataModel, DataValue, DictionaryEntry, KindId, ModelSpecifier,
    StoredDataSpecifier, StoredDataValue,
};

/// The array index meaning "append" in a Store and "the last element" in a Fetch.
pub const ARRAY_END: u32 = 0xffff_ffff;

/// A Kind of the overlay, as the tool uses it.
#[derive(Clone, Debug)]
pub struct Kind {
    pub id: KindId,
    pub model: DataModel,
    pub policy: AccessPolicy,
    pub max_size: u32,
}

/// A number in decimal or hex (`0x…`).
pub fn number(s: &str) -> Option<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) if !h.is_empty() => u32::from_str_radix(h, 16).ok(),
        Some(_) => None,
        None => s.parse().ok(),
    }
}

/// The name of a data model as the tool prints it.
pub fn model_name(m: DataModel) -> &'static str {
    match m {
        DataModel::Single => "single",
        DataModel::Array => "array",
        DataModel::Dictionary => "dictionary",
    }
}

/// How a Kind is shown: its registered name, or its number in hex.
pub fn kind_name(id: KindId) -> String {
    match registered_kind(id) {
        Some(_) => id
            .name()
            .map(str::to_string)
            .unwrap_or(format!("{:#x}", id.0)),
        None => format!("{:#x}", id.0),
    }
}

/// The overlay's Kinds, for messages.
pub fn kind_list(overlay: &Overlay) -> String {
    let v: Vec<String> = overlay
        .config()
        .kinds
        .iter()
        .filter_map(KindDefinition::kind_id)
        .map(kind_name)
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// Reads `--kind`: a registered name (any case) or a Kind-ID in decimal or hex; it must be
/// one the overlay's configuration defines.
pub fn kind(text: &str, overlay: &Overlay) -> Result<Kind, String> {
    let id = match number(text) {
        Some(n) => KindId(n),
        None => match registered_kind(text.to_ascii_uppercase().as_str()) {
            Some((id, _, _)) => id,
            None => {
                return Err(format!(
                    "--kind {text:?} is neither a Kind-ID (decimal or 0x hex) nor a registered \
                     Kind name; this overlay's Kinds: {}",
                    kind_list(overlay)
                ));
            }
        },
    };
    let Some((def, model)) = overlay.kind(id) else {
        return Err(format!(
            "Kind {} is not defined by overlay {}'s configuration; its Kinds: {}",
            kind_name(id),
            overlay.name(),
            kind_list(overlay)
        ));
    };
    Ok(Kind {
        id,
        model,
        policy: def.access_control.clone(),
        max_size: def.max_size,
    })
}

/// Hex digits into bytes (`0x` prefix allowed, even length).
pub fn hex_bytes(text: &str) -> Result<Vec<u8>, String> {
    let h = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    hex::decode(h).map_err(|_| {
        let shown: String = text.chars().take(80).collect();
        format!("{shown:?} is not hex (pairs of 0-9a-f)")
    })
}

/// Reads `--resource-id HEX`: as many bytes as the overlay's Node-IDs (a Resource-ID of the
/// overlay's hash, §5.2 and §6.3.1.1).
pub fn resource_id(text: &str, node_id_len: usize) -> Result<ResourceId, String> {
    let b = hex_bytes(text)?;
    if b.len() != node_id_len {
        return Err(format!(
            "--resource-id {text:?}: {} bytes, the overlay's Resource-IDs have {node_id_len} \
             ({} hex digits)",
            b.len(),
            2 * node_id_len
        ));
    }
    Ok(ResourceId::new(Bytes::from(b)))
}

/// A dictionary key from `--key TEXT` or `--key-hex HEX`.
pub fn dict_key(text: Option<&str>, hex: Option<&str>) -> Result<Option<Bytes>, String> {
    let k = match (text, hex) {
        (Some(t), None) => Bytes::copy_from_slice(t.as_bytes()),
        (None, Some(h)) => Bytes::from(hex_bytes(h).map_err(|e| format!("--key-hex: {e}"))?),
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => return Err("give --key or --key-hex, not both".into()),
    };
    if k.len() > u16::MAX as usize {
        return Err(format!(
            "a dictionary key of {} bytes is longer than 65535 (§7.2.3)",
            k.len()
        ));
    }
    Ok(Some(k))
}

/// An `--index` of a Fetch or Stat: `N`, `A-B`, `A-` (to the end) or `last`.
pub fn index_range(text: &str) -> Result<ArrayRange, String> {
    let bad =
        || format!("--index {text:?}: give N, FIRST-LAST, FIRST- (to the end) or last (0-based)");
    if text.eq_ignore_ascii_case("last") {
        return Ok(ArrayRange {
            first: ARRAY_END,
            last: ARRAY_END,
        });
    }
    let (first, last) = match text.split_once('-') {
        Some((a, "")) => (number(a).ok_or_else(bad)?, ARRAY_END),
        Some((a, b)) => (number(a).ok_or_else(bad)?, number(b).ok_or_else(bad)?),
        None => {
            let n = number(text).ok_or_else(bad)?;
            (n, n)
        }
    };
    if first > last {
        return Err(format!(
            "--index {text:?}: the first index is after the last"
        ));
    }
    Ok(ArrayRange { first, last })
}

/// What selects values in a Fetch or Stat.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Array ranges (`--index`); none: the whole array.
    pub ranges: Vec<ArrayRange>,
    /// Dictionary keys (`--key`, `--key-hex`); none: every key.
    pub keys: Vec<Bytes>,
}

/// The StoredDataSpecifier of a Fetch or Stat of `kind` (generation 0: always answered).
pub fn specifier(kind: &Kind, sel: &Selection) -> Result<StoredDataSpecifier, String> {
    let name = kind_name(kind.id);
    let model_specifier = match kind.model {
        DataModel::Single => {
            if !sel.ranges.is_empty() || !sel.keys.is_empty() {
                return Err(format!(
                    "Kind {name} holds a single value: no --index or --key"
                ));
            }
            ModelSpecifier::Single
        }
        DataModel::Array => {
            if !sel.keys.is_empty() {
                return Err(format!(
                    "Kind {name} is an array: select with --index, not --key"
                ));
            }
            let mut ranges = sel.ranges.clone();
            if ranges.is_empty() {
                ranges.push(ArrayRange {
                    first: 0,
                    last: ARRAY_END,
                });
            }
            let mut sorted = ranges.clone();
            sorted.sort_by_key(|r| (r.first, r.last));
            if sorted.windows(2).any(|w| w[1].first <= w[0].last) {
                return Err("--index ranges overlap (RFC 6940 §7.4.2.1)".into());
            }
            ModelSpecifier::Array(ranges)
        }
        DataModel::Dictionary => {
            if !sel.ranges.is_empty() {
                return Err(format!(
                    "Kind {name} is a dictionary: select with --key or --key-hex, not --index"
                ));
            }
            ModelSpecifier::Dictionary(sel.keys.clone())
        }
    };
    Ok(StoredDataSpecifier {
        kind: kind.id,
        generation: 0,
        model_specifier,
    })
}

/// Where a stored value goes in its Kind's data model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    Single,
    /// An array index; [`ARRAY_END`] appends.
    Index(u32),
    Key(Bytes),
}

/// The slot of a Store from `--index` / `--key`: checked against the Kind's data model.
pub fn slot(kind: &Kind, index: Option<u32>, key: Option<Bytes>) -> Result<Slot, String> {
    let name = kind_name(kind.id);
    match (kind.model, index, key) {
        (DataModel::Single, None, None) => Ok(Slot::Single),
        (DataModel::Single, ..) => Err(format!(
            "Kind {name} holds a single value: no --index or --key"
        )),
        (DataModel::Array, i, None) => Ok(Slot::Index(i.unwrap_or(ARRAY_END))),
        (DataModel::Array, _, Some(_)) => Err(format!(
            "Kind {name} is an array: give --index N (or nothing, to append), not --key"
        )),
        (DataModel::Dictionary, None, Some(k)) => Ok(Slot::Key(k)),
        (DataModel::Dictionary, _, None) => Err(format!(
            "Kind {name} is a dictionary: give the entry's --key TEXT or --key-hex HEX"
        )),
        (DataModel::Dictionary, Some(_), Some(_)) => Err(format!(
            "Kind {name} is a dictionary: --index is for arrays"
        )),
    }
}

/// The StoredDataValue for `value` at `slot` (`None`: a deletion, `exists = false`,
/// §7.2.1).
pub fn stored_value(slot: &Slot, value: Option<Bytes>) -> StoredDataValue {
    let dv = DataValue {
        exists: value.is_some(),
        value: value.unwrap_or_default(),
    };
    match slot {
        Slot::Single => StoredDataValue::Single(dv),
        Slot::Index(i) => StoredDataValue::Array(ArrayEntry {
            index: *i,
            value: dv,
        }),
        Slot::Key(k) => StoredDataValue::Dictionary(DictionaryEntry {
            key: k.clone(),
            value: dv,
        }),
    }
}

/// Bytes as an operator reads them: quoted text when they are printable UTF-8, else hex.
pub fn show_bytes(b: &[u8], limit: usize) -> String {
    match std::str::from_utf8(b) {
        Ok(s) if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => {
            let shown: String = s.chars().take(limit).collect();
            let more = if shown.len() < s.len() { "…" } else { "" };
            format!("{shown:?}{more}")
        }
        _ => {
            let shown = hex::encode(&b[..b.len().min(limit / 2)]);
            let more = if b.len() > limit / 2 { "…" } else { "" };
            format!("hex:{shown}{more}")
        }
    }
}

/// Milliseconds since the Unix epoch as RFC 3339 (UTC, milliseconds).
pub fn time_ms(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000);
    match t.map(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    }) {
        Ok(s) if !s.is_empty() => s,
        _ => format!("{ms} ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_ranges_keys_and_bytes() {
        assert_eq!(number("0xf0000001"), Some(0xf000_0001));
        assert_eq!(number("16"), Some(16));
        assert_eq!(number("0x"), None);
        assert_eq!(number("-1"), None);
        let r = index_range("3").unwrap();
        assert_eq!((r.first, r.last), (3, 3));
        let r = index_range("2-").unwrap();
        assert_eq!((r.first, r.last), (2, ARRAY_END));
        let r = index_range("last").unwrap();
        assert_eq!((r.first, r.last), (ARRAY_END, ARRAY_END));
        assert!(index_range("5-2").is_err());
        assert!(index_range("x").is_err());
        assert_eq!(
            dict_key(Some("k"), None).unwrap(),
            Some(Bytes::from_static(b"k"))
        );
        assert_eq!(
            dict_key(None, Some("0x00ff")).unwrap(),
            Some(Bytes::from_static(&[0, 255]))
        );
        assert!(dict_key(None, Some("zz")).is_err());
        assert!(dict_key(Some("a"), Some("00")).is_err());
        assert_eq!(
            resource_id(&"ab".repeat(16), 16).unwrap().as_bytes(),
            &[0xab; 16]
        );
        assert!(resource_id("abcd", 16).is_err());
        assert_eq!(show_bytes(b"hi", 10), "\"hi\"");
        assert_eq!(show_bytes(&[0, 1], 10), "hex:0001");
        assert_eq!(time_ms(0), "1970-01-01T00:00:00Z");
    }

    fn k(model: DataModel) -> Kind {
        Kind {
            id: KindId(0xf000_0001),
            model,
            policy: AccessPolicy::UserMatch,
            max_size: 10,
        }
    }

    #[test]
    fn slots_and_specifiers_follow_the_data_model() {
        let key = Some(Bytes::from_static(b"k"));
        assert_eq!(slot(&k(DataModel::Single), None, None), Ok(Slot::Single));
        assert!(slot(&k(DataModel::Single), Some(1), None).is_err());
        assert_eq!(
            slot(&k(DataModel::Array), None, None),
            Ok(Slot::Index(ARRAY_END))
        );
        assert_eq!(
            slot(&k(DataModel::Array), Some(4), None),
            Ok(Slot::Index(4))
        );
        assert!(slot(&k(DataModel::Array), None, key.clone()).is_err());
        assert_eq!(
            slot(&k(DataModel::Dictionary), None, key.clone()),
            Ok(Slot::Key(Bytes::from_static(b"k")))
        );
        assert!(slot(&k(DataModel::Dictionary), None, None).is_err());

        let all = Selection::default();
        for m in [DataModel::Single, DataModel::Array, DataModel::Dictionary] {
            assert!(specifier(&k(m), &all).is_ok());
        }
        let ranges = Selection {
            ranges: vec![index_range("0-3").unwrap(), index_range("3-5").unwrap()],
            keys: vec![],
        };
        assert!(specifier(&k(DataModel::Array), &ranges).is_err(), "overlap");
        assert!(specifier(&k(DataModel::Dictionary), &ranges).is_err());
        assert!(specifier(&k(DataModel::Single), &ranges).is_err());
    }
}
