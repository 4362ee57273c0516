//! Frames: every message set stored in a segment file carries a plaintext
//! header that says what it is, so the index in sled can be checked against
//! the segments and rebuilt from them (`verify.rs`, `repair.rs`).
//!
//! Layout (little-endian, [`HEADER_BYTES`] bytes, then the body):
//!
//! | bytes | field |
//! | --- | --- |
//! | 0..4 | magic `TQFR` |
//! | 4..6 | format version ([`VERSION`]) |
//! | 6..8 | reserved, 0 |
//! | 8..16 | topic id |
//! | 16..24 | first offset |
//! | 24..28 | message count |
//! | 28..32 | body length |
//! | 32..40 | counted bytes of the messages (what retention and billing count) |
//! | 40..48 | publish time, Unix ms |
//! | 48..52 | CRC-32 of the body |
//! | 52..56 | CRC-32 of bytes 0..52 |
//!
//! The body is opaque here (the encoded set, possibly encrypted by the
//! layer above): nothing about a frame needs a key to be checked or
//! re-indexed. The header CRC lets a scan skip bodies and still trust what
//! it reads, and lets it find the next frame again after damaged bytes
//! (search for the magic, keep only headers whose CRC holds).

/// The first bytes of every frame.
pub const MAGIC: [u8; 4] = *b"TQFR";
/// The frame format version written now.
pub const VERSION: u16 = 1;
/// Bytes of a frame header.
pub const HEADER_BYTES: usize = 56;

/// Who a stored set is: what the index says about it, written into its
/// frame so the segments can vouch for the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetIdentity {
    /// The topic's internal id.
    pub topic_id: u64,
    /// Offset of the set's first message.
    pub first_offset: u64,
    /// Messages in the set.
    pub count: u32,
    /// Counted bytes of its messages.
    pub bytes: u64,
    /// Their shared publish time, Unix ms.
    pub publish_ms: i64,
}

impl SetIdentity {
    /// One past the set's last offset.
    pub fn end(&self) -> u64 {
        self.first_offset + self.count as u64
    }
}

/// A decoded, CRC-checked frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// What the set is.
    pub identity: SetIdentity,
    /// Bytes of the body that follows the header.
    pub body_len: u32,
    /// CRC-32 of the body.
    pub body_crc: u32,
}

impl FrameHeader {
    /// Bytes of the whole frame, header and body.
    pub fn frame_len(&self) -> u64 {
        HEADER_BYTES as u64 + self.body_len as u64
    }
}

/// Why bytes are not a frame header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than a header.
    #[error("{0} bytes are too few for a frame header")]
    Short(usize),
    /// The bytes do not start with the magic (not a frame, or unframed data
    /// written before frames existed).
    #[error("no frame magic")]
    NoMagic,
    /// The header's CRC does not hold.
    #[error("the frame header fails its checksum")]
    HeaderCrc,
    /// A version this build cannot read.
    #[error("frame format version {0} is unknown")]
    Version(u16),
    /// The body fails its CRC.
    #[error("the frame body fails its checksum")]
    BodyCrc,
    /// The body is not as long as the header says.
    #[error("the frame body has {actual} bytes, its header says {expected}")]
    BodyLength {
        /// From the header.
        expected: u32,
        /// Found.
        actual: usize,
    },
}

/// A whole frame for `body`: header then body (the store writes header
/// and body separately; tests and tools build whole frames).
#[cfg(test)]
pub fn encode(identity: &SetIdentity, body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER_BYTES + body.len());
    frame.extend_from_slice(&encode_header(identity, body));
    frame.extend_from_slice(body);
    frame
}

/// The header of a frame for `body`.
pub fn encode_header(identity: &SetIdentity, body: &[u8]) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[0..4].copy_from_slice(&MAGIC);
    h[4..6].copy_from_slice(&VERSION.to_le_bytes());
    h[8..16].copy_from_slice(&identity.topic_id.to_le_bytes());
    h[16..24].copy_from_slice(&identity.first_offset.to_le_bytes());
    h[24..28].copy_from_slice(&identity.count.to_le_bytes());
    h[28..32].copy_from_slice(&(body.len() as u32).to_le_bytes());
    h[32..40].copy_from_slice(&identity.bytes.to_le_bytes());
    h[40..48].copy_from_slice(&identity.publish_ms.to_le_bytes());
    h[48..52].copy_from_slice(&crc32fast::hash(body).to_le_bytes());
    let crc = crc32fast::hash(&h[..52]);
    h[52..56].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Decodes and checks a header from the first [`HEADER_BYTES`] of `bytes`.
