//! The boot pack: the app images xtask bundles and the kernel embeds, in one flat byte layout.
//!
//! Layout (all integers little-endian):
//! ```text
//! offset 0   magic "EXOPACK1"            8 bytes
//!        8   entry count                 u32
//!        12  reserved, zero              u32
//!        16  entries, each a PackEntry   48 bytes: name [u8; 32] (NUL-padded), offset u64, length u64
//!        ..  file bytes, each starting on a DATA_ALIGN_BYTES boundary
//! ```
//! The kernel treats the pack as untrusted input: every offset and length is checked here.

/// First eight bytes of every pack.
pub const MAGIC: [u8; 8] = *b"EXOPACK1";
/// Longest app name, in bytes (the name field also holds a terminating NUL).
pub const NAME_MAX_BYTES: usize = 31;
/// Size of the fixed header before the entries.
pub const HEADER_BYTES: usize = 16;
/// Size of one encoded [`PackEntry`].
pub const ENTRY_BYTES: usize = 48;
/// Alignment of each file's bytes inside the pack.
pub const DATA_ALIGN_BYTES: usize = 16;

/// One directory entry, as laid out in the pack.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackEntry {
    /// App name, NUL-padded ASCII.
    pub name: [u8; 32],
    /// Where the file starts, from the start of the pack.
    pub offset: u64,
    /// File length.
    pub length_bytes: u64,
}

impl PackEntry {
    /// Encodes the entry in its on-pack form.
    pub fn to_bytes(&self) -> [u8; ENTRY_BYTES] {
        let mut bytes = [0u8; ENTRY_BYTES];
        bytes[..32].copy_from_slice(&self.name);
        bytes[32..40].copy_from_slice(&self.offset.to_le_bytes());
        bytes[40..48].copy_from_slice(&self.length_bytes.to_le_bytes());
        bytes
    }

    fn from_bytes(bytes: &[u8; ENTRY_BYTES]) -> PackEntry {
        let mut name = [0u8; 32];
        name.copy_from_slice(&bytes[..32]);
        PackEntry {
            name,
            offset: read_u64(&bytes[32..40]),
            length_bytes: read_u64(&bytes[40..48]),
        }
    }

    /// The name without its NUL padding.
    pub fn name(&self) -> &str {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(32);
        core::str::from_utf8(&self.name[..end]).unwrap_or("")
    }
}

/// Why bytes are not a valid pack, or a pack cannot be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackError {
    /// Shorter than the header or its entry table.
    Truncated,
    /// Does not start with [`MAGIC`].
    BadMagic,
    /// A file's offset or length points outside the pack.
    EntryOutOfBounds,
    /// A name is empty, too long, not printable ASCII, or used twice.
    BadName,
}

fn read_u64(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(word)
}

fn read_u32(bytes: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(word)
}

fn name_is_valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_MAX_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b',' && b != b'=')
}

/// A validated view of a pack.
#[derive(Clone, Copy, Debug)]
pub struct Pack<'a> {
    bytes: &'a [u8],
    entry_count: usize,
}

impl<'a> Pack<'a> {
    /// Checks the header, every entry and every name; afterwards lookups cannot fail.
    pub fn parse(bytes: &'a [u8]) -> Result<Pack<'a>, PackError> {
        if bytes.len() < HEADER_BYTES {
            return Err(PackError::Truncated);
        }
        if bytes[..8] != MAGIC {
            return Err(PackError::BadMagic);
        }
        let entry_count = read_u32(&bytes[8..12]) as usize;
        let table_end = entry_count
            .checked_mul(ENTRY_BYTES)
            .and_then(|table| table.checked_add(HEADER_BYTES))
            .ok_or(PackError::Truncated)?;
        if bytes.len() < table_end {
            return Err(PackError::Truncated);
        }
        let pack = Pack { bytes, entry_count };
        for (index, entry) in pack.entries().enumerate() {
            let end = entry
                .offset
                .checked_add(entry.length_bytes)
                .ok_or(PackError::EntryOutOfBounds)?;
            if entry.offset < table_end as u64 || end > bytes.len() as u64 {
                return Err(PackError::EntryOutOfBounds);
            }
            let name = entry.name();
            let padding_is_zero = entry.name[name.len()..].iter().all(|&b| b == 0);
            if !name_is_valid(name) || !padding_is_zero {
                return Err(PackError::BadName);
            }
            if pack
                .entries()
                .take(index)
                .any(|earlier| earlier.name() == name)
            {
                return Err(PackError::BadName);
            }
        }
        Ok(pack)
    }

    /// The directory, in pack order.
    pub fn entries(&self) -> impl Iterator<Item = PackEntry> + 'a {
        let bytes = self.bytes;
        (0..self.entry_count).map(move |index| {
            let start = HEADER_BYTES + index * ENTRY_BYTES;
            let mut entry = [0u8; ENTRY_BYTES];
            entry.copy_from_slice(&bytes[start..start + ENTRY_BYTES]);
            PackEntry::from_bytes(&entry)
        })
    }

