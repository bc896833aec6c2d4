//! STIX 2.1 bundle validation, indicator export/import round trip and the
//! TLP 2.0 marking ids.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use poc_interop::stix::{self, StixError};
use poc_interop::tlp::{self, Mapped};
use poc_proto::message::{Handling, HashAlgorithm, Indicator, IpAddress, Tlp, TransportProtocol};
use poc_proto::time::Timestamp;
use serde_json::json;

fn sample_indicators() -> Vec<Indicator> {
    vec![
        Indicator::Ip(IpAddress::V4([192, 0, 2, 1])),
        Indicator::Ip(IpAddress::from(
            "2001:db8::1".parse::<std::net::IpAddr>().unwrap(),
        )),
        Indicator::Network {
            address: IpAddress::V4([198, 51, 100, 0]),
            prefix_len: 24,
        },
        Indicator::Port {
            number: 443,
            protocol: Some(TransportProtocol::Tcp),
        },
        Indicator::Port {
            number: 53,
            protocol: None,
        },
        Indicator::Domain("evil.example.com".into()),
        Indicator::Url("http://evil.example.com/a?b='c'&d=\\e".into()),
        Indicator::Email("bad@evil.example.com".into()),
        Indicator::Hash {
            algorithm: HashAlgorithm::Sha256,
            digest: vec![0xab; 32],
        },
        Indicator::Hash {
            algorithm: HashAlgorithm::Md5,
            digest: vec![0x01; 16],
        },
        Indicator::Asn(64496),
        Indicator::Other {
            kind: "http-user-agent".into(),
            value: "Mozilla/5.0 ' AND x = 'y".into(),
        },
    ]
}

#[test]
fn export_import_round_trips_and_validates() {
    let indicators = sample_indicators();
    let bundle = stix::export_indicators(
        &indicators,
        Handling::Tlp(Tlp::Amber),
        Timestamp(1_700_000_000),
    );
    assert_eq!(stix::import_indicators(&bundle), indicators);
    let bytes = serde_json::to_vec(&bundle).unwrap();
    let summary = stix::validate_bundle(&bytes).unwrap();
    assert_eq!(summary.counts["indicator"], indicators.len());
    assert_eq!(summary.counts["marking-definition"], 1);
    assert_eq!(summary.tlp, vec![Tlp::Amber]);
    assert_eq!(
        summary.indicator_patterns[0],
        "[ipv4-addr:value = '192.0.2.1']"
    );
    let first = &bundle["objects"][1];
    assert_eq!(first["valid_from"], "2023-11-14T22:13:20.000Z");
    assert_eq!(first["spec_version"], "2.1");
    assert_eq!(first["pattern_type"], "stix");
    assert_eq!(
        first["object_marking_refs"],
        json!(["marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"])
    );
    // Deterministic ids.
    let again = stix::export_indicators(
        &indicators,
        Handling::Tlp(Tlp::Amber),
        Timestamp(1_700_000_000),
    );
    assert_eq!(bundle, again);
    let id = first["id"].as_str().unwrap();
    assert_eq!(&id[..11], "indicator--");
    assert_eq!(&id[25..26], "5", "UUID version 5: {id}");
}

#[test]
fn confidential_exports_without_tlp_marking() {
    let bundle = stix::export_indicators(
        &sample_indicators()[..1],
        Handling::Confidential,
        Timestamp(0),
    );
    let objects = bundle["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 1);
    assert!(objects[0].get("object_marking_refs").is_none());
}

fn bundle_with(objects: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": "bundle",
        "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
        "objects": objects
    }))
    .unwrap()
}

#[test]
fn a_valid_third_party_bundle_summarises() {
    let bytes = bundle_with(json!([
        {
            "type": "indicator", "spec_version": "2.1",
            "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
            "created": "2016-04-06T20:03:48.000Z", "modified": "2016-04-06T20:03:48.000Z",
            "pattern": "[file:hashes.'SHA-256' = 'ef537f25c895bfa782526529a9b63d97aa631564d5d789c2b765448c8635fb6c']",
            "pattern_type": "stix", "valid_from": "2016-01-01T00:00:00Z",
            "object_marking_refs": ["marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"]
        },
        {
            "type": "malware", "spec_version": "2.1",
            "id": "malware--31b940d4-6f7f-459a-80ea-9c1f17b5891b",
            "created": "2016-04-06T20:07:09.000Z", "modified": "2016-04-06T20:07:09.000Z",
            "name": "Poison Ivy", "is_family": false
        },
        { "type": "ipv4-addr", "id": "ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742dd", "value": "198.51.100.3" }
    ]));
    let summary = stix::validate_bundle(&bytes).unwrap();
    assert_eq!(summary.counts.len(), 3);
    assert_eq!(summary.tlp, vec![Tlp::Red]);
    assert_eq!(summary.indicator_patterns.len(), 1);
    let imported = stix::import_indicators(&serde_json::from_slice(&bytes).unwrap());
    assert_eq!(imported.len(), 1);
    assert!(matches!(
        imported[0],
        Indicator::Hash {
            algorithm: HashAlgorithm::Sha256,
            ..
        }
    ));
}

