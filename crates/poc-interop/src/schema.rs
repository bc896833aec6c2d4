//! Checking IODEF documents against the IODEF 2.0 schema with `xmllint`,
//! offline.
//!
//! `iodef-2.0.xsd` imports four schemas by URL (xmldsig, xml.xsd, the IANA
//! enum and SCI schemas). A node must never fetch them (no network at a
//! CERT's desk, and a schema fetched at validation time is an injection
//! point), so [`write_offline`] writes the schema beside local stand-ins that
//! declare exactly the components it references, with their real types
//! (DigestValue is base64Binary). Tests and operators then run [`validate`].

use std::path::{Path, PathBuf};

/// Writes `iodef-2.0.xsd` (read from `xsd`) and its four stand-in imports into
/// `dir`; returns the path of the schema to validate against.
pub fn write_offline(dir: &Path, xsd: &Path) -> std::io::Result<PathBuf> {
    let xsd = std::fs::read_to_string(xsd)?
        .replace(
            "http://www.w3.org/TR/2002/REC-xmldsig-core-20020212/xmldsig-core-schema.xsd",
            "dsig.xsd",
        )
        .replace(
            "http://www.iana.org/assignments/xml-registry/schema/iodef-enum-1.0.xsd",
            "enum.xsd",
        )
        .replace(
            "http://www.iana.org/assignments/xml-registry/schema/iodef-sci-1.0.xsd",
            "sci.xsd",
        )
        .replace("http://www.w3c.org/2001/xml.xsd", "xml.xsd");
    let schema = |ns: &str, body: &str| {
        format!(
            "<xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\" targetNamespace=\"{ns}\" elementFormDefault=\"qualified\">{body}</xs:schema>"
        )
    };
    let files = [
        ("iodef-2.0.xsd", xsd),
        (
            "dsig.xsd",
            schema(
                "http://www.w3.org/2000/09/xmldsig#",
                "<xs:element name=\"DigestMethod\"><xs:complexType><xs:sequence><xs:any minOccurs=\"0\" maxOccurs=\"unbounded\" processContents=\"lax\"/></xs:sequence><xs:attribute name=\"Algorithm\" type=\"xs:anyURI\" use=\"required\"/></xs:complexType></xs:element>\
                 <xs:element name=\"DigestValue\" type=\"xs:base64Binary\"/>\
                 <xs:element name=\"CanonicalizationMethod\" type=\"xs:anyType\"/>\
                 <xs:element name=\"Signature\" type=\"xs:anyType\"/>\
                 <xs:element name=\"X509Data\" type=\"xs:anyType\"/>",
            ),
        ),
        (
            "xml.xsd",
            schema(
                "http://www.w3.org/XML/1998/namespace",
                "<xs:attribute name=\"lang\" type=\"xs:language\"/>",
            ),
        ),
        (
            "enum.xsd",
            schema(
                "urn:ietf:params:xml:ns:iodef-enum-1.0",
                "<xs:element name=\"ReferenceName\" type=\"xs:anyType\"/>",
            ),
        ),
        (
            "sci.xsd",
            schema(
                "urn:ietf:params:xml:ns:iodef-sci-1.0",
                "<xs:element name=\"AttackPattern\" type=\"xs:anyType\"/><xs:element name=\"Vulnerability\" type=\"xs:anyType\"/><xs:element name=\"Weakness\" type=\"xs:anyType\"/>",
            ),
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(dir.join("iodef-2.0.xsd"))
}

/// Whether `xmllint` (Debian: libxml2-utils) is on the PATH.
pub fn xmllint_available() -> bool {
    std::process::Command::new("xmllint")
        .arg("--version")
        .output()
        .is_ok()
}

/// Validates `file` against `schema` with `xmllint --nonet`; the error says
/// which file failed and carries xmllint's complaint.
pub fn validate(schema: &Path, file: &Path) -> Result<(), String> {
    let out = std::process::Command::new("xmllint")
        .args(["--noout", "--nonet", "--schema"])
        .arg(schema)
        .arg(file)
        .output()
        .map_err(|e| format!("cannot run xmllint (apt-get install libxml2-utils): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} does not validate against {}:\n{}",
            file.display(),
            schema.display(),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
