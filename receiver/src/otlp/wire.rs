//! The protobuf wire format, read in place: a field reader and a validator that
//! checks a message against a [`Schema`] as strictly as prost's decoder does
//! (wire types of known fields, lengths, UTF-8 of strings, packed arrays),
//! without building anything.
//!
//! Everything here answers `None` for bytes it does not accept. Callers treat
//! `None` as "let prost decide": the validator may be stricter than prost (it
//! refuses groups and deep nesting), never laxer.

use std::ops::Range;

/// How deep messages may nest before the validator gives up (prost allows 100).
pub(crate) const MAX_DEPTH: u32 = 64;

/// What a known field holds, as the validator checks it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// int32, int64, uint32, uint64, sint32, sint64, bool, enum.
    Varint,
    /// fixed64, sfixed64, double.
    I64,
    /// fixed32, sfixed32, float.
    I32,
    /// A string: valid UTF-8.
    Str,
    Bytes,
    /// A message the validator checks against its schema.
    Msg(&'static Schema),
    /// A message the caller walks itself; the validator checks only its wire type.
    Visit(
        #[cfg_attr(not(test), expect(dead_code, reason = "read by the descriptor test"))]
        &'static Schema,
    ),
    /// Repeated fixed64 or double: packed or one at a time.
    RepeatedI64,
    /// Repeated varints: packed or one at a time.
    RepeatedVarint,
}

/// Field numbers a schema can hold (OTLP's largest is 16).
const MAX_FIELD: usize = 16;

/// What to do with a field, from its number and wire type: the validator's
/// inner loop dispatches on this once per field.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// A wire type the field cannot have (or a group, or field number 0).
    Invalid,
    Varint,
    I64,
    I32,
    /// Length-delimited bytes taken as they are.
    Len,
    Str,
    Msg(&'static Schema),
    PackedI64,
    PackedVarint,
}

impl Op {
    /// The op for a field of `kind` (`None`: unknown) read with `wire` type.
    const fn of(kind: Option<Kind>, wire: u8) -> Op {
        match (kind, wire) {
            (None, 0) => Op::Varint,
            (None, 1) => Op::I64,
            (None, 2) => Op::Len,
            (None, 5) => Op::I32,
            (Some(Kind::Varint | Kind::RepeatedVarint), 0) => Op::Varint,
            (Some(Kind::I64 | Kind::RepeatedI64), 1) => Op::I64,
            (Some(Kind::I32), 5) => Op::I32,
            (Some(Kind::Bytes | Kind::Visit(_)), 2) => Op::Len,
            (Some(Kind::Str), 2) => Op::Str,
            (Some(Kind::Msg(schema)), 2) => Op::Msg(schema),
            (Some(Kind::RepeatedI64), 2) => Op::PackedI64,
            (Some(Kind::RepeatedVarint), 2) => Op::PackedVarint,
            // Groups (3, 4) are legal but obsolete; 6 and 7 are not wire types.
            _ => Op::Invalid,
        }
    }
}

/// The fields of one message type, by number; absent numbers are unknown fields.
#[derive(Debug)]
pub(crate) struct Schema {
    /// The protobuf full name, e.g. `opentelemetry.proto.trace.v1.Span`.
    #[cfg_attr(not(test), expect(dead_code, reason = "read by the descriptor test"))]
    pub(crate) name: &'static str,
    /// Indexed by field number.
    fields: [Option<Kind>; MAX_FIELD + 1],
    /// Indexed by a one-byte key (field numbers 1 to 15, every wire type).
    ops: [Op; 128],
}

impl Schema {
    /// A schema of `fields`, each (number, kind); numbers are at most [`MAX_FIELD`].
    pub(crate) const fn new(name: &'static str, fields: &[(u32, Kind)]) -> Schema {
        let mut table = [None; MAX_FIELD + 1];
        let mut i = 0;
        while i < fields.len() {
            let (number, kind) = fields[i];
            assert!(
                number as usize <= MAX_FIELD && number > 0,
                "field numbers are 1 to MAX_FIELD"
            );
            table[number as usize] = Some(kind);
            i += 1;
        }
        let mut ops = [Op::Invalid; 128];
        let mut key = 8; // field number 0 is invalid
        while key < 128 {
            ops[key] = Op::of(table[key >> 3], (key & 7) as u8);
            key += 1;
        }
        Schema {
            name,
            fields: table,
            ops,
        }
    }

