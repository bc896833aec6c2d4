//! pocnet key files.
//!
//! A secret key file holds one 32-byte secret (an Ed25519 seed or an X25519
//! secret) as text, so an operator can see what it is without printing the
//! secret:
//!
//! ```text
//! pocnet-secret-key v1
//! kind: identity
//! label: EST.cert
//! secret: 5f1c...(64 hex digits)
//! ```
//!
//! Secret files are created with mode 0600 (never group- or world-readable),
//! written and synced before they become visible (write to a temporary name,
//! fsync, link into place), refused on read if anyone but the owner can read
//! them or another account owns them, and every buffer that held the secret
//! is zeroized. Public key files have the same shape with
//! `pocnet-public-key v1` and `public:`; they are trust anchors, so one that
//! group, others or another account than the reader or root can rewrite is
//! refused.
#![forbid(unsafe_code)]

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::{Zeroize, Zeroizing};

/// What a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A PoC's Ed25519 identity key.
    Identity,
    /// A State's Ed25519 root key.
    StateRoot,
    /// The directory manager's Ed25519 key.
    Manager,
    /// A PoC's X25519 prekey secret.
    Prekey,
}

impl KeyKind {
    fn name(self) -> &'static str {
        match self {
            KeyKind::Identity => "identity",
            KeyKind::StateRoot => "state-root",
            KeyKind::Manager => "manager",
            KeyKind::Prekey => "prekey",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        [
            KeyKind::Identity,
            KeyKind::StateRoot,
            KeyKind::Manager,
            KeyKind::Prekey,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What went wrong with a key file; every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file already exists; keys are never overwritten.
    #[error(
        "key file {path} already exists; move it away first if you really mean to replace the key"
    )]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A secret key file is readable by group or others.
    #[error(
        "key file {path} is readable by others (mode {mode:04o}); run `chmod 600 {path}` and check who may have copied it"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// A secret key file belongs to another account, which can read or
    /// replace it whatever its mode.
    #[error(
        "key file {path} belongs to user id {owner}, not to user id {euid} that reads it, so that account can read or replace the key; `chown` it to this account and check who may have copied it"
    )]
    Owner {
        /// The file.
        path: PathBuf,
        /// The file's owner.
        owner: u32,
        /// The effective user id of this process.
        euid: u32,
    },
    /// A public key file (a trust anchor) is writable by group or others.
    #[error(
        "key file {path} can be rewritten by others (mode {mode:04o}), and it says which key to trust; run `chmod 644 {path}` and check that it still holds the key you were given"
    )]
    Writable {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// The file is not a pocnet key file of the expected form.
    #[error("key file {path} is not a valid pocnet key file: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file holds another kind of key.
    #[error("key file {path} holds a {found} key, but a {expected} key is needed here")]
    WrongKind {
        /// The file.
        path: PathBuf,
        /// Kind found.
        found: KeyKind,
        /// Kind expected.
        expected: KeyKind,
    },
}

/// A secret read from a key file.
pub struct SecretKey {
    /// What it is for.
    pub kind: KeyKind,
    /// Free label (usually the PoC id or State code).
    pub label: Option<String>,
    /// The 32 secret bytes; zeroized on drop.
    pub secret: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey")
            .field("kind", &self.kind)
            .field("label", &self.label)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A public key read from a public key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// What it is for.
    pub kind: KeyKind,
    /// Free label.
    pub label: Option<String>,
    /// The 32 public bytes.
    pub public: [u8; 32],
}

const SECRET_MAGIC: &str = "pocnet-secret-key v1";
const PUBLIC_MAGIC: &str = "pocnet-public-key v1";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes a new secret key file with mode 0600. Refuses to overwrite.
pub fn write_secret(
    path: &Path,
    kind: KeyKind,
    label: Option<&str>,
    secret: &[u8; 32],
) -> Result<(), KeyFileError> {
    let mut text = Zeroizing::new(render(SECRET_MAGIC, kind, label, "secret", secret));
    let result = write_new(path, text.as_bytes(), 0o600);
    text.zeroize();
    result
}

