//! Directory snapshots at scale: build + sign (what the service does on
//! every change) and node-side decode + verify (the manager's signature,
//! then every entry's certificate and State-signed details under its
//! State's root key) for 1,000 and 10,000 PoCs, against the Ed25519
//! primitives they cost, measured in the same run.
//!
//! `cargo bench -p poc-directory --bench snapshot` runs criterion (10
//! samples per size), then times each operation and its baseline itself
//! (median of 7 interleaved rounds) and prints the table used in
//! BENCHMARKS.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use poc_proto::certificate::{CertificateBody, Endpoint, PocCertificate, Prekey, PrekeyId};
use poc_proto::directory::{
    DirectoryEntry, EntryDetails, SignedEntryDetails, SignedSnapshot, SnapshotBody, SnapshotDigest,
    StateEnrolment,
};
use poc_proto::keys::{
    IdentityKeyPair, ManagerKeyPair, PrekeySecret, SignatureLabel, StateRootKeyPair,
};
use poc_proto::message::Language;
use poc_proto::{Issuer, PocId, Role, Seconds, StateCode, Timestamp};

const NOW: Timestamp = Timestamp(1_800_000_000);
const POCS_PER_STATE: usize = 50;

/// The `i`-th officially assigned ISO 3166-1 alpha-3 code (249 exist).
fn state_code(i: usize) -> StateCode {
    let letters = b'A'..=b'Z';
    letters
        .clone()
        .flat_map(|a| {
            let letters = letters.clone();
            letters.clone().flat_map(move |b| {
                letters
                    .clone()
                    .map(move |c| String::from_utf8(vec![a, b, c]).unwrap())
            })
        })
        .filter_map(|code| StateCode::new(&code).ok())
        .nth(i)
        .unwrap()
}

struct Fixture {
    manager: ManagerKeyPair,
    states: Vec<StateEnrolment>,
    entries: Vec<DirectoryEntry>,
}

fn fixture(n: usize) -> Fixture {
    let manager = ManagerKeyPair::from_secret_bytes(&[1; 32]);
    let prekey = PrekeySecret::from_secret_bytes(&[2; 32]).public();
    let mut states = Vec::new();
    let mut entries = Vec::new();
    let mut roots: Vec<StateRootKeyPair> = Vec::new();
    for i in 0..n {
        let s = i / POCS_PER_STATE;
        if roots.len() <= s {
            let mut seed = [7u8; 32];
            seed[..8].copy_from_slice(&(s as u64).to_le_bytes());
            let root = StateRootKeyPair::from_secret_bytes(&seed);
            states.push(StateEnrolment {
                state: state_code(s),
                root_key: root.public(),
            });
            roots.push(root);
        }
        let state = state_code(s);
        let root = &roots[s];
        let mut seed = [9u8; 32];
        seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let poc_id = PocId::new(format!("{state}.poc{i}")).unwrap();
        let body = CertificateBody {
            poc_id: poc_id.clone(),
            issuer: Issuer::State(state),
            role: if i % 2 == 0 {
                Role::Technical
            } else {
                Role::Diplomatic
            },
            identity_key: IdentityKeyPair::from_secret_bytes(&seed).public(),
            prekey: Prekey {
                id: PrekeyId(i as u64),
                public: prekey,
                valid_from: NOW,
                valid_until: NOW.plus(Seconds::days(365)),
            },
            valid_from: NOW,
            valid_until: NOW.plus(Seconds::days(365)),
            endpoints: vec![Endpoint::Direct {
                address: format!("node{i}.example.invalid:7401"),
            }],
        };
        let details = EntryDetails {
            poc_id,
            revision: 1,
            entity: format!("{state} national CERT"),
            person_name: Some("Duty officer".into()),
            person_title: Some("Head of incident response".into()),
            phone: Some("+000 000 0000".into()),
            email: Some(format!("poc{i}@example.invalid")),
            working_languages: vec![Language::English, Language::French],
            language: Language::English,
            english: None,
            revoked: false,
        };
        entries.push(DirectoryEntry {
            certificate: PocCertificate::issue_by_state(&body, root).unwrap(),
            prekeys: vec![],
            revoked: false,
            details: Some(SignedEntryDetails::sign(&details, root).unwrap()),
        });
    }
    Fixture {
        manager,
        states,
        entries,
    }
}

