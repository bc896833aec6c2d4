//! `poc state sign-entry`: the State root key holder signs what the
//! directory lists for one of its PoCs (contact details, languages, or a
//! revocation), next to the PoC's certificate, as one submission file for
//! the directory manager (`poc-directory submit`). The manager cannot
//! write or alter it: the directory refuses entries not signed by the
//! State's enrolled root key, and every node of the State alerts if one
//! appears.

use std::path::PathBuf;

use clap::Args;
use poc_keyfile::KeyKind;
use poc_proto::Issuer;
use poc_proto::certificate::PocCertificate;
use poc_proto::directory::{EntryDetails, EntrySubmission, SignedEntryDetails};
use poc_proto::keys::StateRootKeyPair;
use poc_proto::message::Language;

use crate::fail::{fail, usage};

/// `poc state sign-entry`.
#[derive(Debug, Args)]
pub(crate) struct SignEntryArgs {
    /// The State root secret key (from `poc state init`).
    #[arg(long, value_name = "FILE")]
    root_key: PathBuf,
    /// The PoC's certificate (from `poc state sign-cert`).
    #[arg(long, value_name = "FILE")]
    cert: PathBuf,
    /// Entity or institution, e.g. "CERT-EE".
    #[arg(long)]
    entity: String,
    /// Person's name (optional).
    #[arg(long)]
    name: Option<String>,
    /// Person's title (optional).
    #[arg(long)]
    title: Option<String>,
    /// Telephone, international format.
    #[arg(long)]
    phone: Option<String>,
    /// E-mail address.
    #[arg(long)]
    email: Option<String>,
    /// Working languages, comma-separated UN official language tags (ar, zh, en, fr, ru, es).
    #[arg(long, value_delimiter = ',', default_value = "en")]
    works_in: Vec<String>,
    /// The language the entry is written in.
    #[arg(long, default_value = "en")]
    lang: String,
    /// English translation of the entity and title, if --lang is not en.
    #[arg(long)]
    english: Option<String>,
    /// Revision: one more than the last one submitted for this PoC (1 for the first).
    #[arg(long, default_value_t = 1)]
    revision: u64,
    /// Revoke the PoC (with a revision above the listed one).
    #[arg(long)]
    revoke: bool,
    /// Where to write the submission, e.g. EST.cert.entry.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

fn language(tag: &str) -> anyhow::Result<Language> {
    Language::from_tag(tag.trim()).ok_or_else(|| {
        usage(
            format!("{tag:?} is not one of the six UN official languages"),
            "use ar, zh, en, fr, ru or es",
        )
    })
}

/// Signs the entry and writes the submission file.
pub(crate) fn sign_entry(a: SignEntryArgs) -> anyhow::Result<String> {
    if a.out.exists() {
        return Err(fail(
            format!("{} already exists; nothing was written", a.out.display()),
            "choose another --out",
        ));
    }
    let secret = poc_keyfile::read_secret(&a.root_key, KeyKind::StateRoot).map_err(|e| {
        fail(
            e.to_string(),
            "pass the State root key written by `poc state init`",
        )
    })?;
    let root = StateRootKeyPair::from_secret_bytes(&secret.secret);
    let bytes = std::fs::read(&a.cert).map_err(|e| {
        fail(
            format!("cannot read {}: {e}", a.cert.display()),
            "pass the certificate written by `poc state sign-cert`",
        )
    })?;
    let certificate = PocCertificate::from_bytes(&bytes).map_err(|e| {
        fail(
            format!("{} is not a PoC certificate: {e}", a.cert.display()),
            "pass the certificate written by `poc state sign-cert`",
        )
    })?;
    let verified = certificate.verify_by_state(&root.public()).map_err(|e| {
        fail(
            format!("{} is not signed by this root key ({e})", a.cert.display()),
            "sign the entry with the root key that signed the certificate",
        )
    })?;
    let state = match verified.body().issuer {
        Issuer::State(state) => state,
        Issuer::DirectoryManager => {
            return Err(fail(
                "the certificate is the directory manager's",
                "pass one of your State's PoC certificates",
            ));
        }
    };
    let details = EntryDetails {
        poc_id: verified.poc_id().clone(),
        revision: a.revision,
        entity: a.entity,
        person_name: a.name,
        person_title: a.title,
        phone: a.phone,
        email: a.email,
        working_languages: a
            .works_in
            .iter()
            .filter(|t| !t.trim().is_empty())
            .map(|t| language(t))
            .collect::<anyhow::Result<_>>()?,
        language: language(&a.lang)?,
        english: a.english,
        revoked: a.revoke,
    };
    let submission = EntrySubmission {
        certificate,
        details: SignedEntryDetails::sign(&details, &root).map_err(|e| {
            usage(
                format!("the entry is not valid: {e}"),
                "shorten the field it names",
            )
        })?,
    };
    let bytes = submission.to_bytes().map_err(|e| {
        usage(
            format!("the entry is not valid: {e}"),
            "shorten the field it names",
        )
    })?;
    std::fs::write(&a.out, bytes).map_err(|e| {
        fail(
            format!("cannot write {}: {e}", a.out.display()),
            "check the path",
        )
    })?;
    Ok(format!(
        "{} entry revision {} signed with {state}'s root key{}.\n  file: {}\nNext: give it to the directory manager (`poc-directory submit`).\n",
        details.poc_id,
        details.revision,
        if details.revoked { " (REVOCATION)" } else { "" },
        a.out.display()
    ))
}
