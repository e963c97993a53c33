//! An initramfs in the `newc` cpio format the Linux kernel unpacks, written directly (no
//! `cpio` binary, and device nodes without root): `/dev/console` for init's stdio and `/init`.
//!
//! Format (Documentation/driver-api/early-userspace/buffer-format.rst): each entry is the magic
//! `070701`, thirteen 8-digit hexadecimal fields, the NUL-terminated name padded to a multiple
//! of four bytes (counting the 110-byte header), then the data padded likewise. A
//! `TRAILER!!!` entry ends the archive.

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    Directory,
    /// A character device `major:minor`.
    CharDevice {
        major: u32,
        minor: u32,
    },
    /// A regular file with these contents.
    File(&'a [u8]),
    /// A symbolic link to this target.
    Symlink(&'a str),
}

/// One archive member.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    /// Path without a leading `/`.
    pub path: &'a str,
    /// Permission bits (e.g. 0o755); the type bits come from `kind`.
    pub permissions: u32,
    pub kind: Kind<'a>,
}

const MAGIC: &str = "070701";
const HEADER_BYTES: usize = 110;
const TRAILER: &str = "TRAILER!!!";

/// The archive of `entries`, each given inode numbers from 1 in order.
pub fn write(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut archive = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        append(&mut archive, index as u32 + 1, entry);
    }
    append(
        &mut archive,
        0,
        &Entry {
            path: TRAILER,
            permissions: 0,
            kind: Kind::File(&[]),
        },
    );
    archive
}

fn append(archive: &mut Vec<u8>, inode: u32, entry: &Entry<'_>) {
    let (type_bits, links, data, (rdev_major, rdev_minor)) = match entry.kind {
        Kind::Directory => (0o040000, 2, &[][..], (0, 0)),
        Kind::CharDevice { major, minor } => (0o020000, 1, &[][..], (major, minor)),
        Kind::File(data) => (0o100000, 1, data, (0, 0)),
        Kind::Symlink(target) => (0o120000, 1, target.as_bytes(), (0, 0)),
    };
    let mode = if entry.path == TRAILER {
        0
    } else {
        type_bits | (entry.permissions & 0o7777)
    };
    let fields = [
        inode,
        mode,
        0, // uid
        0, // gid
        links,
        0, // mtime: reproducible archives
        u32::try_from(data.len()).expect("initramfs members are far below 4 GiB"),
        0, // devmajor
        0, // devminor
        rdev_major,
        rdev_minor,
        entry.path.len() as u32 + 1,
        0, // check (unused by newc)
    ];
    let start = archive.len();
    archive.extend_from_slice(MAGIC.as_bytes());
    for field in fields {
        archive.extend_from_slice(format!("{field:08x}").as_bytes());
    }
    debug_assert_eq!(archive.len() - start, HEADER_BYTES);
    archive.extend_from_slice(entry.path.as_bytes());
    archive.push(0);
    pad(archive);
    archive.extend_from_slice(data);
    pad(archive);
}

fn pad(archive: &mut Vec<u8>) {
    while !archive.len().is_multiple_of(4) {
        archive.push(0);
    }
}

/// The benchmark's initramfs: `/dev/console` (5:1, which the kernel opens as init's stdio)
/// and the static `/init`.
pub fn for_init(init: &[u8]) -> Vec<u8> {
    write(&[
        Entry {
            path: "dev",
            permissions: 0o755,
            kind: Kind::Directory,
        },
        Entry {
            path: "dev/console",
            permissions: 0o600,
            kind: Kind::CharDevice { major: 5, minor: 1 },
        },
        Entry {
            path: "init",
            permissions: 0o755,
            kind: Kind::File(init),
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal newc reader: (name, mode, rdev major, rdev minor, data) per entry.
    fn read(mut archive: &[u8]) -> Vec<(String, u32, u32, u32, Vec<u8>)> {
        let mut entries = Vec::new();
        let mut offset = 0;
        loop {
            assert_eq!(&archive[..6], MAGIC.as_bytes(), "at {offset}");
            let field = |index: usize| {
                let text = std::str::from_utf8(&archive[6 + 8 * index..14 + 8 * index]).unwrap();
                u32::from_str_radix(text, 16).unwrap()
            };
            let (mode, size, major, minor, name_size) =
                (field(1), field(6), field(9), field(10), field(11));
            let name_end = HEADER_BYTES + name_size as usize;
            let name = std::str::from_utf8(&archive[HEADER_BYTES..name_end - 1])
                .unwrap()
                .to_string();
            assert_eq!(archive[name_end - 1], 0);
            let data_start = name_end.next_multiple_of(4);
            let data_end = data_start + size as usize;
            let next = data_end.next_multiple_of(4);
            let data = archive[data_start..data_end].to_vec();
            if name == TRAILER {
                assert_eq!(next, archive.len());
                return entries;
            }
            entries.push((name, mode, major, minor, data));
            offset += next;
            archive = &archive[next..];
        }
    }

    #[test]
    fn writes_what_a_newc_reader_reads_back() {
        let init = b"\x7fELF and some more bytes";
        let archive = for_init(init);
        assert_eq!(archive.len() % 4, 0);
        let entries = read(&archive);
        assert_eq!(
            entries,
            [
                ("dev".to_string(), 0o040755, 0, 0, vec![]),
                ("dev/console".to_string(), 0o020600, 5, 1, vec![]),
                ("init".to_string(), 0o100755, 0, 0, init.to_vec()),
            ]
        );
    }

    #[test]
    fn symlinks_carry_their_target_as_data() {
        let archive = write(&[Entry {
            path: "lib64/ld-linux-x86-64.so.2",
            permissions: 0o777,
            kind: Kind::Symlink("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
        }]);
        let entries = read(&archive);
        assert_eq!(entries[0].1, 0o120777);
        assert_eq!(entries[0].4, b"/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2");
    }

    #[test]
    fn header_matches_a_known_cpio_entry() {
        // `printf hi > a; echo a | cpio -o -H newc` with ino, mtime and ids zeroed.
        let archive = write(&[Entry {
            path: "a",
            permissions: 0o644,
            kind: Kind::File(b"hi"),
        }]);
        let expected = concat!(
            "070701", "00000001", "000081a4", "00000000", "00000000", "00000001", "00000000",
            "00000002", "00000000", "00000000", "00000000", "00000000", "00000002", "00000000",
            "a\0", // 110 + 2 bytes: already a multiple of four
            "hi\0\0", "070701",
        );
        assert_eq!(&archive[..expected.len()], expected.as_bytes());
    }
}
