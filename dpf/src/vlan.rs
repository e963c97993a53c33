//! VLAN tags, defined once: which tag protocol identifiers mark a tag, how many stacked tags
//! are looked through, and the parser that looks through them. dpf's claims (what a filter's
//! pinned ethertypes mean on receive), the pcap front end's `vlan` and the kernel's transmit
//! check (what a frame carries on send) all use this module, so they cannot disagree about
//! what is a tag.

/// Tag protocol identifiers a VLAN tag may carry: 802.1Q, 802.1ad, and the older QinQ one.
pub const TAG_PROTOCOL_IDENTIFIERS: [u16; 3] = [0x8100, 0x88a8, 0x9100];
/// Most stacked VLAN tags looked through; a frame with more is malformed to the parser.
pub const MAX_TAGS: u16 = 8;
/// Bytes one VLAN tag adds before the ethertype.
pub const TAG_BYTES: u16 = 4;
/// Where the first ethertype (or tag protocol identifier) sits: after both MAC addresses.
pub const ETHERTYPE_OFFSET: usize = 12;

/// Whether `ethertype` marks a VLAN tag.
pub const fn is_tag(ethertype: u16) -> bool {
    let mut index = 0;
    while index < TAG_PROTOCOL_IDENTIFIERS.len() {
        if TAG_PROTOCOL_IDENTIFIERS[index] == ethertype {
            return true;
        }
        index += 1;
    }
    false
}

/// A frame seen through its VLAN tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Untagged<'a> {
    /// The ethertype after the last tag.
    pub ethertype: u16,
    /// Tags looked through.
    pub tags: u16,
    /// What follows that ethertype.
    pub payload: &'a [u8],
}

/// Why a frame could not be looked through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UntagError {
    /// The frame ends inside its addresses, a tag or an ethertype.
    Truncated,
    /// More than [`MAX_TAGS`] tags.
    TooManyTags,
}

/// Looks through the VLAN tags of the Ethernet frame `frame` (from its destination MAC).
pub fn untag(frame: &[u8]) -> Result<Untagged<'_>, UntagError> {
    let ethertype_at = |at: usize| match frame.get(at..at + 2) {
        Some(&[high, low]) => Ok(u16::from_be_bytes([high, low])),
        _ => Err(UntagError::Truncated),
    };
    let mut at = ETHERTYPE_OFFSET;
    let mut ethertype = ethertype_at(at)?;
    let mut tags = 0;
    while is_tag(ethertype) {
        if tags == MAX_TAGS {
            return Err(UntagError::TooManyTags);
        }
        tags += 1;
        at += usize::from(TAG_BYTES);
        ethertype = ethertype_at(at)?;
    }
    Ok(Untagged {
        ethertype,
        tags,
        payload: &frame[at + 2..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn frame(tags: &[u16], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut frame = alloc::vec![0xaa; 12];
        for &tag in tags {
            frame.extend_from_slice(&tag.to_be_bytes());
            frame.extend_from_slice(&[0, 7]);
        }
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    #[test]
    fn every_tag_and_every_stack_is_looked_through() {
        for stack in [
            &[][..],
            &[0x8100],
            &[0x88a8],
            &[0x9100],
            &[0x88a8, 0x8100],
            &[0x9100, 0x8100],
            &[0x8100, 0x8100, 0x8100],
            &[0x88a8, 0x9100, 0x8100, 0x88a8],
        ] {
            let bytes = frame(stack, 0x0800, b"ip");
            assert_eq!(
                untag(&bytes),
                Ok(Untagged {
                    ethertype: 0x0800,
                    tags: stack.len() as u16,
                    payload: b"ip",
                }),
                "{stack:x?}"
            );
        }
    }

    #[test]
    fn only_the_three_identifiers_are_tags() {
        let tags: Vec<u16> = (0..=u16::MAX)
            .filter(|&ethertype| is_tag(ethertype))
            .collect();
        assert_eq!(tags, [0x8100, 0x88a8, 0x9100]);
        // 802.1ah (I-tag) and MACsec are not VLAN tags: what follows them is not looked into.
        for other in [0x88e7, 0x88e5, 0x0800, 0x86dd] {
            assert_eq!(untag(&frame(&[], other, b"x")).unwrap().tags, 0);
        }
    }

    #[test]
    fn truncated_and_endless_stacks_are_errors() {
        let whole = frame(&[0x8100, 0x88a8], 0x0800, b"");
        for length in 0..whole.len() {
            assert_eq!(
                untag(&whole[..length]),
                Err(UntagError::Truncated),
                "{length}"
            );
        }
        assert!(untag(&whole).is_ok());
        let most = [0x8100; MAX_TAGS as usize];
        assert_eq!(untag(&frame(&most, 0x0800, b"")).unwrap().tags, MAX_TAGS);
        let one_more = [0x8100; MAX_TAGS as usize + 1];
        assert_eq!(
            untag(&frame(&one_more, 0x0800, b"")),
            Err(UntagError::TooManyTags)
        );
        // A cut tag: the identifier, then half its control word.
        let mut cut = frame(&[], 0x8100, &[0]);
        assert_eq!(untag(&cut), Err(UntagError::Truncated));
        cut.push(7);
        assert_eq!(untag(&cut), Err(UntagError::Truncated));
    }
}
