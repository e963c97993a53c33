//! Reading an app's static ELF64 image: which bytes go where, with which access.
//!
//! The image comes from the boot pack, and later from apps themselves, so it is untrusted:
//! every header field is bounds-checked and every segment must land in the user half, on
//! pages no other segment uses, before the loader touches a page table.

use alloc::vec::Vec;

/// Page size segments are checked against.
const PAGE_SIZE_BYTES: u64 = 4096;
const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;
const ET_EXEC: u16 = 2;
const EM_X86_64: u16 = 62;
const ELF_HEADER_BYTES: usize = 64;
const PROGRAM_HEADER_BYTES: usize = 56;
/// More loadable segments than any sane static app has; bounds the loader's work.
const SEGMENTS_MAX: usize = 16;

/// Access a mapping grants to user code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub execute: bool,
}

impl Access {
    /// Read-only data.
    pub const READ: Access = Access {
        read: true,
        write: false,
        execute: false,
    };
    /// Read-write data.
    pub const READ_WRITE: Access = Access {
        read: true,
        write: true,
        execute: false,
    };

    /// Whether this access includes everything `needed` asks for.
    pub const fn covers(self, needed: Access) -> bool {
        (self.read || !needed.read)
            && (self.write || !needed.write)
            && (self.execute || !needed.execute)
    }
}

/// One `PT_LOAD` segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadSegment {
    /// Where the segment's first byte goes.
    pub virtual_address: u64,
    /// Bytes in memory; those past `file_size_bytes` are zero.
    pub memory_size_bytes: u64,
    /// Where the initialised bytes start in the image.
    pub file_offset: u64,
    /// How many bytes come from the image.
    pub file_size_bytes: u64,
    /// Access user code gets.
    pub access: Access,
}

impl LoadSegment {
    /// First page-aligned address the segment touches.
    pub const fn page_start(&self) -> u64 {
        self.virtual_address & !(PAGE_SIZE_BYTES - 1)
    }

    /// One past the last page-aligned address the segment touches.
    pub const fn page_end(&self) -> u64 {
        (self.virtual_address + self.memory_size_bytes).div_ceil(PAGE_SIZE_BYTES) * PAGE_SIZE_BYTES
    }
}

/// A checked image: every segment lies in the allowed range and inside the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfImage {
    /// First instruction.
    pub entry: u64,
    /// Loadable segments, sorted by address, on disjoint pages.
    pub segments: Vec<LoadSegment>,
}

/// Why an image was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Shorter than its headers say.
    Truncated,
    /// Not `\x7fELF`, 64-bit, little-endian, version 1.
    NotElf64,
    /// Not a static executable (`ET_EXEC`) for x86_64.
    WrongKind,
    /// Program header entries of an unexpected size.
    BadProgramHeaders,
    /// No loadable segment, or more than the loader accepts.
    BadSegmentCount,
    /// File bytes beyond the file, or more file bytes than memory bytes.
    SegmentOutsideFile,
    /// A segment reaches outside the allowed virtual range.
    SegmentOutsideRange,
    /// Two segments share a page.
    SegmentsOverlap,
    /// The entry point is not in an executable segment.
    BadEntry,
}

fn u16_at(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes([bytes[offset], bytes[offset + 1]])
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(word)
}

