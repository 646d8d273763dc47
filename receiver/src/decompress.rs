//! Request body decoding by `Content-Encoding`, bounded so that a small
//! compressed body cannot expand past the limit (decompression bombs).

use std::io::Read;

use bytes::Bytes;

use crate::admission::Ticket;
use crate::error::IngestError;

/// A `Content-Encoding` we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentEncoding {
    Identity,
    Gzip,
    Deflate,
    Zstd,
}

impl ContentEncoding {
    /// Parses the header value (absent means identity).
    pub fn from_header(value: Option<&str>) -> Result<Self, IngestError> {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("identity") => Ok(ContentEncoding::Identity),
            Some("gzip") | Some("x-gzip") => Ok(ContentEncoding::Gzip),
            Some("deflate") => Ok(ContentEncoding::Deflate),
            Some("zstd") => Ok(ContentEncoding::Zstd),
            Some(other) => Err(IngestError::UnsupportedMediaType(format!(
                "unsupported Content-Encoding {other:?}: use gzip, zstd, deflate or none"
            ))),
        }
    }

    /// Decodes `body`, refusing output larger than `limit` bytes; the output
    /// is taken from `ticket` as it grows, before it is allocated.
    pub fn decode(
        self,
        body: Bytes,
        limit: usize,
        ticket: &mut Ticket,
    ) -> Result<Bytes, IngestError> {
        let too_large = || IngestError::PayloadTooLarge {
            limit,
            what: " after decompression",
        };
        let mut read_bounded = |mut reader: Box<dyn Read + '_>| -> Result<Bytes, IngestError> {
            let mut out = Vec::new();
            loop {
                let step = (limit + 1 - out.len()).min(GROWTH_STEP);
                let needed = out.len() + step;
                if needed > out.capacity() {
                    // Doubling, as a Vec would, but taken from the budget first.
                    let capacity = needed.max(out.capacity() * 2).min(limit + 1);
                    ticket.grow(capacity - out.capacity())?;
                    out.reserve_exact(capacity - out.len());
                }
                let read = reader
                    .by_ref()
                    .take(step as u64)
                    .read_to_end(&mut out)
                    .map_err(|e| {
                        IngestError::BadRequest(format!("body does not decompress: {e}"))
                    })?;
                if out.len() > limit {
                    return Err(too_large());
                }
                if read < step {
                    return Ok(out.into());
                }
            }
        };
        match self {
            ContentEncoding::Identity if body.len() > limit => Err(too_large()),
            ContentEncoding::Identity => Ok(body),
            ContentEncoding::Gzip => {
                read_bounded(Box::new(flate2::read::MultiGzDecoder::new(&body[..])))
            }
            ContentEncoding::Deflate => {
                read_bounded(Box::new(flate2::read::ZlibDecoder::new(&body[..])))
            }
            ContentEncoding::Zstd => {
                let decoder = zstd::stream::read::Decoder::with_buffer(&body[..]).map_err(|e| {
                    IngestError::BadRequest(format!("body does not decompress: {e}"))
                })?;
                read_bounded(Box::new(decoder))
            }
        }
    }
}

/// How much a decompressed body grows by, taken from the admission budget
/// a step at a time.
const GROWTH_STEP: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::admission::Admission;

    fn ticket() -> Ticket {
        Admission::new(1 << 30).admit(0).expect("empty ticket")
    }

    fn gzip(data: &[u8]) -> Bytes {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(data).expect("writes");
        enc.finish().expect("finishes").into()
    }

    #[test]
    fn decodes_within_the_limit() {
        let data = vec![7u8; 10_000];
        assert_eq!(
            ContentEncoding::Gzip
                .decode(gzip(&data), 10_000, &mut ticket())
                .expect("fits"),
            data
        );
        let z = zstd::bulk::compress(&data, 1).expect("compresses");
        assert_eq!(
            ContentEncoding::Zstd
                .decode(z.into(), 10_000, &mut ticket())
                .expect("fits"),
            data
        );
    }

    #[test]
    fn bombs_stop_at_the_limit() {
        let bomb = gzip(&vec![0u8; 50 << 20]);
        assert!(bomb.len() < 100_000);
        let err = ContentEncoding::Gzip
            .decode(bomb, 1 << 20, &mut ticket())
            .expect_err("too large");
        assert!(matches!(err, IngestError::PayloadTooLarge { .. }), "{err}");
        let z = zstd::bulk::compress(&vec![0u8; 50 << 20], 3).expect("compresses");
        let err = ContentEncoding::Zstd
            .decode(z.into(), 1 << 20, &mut ticket())
            .expect_err("too large");
        assert!(matches!(err, IngestError::PayloadTooLarge { .. }), "{err}");
    }

    #[test]
    fn inflating_takes_from_the_budget_as_it_grows() {
        let admission = Admission::new(4 << 20);
        let mut ticket = admission.admit(0).expect("empty");
        let body = gzip(&vec![1u8; 3 << 20]);
        let out = ContentEncoding::Gzip
            .decode(body.clone(), 64 << 20, &mut ticket)
            .expect("fits the budget");
        assert_eq!(out.len(), 3 << 20);
        assert_eq!(
            admission.in_use(),
            4 << 20,
            "the capacity that held it, doubled"
        );
        drop(ticket);
        let _other = admission.admit(2 << 20).expect("half the budget");
        let err = ContentEncoding::Gzip
            .decode(body, 64 << 20, &mut admission.admit(0).expect("empty"))
            .expect_err("over what is left");
        assert!(matches!(err, IngestError::Overloaded { .. }), "{err}");
        assert_eq!(
            admission.in_use(),
            2 << 20,
            "a refused body gives its share back"
        );
    }

    #[test]
    fn garbage_and_unknown_encodings_are_refused() {
        let err = ContentEncoding::Gzip
            .decode(Bytes::from_static(b"not gzip"), 100, &mut ticket())
            .expect_err("garbage");
        assert!(matches!(err, IngestError::BadRequest(_)));
        assert!(matches!(
            ContentEncoding::from_header(Some("br")),
            Err(IngestError::UnsupportedMediaType(_))
        ));
    }
}
