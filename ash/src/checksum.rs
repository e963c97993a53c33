//! The Internet checksum (RFC 1071): sums, the copy that sums in the same pass, and the
//! incremental update of RFC 1624, shared by the interpreter and the tests of libnet's stock handlers.
#![forbid(unsafe_code)]

/// Folds a 64-bit partial sum to 16 bits with end-around carry.
pub const fn fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Ones'-complement addition of two partial sums, folded.
pub const fn ones_add(a: u64, b: u64) -> u16 {
    // a + b may carry out of 64 bits: fold each first.
    fold(fold(a) as u64 + fold(b) as u64)
}

/// Adds the 8-byte big-endian `chunk` to `sum` as two 32-bit words: folded, a sum of 32-bit
/// words is the sum of their 16-bit halves (end-around carry), with a quarter of the adds.
#[inline(always)]
fn add_chunk(sum: u64, chunk: u64) -> u64 {
    sum + (chunk >> 32) + (chunk & 0xffff_ffff)
}

/// The sum of the bytes after the last whole 8-byte chunk, as 16-bit words (an odd last byte
/// padded with zero).
fn add_tail(mut sum: u64, tail: &[u8]) -> u64 {
    let mut words = tail.chunks_exact(2);
    for word in &mut words {
        sum += u64::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

fn rotate_if_odd(sum: u64, start_odd: bool) -> u64 {
    if start_odd {
        // A stream that starts at an odd offset has every byte in the other half of its word.
        u64::from(fold(sum).rotate_left(8))
    } else {
        sum
    }
}

/// The partial sum of `bytes` as big-endian 16-bit words, an odd last byte padded with zero.
/// `start_odd` says whether `bytes` begins at an odd offset of the checksummed stream.
/// (At most 2^32 bytes: the 64-bit accumulator cannot overflow.)
pub fn partial(bytes: &[u8], start_odd: bool) -> u64 {
    let mut sum: u64 = 0;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        sum = add_chunk(sum, u64::from_be_bytes(word));
    }
    rotate_if_odd(add_tail(sum, chunks.remainder()), start_odd)
}

/// The 16-bit ones'-complement sum of `bytes` (not complemented).
pub fn sum(bytes: &[u8]) -> u16 {
    fold(partial(bytes, false))
}

/// Copies `source` into `destination` (same length) and returns their partial sum, touching
/// each byte once: each 8-byte chunk is loaded once, stored and added. `start_odd` as for
/// [`partial`].
pub fn copy_and_partial(source: &[u8], destination: &mut [u8], start_odd: bool) -> u64 {
    let length = source.len().min(destination.len());
    let (source, destination) = (&source[..length], &mut destination[..length]);
    let mut sum: u64 = 0;
    let mut from = source.chunks_exact(8);
    let mut to = destination.chunks_exact_mut(8);
    for (chunk, out) in (&mut from).zip(&mut to) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        out.copy_from_slice(&word);
        sum = add_chunk(sum, u64::from_be_bytes(word));
    }
    let tail = from.remainder();
    to.into_remainder().copy_from_slice(tail);
    rotate_if_odd(add_tail(sum, tail), start_odd)
}

/// RFC 1624, equation 3: the checksum field `old_checksum` after one 16-bit word of the
/// covered data changed from `old_word` to `new_word`: `HC' = ~(~HC + ~m + m')`.
pub const fn update(old_checksum: u16, old_word: u16, new_word: u16) -> u16 {
    !fold(!old_checksum as u64 + !old_word as u64 + new_word as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071's worked example: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
    #[test]
    fn rfc1071_example() {
        assert_eq!(
            sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }

    /// The 16-bit-word definition, one word at a time, against the 8-byte chunked sums.
    #[test]
    fn chunked_sums_equal_the_definition() {
        let data: alloc::vec::Vec<u8> = (0..600u32).map(|i| (i * 97 + 13) as u8).collect();
        for len in 0..data.len() {
            let bytes = &data[..len];
            let mut reference: u64 = 0;
            for (index, byte) in bytes.iter().enumerate() {
                reference += u64::from(*byte) << if index % 2 == 0 { 8 } else { 0 };
            }
            assert_eq!(sum(bytes), fold(reference), "length {len}");
            let mut copy = alloc::vec![0u8; len];
            assert_eq!(
                fold(copy_and_partial(bytes, &mut copy, false)),
                fold(reference)
            );
            assert_eq!(copy, bytes);
        }
    }

    #[test]
    fn odd_pieces_sum_like_the_whole() {
        let data: alloc::vec::Vec<u8> = (0..=250u8).map(|b| b.wrapping_mul(37)).collect();
        for cut in 0..data.len() {
            let (a, b) = data.split_at(cut);
            let joined = ones_add(partial(a, false), partial(b, cut % 2 == 1));
            assert_eq!(joined, sum(&data), "cut at {cut}");
        }
    }

    #[test]
    fn copy_sums_what_it_copies() {
        let data: alloc::vec::Vec<u8> = (0..99u8).collect();
        let mut out = [0u8; 99];
        let copied = fold(copy_and_partial(&data, &mut out, false));
        assert_eq!(&out[..], &data[..]);
        assert_eq!(copied, sum(&data));
    }

    /// The incremental update equals recomputing, for every changed word value tried,
    /// including the RFC 1624 case of a sum that becomes 0xffff vs 0x0000.
    #[test]
    fn incremental_update_matches_recompute() {
        let mut data = [0x45u8, 0x00, 0x00, 0x54, 0x12, 0x34, 0x00, 0x00, 0x40, 0x01];
        for new in [0u16, 1, 0x0800, 0xffff, 0x1234, 0xfffe] {
            let checksum = !sum(&data);
            let old = u16::from_be_bytes([data[4], data[5]]);
            data[4..6].copy_from_slice(&new.to_be_bytes());
            let recomputed = !sum(&data);
            let updated = update(checksum, old, new);
            // 0x0000 and 0xffff are the same ones'-complement value; a verifier accepts both.
            assert!(
                updated == recomputed
                    || (updated | recomputed == 0xffff && updated & recomputed == 0),
                "{old:#x} -> {new:#x}: {updated:#x} vs {recomputed:#x}"
            );
            assert_eq!(fold(u64::from(sum(&data)) + u64::from(updated)), 0xffff);
        }
    }
}