    /// The bytes of the app called `name`.
    pub fn find(&self, name: &str) -> Option<&'a [u8]> {
        let bytes = self.bytes;
        self.entries()
            .find(|entry| entry.name() == name)
            .map(|entry| {
                // parse() checked offset + length against the pack's length.
                &bytes[entry.offset as usize..(entry.offset + entry.length_bytes) as usize]
            })
    }

    /// Number of apps in the pack.
    pub fn len(&self) -> usize {
        self.entry_count
    }

    /// True for a pack without apps.
    pub fn is_empty(&self) -> bool {
        self.entry_count == 0
    }
}

/// Writes a pack of `apps` (name, file bytes) into `sink`, in order, without allocating.
pub fn write_pack(apps: &[(&str, &[u8])], sink: &mut dyn FnMut(&[u8])) -> Result<(), PackError> {
    for (index, (name, _)) in apps.iter().enumerate() {
        if !name_is_valid(name) || apps[..index].iter().any(|(earlier, _)| earlier == name) {
            return Err(PackError::BadName);
        }
    }
    let entry_count = u32::try_from(apps.len()).map_err(|_| PackError::Truncated)?;
    sink(&MAGIC);
    sink(&entry_count.to_le_bytes());
    sink(&0u32.to_le_bytes());
    let mut offset = align_up(HEADER_BYTES + apps.len() * ENTRY_BYTES);
    for (name, file) in apps {
        let mut entry = PackEntry {
            name: [0; 32],
            offset: offset as u64,
            length_bytes: file.len() as u64,
        };
        entry.name[..name.len()].copy_from_slice(name.as_bytes());
        sink(&entry.to_bytes());
        offset = align_up(offset + file.len());
    }
    let mut written = HEADER_BYTES + apps.len() * ENTRY_BYTES;
    for (_, file) in apps {
        let padding = align_up(written) - written;
        sink(&[0u8; DATA_ALIGN_BYTES][..padding]);
        sink(file);
        written += padding + file.len();
    }
    Ok(())
}

const fn align_up(offset: usize) -> usize {
    offset.div_ceil(DATA_ALIGN_BYTES) * DATA_ALIGN_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack_of(apps: &[(&str, &[u8])]) -> Vec<u8> {
        let mut bytes = Vec::new();
        write_pack(apps, &mut |chunk| bytes.extend_from_slice(chunk)).unwrap();
        bytes
    }

    #[test]
    fn round_trip() {
        let bytes = pack_of(&[("hello", b"ELF one"), ("fault", b"x"), ("empty", b"")]);
        let pack = Pack::parse(&bytes).unwrap();
        assert_eq!(pack.len(), 3);
        assert_eq!(pack.find("hello"), Some(&b"ELF one"[..]));
        assert_eq!(pack.find("fault"), Some(&b"x"[..]));
        assert_eq!(pack.find("empty"), Some(&b""[..]));
        assert_eq!(pack.find("missing"), None);
        let names: Vec<_> = pack.entries().map(|e| e.name().to_string()).collect();
        assert_eq!(names, ["hello", "fault", "empty"]);
        for entry in pack.entries() {
            assert_eq!(entry.offset as usize % DATA_ALIGN_BYTES, 0);
        }
    }

    #[test]
    fn empty_pack() {
        let bytes = pack_of(&[]);
        assert_eq!(bytes.len(), HEADER_BYTES);
        assert!(Pack::parse(&bytes).unwrap().is_empty());
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(Pack::parse(b"EXOPACK").unwrap_err(), PackError::Truncated);
        assert_eq!(Pack::parse(&[0u8; 64]).unwrap_err(), PackError::BadMagic);
        let good = pack_of(&[("hello", b"abc")]);
        assert_eq!(
            Pack::parse(&good[..good.len() - 1]).unwrap_err(),
            PackError::EntryOutOfBounds
        );
        assert_eq!(Pack::parse(&good[..40]).unwrap_err(), PackError::Truncated);

        let mut huge_count = good.clone();
        huge_count[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Pack::parse(&huge_count).unwrap_err(), PackError::Truncated);

        let mut wrapping = good.clone();
        wrapping[HEADER_BYTES + 32..HEADER_BYTES + 40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            Pack::parse(&wrapping).unwrap_err(),
            PackError::EntryOutOfBounds
        );

        let mut into_header = good.clone();
        into_header[HEADER_BYTES + 32..HEADER_BYTES + 40].copy_from_slice(&0u64.to_le_bytes());
        assert_eq!(
            Pack::parse(&into_header).unwrap_err(),
            PackError::EntryOutOfBounds
        );

        let mut bad_name = good;
        bad_name[HEADER_BYTES] = b' ';
        assert_eq!(Pack::parse(&bad_name).unwrap_err(), PackError::BadName);
    }

    #[test]
    fn writer_refuses_bad_names() {
        let mut sink = |_: &[u8]| {};
        for name in ["", "a,b", "a=b", "with space", &"x".repeat(32)] {
            assert_eq!(
                write_pack(&[(name, b"")], &mut sink),
                Err(PackError::BadName)
            );
        }
        assert_eq!(
            write_pack(&[("same", b""), ("same", b"")], &mut sink),
            Err(PackError::BadName)
        );
        assert_eq!(write_pack(&[(&"x".repeat(31), b"")], &mut sink), Ok(()));
    }
}