    /// The op for a field key of any length.
    #[inline]
    fn op(&self, key: u64) -> Op {
        if key < 128 {
            return self.ops[key as usize];
        }
        if key > u64::from(u32::MAX) {
            return Op::Invalid; // as prost: keys are 32 bits
        }
        let number = (key >> 3) as usize;
        let kind = if number <= MAX_FIELD {
            self.fields[number]
        } else {
            None
        };
        Op::of(kind, (key & 7) as u8)
    }

    /// The known fields, by number.
    #[cfg(test)]
    pub(crate) fn fields(&self) -> impl Iterator<Item = (u32, Kind)> + '_ {
        (0..).zip(self.fields).filter_map(|(n, k)| Some((n, k?)))
    }
}

/// One field's value as read from the wire.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    Varint(u64),
    I64(u64),
    I32(u32),
    Len(&'a [u8]),
}

impl<'a> Value<'a> {
    pub(crate) fn bytes(self) -> &'a [u8] {
        match self {
            Value::Len(b) => b,
            _ => &[],
        }
    }

    pub(crate) fn u64(self) -> u64 {
        match self {
            Value::Varint(v) | Value::I64(v) => v,
            Value::I32(v) => u64::from(v),
            Value::Len(_) => 0,
        }
    }
}

/// A cursor over the fields of one message.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// A varint of at most 10 bytes whose value fits 64 bits, as prost requires.
    /// Keys, lengths and most values take one or two bytes: those are read
    /// inline, the rest out of line.
    #[inline(always)]
    fn varint(&mut self) -> Option<u64> {
        let first = *self.buf.get(self.pos)?;
        if first < 0x80 {
            self.pos += 1;
            return Some(u64::from(first));
        }
        if let Some(&second) = self.buf.get(self.pos + 1)
            && second < 0x80
        {
            self.pos += 2;
            return Some(u64::from(first & 0x7f) | u64::from(second) << 7);
        }
        self.long_varint()
    }

    #[inline(never)]
    fn long_varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let byte = *self.buf.get(self.pos + i)?;
            if i == 9 && byte > 1 {
                return None;
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                self.pos += i + 1;
                return Some(value);
            }
        }
        None
    }

    #[inline]
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len())?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Some(bytes)
    }

    #[inline]
    fn fixed<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    /// A length-delimited value.
    #[inline]
    fn len_delimited(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        self.take(len)
    }
}

fn packed_varints(buf: &[u8]) -> bool {
    let mut r = Reader::new(buf);
    while r.pos < buf.len() {
        if r.varint().is_none() {
            return false;
        }
    }
    true
}

/// Walks a message: checks every field against `schema` (known message fields
/// recursively, except [`Kind::Visit`] ones) and hands each to `on` with its
/// number, value and the byte range of the whole field (key included) in `buf`.
/// `depth` is how many more levels of nesting are allowed below this message.
pub(crate) fn walk<'a>(
    buf: &'a [u8],
    schema: &Schema,
    depth: u32,
    mut on: impl FnMut(u32, Value<'a>, Range<usize>) -> Option<()>,
) -> Option<()> {
    let depth = depth.checked_sub(1)?;
    let mut r = Reader::new(buf);
    while r.pos < buf.len() {
        let start = r.pos;
        let key = r.varint()?;
        let value = match schema.op(key) {
            Op::Invalid => return None,
            Op::Varint => Value::Varint(r.varint()?),
            Op::I64 => Value::I64(u64::from_le_bytes(r.fixed()?)),
            Op::I32 => Value::I32(u32::from_le_bytes(r.fixed()?)),
            Op::Len => Value::Len(r.len_delimited()?),
            Op::Str => {
                let b = r.len_delimited()?;
                if !(b.is_ascii() || std::str::from_utf8(b).is_ok()) {
                    return None;
                }
                Value::Len(b)
            }
            Op::Msg(inner) => {
                let b = r.len_delimited()?;
                validate(b, inner, depth)?;
                Value::Len(b)
            }
            Op::PackedI64 => {
                let b = r.len_delimited()?;
                if b.len() % 8 != 0 {
                    return None;
                }
                Value::Len(b)
            }
            Op::PackedVarint => {
                let b = r.len_delimited()?;
                if !packed_varints(b) {
                    return None;
                }
                Value::Len(b)
            }
        };
        on((key >> 3) as u32, value, start..r.pos)?;
    }
    Some(())
}