fn build(f: &Fixture) -> Vec<u8> {
    let body = SnapshotBody {
        sequence: 2,
        previous: SnapshotDigest([3; 32]),
        issued_at: NOW,
        states: f.states.clone(),
        entries: f.entries.clone(),
    };
    SignedSnapshot::sign(&body, &f.manager).unwrap().to_bytes()
}

fn verify(f: &Fixture, bytes: &[u8]) -> usize {
    let dir = SignedSnapshot::from_bytes(bytes)
        .unwrap()
        .verify(&f.manager.public())
        .unwrap();
    assert!(dir.rejected().is_empty());
    dir.entries().len()
}

/// The signatures a node cannot avoid checking, done directly with
/// ed25519-dalek (`verify_strict`, the key parsed once, the label prefixed
/// as poc-proto does): one per snapshot plus two per entry (certificate and
/// details), over messages of the same sizes.
struct Primitives {
    key: ed25519_dalek::VerifyingKey,
    checks: Vec<(Vec<u8>, ed25519_dalek::Signature)>,
}

fn primitives(n: usize) -> Primitives {
    use ed25519_dalek::Signer;
    let signing = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
    let mut checks = Vec::new();
    for i in 0..(2 * n + 1) {
        let len = if i % 2 == 0 { 260 } else { 200 };
        let mut input = SignatureLabel::PocCertificate.bytes().to_vec();
        input.extend(std::iter::repeat_n(u8::try_from(i % 251).unwrap(), len));
        let sig = signing.sign(&input);
        checks.push((input, sig));
    }
    Primitives {
        key: signing.verifying_key(),
        checks,
    }
}

fn run_primitives(p: &Primitives) -> usize {
    p.checks
        .iter()
        .filter(|(input, sig)| p.key.verify_strict(input, sig).is_ok())
        .count()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let mut criterion = Criterion::default().sample_size(10).configure_from_args();
    let sizes = [1_000usize, 10_000];
    let fixtures: Vec<(usize, Fixture)> = sizes.iter().map(|&n| (n, fixture(n))).collect();
    {
        let mut group = criterion.benchmark_group("directory_snapshot");
        group.measurement_time(Duration::from_secs(5));
        for (n, f) in &fixtures {
            group.bench_with_input(BenchmarkId::new("build_sign", n), f, |b, f| {
                b.iter(|| black_box(build(f)))
            });
            let bytes = build(f);
            group.bench_with_input(BenchmarkId::new("verify", n), &bytes, |b, bytes| {
                b.iter(|| black_box(verify(f, bytes)))
            });
        }
        group.finish();
    }
    criterion.final_summary();
    if std::env::args().any(|a| a == "--bench") {
        println!(
            "\n{:>7} | {:>12} | {:>12} | {:>15} | {:>10} | {:>11}",
            "PoCs", "build+sign", "node verify", "2n+1 Ed25519 verifies", "verify/base", "bytes"
        );
        for (n, f) in &fixtures {
            let p = primitives(*n);
            let bytes = build(f);
            let (mut b, mut v, mut base) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..7 {
                let t = Instant::now();
                black_box(build(f));
                b.push(t.elapsed());
                let t = Instant::now();
                black_box(verify(f, &bytes));
                v.push(t.elapsed());
                let t = Instant::now();
                assert_eq!(black_box(run_primitives(&p)), 2 * n + 1);
                base.push(t.elapsed());
            }
            let (b, v, base) = (median(b), median(v), median(base));
            println!(
                "{:>7} | {:>9.1} ms | {:>9.1} ms | {:>18.1} ms | {:>9.2}x | {:>11}",
                n,
                b.as_secs_f64() * 1e3,
                v.as_secs_f64() * 1e3,
                base.as_secs_f64() * 1e3,
                v.as_secs_f64() / base.as_secs_f64(),
                bytes.len()
            );
        }
    }
}