/// Writes a new public key file with mode 0644. Refuses to overwrite.
pub fn write_public(
    path: &Path,
    kind: KeyKind,
    label: Option<&str>,
    public: &[u8; 32],
) -> Result<(), KeyFileError> {
    write_new(
        path,
        render(PUBLIC_MAGIC, kind, label, "public", public).as_bytes(),
        0o644,
    )
}

fn render(
    magic: &str,
    kind: KeyKind,
    label: Option<&str>,
    field: &str,
    bytes: &[u8; 32],
) -> String {
    let mut head = format!("{magic}\nkind: {kind}\n");
    if let Some(label) = label {
        head.push_str(&format!("label: {}\n", label.replace('\n', " ")));
    }
    head.push_str(&format!("{field}: "));
    // One allocation of the exact size, made before the key goes in: a
    // buffer grown after that would free a copy of the key that the
    // caller's zeroize never reaches.
    let mut text = String::with_capacity(head.len() + 2 * bytes.len() + 1);
    text.push_str(&head);
    let mut digits = Zeroizing::new([0u8; 64]);
    for (pair, byte) in digits.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&hex_pair(*byte));
    }
    for &digit in digits.iter() {
        text.push(char::from(digit));
    }
    text.push('\n');
    text
}

/// The two lowercase hex digits of `byte`, computed without a table lookup
/// (no indexing on secret bytes).
fn hex_pair(byte: u8) -> [u8; 2] {
    let digit = |nibble: u8| {
        if nibble < 10 {
            b'0' + nibble
        } else {
            b'a' + nibble - 10
        }
    };
    [digit(byte >> 4), digit(byte & 0x0f)]
}

/// Creates `path` with `contents` and `mode`, durably: a temporary file in
/// the same directory is written, synced, then linked into place without
/// replacing anything.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeyFileError> {
    if path.exists() {
        return Err(KeyFileError::Exists {
            path: path.to_owned(),
        });
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path.file_name().ok_or_else(|| KeyFileError::Format {
        path: path.to_owned(),
        reason: "not a file name".into(),
    })?;
    // A name of this process's own; one left by a crash (or planted) is
    // never opened (create_new does not follow or reuse anything), only
    // passed over for the next.
    let mut attempt = 0u32;
    let (tmp, mut file) = loop {
        let tmp = dir.join(format!(
            ".{}.tmp{}-{attempt}",
            file_name.to_string_lossy(),
            std::process::id()
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
        {
            Ok(file) => break (tmp, file),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 15 => {
                attempt += 1;
            }
            Err(e) => return Err(io(&tmp)(e)),
        }
    };
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    drop(file);
    let linked = written.and_then(|()| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    linked.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            KeyFileError::Exists {
                path: path.to_owned(),
            }
        } else {
            KeyFileError::Io {
                path: path.to_owned(),
                source: e,
            }
        }
    })?;
    // Make the new directory entry durable too.
    if let Ok(dir) = fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Reads a secret key file, refusing one readable by group or others.
pub fn read_secret(path: &Path, expected: KeyKind) -> Result<SecretKey, KeyFileError> {
    let (file, meta) = open_regular(path)?;
    // Checked on the open file: what is read is what was checked.
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    check_owner(path, &meta, rustix::process::geteuid().as_raw())?;
    let bytes = read_bounded(path, file)?;
    let (kind, label, secret) = parse(path, &bytes, SECRET_MAGIC, "secret")?;
    if kind != expected {
        return Err(KeyFileError::WrongKind {
            path: path.to_owned(),
            found: kind,
            expected,
        });
    }
    Ok(SecretKey {
        kind,
        label,
        secret,
    })
}

/// Refuses a secret key file not owned by `euid`: its owner can read or
/// replace it, and a process running as root would otherwise accept it.
fn check_owner(path: &Path, meta: &fs::Metadata, euid: u32) -> Result<(), KeyFileError> {
    use std::os::unix::fs::MetadataExt;
    if meta.uid() != euid {
        return Err(KeyFileError::Owner {
            path: path.to_owned(),
            owner: meta.uid(),
            euid,
        });
    }
    Ok(())
}

/// Reads a public key file, refusing one that group, others or another
/// account than this one or root can rewrite: it says which key to trust.
pub fn read_public(path: &Path, expected: KeyKind) -> Result<PublicKey, KeyFileError> {
    let (file, meta) = open_regular(path)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(KeyFileError::Writable {
            path: path.to_owned(),
            mode,
        });
    }
    {
        use std::os::unix::fs::MetadataExt;
        // Root can rewrite any file anyway; a root-owned anchor is fine.
        if meta.uid() != 0 {
            check_owner(path, &meta, rustix::process::geteuid().as_raw())?;
        }
    }
    let bytes = read_bounded(path, file)?;
    let (kind, label, public) = parse(path, &bytes, PUBLIC_MAGIC, "public")?;
    if kind != expected {
        return Err(KeyFileError::WrongKind {
            path: path.to_owned(),
            found: kind,
            expected,
        });
    }
    Ok(PublicKey {
        kind,
        label,
        public: *public,
    })
}