/// How many messages `buf` (a message of `schema`) holds at any depth below
/// it, counting stops once past `limit`. Every nested message takes at least
/// two bytes on the wire, so only a message longer than `2 * limit` bytes can
/// hold more than `limit`. It reads no further than malformed bytes (whose
/// refusal is the validator's), and walks by a list, not by recursion.
pub(crate) fn nested_messages(buf: &[u8], schema: &Schema, limit: u32) -> u32 {
    let mut count = 0u32;
    let mut pending = vec![(buf, schema)];
    while let Some((buf, schema)) = pending.pop() {
        let mut r = Reader::new(buf);
        while r.pos < buf.len() {
            let Some(key) = r.varint() else { break };
            let read = match schema.op(key) {
                Op::Invalid => None,
                Op::Varint => r.varint().map(drop),
                Op::I64 => r.fixed::<8>().map(drop),
                Op::I32 => r.fixed::<4>().map(drop),
                Op::Len | Op::Str | Op::PackedI64 | Op::PackedVarint => r.len_delimited().map(drop),
                Op::Msg(inner) => r.len_delimited().map(|b| {
                    count += 1;
                    pending.push((b, inner));
                }),
            };
            if read.is_none() || count > limit {
                break;
            }
        }
        if count > limit {
            break;
        }
    }
    count
}

/// Whether `buf` is a well-formed message of `schema` (see the module docs).
pub(crate) fn validate(buf: &[u8], schema: &Schema, depth: u32) -> Option<()> {
    walk(buf, schema, depth, |_, _, _| Some(()))
}

