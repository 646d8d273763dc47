//! Request body decoding by `Content-Encoding`, bounded so that a small
//! compressed body cannot expand past the limit (decompression bombs).

use std::io::Read;

use bytes::Bytes;

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

    /// Decodes `body`, refusing output larger than `limit` bytes.
    pub fn decode(self, body: Bytes, limit: usize) -> Result<Bytes, IngestError> {
        let too_large = || IngestError::PayloadTooLarge {
            limit,
            what: " after decompression",
        };
        let read_bounded = |mut reader: Box<dyn Read + '_>| -> Result<Bytes, IngestError> {
            let mut out = Vec::with_capacity((body.len() * 4).min(limit));
            reader
                .by_ref()
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| IngestError::BadRequest(format!("body does not decompress: {e}")))?;
            if out.len() > limit {
                return Err(too_large());
            }
            Ok(out.into())
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

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
                .decode(gzip(&data), 10_000)
                .expect("fits"),
            data
        );
        let z = zstd::bulk::compress(&data, 1).expect("compresses");
        assert_eq!(
            ContentEncoding::Zstd
                .decode(z.into(), 10_000)
                .expect("fits"),
            data
        );
    }

    #[test]
    fn bombs_stop_at_the_limit() {
        let bomb = gzip(&vec![0u8; 50 << 20]);
        assert!(bomb.len() < 100_000);
        let err = ContentEncoding::Gzip
            .decode(bomb, 1 << 20)
            .expect_err("too large");
        assert!(matches!(err, IngestError::PayloadTooLarge { .. }), "{err}");
        let z = zstd::bulk::compress(&vec![0u8; 50 << 20], 3).expect("compresses");
        let err = ContentEncoding::Zstd
            .decode(z.into(), 1 << 20)
            .expect_err("too large");
        assert!(matches!(err, IngestError::PayloadTooLarge { .. }), "{err}");
    }

    #[test]
    fn garbage_and_unknown_encodings_are_refused() {
        let err = ContentEncoding::Gzip
            .decode(Bytes::from_static(b"not gzip"), 100)
            .expect_err("garbage");
        assert!(matches!(err, IngestError::BadRequest(_)));
        assert!(matches!(
            ContentEncoding::from_header(Some("br")),
            Err(IngestError::UnsupportedMediaType(_))
        ));
    }
}