/// The largest key file accepted.
const MAX_FILE_LEN: usize = 4096;

/// Opens `path` (symlinks followed) if it is a regular file, with the
/// metadata of the file actually opened.
fn open_regular(path: &Path) -> Result<(fs::File, fs::Metadata), KeyFileError> {
    let not_regular = || KeyFileError::Format {
        path: path.to_owned(),
        reason: "not a regular file".into(),
    };
    // Checked before opening too: opening a FIFO would block.
    if !fs::metadata(path).map_err(io(path))?.is_file() {
        return Err(not_regular());
    }
    let file = fs::File::open(path).map_err(io(path))?;
    let meta = file.metadata().map_err(io(path))?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    Ok((file, meta))
}

/// Reads at most one byte more than [`MAX_FILE_LEN`] into a buffer that is
/// zeroized on drop and never grows (so leaves no copy behind).
fn read_bounded(path: &Path, file: fs::File) -> Result<Zeroizing<Vec<u8>>, KeyFileError> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_FILE_LEN + 1));
    file.take(u64::try_from(MAX_FILE_LEN + 1).unwrap_or(u64::MAX))
        .read_to_end(&mut bytes)
        .map_err(io(path))?;
    Ok(bytes)
}

/// A parsed key file: kind, label, key bytes.
type Parsed = (KeyKind, Option<String>, Zeroizing<[u8; 32]>);