/// The byte ranges of every occurrence of length-delimited `field` at the top
/// level of `msg`, each including its key and length, so that each range is
/// itself a valid encoding of a message holding just that entry.
/// `None` when the bytes are not well-formed protobuf.
pub(crate) fn field_ranges(msg: &[u8], field: u32) -> Option<Vec<Range<usize>>> {
    static ANY: Schema = Schema::new("any", &[]);
    let mut ranges = Vec::new();
    walk(msg, &ANY, 1, |number, value, range| {
        if number == field && matches!(value, Value::Len(_)) {
            ranges.push(range);
        }
        Some(())
    })?;
    Some(ranges)
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};
    use prost::Message;

    use super::*;

    #[test]
    fn each_range_decodes_to_its_own_resource() {
        let resource = |name: &str| ResourceSpans {
            schema_url: name.to_owned(),
            scope_spans: vec![opentelemetry_proto::tonic::trace::v1::ScopeSpans {
                spans: vec![Span {
                    name: name.to_owned(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![resource("a"), resource("b"), resource("c")],
        };
        let bytes = request.encode_to_vec();
        let ranges = field_ranges(&bytes, 1).expect("well formed");
        assert_eq!(ranges.len(), 3);
        for (range, expected) in ranges.into_iter().zip(&request.resource_spans) {
            let one = ExportTraceServiceRequest::decode(&bytes[range]).expect("decodes");
            assert_eq!(one.resource_spans, vec![expected.clone()]);
        }
    }

    #[test]
    fn malformed_bytes_are_refused() {
        assert_eq!(
            field_ranges(&[0x0a, 0x05, 0x01], 1),
            None,
            "length past the end"
        );
        assert_eq!(field_ranges(&[0x0b], 1), None, "group wire type");
        assert_eq!(field_ranges(&[0x08, 0xff], 1), None, "truncated varint");
        assert_eq!(field_ranges(&[0x00, 0x01], 1), None, "field number 0");
        assert_eq!(
            field_ranges(
                &[
                    0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02
                ],
                1
            ),
            None,
            "varint past 64 bits"
        );
        assert_eq!(field_ranges(&[], 1), Some(vec![]));
    }

    #[test]
    fn varints_of_every_length_read_as_prost_writes_them() {
        let mut values = vec![0, 1, 127, 128, 255, 300, 16_383, 16_384, u64::MAX];
        values.extend((1..64).map(|bits| (1u64 << bits) - 1));
        values.extend((1..64).map(|bits| 1u64 << bits));
        for value in values {
            let mut buf = Vec::new();
            prost::encoding::encode_varint(value, &mut buf);
            buf.push(0x7f); // what follows is not read
            let mut r = Reader::new(&buf);
            assert_eq!(r.varint(), Some(value), "{buf:02x?}");
            assert_eq!(
                r.pos,
                buf.len() - 1,
                "{value} takes {} bytes",
                buf.len() - 1
            );
            // Cut anywhere inside, it is refused.
            for cut in 0..buf.len() - 1 {
                assert_eq!(
                    Reader::new(&buf[..cut]).varint(),
                    None,
                    "{value} cut at {cut}"
                );
            }
        }
        // Eleven bytes, or ten whose last carries bits past 64, do not fit.
        let mut long = vec![0x80; 10];
        long.push(0x00);
        assert_eq!(Reader::new(&long).varint(), None);
        let mut over = vec![0xff; 9];
        over.push(0x02);
        assert_eq!(Reader::new(&over).varint(), None);
        // Non-minimal encodings are valid, as prost reads them.
        assert_eq!(Reader::new(&[0x81, 0x00]).varint(), Some(1));
        assert_eq!(Reader::new(&[0x80, 0x80, 0x00]).varint(), Some(0));
    }

    static INNER: Schema = Schema::new(
        "inner",
        &[
            (1, Kind::Str),
            (2, Kind::RepeatedI64),
            (3, Kind::RepeatedVarint),
        ],
    );
    static OUTER: Schema = Schema::new(
        "outer",
        &[(1, Kind::Msg(&INNER)), (2, Kind::Varint), (3, Kind::I64)],
    );

    #[test]
    fn the_validator_checks_known_fields_and_skips_unknown_ones() {
        let ok = |b: &[u8]| validate(b, &OUTER, MAX_DEPTH).is_some();
        assert!(ok(&[0x0a, 0x02, 0x0a, 0x00]), "empty string in a message");
        assert!(ok(&[0x10, 0x05, 0x19, 1, 2, 3, 4, 5, 6, 7, 8]));
        assert!(ok(&[0x22, 0x01, 0xff]), "unknown field 4 holds anything");
        assert!(!ok(&[0x11, 1, 2, 3, 4, 5, 6, 7, 8]), "field 2 is a varint");
        assert!(!ok(&[0x18, 0x01]), "field 3 is fixed64");
        assert!(
            !ok(&[0x0a, 0x03, 0x0a, 0x01, 0xff]),
            "a string must be UTF-8"
        );
        assert!(
            ok(&[0x0a, 0x0a, 0x12, 0x08, 1, 2, 3, 4, 5, 6, 7, 8]),
            "packed fixed64"
        );
        assert!(
            !ok(&[0x0a, 0x05, 0x12, 0x03, 1, 2, 3]),
            "packed fixed64 of 3 bytes"
        );
        assert!(ok(&[0x0a, 0x04, 0x1a, 0x02, 0x01, 0x7f]), "packed varints");
        assert!(
            !ok(&[0x0a, 0x03, 0x1a, 0x01, 0x81]),
            "a truncated packed varint"
        );
        assert!(ok(&[0x0a, 0x02, 0x18, 0x05]), "an unpacked repeated varint");
    }

    #[test]
    fn nesting_is_bounded() {
        static SELF: Schema = Schema::new("self", &[(1, Kind::Msg(&SELF))]);
        // `levels[k]` is k empty messages wrapped around an empty one: k + 1 levels.
        let mut levels: Vec<Vec<u8>> = vec![Vec::new()];
        for k in 1..=MAX_DEPTH as usize {
            let inner = &levels[k - 1];
            let mut outer = vec![0x0a];
            prost::encoding::encode_varint(inner.len() as u64, &mut outer);
            outer.extend_from_slice(inner);
            levels.push(outer);
        }
        let deepest = MAX_DEPTH as usize - 1;
        assert!(validate(&levels[deepest], &SELF, MAX_DEPTH).is_some());
        assert!(validate(&levels[deepest + 1], &SELF, MAX_DEPTH).is_none());
    }
}
