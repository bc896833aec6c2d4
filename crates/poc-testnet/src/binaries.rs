//! The workspace binaries a harness starts, found where cargo built them.
//!
//! Cargo puts binaries in `target/<profile>/` and test executables one level
//! down in `target/<profile>/deps/`; a binary such as `poc-bench` runs from
//! `target/<profile>/` itself. Either way the other binaries are found from
//! the running executable, so every harness runs the binaries of its own
//! build (which must build them: `cargo build --workspace --bins`).

use std::path::PathBuf;

use crate::Error;

/// The built binary `name` in the running executable's target directory.
pub fn try_built_binary(name: &str) -> Result<PathBuf, Error> {
    let exe = std::env::current_exe().map_err(Error::io("cannot locate this executable"))?;
    let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::MissingBinary {
            name: name.to_owned(),
            path,
        })
    }
}

/// [`try_built_binary`], panicking with the build command if it is missing.
pub fn built_binary(name: &str) -> PathBuf {
    try_built_binary(name).unwrap_or_else(|e| panic!("{e}"))
}
