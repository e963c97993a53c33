//! The Linux server's initramfs for `bench net`: Debian's packages, downloaded with `apt-get
//! download` into `target/bench/linux/debs/` and unpacked there with `dpkg-deb -x` (nothing
//! is installed), around `bench/linux-init`'s `/init` (run as `/init net`, see its `net`
//! module). It carries busybox (mount, insmod, ip), nginx and socat with the libraries they
//! link, the kernel's `virtio_net` module and what it depends on, nginx's configuration and
//! httpd's site (the same bytes, `scenarios::httpd_site`), all in the rootfs, a tmpfs.
use crate::Result;
use crate::bench_kernel::initramfs::{Entry, Kind, write};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The packages unpacked into the initramfs; their shared objects go in whole.
pub const PACKAGES: &[&str] = &[
    "busybox-static",
    "nginx",
    "socat",
    "libc6",
    "libcrypt1",
    "libpcre2-8-0",
    "libssl3",
    "zlib1g",
    // socat's libwrap links libnsl, which links libtirpc and through it Kerberos's GSSAPI.
    "libwrap0",
    "libnsl2",
    "libtirpc3",
    "libgssapi-krb5-2",
    "libkrb5-3",
    "libk5crypto3",
    "libcom-err2",
    "libkrb5support0",
    "libkeyutils1",
];

/// The programs taken from those packages.
const PROGRAMS: &[&str] = &["bin/busybox", "usr/sbin/nginx", "usr/bin/socat"];

/// The modules the NIC needs (with their dependencies, found in their `.modinfo`).
const MODULES: &[&str] = &["virtio_pci", "virtio_net"];

/// nginx as the issue asks: one worker, `sendfile on`, no access log, the site from tmpfs.
pub const NGINX_CONF: &str = "\
user root root;
worker_processes 1;
daemon off;
master_process on;
pid /run/nginx.pid;
error_log stderr warn;
events { worker_connections 1024; }
http {
    types {
        text/html html;
        text/css css;
        image/svg+xml svg;
        application/octet-stream bin;
    }
    default_type application/octet-stream;
    charset utf-8;
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 65;
    server {
        listen 80 backlog=1024 reuseport;
        root /srv/site;
        index index.html;
    }
}
";

/// Downloads (once) and unpacks (once) each of [`PACKAGES`] under `directory`; the roots.
pub fn unpack_packages(directory: &Path) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(directory)?;
    let mut roots = Vec::new();
    for package in PACKAGES {
        let root = directory.join(format!("root-{package}"));
        if !root.exists() {
            let deb = match find_deb(directory, package)? {
                Some(deb) => deb,
                None => {
                    eprintln!(
                        "xtask: apt-get download {package} (for the Linux server's initramfs)"
                    );
                    let status = Command::new("apt-get")
                        .args(["download", package])
                        .current_dir(directory)
                        .status()?;
                    if !status.success() {
                        return Err(format!("apt-get download {package} failed ({status})").into());
                    }
                    find_deb(directory, package)?
                        .ok_or_else(|| format!("apt-get download left no {package}_*.deb"))?
                }
            };
            let partial = root.with_extension("partial");
            let _ = fs::remove_dir_all(&partial);
            let status = Command::new("dpkg-deb")
                .arg("-x")
                .arg(&deb)
                .arg(&partial)
                .status()?;
            if !status.success() {
                return Err(format!("dpkg-deb -x {} failed ({status})", deb.display()).into());
            }
            fs::rename(&partial, &root)?;
        }
        roots.push(root);
    }
    Ok(roots)
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

/// What goes into the archive: path (no leading `/`) to contents.
#[derive(Debug, Default)]
pub struct Tree {
    entries: BTreeMap<String, Member>,
}

/// One member's contents (owned, unlike the writer's borrowed [`Kind`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    Directory,
    Console,
    File { data: Vec<u8>, mode: u32 },
    Symlink(String),
}

impl Tree {
    /// Adds `path` and every directory above it.
    pub fn add(&mut self, path: &str, member: Member) {
        let path = path.trim_start_matches("./").trim_start_matches('/');
        let mut parent = String::new();
        for part in path
            .split('/')
            .rev()
            .skip(1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(part);
            self.entries
                .entry(parent.clone())
                .or_insert(Member::Directory);
        }
        self.entries.insert(path.to_string(), member);
    }

