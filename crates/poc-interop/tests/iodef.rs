//! IODEF import/export against the shared RFC 7970 and MILE guidance
//! fixtures, schema validation of exports with xmllint, and hostile XML.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use poc_interop::iodef::{self, ExportOptions, IodefError};
use poc_proto::message::{
    AttachmentContent, Body, Handling, HashAlgorithm, IncidentCategory, Indicator, IpAddress,
    Language, Message, Text, Tlp, TransportProtocol,
};
use poc_proto::time::Timestamp;

/// The shared fixtures live outside this repository (CI checks out
/// `../shared` beside the clone). `None`, with a message, when absent.
fn fixtures_dir() -> Option<PathBuf> {
    poc_interop::shared_fixtures_dir()
        .map_err(|missing| println!("{missing}"))
        .ok()
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> Indicator {
    Indicator::Ip(IpAddress::V4([a, b, c, d]))
}

fn v6(text: &str) -> Indicator {
    Indicator::Ip(IpAddress::from(text.parse::<std::net::IpAddr>().unwrap()))
}

fn tcp(number: u16) -> Indicator {
    Indicator::Port {
        number,
        protocol: Some(TransportProtocol::Tcp),
    }
}

fn hash(algorithm: HashAlgorithm, hex: &str) -> Indicator {
    let digest = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    Indicator::Hash { algorithm, digest }
}

fn other(kind: &str, value: &str) -> Indicator {
    Indicator::Other {
        kind: kind.into(),
        value: value.into(),
    }
}

fn domain(d: &str) -> Indicator {
    Indicator::Domain(d.into())
}

fn url(u: &str) -> Indicator {
    Indicator::Url(u.into())
}

/// Expected indicators per fixture, written by reading each document.
/// Method/Reference URLs (links to reports) are deliberately not indicators.
fn expected(file: &str) -> Vec<Indicator> {
    const SHA256: &str = "141accec23e7e5157de60853cb1e01bc38042d08f9086040815300b7fe75c184";
    match file {
        "GuidanceDraft_DDoS.xml" => vec![
            v4(192, 0, 2, 104),
            tcp(1337),
            v4(192, 0, 2, 106),
            Indicator::Network {
                address: IpAddress::V4([198, 51, 100, 0]),
                prefix_len: 24,
            },
            v6("2001:db8:dead:beef::1"),
            v4(203, 0, 113, 1),
            tcp(80),
            other(
                "http-user-agent",
                "user-agent=\"Mozilla/5.0 (Macintosh; U; Intel Mac OS X 10.5; en-US; rv:1.9.2.12) Gecko/20101026 Firefox/3.6.12\">",
            ),
        ],
        "GuidanceDraft_IoTMalware.xml" => vec![
            v4(192, 0, 2, 210),
            tcp(23),
            v4(198, 51, 100, 1),
            v4(198, 51, 100, 94),
            v4(198, 51, 100, 237),
            tcp(2323),
        ],
        "GuidanceDraft_Malware.xml" => vec![
            v4(203, 0, 113, 200),
            // The sample double-escapes '&' (&amp;amp;), so the URL text holds "&amp;".
            url(
                "http://zeus.556677889900.example.com/log-bin/lunch_install.php?aff_id=1&amp;lunch_id=1&amp;maddr=&amp;action=install",
            ),
            // DigestValues are base64 of the text "0x<hex>".
            hash(
                HashAlgorithm::Sha1,
                "6751a253483a67d86e0f84760f61f10bbcc2edff",
            ),
            hash(HashAlgorithm::Md5, "2e8880980d62447e9790afa89513f0a4"),
            v4(203, 0, 113, 100),
            tcp(8080),
            hash(
                HashAlgorithm::Sha1,
                "7263fe0d3a095d59c8e0c895a9c585e343e7141c",
            ),
            hash(HashAlgorithm::Md5, "43cd850fcdade4330a5bea6f16ee971c"),
            url("http://foo.example.com:12345/evil/cc.php"),
            v4(192, 0, 2, 1),
            v4(198, 51, 100, 1),
            v6("2001:db8:dead:beef::1"),
            hash(HashAlgorithm::Sha256, SHA256),
        ],
        "GuidanceDraft_MalwareDeliverURL.xml" => vec![
            url(
                "http://zeus.556677889900.example.com/log-bin/lunch_install.php?aff_id=1&lunch_id=1&maddr=&action=install",
            ),
            v4(192, 0, 2, 200),
        ],
        "GuidanceDraft_SpearPhishing.xml" => vec![
            url("http://www.zeusevil.example.com"),
            v4(192, 0, 2, 166),
            Indicator::Asn(65535),
            other("as-name", "EXAMPLE-AS - University of Example\""),
            other("as-prefix", "192.0.2.0/24"),
            domain("mail1.evildave.example.com"),
            v4(198, 51, 100, 6),
            Indicator::Asn(65534),
            other("as-name", "EXAMPLE-AS - University of Example"),
            domain("evildave.example.com"),
            Indicator::Email("emaildave@evildave.example.com".into()),
            v4(203, 0, 113, 2),
            hash(HashAlgorithm::Sha256, SHA256),
        ],
        "RFC7970_CampaignIndicator.xml" => vec![
            domain("kj290023j09r34.example.com"),
            domain("09ijk23jfj0k8.example.net"),
            domain("klknjwfjiowjefr923.example.org"),
            domain("oimireik79msd.example.org"),
        ],
        "RFC7970_MinimalIODEF.xml" => vec![],
        other => panic!("no expected indicators written for {other}; add them"),
    }
}

fn iodef_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("iodef"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_fixture_imports_with_the_expected_indicators() {
    let Some(dir) = fixtures_dir() else { return };
    let files = iodef_files(&dir);
    assert_eq!(files.len(), 7, "fixture set changed: {files:?}");
    let world = poc_proto::testkit::World::new();
    for path in files {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let bytes = std::fs::read(&path).unwrap();
        let imported = iodef::import(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let inquiry = &imported.inquiry;
        assert_eq!(inquiry.incident.indicators, expected(&name), "{name}");
        assert_eq!(inquiry.attachments.len(), 1, "{name}");
        assert_eq!(
            inquiry.attachments[0].content,
            AttachmentContent::Iodef(bytes.clone()),
            "{name}"
        );
        assert!(
            !inquiry.incident.summary.original.trim().is_empty(),
            "{name}"
        );
        // Within every protocol limit: the inquiry can be sent as is.
        let message = Message {
            header: world.header("EST.cert", "FRA.cert", &name),
            body: Body::Inquiry(inquiry.clone()),
        };
        message
            .encode()
            .unwrap_or_else(|e| panic!("{name}: imported inquiry not sendable: {e}"));
        assert!(
            !inquiry.incident.summary.original.contains('\n'),
            "{name}: whitespace not collapsed"
        );
        assert_eq!(
            inquiry.contact.email.as_deref(),
            Some(if name == "GuidanceDraft_DDoS.xml" {
                "contact@dummytest.com"
            } else {
                "contact@csirt.example.com"
            }),
            "{name}"
        );
    }
}

#[test]
fn fixture_fields_are_mapped() {
    let Some(dir) = fixtures_dir() else { return };
    let read = |f: &str| std::fs::read(dir.join("iodef").join(f)).unwrap();

    let ddos = iodef::import(&read("GuidanceDraft_DDoS.xml")).unwrap();
    let i = &ddos.inquiry.incident;
    assert_eq!(i.summary.original, "DDoS Traffic Seen");
    assert_eq!(i.category, Some(IncidentCategory::DenialOfService));
    // StartTime 2013-02-05T00:34:45+00:00 wins over DetectTime.
    assert_eq!(i.first_seen, Some(Timestamp(1_360_024_485)));
    assert_eq!(i.last_seen, None);
    assert!(
        i.impact
            .as_ref()
            .unwrap()
            .original
            .contains("SystemImpact (type=availability-system, severity=medium): DDoS Traffic")
    );
    assert_eq!(ddos.inquiry.requester.entity.as_deref(), Some("Dummy Test"));
    // restriction="default" → confidential, with a note.
    assert_eq!(ddos.handling, Handling::Confidential);
    assert!(
        ddos.notes
            .iter()
            .any(|n| n.contains("no explicit restriction"))
    );

    let spear = iodef::import(&read("GuidanceDraft_SpearPhishing.xml")).unwrap();
    let i = &spear.inquiry.incident;
    assert_eq!(
        i.summary.original,
        "Zeus Spear Phishing E-mail with Malware Attachment"
    );
    assert_eq!(i.category, Some(IncidentCategory::Phishing));
    assert_eq!(i.first_seen, Some(Timestamp(1_357_286_494))); // 08:01:34Z
    assert_eq!(i.last_seen, Some(Timestamp(1_357_288_287))); // 08:31:27Z
    assert!(spear.notes.iter().any(|n| n.contains("CertificateData")));

    let campaign = iodef::import(&read("RFC7970_CampaignIndicator.xml")).unwrap();
    assert_eq!(campaign.handling, Handling::Tlp(Tlp::Green));
    assert_eq!(
        campaign.inquiry.incident.summary.original,
        "Summarizes the Indicators of Compromise for the Orange Giraffe campaign of the Aggressive Butterfly crime gang."
    );

    let minimal = iodef::import(&read("RFC7970_MinimalIODEF.xml")).unwrap();
    assert_eq!(minimal.handling, Handling::Confidential);
    assert_eq!(
        minimal.inquiry.incident.summary.original,
        "IODEF incident 492382"
    );
    assert_eq!(minimal.inquiry.requester.entity, None);
    assert_eq!(
        minimal.inquiry.contact.email.as_deref(),
        Some("contact@csirt.example.com")
    );

    let malware = iodef::import(&read("GuidanceDraft_Malware.xml")).unwrap();
    assert!(
        malware
            .notes
            .iter()
            .any(|n| n.contains("WindowsRegistryKeysModified"))
    );
    assert!(
        malware
            .notes
            .iter()
            .any(|n| n.contains("base64 of the hex text"))
    );
}

fn offline_schema(dir: &Path, fixtures: &Path) -> PathBuf {
    poc_interop::schema::write_offline(dir, &fixtures.join("iodef/iodef-2.0.xsd")).unwrap()
}

fn xmllint_available() -> bool {
    poc_interop::schema::xmllint_available()
}

fn assert_valid(schema: &Path, file: &Path) {
    if let Err(why) = poc_interop::schema::validate(schema, file) {
        panic!(
            "{why}\n{}",
            std::fs::read_to_string(file).unwrap_or_default()
        );
    }
}

#[test]
fn exports_of_every_fixture_validate_against_the_schema() {
    let Some(dir) = fixtures_dir() else { return };
    if !xmllint_available() {
        println!("xmllint not found (apt-get install libxml2-utils); skipping schema validation");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let schema = offline_schema(tmp.path(), &dir);
    // The stand-in schemas must accept the real samples, or they prove nothing.
    assert_valid(&schema, &dir.join("iodef/RFC7970_MinimalIODEF.xml"));
    assert_valid(&schema, &dir.join("iodef/GuidanceDraft_SpearPhishing.xml"));
    let responses = [Text::new("Blocked at the border <& logged>.")];
    for (n, path) in iodef_files(&dir).into_iter().enumerate() {
        let imported = iodef::import(&std::fs::read(&path).unwrap()).unwrap();
        for handling in [imported.handling, Handling::Tlp(Tlp::AmberStrict)] {
            let export = iodef::export(
                &imported.inquiry,
                &ExportOptions {
                    incident_id: "0123456789abcdef0123456789abcdef",
                    incident_id_name: "pocnet.example",
                    generation_time: Timestamp(1_700_000_000),
                    language: Language::French,
                    handling,
                    responses: &responses,
                },
            );
            let out = tmp.path().join(format!("export-{n}.xml"));
            std::fs::write(&out, &export.xml).unwrap();
            assert_valid(&schema, &out);
            // The export reads back with the same indicators (grouped by
            // element kind, so in another order) and handling.
            let again = iodef::import(export.xml.as_bytes()).unwrap();
            let (a, b) = (
                &again.inquiry.incident.indicators,
                &imported.inquiry.incident.indicators,
            );
            assert_eq!(a.len(), b.len(), "{}", path.display());
            assert!(
                b.iter().all(|i| a.contains(i)),
                "{}: {a:?} vs {b:?}",
                path.display()
            );
            assert_eq!(again.handling, handling);
            assert_eq!(
                again.inquiry.incident.first_seen,
                imported.inquiry.incident.first_seen
            );
        }
    }
}

#[test]
fn wrong_root_or_namespace_is_refused_with_the_reason() {
    let err = iodef::import(b"<IODEF-Document version=\"2.00\"/>").unwrap_err();
    assert!(
        matches!(err, IodefError::NotIodef(ref m) if m.contains("namespace")),
        "{err}"
    );
    let err = iodef::import(
        b"<IODEF-Document xmlns=\"urn:ietf:params:xml:ns:iodef-1.0\" version=\"1.00\"/>",
    )
    .unwrap_err();
    assert!(err.to_string().contains("iodef-1.0"), "{err}");
    let err = iodef::import(b"<html xmlns=\"urn:ietf:params:xml:ns:iodef-2.0\"/>").unwrap_err();
    assert!(err.to_string().contains("<html>"), "{err}");
    let err = iodef::import(b"not xml at all").unwrap_err();
    assert!(
        matches!(err, IodefError::NotIodef(_) | IodefError::Syntax(_)),
        "{err}"
    );
}

fn refused_quickly(input: &[u8]) -> IodefError {
    let start = Instant::now();
    let err = iodef::import(input).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    err
}

#[test]
fn billion_laughs_is_refused() {
    let mut doc =
        String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n<!ENTITY lol \"lol\">\n");
    for i in 1..10 {
        let prev = if i == 1 {
            "lol".to_string()
        } else {
            format!("lol{}", i - 1)
        };
        doc.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">\n",
            format!("&{prev};").repeat(10)
        ));
    }
    doc.push_str(
        "]>\n<IODEF-Document xmlns=\"urn:ietf:params:xml:ns:iodef-2.0\">&lol9;</IODEF-Document>",
    );
    assert_eq!(refused_quickly(doc.as_bytes()), IodefError::DoctypeRefused);
}

#[test]
fn external_entity_is_refused() {
    let doc = b"<?xml version=\"1.0\"?>\n<!DOCTYPE x [ <!ENTITY xxe SYSTEM \"file:///etc/passwd\"> ]>\n<IODEF-Document xmlns=\"urn:ietf:params:xml:ns:iodef-2.0\" version=\"2.00\"><Incident purpose=\"reporting\"><IncidentID name=\"x\">&xxe;</IncidentID></Incident></IODEF-Document>";
    assert_eq!(refused_quickly(doc), IodefError::DoctypeRefused);
    // Without a DOCTYPE, an undeclared entity is refused too, never looked up.
    let doc = b"<IODEF-Document xmlns=\"urn:ietf:params:xml:ns:iodef-2.0\" version=\"2.00\"><Incident purpose=\"reporting\"><IncidentID name=\"x\">&xxe;</IncidentID></Incident></IODEF-Document>";
    assert_eq!(
        refused_quickly(doc),
        IodefError::UndefinedEntity("xxe".into())
    );
}

#[test]
fn deep_nesting_is_refused() {
    let depth = 10_000;
    let mut doc = String::from(
        "<IODEF-Document xmlns=\"urn:ietf:params:xml:ns:iodef-2.0\" version=\"2.00\">",
    );
    doc.push_str(&"<a>".repeat(depth));
    doc.push_str(&"</a>".repeat(depth));
    doc.push_str("</IODEF-Document>");
    assert_eq!(
        refused_quickly(doc.as_bytes()),
        IodefError::TooDeep { limit: 64 }
    );
}

#[test]
fn huge_attribute_is_refused() {
    let doc = format!(
        "<IODEF-Document xmlns=\"urn:ietf:params:xml:ns:iodef-2.0\" version=\"2.00\"><Incident purpose=\"{}\"/></IODEF-Document>",
        "a".repeat(1024 * 1024)
    );
    assert_eq!(
        refused_quickly(doc.as_bytes()),
        IodefError::ValueTooLong { limit: 64 * 1024 }
    );
}

#[test]
fn huge_text_and_huge_input_are_refused() {
    let doc = format!(
        "<IODEF-Document xmlns=\"urn:ietf:params:xml:ns:iodef-2.0\" version=\"2.00\"><Incident purpose=\"reporting\"><Description>{}</Description></Incident></IODEF-Document>",
        "a".repeat(100 * 1024)
    );
    assert_eq!(
        refused_quickly(doc.as_bytes()),
        IodefError::ValueTooLong { limit: 64 * 1024 }
    );
    let big = vec![b' '; 5 * 1024 * 1024];
    assert!(matches!(
        refused_quickly(&big),
        IodefError::TooLarge { limit, .. } if limit == poc_proto::limits::MAX_ATTACHMENT_BYTES
    ));
}

#[test]
fn many_indicators_stay_fast_and_capped() {
    let mut doc = String::from(
        "<IODEF-Document xmlns=\"urn:ietf:params:xml:ns:iodef-2.0\" version=\"2.00\"><Incident purpose=\"reporting\"><IncidentID name=\"x\">1</IncidentID><GenerationTime>2024-01-01T00:00:00Z</GenerationTime><Contact role=\"creator\" type=\"organization\"/><EventData><Flow><System><Node>",
    );
    for i in 0..20_000u32 {
        let [_, a, b, c] = i.to_be_bytes();
        doc.push_str(&format!(
            "<Address category=\"ipv4-addr\">10.{a}.{b}.{c}</Address>"
        ));
    }
    doc.push_str("</Node></System></Flow></EventData></Incident></IODEF-Document>");
    let start = Instant::now();
    let imported = iodef::import(doc.as_bytes()).unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(imported.inquiry.incident.indicators.len(), 4096);
    assert_eq!(
        imported
            .notes
            .iter()
            .filter(|n| n.contains("more than 4096"))
            .count(),
        1
    );
}
