//! What the figures were measured on and with.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

/// Machine and software versions; every field is best effort (`None` when
/// unavailable).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    /// CPUs available to this process (`nproc`).
    pub(crate) nproc: usize,
    /// `model name` from /proc/cpuinfo.
    pub(crate) cpu_model: Option<String>,
    /// `cpu family` and `model` from /proc/cpuinfo.
    pub(crate) cpu_family_model: Option<String>,
    /// Total memory, from /proc/meminfo.
    pub(crate) memory: Option<String>,
    /// Kernel release.
    pub(crate) kernel: Option<String>,
    /// File system type of the temporary directory (where the stores and
    /// the fsync probe live).
    pub(crate) temp_fs: Option<String>,
    /// `rustc -V`.
    pub(crate) rustc: Option<String>,
    /// `pocd --version`.
    pub(crate) pocd: Option<String>,
    /// Commit of the source tree this tool was built from.
    pub(crate) git_commit: Option<String>,
    /// Whether tracked files differ from that commit.
    pub(crate) git_dirty: Option<bool>,
    /// Cargo profile this tool was built with.
    pub(crate) profile: &'static str,
}

fn output(command: &mut Command) -> Option<String> {
    let out = command.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn cpuinfo(field: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == field).then(|| value.trim().to_owned())
    })
}

/// The type of the file system holding `path` (longest mount point prefix).
fn fs_type(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (device, mount, kind) = (fields.next()?, fields.next()?, fields.next()?);
            path.starts_with(mount)
                .then(|| (mount.len(), format!("{kind} ({device} on {mount})")))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, text)| text)
}

impl Machine {
    /// Collects what it can. `temp` is the temporary directory, `pocd` the
    /// daemon binary.
    pub(crate) fn collect(temp: &Path, pocd: &Path) -> Machine {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"));
        // Read-only git queries; GIT_OPTIONAL_LOCKS=0 keeps `git status`
        // from refreshing the index.
        let git = |args: &[&str]| {
            output(
                Command::new("git")
                    .arg("-C")
                    .arg(source)
                    .args(args)
                    .env("GIT_OPTIONAL_LOCKS", "0"),
            )
        };
        let git_commit = git(&["rev-parse", "HEAD"]);
        let git_dirty = git_commit
            .as_ref()
            .and_then(|_| git(&["status", "--porcelain", "--untracked-files=no"]))
            .map(|s| !s.is_empty());
        Machine {
            nproc: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            cpu_model: cpuinfo("model name"),
            cpu_family_model: match (cpuinfo("cpu family"), cpuinfo("model")) {
                (Some(f), Some(m)) => Some(format!("family {f}, model {m}")),
                _ => None,
            },
            memory: std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .map(|l| l.trim_start_matches("MemTotal:").trim().to_owned())
            }),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_owned()),
            temp_fs: fs_type(temp),
            rustc: output(Command::new("rustc").arg("-V")),
            pocd: output(Command::new(pocd).arg("--version")),
            git_commit,
            git_dirty,
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        }
    }
}
