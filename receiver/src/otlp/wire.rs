//! Just enough of the protobuf wire format to find where each top-level entry of
//! a repeated field lies, so that valid resources are stored as the exact bytes
//! the client sent, without encoding them again.

use std::ops::Range;

/// The byte ranges of every occurrence of length-delimited `field` at the top
/// level of `msg`, each including its key and length, so that each range is
/// itself a valid encoding of a message holding just that entry.
/// `None` when the bytes are not well-formed protobuf.
pub(crate) fn field_ranges(msg: &[u8], field: u32) -> Option<Vec<Range<usize>>> {
    let mut ranges = Vec::new();
    let mut pos = 0;
    while pos < msg.len() {
        let start = pos;
        let key = read_varint(msg, &mut pos)?;
        let number = u32::try_from(key >> 3).ok()?;
        match key & 7 {
            0 => {
                read_varint(msg, &mut pos)?;
            }
            1 => pos = pos.checked_add(8)?,
            2 => {
                let len = usize::try_from(read_varint(msg, &mut pos)?).ok()?;
                pos = pos.checked_add(len)?;
                if pos <= msg.len() && number == field {
                    ranges.push(start..pos);
                }
            }
            5 => pos = pos.checked_add(4)?,
            _ => return None,
        }
        if pos > msg.len() {
            return None;
        }
    }
    Some(ranges)
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
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
        assert_eq!(field_ranges(&[], 1), Some(vec![]));
    }
}
