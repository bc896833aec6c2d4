//! Interoperability with the formats national CERTs use: IODEF v2 (RFC 7970)
//! documents, STIX 2.1 bundles and TLP 2.0 labels.
//!
//! - [`iodef::import`] turns an IODEF document into an inquiry (the document
//!   itself attached unchanged), refusing hostile XML; [`iodef::export`]
//!   writes a thread's inquiry as IODEF 2.0.
//! - [`stix`] validates bundles and exports/imports indicators.
//! - [`tlp`] maps handling labels to IODEF `restriction` and STIX markings.

pub mod iodef;
pub mod schema;
pub mod stix;
pub mod tlp;
mod util;
pub mod xml;

pub use xml::Limits;

/// Where the shared interop fixtures are: `POCNET_SHARED_FIXTURES` if set,
/// else `../shared/fixtures` beside the repository clone (where CI puts
/// them). They are documents written outside this project (RFC 7970 and MILE
/// guidance samples, the IODEF 2.0 schema), so an outside clone may lack
/// them: tests call this one function and, on `Err`, print its message and
/// skip.
pub fn shared_fixtures_dir() -> Result<std::path::PathBuf, String> {
    let dir = match std::env::var_os("POCNET_SHARED_FIXTURES") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"),
    };
    if dir.join("iodef").is_dir() {
        Ok(dir)
    } else {
        Err(format!(
            "shared fixtures not found at {} (they live outside this repository, in ../shared/fixtures beside the clone; set POCNET_SHARED_FIXTURES to point elsewhere); skipping",
            dir.display()
        ))
    }
}