/// Parses `bytes` and checks every segment lies in `[range_start, range_end)`.
pub fn parse(bytes: &[u8], range_start: u64, range_end: u64) -> Result<ElfImage, ElfError> {
    if bytes.len() < ELF_HEADER_BYTES {
        return Err(ElfError::Truncated);
    }
    // Magic, class 2 (64-bit), data 1 (little-endian), version 1.
    if bytes[..4] != *b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 || bytes[6] != 1 {
        return Err(ElfError::NotElf64);
    }
    if u16_at(bytes, 16) != ET_EXEC || u16_at(bytes, 18) != EM_X86_64 {
        return Err(ElfError::WrongKind);
    }
    let entry = u64_at(bytes, 24);
    let table_offset = u64_at(bytes, 32);
    let entry_size = usize::from(u16_at(bytes, 54));
    let entry_count = usize::from(u16_at(bytes, 56));
    if entry_size != PROGRAM_HEADER_BYTES {
        return Err(ElfError::BadProgramHeaders);
    }
    let table_end = (entry_count * PROGRAM_HEADER_BYTES) as u64;
    let table_end = table_offset
        .checked_add(table_end)
        .ok_or(ElfError::Truncated)?;
    if table_end > bytes.len() as u64 {
        return Err(ElfError::Truncated);
    }

    let mut segments = Vec::new();
    for index in 0..entry_count {
        let header = table_offset as usize + index * PROGRAM_HEADER_BYTES;
        if u32_at(bytes, header) != PT_LOAD {
            continue;
        }
        let flags = u32_at(bytes, header + 4);
        let segment = LoadSegment {
            file_offset: u64_at(bytes, header + 8),
            virtual_address: u64_at(bytes, header + 16),
            file_size_bytes: u64_at(bytes, header + 32),
            memory_size_bytes: u64_at(bytes, header + 40),
            access: Access {
                read: flags & PF_R != 0,
                write: flags & PF_W != 0,
                execute: flags & PF_X != 0,
            },
        };
        if segment.memory_size_bytes == 0 {
            continue;
        }
        let file_end = segment.file_offset.checked_add(segment.file_size_bytes);
        if file_end.is_none_or(|end| end > bytes.len() as u64)
            || segment.file_size_bytes > segment.memory_size_bytes
        {
            return Err(ElfError::SegmentOutsideFile);
        }
        let memory_end = segment
            .virtual_address
            .checked_add(segment.memory_size_bytes)
            .ok_or(ElfError::SegmentOutsideRange)?;
        if segment.virtual_address < range_start
            || memory_end.div_ceil(PAGE_SIZE_BYTES) * PAGE_SIZE_BYTES > range_end
        {
            return Err(ElfError::SegmentOutsideRange);
        }
        if segments.len() == SEGMENTS_MAX {
            return Err(ElfError::BadSegmentCount);
        }
        segments.push(segment);
    }
    if segments.is_empty() {
        return Err(ElfError::BadSegmentCount);
    }
    segments.sort_by_key(|segment| segment.virtual_address);
    if segments
        .windows(2)
        .any(|pair| pair[0].page_end() > pair[1].page_start())
    {
        return Err(ElfError::SegmentsOverlap);
    }
    let entry_is_code = segments.iter().any(|segment| {
        segment.access.execute
            && (segment.virtual_address..segment.virtual_address + segment.memory_size_bytes)
                .contains(&entry)
    });
    if !entry_is_code {
        return Err(ElfError::BadEntry);
    }
    Ok(ElfImage { entry, segments })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0x80_0020_0000;
    const RANGE: (u64, u64) = (0x80_0000_0000, 0x8000_0000_0000);

    /// Builds a minimal image: header, program headers, then `file` bytes per segment.
    fn image(entry: u64, segments: &[(u64, u64, &[u8], u32)]) -> Vec<u8> {
        let table = ELF_HEADER_BYTES;
        let mut data_offset = table + segments.len() * PROGRAM_HEADER_BYTES;
        let mut bytes = vec![0u8; data_offset];
        bytes[..4].copy_from_slice(b"\x7fELF");
        bytes[4] = 2;
        bytes[5] = 1;
        bytes[6] = 1;
        bytes[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        bytes[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        bytes[24..32].copy_from_slice(&entry.to_le_bytes());
        bytes[32..40].copy_from_slice(&(table as u64).to_le_bytes());
        bytes[54..56].copy_from_slice(&(PROGRAM_HEADER_BYTES as u16).to_le_bytes());
        bytes[56..58].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        for (index, (address, memory_size, file, flags)) in segments.iter().enumerate() {
            let header = table + index * PROGRAM_HEADER_BYTES;
            bytes[header..header + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
            bytes[header + 4..header + 8].copy_from_slice(&flags.to_le_bytes());
            bytes[header + 8..header + 16].copy_from_slice(&(data_offset as u64).to_le_bytes());
            bytes[header + 16..header + 24].copy_from_slice(&address.to_le_bytes());
            bytes[header + 32..header + 40].copy_from_slice(&(file.len() as u64).to_le_bytes());
            bytes[header + 40..header + 48].copy_from_slice(&memory_size.to_le_bytes());
            data_offset += file.len();
        }
        for (_, _, file, _) in segments {
            bytes.extend_from_slice(file);
        }
        bytes
    }

    fn parse_user(bytes: &[u8]) -> Result<ElfImage, ElfError> {
        parse(bytes, RANGE.0, RANGE.1)
    }

    #[test]
    fn text_and_data() {
        let bytes = image(
            BASE + 4,
            &[
                (BASE, 10, b"0123456789", PF_R | PF_X),
                (BASE + 0x1000, 0x2000, b"data", PF_R | PF_W),
            ],
        );
        let elf = parse_user(&bytes).unwrap();
        assert_eq!(elf.entry, BASE + 4);
        assert_eq!(elf.segments.len(), 2);
        let text = elf.segments[0];
        assert_eq!(
            text.access,
            Access {
                read: true,
                write: false,
                execute: true
            }
        );
        let start = text.file_offset as usize;
        assert_eq!(&bytes[start..start + 10], b"0123456789");
        assert_eq!(elf.segments[1].page_end(), BASE + 0x3000);
        assert_eq!(elf.segments[1].access, Access::READ_WRITE);
    }

    #[test]
    fn refuses_segments_outside_the_user_half() {
        for address in [0x20_0000, RANGE.1 - 0x1000, u64::MAX - 4] {
            let bytes = image(address, &[(address, 0x2000, b"", PF_R | PF_X)]);
            assert_eq!(
                parse_user(&bytes),
                Err(ElfError::SegmentOutsideRange),
                "{address:#x}"
            );
        }
    }

    #[test]
    fn refuses_overlapping_pages() {
        let bytes = image(
            BASE,
            &[
                (BASE, 0x10, b"", PF_R | PF_X),
                (BASE + 0x800, 0x10, b"", PF_R | PF_W),
            ],
        );
        assert_eq!(parse_user(&bytes), Err(ElfError::SegmentsOverlap));
    }

    #[test]
    fn refuses_entry_outside_code() {
        let bytes = image(
            BASE + 0x1000,
            &[
                (BASE, 0x10, b"", PF_R | PF_X),
                (BASE + 0x1000, 0x10, b"", PF_R | PF_W),
            ],
        );
        assert_eq!(parse_user(&bytes), Err(ElfError::BadEntry));
    }

    #[test]
    fn refuses_malformed_files() {
        assert_eq!(parse_user(b"\x7fELF"), Err(ElfError::Truncated));
        assert_eq!(parse_user(&[0u8; 64]), Err(ElfError::NotElf64));
        let good = image(BASE, &[(BASE, 0x10, b"abcd", PF_R | PF_X)]);

        let mut kind = good.clone();
        kind[16] = 3; // ET_DYN: a PIE needs relocating, which the loader does not do
        assert_eq!(parse_user(&kind), Err(ElfError::WrongKind));

        let mut table = good.clone();
        table[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(parse_user(&table), Err(ElfError::Truncated));

        assert_eq!(
            parse_user(&good[..good.len() - 1]),
            Err(ElfError::SegmentOutsideFile)
        );

        let bigger_file = image(BASE, &[(BASE, 2, b"abcd", PF_R | PF_X)]);
        assert_eq!(parse_user(&bigger_file), Err(ElfError::SegmentOutsideFile));

        let none = image(BASE, &[]);
        assert_eq!(parse_user(&none), Err(ElfError::BadSegmentCount));
    }
}
