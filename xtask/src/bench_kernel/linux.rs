//! Debian's Linux kernel for the benchmark's Linux side: the current bookworm
//! `linux-image-6.1.*-amd64` package, downloaded with `apt-get download` into
//! `target/bench/linux/` and unpacked with `dpkg-deb -x` (nothing is installed into the
//! system), and the ELF `vmlinux` taken out of its bzImage the way the kernel's
//! `scripts/extract-vmlinux` does. QEMU boots that ELF through its PVH note with `-kernel`.
use crate::Result;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The unpacked kernel.
#[derive(Debug)]
pub struct LinuxKernel {
    /// `linux-image-6.1.0-N-amd64`.
    pub package: String,
    /// The ELF vmlinux to pass to `-kernel`.
    pub vmlinux: PathBuf,
}

/// Downloads, unpacks and extracts the kernel into `directory`, or reuses an earlier run's.
pub fn prepare(directory: &Path) -> Result<LinuxKernel> {
    fs::create_dir_all(directory)?;
    let package = choose_package()?;
    let vmlinux = directory.join(format!("vmlinux-{package}"));
    if vmlinux.exists() {
        return Ok(LinuxKernel { package, vmlinux });
    }
    let deb = match find_deb(directory, &package)? {
        Some(deb) => deb,
        None => {
            eprintln!("xtask: downloading {package} into {}", directory.display());
            let status = Command::new("apt-get")
                .args(["download", &package])
                .current_dir(directory)
                .status()
                .map_err(|error| format!("running apt-get download: {error}"))?;
            if !status.success() {
                return Err(format!("apt-get download {package} failed ({status})").into());
            }
            find_deb(directory, &package)?
                .ok_or_else(|| format!("apt-get download left no {package}_*.deb"))?
        }
    };
    let root = directory.join(format!("root-{package}"));
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&root)
        .status()
        .map_err(|error| format!("running dpkg-deb: {error}"))?;
    if !status.success() {
        return Err(format!("dpkg-deb -x {} failed ({status})", deb.display()).into());
    }
    let image_path = fs::read_dir(root.join("boot"))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .find(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("vmlinuz-"))
        })
        .ok_or_else(|| format!("no boot/vmlinuz-* in {}", root.display()))?;
    let image = fs::read(&image_path)?;
    let (compression, payload) =
        bzimage_payload(&image).map_err(|error| format!("{}: {error}", image_path.display()))?;
    let elf = decompress(compression, payload)?;
    check_pvh_elf(&elf).map_err(|error| format!("vmlinux from {package}: {error}"))?;
    let partial = vmlinux.with_extension("partial");
    fs::write(&partial, &elf)?;
    fs::rename(&partial, &vmlinux)?;
    eprintln!(
        "xtask: extracted {} ({} MiB, {compression:?}) from {}",
        vmlinux.display(),
        elf.len() >> 20,
        image_path.display()
    );
    Ok(LinuxKernel { package, vmlinux })
}

fn find_deb(directory: &Path, package: &str) -> Result<Option<PathBuf>> {
    let prefix = format!("{package}_");
    Ok(fs::read_dir(directory)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .find(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(&prefix) && name.ends_with(".deb"))
        }))
}

/// The package to use: what bookworm's `linux-image-amd64` depends on when that is a 6.1
/// kernel, else the 6.1 image with the highest ABI number apt knows. Runs `apt-get update`
/// once if apt knows none.
fn choose_package() -> Result<String> {
    for attempt in 0..2 {
        let depends = apt_cache(&["depends", "linux-image-amd64"]);
        if let Some(package) = package_from_depends(&depends) {
            return Ok(package);
        }
        let search = apt_cache(&[
            "search",
            "--names-only",
            r"^linux-image-6\.1\.0-[0-9]+-amd64$",
        ]);
        if let Some(package) = newest_from_search(&search) {
            return Ok(package);
        }
        if attempt == 0 {
            eprintln!("xtask: apt knows no linux-image-6.1.*-amd64; running apt-get update");
            apt_get_update()?;
        }
    }
    Err("no linux-image-6.1.*-amd64 package in apt's lists (is this Debian bookworm?)".into())
}

fn apt_cache(arguments: &[&str]) -> String {
    Command::new("apt-cache")
        .args(arguments)
        .stderr(Stdio::null())
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default()
}

fn apt_get_update() -> Result<()> {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0");
    let mut command = if is_root {
        Command::new("apt-get")
    } else {
        let mut sudo = Command::new("sudo");
        sudo.arg("apt-get");
        sudo
    };
    let status = command.arg("update").status()?;
    if !status.success() {
        return Err(format!("apt-get update failed ({status})").into());
    }
    Ok(())
}

fn is_amd64_6_1_image(name: &str) -> Option<u32> {
    name.strip_prefix("linux-image-6.1.0-")?
        .strip_suffix("-amd64")?
        .parse()
        .ok()
}

/// `  Depends: linux-image-6.1.0-56-amd64` in `apt-cache depends linux-image-amd64`.
fn package_from_depends(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|name| is_amd64_6_1_image(name).is_some())
        .map(str::to_string)
}

