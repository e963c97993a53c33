//! Responses prebuilt for sending as segments: the bytes of a response (head and body, kept
//! where they are, never copied) cut at [`CHUNK_BYTES`] boundaries, with the one's-complement
//! sum of every chunk computed once at start. A segment that carries exactly one chunk costs
//! only its header's sum combined with the stored one (RFC 1071's sums add).
use alloc::vec::Vec;
use smoltcp::wire::checksum;

/// Payload bytes of one chunk: a full segment at the usual MSS (1500 - 20 - 20).
pub const CHUNK_BYTES: usize = 1460;

/// One response, ready to send: its pieces in order (e.g. head and body) and each chunk's sum.
#[derive(Debug)]
pub struct Prebuilt {
    pieces: Vec<&'static [u8]>,
    length: usize,
    chunk_sums: Vec<u16>,
}

impl Prebuilt {
    /// The response made of `pieces`, with its chunk sums.
    pub fn new(pieces: Vec<&'static [u8]>) -> Prebuilt {
        let length = pieces.iter().map(|piece| piece.len()).sum();
        let mut prebuilt = Prebuilt {
            pieces,
            length,
            chunk_sums: Vec::new(),
        };
        let mut start = 0;
        while start < length {
            let end = (start + CHUNK_BYTES).min(length);
            let mut slices = [&[][..]; 2];
            let used = prebuilt.slices(start, end - start, &mut slices);
            let sum = sum_of(&slices[..used]);
            prebuilt.chunk_sums.push(sum);
            start = end;
        }
        prebuilt
    }

    /// Bytes in all.
    pub fn len(&self) -> usize {
        self.length
    }

    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// The slices covering `[offset, offset + length)` (at most two: a segment spans at most
    /// one boundary between pieces when no piece is shorter than a chunk; longer spans give
    /// `0`). Returns how many of `out` it filled.
    pub fn slices<'s>(&'s self, offset: usize, length: usize, out: &mut [&'s [u8]]) -> usize {
        let mut used = 0;
        let mut position = 0;
        let end = offset + length;
        for piece in &self.pieces {
            let (start, stop) = (position, position + piece.len());
            position = stop;
            if stop <= offset || start >= end || piece.is_empty() {
                continue;
            }
            if used == out.len() {
                return 0;
            }
            let from = offset.max(start) - start;
            let to = end.min(stop) - start;
            out[used] = &piece[from..to];
            used += 1;
        }
        used
    }

    /// The stored sum of the payload `[offset, offset + length)` if it is exactly one chunk.
    pub fn chunk_sum(&self, offset: usize, length: usize) -> Option<u16> {
        if !offset.is_multiple_of(CHUNK_BYTES) || length == 0 {
            return None;
        }
        let index = offset / CHUNK_BYTES;
        let full = (self.length - offset).min(CHUNK_BYTES);
        (length == full).then(|| self.chunk_sums[index])
    }

    /// The longest segment from `offset` that stays inside its chunk (so its sum is stored)
    /// and within `limit` bytes.
    pub fn segment_length(&self, offset: usize, limit: usize) -> usize {
        let chunk_end = (offset / CHUNK_BYTES + 1) * CHUNK_BYTES;
        chunk_end.min(self.length).saturating_sub(offset).min(limit)
    }
}

/// The one's-complement sum (not complemented) of `slices` read as one run of bytes: a slice
/// that starts at an odd position of the run has its sum's bytes swapped (RFC 1071, 2(B)).
pub fn sum_of(slices: &[&[u8]]) -> u16 {
    let mut sums = [0u16; 4];
    let mut position = 0usize;
    let mut total = 0u16;
    for (index, slice) in slices.iter().enumerate() {
        let sum = checksum::data(slice);
        let sum = if position % 2 == 1 {
            sum.swap_bytes()
        } else {
            sum
        };
        position += slice.len();
        if index < sums.len() {
            sums[index] = sum;
        } else {
            total = checksum::combine(&[total, sum]);
        }
    }
    checksum::combine(&[total, sums[0], sums[1], sums[2], sums[3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::boxed::Box;
    use alloc::vec;

    fn leak(bytes: Vec<u8>) -> &'static [u8] {
        Box::leak(bytes.into_boxed_slice())
    }

    #[test]
    fn split_sums_equal_the_sum_of_the_whole() {
        let bytes: Vec<u8> = (0..5000u32).map(|i| (i * 7 + i / 3) as u8).collect();
        let whole = checksum::data(&bytes);
        for cut in [0, 1, 2, 3, 1459, 1460, 1461, 4999] {
            assert_eq!(
                sum_of(&[&bytes[..cut], &bytes[cut..]]),
                whole,
                "cut at {cut}"
            );
        }
        assert_eq!(
            sum_of(&[
                &bytes[..1],
                &bytes[1..4],
                &bytes[4..9],
                &bytes[9..11],
                &bytes[11..]
            ]),
            whole
        );
    }

    #[test]
    fn chunks_are_stored_for_every_full_or_final_segment() {
        let head = leak(b"HTTP/1.1 200 OK\r\nContent-Length: 4000\r\n\r\n".to_vec());
        let body = leak((0..4000u32).map(|i| (i ^ (i >> 5)) as u8).collect());
        let response = Prebuilt::new(vec![head, body]);
        let mut whole = head.to_vec();
        whole.extend_from_slice(body);
        assert_eq!(response.len(), whole.len());
        let mut offset = 0;
        while offset < whole.len() {
            let length = response.segment_length(offset, 1460);
            let stored = response.chunk_sum(offset, length).unwrap();
            assert_eq!(stored, checksum::data(&whole[offset..offset + length]));
            let mut slices = [&[][..]; 2];
            let used = response.slices(offset, length, &mut slices);
            let joined: Vec<u8> = slices[..used].concat();
            assert_eq!(joined, &whole[offset..offset + length]);
            offset += length;
        }
        // Not a chunk: no stored sum.
        assert_eq!(response.chunk_sum(1, 100), None);
        assert_eq!(response.chunk_sum(0, 100), None);
        // A small MSS: shorter segments, still inside their chunk.
        assert_eq!(response.segment_length(1400, 536), 60);
    }
}
