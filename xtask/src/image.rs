//! Builds the boot image: apps first (bare-metal static ELFs), then the pack, then the kernel
//! that embeds it (its build script reads the pack's path from `EXO_PACK`).
//!
//! To add an app: create `apps/NAME` (copy `apps/hello`), add it to the workspace members,
//! [`PACKAGES`] and [`APPS`]; or add a binary to `apps/ktest/src/bin` and to [`APPS`]. The
//! kernel starts the apps its command line names (`apps=NAME,...`); apps spawn others by name.
use crate::{Result, setup::TARGET};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The packages whose binaries are apps.
pub const PACKAGES: &[&str] = &[
    "hello", "fault", "busy", "ktest", "kbench", "netmon", "ashd", "echo", "httpd", "fetch",
];

/// Every app packed into the boot image, by binary name.
pub const APPS: &[&str] = &[
    "hello",
    "fault",
    "busy",
    "exc",
    "isolate",
    "badargs",
    "pct",
    "sched",
    "contain",
    "reclaim",
    "kbench",
    "heap",
    "pipe",
    "yieldto",
    "records",
    "netmon",
    "spin",
    "hostile",
    "fpuspy",
    "quota",
    "netquota",
    "txflood",
    "churn",
    "fuzz",
    "stalls",
    "ashd",
    "undeliver",
    "echo",
    "httpd",
    "fetch",
];

/// Cargo profile for the bare-metal builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    Dev,
    Release,
}

impl Profile {
    pub fn from_release(release: bool) -> Profile {
        if release {
            Profile::Release
        } else {
            Profile::Dev
        }
    }

    fn directory(self) -> &'static str {
        match self {
            Profile::Dev => "debug",
            Profile::Release => "release",
        }
    }
}

/// A built image.
#[derive(Debug)]
pub struct Image {
    /// The kernel ELF to pass to `qemu -kernel`.
    pub kernel: PathBuf,
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

fn cargo_build(packages: &[&str], profile: Profile, pack: Option<&Path>) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace_root())
        .args(["build", "--target", TARGET]);
    if profile == Profile::Release {
        command.arg("--release");
    }
    for package in packages {
        command.args(["-p", package]);
    }
    match pack {
        Some(pack) => command.env("EXO_PACK", pack),
        // The apps go into the kernel's boot pack, which is loaded into guest RAM whole: their
        // debug info (megabytes each, mostly dpf's front end) would take most of it.
        None => command
            .env_remove("EXO_PACK")
            .args(["--config", "profile.dev.strip=\"debuginfo\""])
            .args(["--config", "profile.release.strip=\"debuginfo\""]),
    };
    let status = command.status()?;
    if !status.success() {
        return Err(format!("cargo build -p {} failed ({status})", packages.join(" -p ")).into());
    }
    Ok(())
}

/// Builds the apps, packs them and builds the kernel around the pack.
pub fn build(profile: Profile) -> Result<Image> {
    let root = workspace_root();
    let output = root.join("target").join(TARGET).join(profile.directory());
    cargo_build(PACKAGES, profile, None)?;

    let mut files = Vec::new();
    for app in APPS {
        let path = output.join(app);
        let bytes =
            std::fs::read(&path).map_err(|error| format!("reading {}: {error}", path.display()))?;
        files.push((*app, bytes));
    }
    let entries: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(name, bytes)| (*name, &bytes[..]))
        .collect();
    let mut pack = Vec::new();
    exo_abi::pack::write_pack(&entries, &mut |chunk| pack.extend_from_slice(chunk))
        .map_err(|error| format!("packing apps: {error:?}"))?;
    let pack_path = root
        .join("target")
        .join("exo")
        .join(format!("{}.pack", profile.directory()));
    std::fs::create_dir_all(pack_path.parent().expect("has a parent"))?;
    // Rewrite only on change: the kernel's build script reruns when the file's mtime moves.
    if std::fs::read(&pack_path).ok().as_deref() != Some(&pack[..]) {
        std::fs::write(&pack_path, &pack)?;
    }

    cargo_build(&["exo-kernel"], profile, Some(&pack_path))?;
    Ok(Image {
        kernel: output.join("exo-kernel"),
    })
}