#[test]
fn malformed_bundles_get_clear_errors() {
    // Not a bundle.
    let err = stix::validate_bundle(
        br#"{"type":"indicator","id":"indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"}"#,
    )
    .unwrap_err();
    assert!(
        matches!(err, StixError::NotBundle(ref m) if m.contains("\"indicator\"")),
        "{err}"
    );
    let err = stix::validate_bundle(b"[1,2]").unwrap_err();
    assert!(matches!(err, StixError::NotBundle(_)), "{err}");
    let err = stix::validate_bundle(b"{\"type\": ").unwrap_err();
    assert!(matches!(err, StixError::Json(_)), "{err}");
    // Bad bundle id.
    let err = stix::validate_bundle(br#"{"type":"bundle","id":"bundle--nope","objects":[]}"#)
        .unwrap_err();
    assert!(err.to_string().contains("UUID"), "{err}");

    let good = json!({ "type": "ipv4-addr", "id": "ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742dd", "value": "198.51.100.3" });
    // Missing type, at index 1.
    let err = stix::validate_bundle(&bundle_with(
        json!([good, { "id": "malware--31b940d4-6f7f-459a-80ea-9c1f17b5891b" }]),
    ))
    .unwrap_err();
    assert_eq!(
        err,
        StixError::Object {
            index: 1,
            reason: "missing string property \"type\"".into()
        }
    );
    assert!(err.to_string().starts_with("STIX bundle object 1:"));
    // Bad id.
    let err = stix::validate_bundle(&bundle_with(
        json!([{ "type": "malware", "spec_version": "2.1", "id": "malware--xyz" }]),
    ))
    .unwrap_err();
    assert!(
        matches!(err, StixError::Object { index: 0, ref reason } if reason.contains("UUID")),
        "{err}"
    );
    // Id of another type.
    let err = stix::validate_bundle(&bundle_with(json!([{ "type": "malware", "spec_version": "2.1", "id": "tool--31b940d4-6f7f-459a-80ea-9c1f17b5891b" }]))).unwrap_err();
    assert!(
        err.to_string().contains("does not start with its type"),
        "{err}"
    );
    // SDO without spec_version.
    let err = stix::validate_bundle(&bundle_with(
        json!([{ "type": "malware", "id": "malware--31b940d4-6f7f-459a-80ea-9c1f17b5891b" }]),
    ))
    .unwrap_err();
    assert!(err.to_string().contains("spec_version"), "{err}");
    // STIX 2.0 spec_version.
    let err = stix::validate_bundle(&bundle_with(json!([{ "type": "malware", "spec_version": "2.0", "id": "malware--31b940d4-6f7f-459a-80ea-9c1f17b5891b" }]))).unwrap_err();
    assert!(err.to_string().contains("not \"2.1\""), "{err}");
}

#[test]
fn tlp_marking_ids_are_the_official_ones() {
    let expected = [
        (
            Tlp::Clear,
            "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
        ),
        (
            Tlp::Green,
            "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
        ),
        (
            Tlp::Amber,
            "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
        ),
        (
            Tlp::AmberStrict,
            "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
        ),
        (
            Tlp::Red,
            "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
        ),
    ];
    for (t, id) in expected {
        assert_eq!(tlp::to_stix_marking(Handling::Tlp(t)), Some(id));
        assert_eq!(tlp::from_stix_marking(id), Some(t));
        assert_eq!(tlp::stix_marking_object(t)["id"], id);
    }
    assert_eq!(tlp::to_stix_marking(Handling::Confidential), None);
}

#[test]
fn iodef_restriction_mapping() {
    use Handling::{Confidential, Tlp as T};
    for (handling, restriction) in [
        (Confidential, "private"),
        (T(Tlp::Clear), "white"),
        (T(Tlp::Green), "green"),
        (T(Tlp::Amber), "amber"),
        (T(Tlp::Red), "red"),
    ] {
        assert_eq!(
            tlp::to_iodef_restriction(handling),
            Mapped::Exact(restriction)
        );
        assert_eq!(
            tlp::from_iodef_restriction(Some(restriction)),
            Mapped::Exact(handling)
        );
    }
    let strict = tlp::to_iodef_restriction(T(Tlp::AmberStrict));
    assert!(strict.note().unwrap().contains("AMBER+STRICT"));
    assert_eq!(strict.value(), "need-to-know");
    assert_eq!(
        tlp::from_iodef_restriction(Some("need-to-know")).value(),
        T(Tlp::AmberStrict)
    );
    assert_eq!(
        tlp::from_iodef_restriction(Some("public")).value(),
        T(Tlp::Clear)
    );
    assert_eq!(
        tlp::from_iodef_restriction(Some("partner")).value(),
        T(Tlp::Green)
    );
    assert_eq!(tlp::from_iodef_restriction(None).value(), Confidential);
    assert_eq!(
        tlp::from_iodef_restriction(Some("ext-value")).value(),
        Confidential
    );
}