pub fn decode_header(bytes: &[u8]) -> Result<FrameHeader, FrameError> {
    let h = bytes
        .get(..HEADER_BYTES)
        .ok_or(FrameError::Short(bytes.len()))?;
    if h[0..4] != MAGIC {
        return Err(FrameError::NoMagic);
    }
    if crc32fast::hash(&h[..52]) != le_u32(&h[52..56]) {
        return Err(FrameError::HeaderCrc);
    }
    let version = u16::from_le_bytes([h[4], h[5]]);
    if version != VERSION {
        return Err(FrameError::Version(version));
    }
    Ok(FrameHeader {
        identity: SetIdentity {
            topic_id: le_u64(&h[8..16]),
            first_offset: le_u64(&h[16..24]),
            count: le_u32(&h[24..28]),
            bytes: le_u64(&h[32..40]),
            publish_ms: le_u64(&h[40..48]) as i64,
        },
        body_len: le_u32(&h[28..32]),
        body_crc: le_u32(&h[48..52]),
    })
}

/// Decodes a whole frame and checks both CRCs; returns the header and body.
pub fn decode(frame: &[u8]) -> Result<(FrameHeader, &[u8]), FrameError> {
    let header = decode_header(frame)?;
    let body = &frame[HEADER_BYTES..];
    if body.len() != header.body_len as usize {
        return Err(FrameError::BodyLength {
            expected: header.body_len,
            actual: body.len(),
        });
    }
    if crc32fast::hash(body) != header.body_crc {
        return Err(FrameError::BodyCrc);
    }
    Ok((header, body))
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> SetIdentity {
        SetIdentity {
            topic_id: 7,
            first_offset: 1 << 40,
            count: 3,
            bytes: 99,
            publish_ms: -5,
        }
    }

    #[test]
    fn a_frame_round_trips() {
        let frame = encode(&identity(), b"body bytes");
        assert_eq!(frame.len(), HEADER_BYTES + 10);
        let (header, body) = decode(&frame).unwrap();
        assert_eq!(header.identity, identity());
        assert_eq!(header.body_len, 10);
        assert_eq!(header.frame_len(), frame.len() as u64);
        assert_eq!(body, b"body bytes");
        assert_eq!(decode_header(&frame[..HEADER_BYTES]).unwrap(), header);
        let empty = encode(&identity(), b"");
        assert_eq!(decode(&empty).unwrap().1, b"");
    }

    #[test]
    fn every_flipped_bit_of_a_frame_is_caught() {
        let frame = encode(&identity(), b"payload");
        for at in 0..frame.len() {
            for bit in 0..8 {
                let mut damaged = frame.clone();
                damaged[at] ^= 1 << bit;
                assert!(decode(&damaged).is_err(), "byte {at} bit {bit}");
            }
        }
    }

    #[test]
    fn what_is_not_a_frame_says_why() {
        let frame = encode(&identity(), b"payload");
        assert_eq!(decode_header(&frame[..10]), Err(FrameError::Short(10)));
        assert_eq!(decode_header(&[0u8; 64]), Err(FrameError::NoMagic));
        let mut bad = frame.clone();
        bad[20] ^= 1;
        assert_eq!(decode_header(&bad), Err(FrameError::HeaderCrc));
        let mut body = frame.clone();
        *body.last_mut().unwrap() ^= 1;
        assert_eq!(decode(&body), Err(FrameError::BodyCrc));
        assert!(matches!(
            decode(&frame[..frame.len() - 1]),
            Err(FrameError::BodyLength { expected: 7, .. })
        ));
        // A header of an unknown version, with a valid CRC.
        let mut v2 = frame.clone();
        v2[4] = 2;
        let crc = crc32fast::hash(&v2[..52]);
        v2[52..56].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_header(&v2), Err(FrameError::Version(2)));
    }
}