    /// The paths, sorted (a parent before what it holds).
    #[cfg(test)]
    pub fn paths(&self) -> impl Iterator<Item = (&str, &Member)> {
        self.entries
            .iter()
            .map(|(path, member)| (path.as_str(), member))
    }

    /// The newc archive.
    pub fn archive(&self) -> Vec<u8> {
        let entries: Vec<Entry<'_>> = self
            .entries
            .iter()
            .map(|(path, member)| match member {
                Member::Directory => Entry {
                    path,
                    permissions: 0o755,
                    kind: Kind::Directory,
                },
                Member::Console => Entry {
                    path,
                    permissions: 0o600,
                    kind: Kind::CharDevice { major: 5, minor: 1 },
                },
                Member::File { data, mode } => Entry {
                    path,
                    permissions: *mode,
                    kind: Kind::File(data),
                },
                Member::Symlink(target) => Entry {
                    path,
                    permissions: 0o777,
                    kind: Kind::Symlink(target),
                },
            })
            .collect();
        write(&entries)
    }
}

/// Adds a file or symlink from an unpacked package.
fn add_from(tree: &mut Tree, root: &Path, relative: &str) -> Result<()> {
    let path = root.join(relative);
    let metadata =
        fs::symlink_metadata(&path).map_err(|error| format!("{}: {error}", path.display()))?;
    if metadata.file_type().is_symlink() {
        let target = fs::read_link(&path)?;
        tree.add(
            relative,
            Member::Symlink(target.to_string_lossy().into_owned()),
        );
    } else {
        use std::os::unix::fs::PermissionsExt;
        tree.add(
            relative,
            Member::File {
                data: fs::read(&path)?,
                mode: metadata.permissions().mode() & 0o777,
            },
        );
    }
    Ok(())
}

/// Shared objects directly in a package's library directories (not gconv's or OpenSSL's
/// plug-ins, which nginx and socat do not load here).
fn libraries(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for directory in ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64"] {
        let Ok(entries) = fs::read_dir(root.join(directory)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_object = name.contains(".so") || name.starts_with("ld-linux");
            let is_file = entry
                .file_type()
                .is_ok_and(|kind| kind.is_file() || kind.is_symlink());
            if is_object && is_file {
                found.push(format!("{directory}/{name}"));
            }
        }
    }
    found.sort();
    found
}