fn parse(path: &Path, bytes: &[u8], magic: &str, field: &str) -> Result<Parsed, KeyFileError> {
    let format = |reason: &str| KeyFileError::Format {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if bytes.len() > MAX_FILE_LEN {
        return Err(format("larger than any key file"));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| format("not UTF-8 text"))?;
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some(magic) {
        return Err(format(&format!("the first line must be `{magic}`")));
    }
    let (mut kind, mut label, mut value) = (None, None, None);
    for line in lines {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, val) = line
            .split_once(':')
            .ok_or_else(|| format("a line is not `key: value`"))?;
        let key = key.trim();
        let twice = match key {
            "kind" => kind
                .replace(KeyKind::parse(val.trim()).ok_or_else(|| format("unknown key kind"))?)
                .is_some(),
            "label" => label.replace(val.trim().to_owned()).is_some(),
            k if k == field => value
                .replace(Zeroizing::new(val.trim().to_owned()))
                .is_some(),
            _ => return Err(format("unknown field")),
        };
        if twice {
            return Err(format(&format!("`{key}:` is given more than once")));
        }
    }
    let kind = kind.ok_or_else(|| format("no `kind:` line"))?;
    let value = value.ok_or_else(|| format(&format!("no `{field}:` line")))?;
    let mut out = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(value.as_bytes(), out.as_mut())
        .map_err(|_| format(&format!("`{field}:` must be 64 hex digits")))?;
    Ok((kind, label, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_round_trip_with_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id.key");
        write_secret(&path, KeyKind::Identity, Some("EST.cert"), &[7; 32]).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let key = read_secret(&path, KeyKind::Identity).unwrap();
        assert_eq!(*key.secret, [7; 32]);
        assert_eq!(key.label.as_deref(), Some("EST.cert"));
        assert!(!format!("{key:?}").contains("0707"));
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn refuses_overwrite_readable_files_and_wrong_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id.key");
        write_secret(&path, KeyKind::Identity, None, &[1; 32]).unwrap();
        assert!(matches!(
            write_secret(&path, KeyKind::Identity, None, &[2; 32]),
            Err(KeyFileError::Exists { .. })
        ));
        assert!(matches!(
            read_secret(&path, KeyKind::StateRoot),
            Err(KeyFileError::WrongKind { .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_secret(&path, KeyKind::Identity).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn malformed_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.key");
        for contents in [
            "",
            "nonsense\n",
            "pocnet-secret-key v1\nkind: identity\nsecret: abc\n",
            "pocnet-secret-key v1\nsecret: 00\n",
            &format!("pocnet-secret-key v1\n{}", "# padding\n".repeat(1000)),
        ] {
            let _ = fs::remove_file(&path);
            fs::write(&path, contents.as_bytes()).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            let err = read_secret(&path, KeyKind::Identity).unwrap_err();
            assert!(matches!(err, KeyFileError::Format { .. }), "{err}");
            assert!(err.to_string().contains("bad.key"));
        }
    }

    #[test]
    fn the_secret_text_is_built_in_one_allocation_of_its_exact_size() {
        // Growing the buffer after the hex digits are in it would free a copy
        // of them that no zeroize reaches (it happened for some label lengths).
        for kind in [
            KeyKind::Identity,
            KeyKind::StateRoot,
            KeyKind::Manager,
            KeyKind::Prekey,
        ] {
            for n in 0..200 {
                let label = "x".repeat(n);
                let label = (n > 0).then_some(label.as_str());
                let text = render(SECRET_MAGIC, kind, label, "secret", &[0xab; 32]);
                assert_eq!(text.capacity(), text.len(), "{kind} label of {n} bytes");
            }
        }
    }

    #[test]
    fn a_key_path_that_is_not_a_regular_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id.key");
        fs::create_dir(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
        let err = read_secret(&path, KeyKind::Identity).unwrap_err();
        assert!(matches!(err, KeyFileError::Format { .. }), "{err}");
        assert!(
            err.to_string().contains("id.key") && err.to_string().contains("not a regular file"),
            "{err}"
        );
        // A device never ends: it is refused before a byte is read.
        let err = read_public(Path::new("/dev/zero"), KeyKind::StateRoot).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn a_key_file_owned_by_another_account_is_refused() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id.key");
        write_secret(&path, KeyKind::Identity, None, &[3; 32]).unwrap();
        // Running as root (as a daemon may): hand the file to `nobody`,
        // who can then read and replace the key although it is 0600.
        match std::os::unix::fs::chown(&path, Some(65534), None) {
            Ok(()) => {
                let err = read_secret(&path, KeyKind::Identity).unwrap_err();
                assert!(
                    matches!(err, KeyFileError::Owner { owner: 65534, .. }),
                    "{err}"
                );
                assert!(
                    err.to_string().contains("id.key") && err.to_string().contains("chown"),
                    "{err}"
                );
            }
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}"),
        }
        // Without root, the same check against another effective user id.
        let meta = fs::metadata(&path).unwrap();
        let other = meta.uid().wrapping_add(1);
        let err = check_owner(&path, &meta, other).unwrap_err();
        assert!(
            matches!(err, KeyFileError::Owner { euid, .. } if euid == other),
            "{err}"
        );
        check_owner(&path, &meta, meta.uid()).unwrap();
    }

    #[test]
    fn a_planted_symlink_is_never_followed_when_a_key_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "untouched").unwrap();
        let path = dir.path().join("id.key");
        // At the key's own path, to an existing file and dangling.
        for target in [victim.clone(), dir.path().join("nowhere")] {
            let _ = fs::remove_file(&path);
            std::os::unix::fs::symlink(&target, &path).unwrap();
            let err = write_secret(&path, KeyKind::Identity, None, &[5; 32]).unwrap_err();
            assert!(matches!(err, KeyFileError::Exists { .. }), "{err}");
        }
        assert!(!dir.path().join("nowhere").exists());
        // At the temporary name the secret is first written to: passed
        // over, not followed, and the key is written under the next name.
        fs::remove_file(&path).unwrap();
        let tmp = dir
            .path()
            .join(format!(".id.key.tmp{}-0", std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        write_secret(&path, KeyKind::Identity, None, &[5; 32]).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
        assert_eq!(
            *read_secret(&path, KeyKind::Identity).unwrap().secret,
            [5; 32]
        );
        assert!(fs::symlink_metadata(&tmp).unwrap().file_type().is_symlink());
    }

    #[test]
    fn a_temporary_file_left_by_a_crash_does_not_block_the_next_key() {
        // A crash between creating the temporary file and removing it
        // leaves it behind; a later run with the same process id used to
        // fail on it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id.key");
        let left = dir
            .path()
            .join(format!(".id.key.tmp{}-0", std::process::id()));
        fs::write(&left, "left by a crash").unwrap();
        write_secret(&path, KeyKind::Identity, None, &[6; 32]).unwrap();
        assert_eq!(
            *read_secret(&path, KeyKind::Identity).unwrap().secret,
            [6; 32]
        );
        assert_eq!(fs::read_to_string(&left).unwrap(), "left by a crash");
    }

    #[test]
    fn a_field_given_twice_is_refused() {
        // Which of two `secret:` lines is the key? Neither is guessed.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("twice.key");
        let secret = format!("secret: {}\n", "11".repeat(32));
        for contents in [
            format!(
                "{SECRET_MAGIC}\nkind: identity\n{secret}secret: {}\n",
                "22".repeat(32)
            ),
            format!("{SECRET_MAGIC}\nkind: prekey\nkind: identity\n{secret}"),
            format!("{SECRET_MAGIC}\nkind: identity\nlabel: a\nlabel: b\n{secret}"),
        ] {
            let _ = fs::remove_file(&path);
            fs::write(&path, &contents).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            let err = read_secret(&path, KeyKind::Identity).unwrap_err();
            assert!(
                err.to_string().contains("more than once"),
                "{contents}: {err}"
            );
        }
    }

    #[test]
    fn a_public_key_file_others_can_rewrite_is_refused() {
        // A public key file is a trust anchor (the directory manager's key,
        // a State's root): whoever can rewrite it chooses what is trusted.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manager.pub");
        write_public(&path, KeyKind::Manager, None, &[4; 32]).unwrap();
        for mode in [0o664, 0o646] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = read_public(&path, KeyKind::Manager).unwrap_err();
            assert!(
                err.to_string().contains("manager.pub") && err.to_string().contains("chmod 644"),
                "{err}"
            );
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o444)).unwrap();
        assert_eq!(
            read_public(&path, KeyKind::Manager).unwrap().public,
            [4; 32]
        );
        // Owned by another account (not root), it is refused too.
        if std::os::unix::fs::chown(&path, Some(65534), None).is_ok() {
            let err = read_public(&path, KeyKind::Manager).unwrap_err();
            assert!(
                matches!(err, KeyFileError::Owner { owner: 65534, .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn public_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.pub");
        write_public(&path, KeyKind::StateRoot, Some("EST"), &[9; 32]).unwrap();
        let key = read_public(&path, KeyKind::StateRoot).unwrap();
        assert_eq!(key.public, [9; 32]);
    }
}