/// The highest ABI among `linux-image-6.1.0-N-amd64 - description` lines.
fn newest_from_search(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter_map(|name| Some((is_amd64_6_1_image(name)?, name)))
        .max()
        .map(|(_, name)| name.to_string())
}

/// How the kernel proper is compressed inside the bzImage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Xz,
    Zstd,
    Gzip,
}

impl Compression {
    fn from_magic(payload: &[u8]) -> Option<Compression> {
        if payload.starts_with(b"\xfd7zXZ\x00") {
            Some(Compression::Xz)
        } else if payload.starts_with(b"\x28\xb5\x2f\xfd") {
            Some(Compression::Zstd)
        } else if payload.starts_with(b"\x1f\x8b") {
            Some(Compression::Gzip)
        } else {
            None
        }
    }
}

fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(offset..offset + 4)?.try_into().ok()?,
    ))
}

/// The compressed kernel inside a bzImage, from its setup header (boot protocol 2.08+:
/// `payload_offset` and `payload_length`, counted from the protected-mode code, which starts
/// after `setup_sects` + 1 sectors).
pub fn bzimage_payload(image: &[u8]) -> std::result::Result<(Compression, &[u8]), String> {
    if image.get(0x202..0x206) != Some(b"HdrS") {
        return Err("no HdrS setup header: not a bzImage".into());
    }
    let version = u16::from_le_bytes([image[0x206], image[0x207]]);
    if version < 0x0208 {
        return Err(format!("boot protocol {version:#x} has no payload fields"));
    }
    let setup_sectors = match image[0x1f1] {
        0 => 4,
        count => usize::from(count),
    };
    let (Some(offset), Some(length)) = (read_u32(image, 0x248), read_u32(image, 0x24c)) else {
        return Err("truncated setup header".into());
    };
    let start = (setup_sectors + 1) * 512 + offset as usize;
    let payload = image
        .get(start..start + length as usize)
        .ok_or_else(|| format!("payload {start:#x}+{length:#x} past the end of the image"))?;
    let compression = Compression::from_magic(payload).ok_or_else(|| {
        format!(
            "payload at {start:#x} starts {:02x?}: not xz, zstd or gzip",
            &payload[..payload.len().min(6)]
        )
    })?;
    Ok((compression, payload))
}