/// A module's `depends=` list from its `.modinfo` strings.
pub fn module_depends(module: &[u8]) -> Vec<String> {
    module
        .split(|byte| *byte == 0)
        .filter_map(|field| field.strip_prefix(b"depends="))
        .flat_map(|list| {
            String::from_utf8_lossy(list)
                .split(',')
                .filter(|name| !name.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The module files to load for [`MODULES`], dependencies first: paths relative to the kernel
/// package's root (`lib/modules/VERSION/kernel/...ko`), skipping what is built in.
pub fn module_order(kernel_root: &Path) -> Result<Vec<String>> {
    let modules = fs::read_dir(kernel_root.join("lib/modules"))?
        .flatten()
        .map(|entry| entry.path())
        .next()
        .ok_or("no lib/modules/VERSION in the kernel package")?;
    let builtin = fs::read_to_string(modules.join("modules.builtin")).unwrap_or_default();
    let mut by_name = BTreeMap::new();
    let mut stack = vec![modules.join("kernel")];
    while let Some(directory) = stack.pop() {
        for entry in fs::read_dir(&directory)?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(name) = path.file_name().and_then(|name| name.to_str())
                && let Some(stem) = name.strip_suffix(".ko")
            {
                let relative = path
                    .strip_prefix(kernel_root)
                    .map_err(|error| error.to_string())?
                    .to_string_lossy()
                    .into_owned();
                by_name.insert(stem.replace('-', "_"), relative);
            }
        }
    }
    let is_builtin = |name: &str| {
        builtin
            .lines()
            .any(|line| line.rsplit('/').next() == Some(&format!("{name}.ko")))
    };
    let mut order = Vec::new();
    fn visit(
        name: &str,
        kernel_root: &Path,
        by_name: &BTreeMap<String, String>,
        is_builtin: &dyn Fn(&str) -> bool,
        order: &mut Vec<String>,
        depth: usize,
    ) -> Result<()> {
        if depth > 16 {
            return Err(format!("module dependencies too deep at {name}").into());
        }
        let Some(relative) = by_name.get(name) else {
            if is_builtin(name) {
                return Ok(());
            }
            return Err(format!("no module {name} in the kernel package").into());
        };
        if order.contains(relative) {
            return Ok(());
        }
        let bytes = fs::read(kernel_root.join(relative))?;
        for dependency in module_depends(&bytes) {
            visit(
                &dependency,
                kernel_root,
                by_name,
                is_builtin,
                order,
                depth + 1,
            )?;
        }
        order.push(relative.clone());
        Ok(())
    }
    for module in MODULES {
        visit(module, kernel_root, &by_name, &is_builtin, &mut order, 0)?;
    }
    Ok(order)
}

/// The whole tree: `/init`, the console, busybox, nginx, socat and their libraries, the
/// modules (and `/etc/exo-net/modules` listing them in load order), nginx's configuration,
/// the site.
pub fn tree(
    init: &[u8],
    package_roots: &[PathBuf],
    kernel_root: &Path,
    site: &[(&str, Vec<u8>)],
) -> Result<Tree> {
    let mut tree = Tree::default();
    tree.add("dev/console", Member::Console);
    for directory in [
        "proc",
        "sys",
        "tmp",
        "run",
        "var/log/nginx",
        "var/lib/nginx",
    ] {
        tree.add(directory, Member::Directory);
    }
    tree.add(
        "init",
        Member::File {
            data: init.to_vec(),
            mode: 0o755,
        },
    );
    for root in package_roots {
        for program in PROGRAMS {
            if root.join(program).exists() {
                add_from(&mut tree, root, program)?;
            }
        }
        for library in libraries(root) {
            add_from(&mut tree, root, &library)?;
        }
    }
    for program in PROGRAMS {
        if !tree.entries.contains_key(*program) {
            return Err(format!("no {program} in the unpacked packages").into());
        }
    }
    let order = module_order(kernel_root)?;
    for module in &order {
        add_from(&mut tree, kernel_root, module)?;
    }
    let list: String = order.iter().map(|module| format!("/{module}\n")).collect();
    tree.add(
        "etc/exo-net/modules",
        Member::File {
            data: list.into_bytes(),
            mode: 0o644,
        },
    );
    let text = |data: &str| Member::File {
        data: data.as_bytes().to_vec(),
        mode: 0o644,
    };
    tree.add("etc/nginx/nginx.conf", text(NGINX_CONF));
    tree.add("etc/passwd", text("root:x:0:0:root:/root:/bin/sh\n"));
    tree.add("etc/group", text("root:x:0:\n"));
    for (path, body) in site {
        if *path == "/" {
            continue; // nginx's `index` serves index.html there
        }
        tree.add(
            &format!("srv/site{path}"),
            Member::File {
                data: body.clone(),
                mode: 0o644,
            },
        );
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_module_dependencies_from_modinfo() {
        let modinfo =
            b"\x7fELF...\0license=GPL\0depends=net_failover,virtio\0retpoline=Y\0name=virtio_net\0";
        assert_eq!(module_depends(modinfo), ["net_failover", "virtio"]);
        assert!(module_depends(b"\0depends=\0name=failover\0").is_empty());
        assert!(module_depends(b"no modinfo at all").is_empty());
    }

    #[test]
    fn the_tree_holds_every_parent_directory_before_its_members() {
        let mut tree = Tree::default();
        tree.add("usr/lib/x86_64-linux-gnu/libssl.so.3", Member::Directory);
        tree.add("./lib64/ld-linux-x86-64.so.2", Member::Symlink("/x".into()));
        let paths: Vec<&str> = tree.paths().map(|(path, _)| path).collect();
        assert_eq!(
            paths,
            [
                "lib64",
                "lib64/ld-linux-x86-64.so.2",
                "usr",
                "usr/lib",
                "usr/lib/x86_64-linux-gnu",
                "usr/lib/x86_64-linux-gnu/libssl.so.3",
            ]
        );
    }

    /// Fake unpacked packages and kernel: the tree holds the programs, the shared objects
    /// (not gconv's plug-ins), the modules in load order with their list, nginx's
    /// configuration and the site; a missing program or module is an error.
    #[test]
    fn the_contents_list_from_unpacked_packages() {
        let scratch =
            std::env::temp_dir().join(format!("exo-net-initramfs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&scratch);
        let file = |path: &str, data: &[u8]| {
            let path = scratch.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, data).unwrap();
        };
        file("busybox/bin/busybox", b"ELF busybox");
        file("nginx/usr/sbin/nginx", b"ELF nginx");
        file("socat/usr/bin/socat", b"ELF socat");
        file("libc6/lib/x86_64-linux-gnu/libc.so.6", b"ELF libc");
        file("libc6/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", b"ELF ld");
        file(
            "libc6/usr/lib/x86_64-linux-gnu/gconv/UTF-16.so",
            b"ELF gconv",
        );
        fs::create_dir_all(scratch.join("libc6/lib64")).unwrap();
        std::os::unix::fs::symlink(
            "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            scratch.join("libc6/lib64/ld-linux-x86-64.so.2"),
        )
        .unwrap();
        let modules = "kernel/lib/modules/6.1.0-57-amd64";
        file(
            &format!("{modules}/modules.builtin"),
            b"kernel/drivers/virtio/virtio.ko
",
        );
        let module = |name: &str, depends: &str| {
            file(
                &format!("{modules}/kernel/drivers/{name}.ko"),
                format!("\x7fELF\0depends={depends}\0name={name}\0").as_bytes(),
            )
        };
        module("virtio_net", "net_failover,virtio");
        module("net_failover", "failover");
        module("failover", "");
        module("virtio_pci", "virtio_pci_modern_dev,virtio");
        module("virtio_pci_modern_dev", "");
        let roots: Vec<PathBuf> = ["busybox", "nginx", "socat", "libc6"]
            .iter()
            .map(|name| scratch.join(name))
            .collect();
        let site = [("/", b"front".to_vec()), ("/1k.html", vec![b'x'; 1024])];
        let tree = tree(b"ELF init", &roots, &scratch.join("kernel"), &site).unwrap();
        let paths: Vec<&str> = tree.paths().map(|(path, _)| path).collect();
        for wanted in [
            "init",
            "dev/console",
            "bin/busybox",
            "usr/sbin/nginx",
            "usr/bin/socat",
            "lib/x86_64-linux-gnu/libc.so.6",
            "lib64/ld-linux-x86-64.so.2",
            "etc/nginx/nginx.conf",
            "etc/passwd",
            "srv/site/1k.html",
            "proc",
            "var/lib/nginx",
        ] {
            assert!(paths.contains(&wanted), "{wanted} missing from {paths:?}");
        }
        assert!(!paths.iter().any(|path| path.contains("gconv")));
        assert!(
            !paths.contains(&"srv/site/"),
            "the / alias is index.html's business"
        );
        let list = tree
            .paths()
            .find(|(path, _)| *path == "etc/exo-net/modules")
            .map(|(_, member)| member.clone());
        let Some(Member::File { data, .. }) = list else {
            panic!("no module list");
        };
        let kernel = "/lib/modules/6.1.0-57-amd64/kernel/drivers";
        assert_eq!(
            String::from_utf8(data).unwrap(),
            format!(
                "{kernel}/virtio_pci_modern_dev.ko\n{kernel}/virtio_pci.ko\n{kernel}/failover.ko\n{kernel}/net_failover.ko\n{kernel}/virtio_net.ko\n"
            )
        );
        assert!(tree.archive().len().is_multiple_of(4));
        // Without socat's package, or with a module missing, it says what is missing.
        let error = tree_error(&roots[..2], &scratch.join("kernel"), &site);
        assert!(error.contains("usr/bin/socat"), "{error}");
        fs::remove_file(scratch.join(format!("{modules}/kernel/drivers/failover.ko"))).unwrap();
        let error = tree_error(&roots, &scratch.join("kernel"), &site);
        assert!(error.contains("no module failover"), "{error}");
        let _ = fs::remove_dir_all(&scratch);
    }

    fn tree_error(roots: &[PathBuf], kernel: &Path, site: &[(&str, Vec<u8>)]) -> String {
        match tree(b"init", roots, kernel, site) {
            Ok(_) => "built".into(),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn nginx_serves_as_the_issue_asks() {
        for line in [
            "worker_processes 1;",
            "sendfile on;",
            "access_log off;",
            "root /srv/site;",
        ] {
            assert!(NGINX_CONF.contains(line), "{line}");
        }
    }
}
