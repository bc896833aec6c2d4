//! Interoperability with the formats national CERTs use: IODEF v2 (RFC 7970)
//! documents, STIX 2.1 bundles and TLP 2.0 labels.
//!
//! - [`iodef::import`] turns an IODEF document into an inquiry (the document
//!   itself attached unchanged), refusing hostile XML; [`iodef::export`]
//!   writes a thread's inquiry as IODEF 2.0.
//! - [`stix`] validates bundles and exports/imports indicators.
//! - [`tlp`] maps handling labels to IODEF `restriction` and STIX markings.

pub mod iodef;
pub mod stix;
pub mod tlp;
mod util;
pub mod xml;

pub use xml::Limits;
