//! Scanning a segment's frame headers without reading its bodies: what
//! start-up verification (`verify.rs`) and repair (`repair.rs`) learn from
//! the segments.
//!
//! A scan walks header to header: it reads a window of the file, decodes the
//! header at the current position and jumps by the frame's length, so a
//! segment of large sets costs one small read per set and a segment of small
//! ones a few large sequential reads. Bytes that are not a frame (a hole a
//! failed append left, damage, data written before frames existed) are
//! skipped by searching for the next magic whose header CRC holds, and
//! reported as skipped ranges. A frame whose header is whole but whose body
//! runs past the end of the file is reported as truncated.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::frame::{self, FrameHeader, HEADER_BYTES, MAGIC};

/// Bytes read at a time.
const WINDOW: usize = 1 << 20;

/// One frame found by a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedFrame {
    /// Segment id.
    pub segment: u64,
    /// Where the frame starts in the segment.
    pub position: u64,
    /// Its (CRC-checked) header; the body is not read.
    pub header: FrameHeader,
}

/// What a scan of one segment found.
#[derive(Debug, Clone, Default)]
pub struct SegmentScan {
    /// Segment id.
    pub segment: u64,
    /// The file's length.
    pub len: u64,
    /// Whole frames, in file order.
    pub frames: Vec<ScannedFrame>,
    /// `[start, end)` ranges that held no frame.
    pub skipped: Vec<(u64, u64)>,
    /// A frame whose body runs past the end of the file.
    pub truncated: Option<ScannedFrame>,
}

/// A window of the file.
struct Window<'a> {
    file: &'a File,
    len: u64,
    start: u64,
    bytes: Vec<u8>,
}

impl Window<'_> {
    /// The bytes at `at..at + n` (fewer at the end of the file).
    fn at(&mut self, at: u64, n: usize) -> std::io::Result<&[u8]> {
        let end = (at + n as u64).min(self.len);
        let loaded_end = self.start + self.bytes.len() as u64;
        if at < self.start || end > loaded_end {
            let want = (WINDOW.max(n) as u64).min(self.len - at) as usize;
            self.bytes.resize(want, 0);
            self.file.read_exact_at(&mut self.bytes, at)?;
            self.start = at;
        }
        let from = (at - self.start) as usize;
        Ok(&self.bytes[from..from + (end - at) as usize])
    }
}

/// Scans the frame headers of segment `segment` (`file`).
pub fn scan_file(segment: u64, file: &File) -> std::io::Result<SegmentScan> {
    let len = file.metadata()?.len();
    let mut window = Window {
        file,
        len,
        start: 0,
        bytes: Vec::new(),
    };
    let mut scan = SegmentScan {
        segment,
        len,
        ..SegmentScan::default()
    };
    let mut at = 0u64;
    while at < len {
        match frame::decode_header(window.at(at, HEADER_BYTES)?) {
            Ok(header) => {
                let found = ScannedFrame {
                    segment,
                    position: at,
                    header,
                };
                if at + header.frame_len() > len {
                    scan.truncated = Some(found);
                    break;
                }
                scan.frames.push(found);
                at += header.frame_len();
            }
            Err(_) => {
                let next = next_frame(&mut window, at + 1)?;
                scan.skipped.push((at, next));
                at = next;
            }
        }
    }
    Ok(scan)
}

/// The position of the next valid frame header at or after `from` (the end
/// of the file when there is none).
fn next_frame(window: &mut Window<'_>, mut from: u64) -> std::io::Result<u64> {
    let len = window.len;
    while from < len {
        let chunk = window.at(from, WINDOW)?.to_vec();
        let mut i = 0;
        while let Some(found) = find(&chunk[i..], &MAGIC) {
            let candidate = from + (i + found) as u64;
            if frame::decode_header(window.at(candidate, HEADER_BYTES)?).is_ok() {
                return Ok(candidate);
            }
            i += found + 1;
        }
        if chunk.len() < MAGIC.len() {
            break;
        }
        // Step so a magic across the chunk's end is seen in the next one.
        from += (chunk.len() - (MAGIC.len() - 1)) as u64;
    }
    Ok(len)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::storage::frame::SetIdentity;

    fn identity(first_offset: u64) -> SetIdentity {
        SetIdentity {
            topic_id: 3,
            first_offset,
            count: 1,
            bytes: 1,
            publish_ms: 0,
        }
    }

    #[test]
    fn a_scan_finds_every_frame_skips_damage_and_names_a_truncated_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let mut bytes = Vec::new();
        let mut starts = Vec::new();
        for i in 0..5u64 {
            if i == 2 {
                bytes.extend_from_slice(&[0u8; 100]); // a hole
            }
            starts.push(bytes.len() as u64);
            let body = vec![i as u8; 10 + (i as usize) * 3000];
            bytes.extend_from_slice(&frame::encode(&identity(i), &body));
        }
        // Damage the header of frame 3, cut frame 4 short.
        bytes[starts[3] as usize + 17] ^= 0x40;
        bytes.truncate(bytes.len() - 5);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&bytes)
            .unwrap();
        let scan = scan_file(9, &File::open(&path).unwrap()).unwrap();
        let found: Vec<u64> = scan
            .frames
            .iter()
            .map(|f| f.header.identity.first_offset)
            .collect();
        assert_eq!(found, vec![0, 1, 2]);
        assert_eq!(scan.frames[2].position, starts[2]);
        assert_eq!(scan.skipped.len(), 2, "{:?}", scan.skipped);
        assert_eq!(scan.skipped[0], (starts[2] - 100, starts[2]));
        assert_eq!(scan.skipped[1], (starts[3], starts[4]));
        let truncated = scan.truncated.unwrap();
        assert_eq!(
            (truncated.position, truncated.header.identity.first_offset),
            (starts[4], 4)
        );
        assert_eq!(scan.len, bytes.len() as u64);
    }
}
