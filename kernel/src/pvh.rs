//! The PVH boot protocol's `hvm_start_info`: where QEMU puts the command line and memory map.
//!
//! The kernel reads the raw bytes from physical memory; decoding them here keeps the layout
//! knowledge testable on the host.

/// `hvm_start_info.magic`.
pub const START_INFO_MAGIC: u32 = 0x336e_c578;
/// Size of `hvm_start_info` up to and including the version-1 memory map fields.
pub const START_INFO_BYTES: usize = 56;
/// Size of one `hvm_memmap_table_entry`.
pub const MEMMAP_ENTRY_BYTES: usize = 24;

/// The fields of `hvm_start_info` the kernel uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartInfo {
    /// Protocol version; the memory map exists from version 1.
    pub version: u32,
    /// Physical address of the NUL-terminated command line, 0 if none.
    pub cmdline_address: u64,
    /// Physical address of the memory map.
    pub memmap_address: u64,
    /// Number of memory map entries.
    pub memmap_entries: u32,
}

/// Why the start info cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartInfoError {
    /// The magic number is wrong: not booted through PVH.
    BadMagic(u32),
    /// Version 0 has no memory map, and the kernel needs one.
    NoMemoryMap,
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

/// Decodes `hvm_start_info`.
pub fn parse_start_info(bytes: &[u8; START_INFO_BYTES]) -> Result<StartInfo, StartInfoError> {
    let magic = u32_at(bytes, 0);
    if magic != START_INFO_MAGIC {
        return Err(StartInfoError::BadMagic(magic));
    }
    let info = StartInfo {
        version: u32_at(bytes, 4),
        cmdline_address: u64_at(bytes, 24),
        memmap_address: u64_at(bytes, 40),
        memmap_entries: u32_at(bytes, 48),
    };
    if info.version < 1 || info.memmap_address == 0 {
        return Err(StartInfoError::NoMemoryMap);
    }
    Ok(info)
}

/// What a memory map region holds (E820 types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// Usable RAM.
    Ram,
    /// ACPI tables, reclaimable after they are read.
    AcpiReclaimable,
    /// Anything else: firmware, ACPI NVS, bad memory, holes.
    Reserved(u32),
}

/// One memory map entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    /// Physical start address.
    pub start: u64,
    /// Length.
    pub length_bytes: u64,
    /// Kind.
    pub kind: MemoryKind,
}

impl MemoryRegion {
    /// One past the last address, saturating.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.length_bytes)
    }
}

/// Decodes one `hvm_memmap_table_entry`.
pub fn parse_memmap_entry(bytes: &[u8; MEMMAP_ENTRY_BYTES]) -> MemoryRegion {
    let kind = match u32_at(bytes, 16) {
        1 => MemoryKind::Ram,
        3 => MemoryKind::AcpiReclaimable,
        other => MemoryKind::Reserved(other),
    };
    MemoryRegion {
        start: u64_at(bytes, 0),
        length_bytes: u64_at(bytes, 8),
        kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start_info(magic: u32, version: u32, memmap: u64) -> [u8; START_INFO_BYTES] {
        let mut bytes = [0u8; START_INFO_BYTES];
        bytes[0..4].copy_from_slice(&magic.to_le_bytes());
        bytes[4..8].copy_from_slice(&version.to_le_bytes());
        bytes[24..32].copy_from_slice(&0x9000u64.to_le_bytes());
        bytes[40..48].copy_from_slice(&memmap.to_le_bytes());
        bytes[48..52].copy_from_slice(&5u32.to_le_bytes());
        bytes
    }

    #[test]
    fn decodes_version_one() {
        let info = parse_start_info(&start_info(START_INFO_MAGIC, 1, 0x8000)).unwrap();
        assert_eq!(
            info,
            StartInfo {
                version: 1,
                cmdline_address: 0x9000,
                memmap_address: 0x8000,
                memmap_entries: 5
            }
        );
    }

    #[test]
    fn refuses_wrong_magic_and_version_zero() {
        assert_eq!(
            parse_start_info(&start_info(0x2bad_b002, 1, 0x8000)),
            Err(StartInfoError::BadMagic(0x2bad_b002))
        );
        assert_eq!(
            parse_start_info(&start_info(START_INFO_MAGIC, 0, 0x8000)),
            Err(StartInfoError::NoMemoryMap)
        );
    }

    #[test]
    fn memmap_entries() {
        let mut bytes = [0u8; MEMMAP_ENTRY_BYTES];
        bytes[0..8].copy_from_slice(&0x10_0000u64.to_le_bytes());
        bytes[8..16].copy_from_slice(&0x7ee_0000u64.to_le_bytes());
        bytes[16..20].copy_from_slice(&1u32.to_le_bytes());
        let region = parse_memmap_entry(&bytes);
        assert_eq!(region.kind, MemoryKind::Ram);
        assert_eq!(region.end(), 0x7fe_0000);
        bytes[16..20].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(parse_memmap_entry(&bytes).kind, MemoryKind::Reserved(2));
    }
}