/// Decompresses with the system's `xz`, `zstd` or `gzip`. The payload may carry the kernel's
/// appended 4-byte size after the stream, which those tools report as trailing garbage after
/// writing everything: the result is judged by [`check_pvh_elf`], not the exit status.
fn decompress(compression: Compression, payload: &[u8]) -> Result<Vec<u8>> {
    let (program, arguments): (&str, &[&str]) = match compression {
        Compression::Xz => ("xz", &["-dc", "--single-stream"]),
        Compression::Zstd => ("zstd", &["-dcq"]),
        Compression::Gzip => ("gzip", &["-dcq"]),
    };
    let mut child = Command::new(program)
        .args(arguments)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| format!("running {program} (apt-get install {program}?): {error}"))?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = payload.to_vec();
    let writer = std::thread::spawn(move || {
        // A write error means the decompressor stopped early; its output says the rest.
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output()?;
    let _ = writer.join();
    Ok(output.stdout)
}

/// Checks `elf` is an x86_64 ELF with a PVH entry note (`Xen`, type 18), which `qemu -kernel`
/// needs to boot an ELF Linux.
pub fn check_pvh_elf(elf: &[u8]) -> std::result::Result<(), String> {
    if elf.get(..4) != Some(b"\x7fELF") || elf.get(4) != Some(&2) || elf.get(18) != Some(&0x3e) {
        return Err("not an x86_64 ELF64".into());
    }
    let u16_at = |offset: usize| -> Option<usize> {
        Some(u16::from_le_bytes(elf.get(offset..offset + 2)?.try_into().ok()?) as usize)
    };
    let u64_at = |offset: usize| -> Option<usize> {
        Some(u64::from_le_bytes(elf.get(offset..offset + 8)?.try_into().ok()?) as usize)
    };
    let header =
        || -> Option<(usize, usize, usize)> { Some((u64_at(0x20)?, u16_at(0x36)?, u16_at(0x38)?)) };
    let (table, entry_bytes, count) = header().ok_or("truncated ELF header")?;
    for index in 0..count {
        let at = table + index * entry_bytes;
        let kind = read_u32(elf, at).ok_or("truncated program headers")?;
        if kind != 4 {
            continue; // PT_NOTE only
        }
        let (Some(mut offset), Some(size)) = (u64_at(at + 8), u64_at(at + 32)) else {
            return Err("truncated program header".into());
        };
        let end = offset + size;
        while offset + 12 <= end {
            let (Some(name_bytes), Some(descriptor_bytes), Some(note_type)) = (
                read_u32(elf, offset),
                read_u32(elf, offset + 4),
                read_u32(elf, offset + 8),
            ) else {
                break;
            };
            let name = elf.get(offset + 12..offset + 12 + name_bytes as usize);
            if note_type == 18 && name == Some(b"Xen\0") {
                return Ok(());
            }
            offset += 12
                + (name_bytes as usize).next_multiple_of(4)
                + (descriptor_bytes as usize).next_multiple_of(4);
        }
    }
    Err("no PVH entry note (Xen, type 18): QEMU cannot boot it with -kernel".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_6_1_kernel_from_apt_cache_output() {
        let depends = "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n";
        assert_eq!(
            package_from_depends(depends).as_deref(),
            Some("linux-image-6.1.0-56-amd64")
        );
        // A trixie machine's metapackage points at 6.12: not ours.
        assert_eq!(
            package_from_depends("  Depends: linux-image-6.12.48+deb13-amd64\n"),
            None
        );
        let search = "\
linux-image-6.1.0-9-amd64 - Linux 6.1 for 64-bit PCs (signed)
linux-image-6.1.0-56-amd64 - Linux 6.1 for 64-bit PCs (signed)
linux-image-6.1.0-56-cloud-amd64 - Linux 6.1 for x86-64 cloud (signed)
linux-image-6.1.0-47-amd64 - Linux 6.1 for 64-bit PCs (signed)
";
        assert_eq!(
            newest_from_search(search).as_deref(),
            Some("linux-image-6.1.0-56-amd64")
        );
        assert_eq!(newest_from_search(""), None);
    }

    /// A bzImage-shaped buffer: `setup_sects` sectors of setup after the boot sector, then the
    /// protected-mode code with the payload `offset` bytes in.
    fn bzimage(setup_sects: u8, offset: u32, payload: &[u8]) -> Vec<u8> {
        let sectors = if setup_sects == 0 {
            4
        } else {
            setup_sects as usize
        };
        let start = (sectors + 1) * 512 + offset as usize;
        let mut image = vec![0u8; start + payload.len() + 64];
        image[0x1f1] = setup_sects;
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        image[0x248..0x24c].copy_from_slice(&offset.to_le_bytes());
        image[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        image[start..start + payload.len()].copy_from_slice(payload);
        image
    }

    #[test]
    fn finds_the_payload_through_the_setup_header() {
        let xz = b"\xfd7zXZ\x00rest-of-stream";
        let image = bzimage(27, 0x3b4, xz);
        assert_eq!(bzimage_payload(&image), Ok((Compression::Xz, &xz[..])));
        let zstd = b"\x28\xb5\x2f\xfd....";
        let image = bzimage(0, 16, zstd);
        assert_eq!(bzimage_payload(&image), Ok((Compression::Zstd, &zstd[..])));
        assert!(bzimage_payload(&bzimage(4, 0, b"plain")).is_err());
        assert!(bzimage_payload(b"not a kernel at all").is_err());
        let mut old = bzimage(4, 0, xz);
        old[0x206..0x208].copy_from_slice(&0x0206u16.to_le_bytes());
        assert!(bzimage_payload(&old).is_err());
        let mut short = bzimage(4, 0, xz);
        short[0x24c..0x250].copy_from_slice(&0x1000_0000u32.to_le_bytes());
        assert!(bzimage_payload(&short).is_err());
    }

    #[test]
    fn decompresses_with_trailing_bytes_after_the_stream() {
        let mut gzip = Command::new("gzip")
            .arg("-c")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("gzip is installed");
        gzip.stdin.take().unwrap().write_all(b"vmlinux").unwrap();
        let mut compressed = gzip.wait_with_output().unwrap().stdout;
        compressed.extend_from_slice(&1234u32.to_le_bytes());
        assert_eq!(
            decompress(Compression::Gzip, &compressed).unwrap(),
            b"vmlinux"
        );
    }

    /// An ELF64 with one PT_NOTE holding `notes`.
    fn elf_with_note(name: &[u8], note_type: u32) -> Vec<u8> {
        let mut elf = vec![0u8; 0x40 + 0x38];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[18] = 0x3e;
        elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        let note_offset = elf.len();
        let mut note = Vec::new();
        note.extend_from_slice(&(name.len() as u32).to_le_bytes());
        note.extend_from_slice(&8u32.to_le_bytes());
        note.extend_from_slice(&note_type.to_le_bytes());
        note.extend_from_slice(name);
        note.resize(note.len().next_multiple_of(4) + 8, 0);
        elf[0x40..0x44].copy_from_slice(&4u32.to_le_bytes());
        elf[0x48..0x50].copy_from_slice(&(note_offset as u64).to_le_bytes());
        elf[0x60..0x68].copy_from_slice(&(note.len() as u64).to_le_bytes());
        elf.extend_from_slice(&note);
        elf
    }

    #[test]
    fn recognises_the_pvh_note() {
        assert_eq!(check_pvh_elf(&elf_with_note(b"Xen\0", 18)), Ok(()));
        assert!(check_pvh_elf(&elf_with_note(b"Xen\0", 17)).is_err());
        assert!(check_pvh_elf(&elf_with_note(b"GNU\0", 18)).is_err());
        assert!(check_pvh_elf(b"\x7fELF").is_err());
    }
}
