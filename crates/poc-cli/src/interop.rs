//! The CERT formats at the command line: `poc inquire --from-iodef`,
//! `--attach-stix`, `poc export --iodef/--stix`, and the STIX summary in
//! `poc show`. The formats themselves live in `poc-interop`; this module only
//! reads files, reports lossy mappings to the operator and writes results.

use std::path::Path;

use poc_control::{MessageView, Request, ThreadView};
use poc_interop::{iodef, stix};
use poc_proto::Body;
use poc_proto::message::{Attachment, AttachmentContent, Handling, Indicator, Inquiry, Text};

use crate::daemon::{Connection, Daemon, emit, resolve_thread};
use crate::fail::{fail, usage};
use crate::parse::{self, ThreadRef};
use crate::rng::now;

/// Reads a file the operator named after `flag`, refusing anything that
/// could not travel as an attachment (before reading it into memory).
pub(crate) fn read_file(path: &Path, flag: &str) -> anyhow::Result<Vec<u8>> {
    let shown = path.display();
    let max = poc_proto::limits::MAX_ATTACHMENT_BYTES;
    let meta = std::fs::metadata(path)
        .map_err(|e| usage(format!("{flag} {shown}: {e}"), "check the file name"))?;
    if !meta.is_file() {
        return Err(usage(
            format!("{flag} {shown}: not a regular file"),
            "give a file, not a directory",
        ));
    }
    if meta.len() > max as u64 {
        return Err(usage(
            format!("{flag} {shown} is {} bytes; the limit is {max}", meta.len()),
            "attach a smaller file, or agree another channel for large data",
        ));
    }
    std::fs::read(path).map_err(|e| usage(format!("{flag} {shown}: {e}"), "check the file"))
}

/// The file's own name (what the other side sees), or `default`.
pub(crate) fn file_name(path: &Path, default: &str) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| default.to_owned())
}

/// `--from-iodef FILE`: the inquiry an IODEF document describes (the document
/// attached unchanged) and its handling label. What the import could not map
/// exactly is printed as notes, so the operator knows before sending.
pub(crate) fn inquiry_from_iodef(path: &Path) -> anyhow::Result<(Inquiry, Handling)> {
    let bytes = read_file(path, "--from-iodef")?;
    let imported = iodef::import(&bytes).map_err(|e| {
        usage(
            format!("--from-iodef {}: {e}", path.display()),
            "give an IODEF 2.0 (RFC 7970) XML document, or attach the file with --attach instead",
        )
    })?;
    let mut inquiry = imported.inquiry;
    // The import names the attachment generically; the operator's file name
    // is what the other side will recognise.
    let name = file_name(path, "incident.xml");
    for attachment in &mut inquiry.attachments {
        if matches!(attachment.content, AttachmentContent::Iodef(_)) {
            attachment.name.clone_from(&name);
        }
    }
    for note in &imported.notes {
        eprintln!("note: {note}");
    }
    Ok((inquiry, imported.handling))
}

/// `--attach-stix FILE`: a STIX 2.1 bundle, checked before it is attached.
pub(crate) fn stix_attachment(path: &Path) -> anyhow::Result<Attachment> {
    let bytes = read_file(path, "--attach-stix")?;
    stix::validate_bundle(&bytes).map_err(|e| {
        usage(
            format!("--attach-stix {}: {e}", path.display()),
            "fix the bundle (STIX 2.1: type \"bundle\", an id bundle--<uuid>, objects each with type, id and spec_version \"2.1\"), or send it with --attach as an opaque file",
        )
    })?;
    Ok(Attachment {
        name: file_name(path, "bundle.json"),
        content: AttachmentContent::Stix(bytes),
    })
}

/// Lines describing a STIX attachment in `poc show`: its objects by type, the
/// TLP markings it carries and its indicator patterns.
pub(crate) fn stix_summary(bytes: &[u8]) -> Vec<String> {
    let summary = match stix::validate_bundle(bytes) {
        Ok(summary) => summary,
        Err(e) => return vec![format!("not a valid STIX 2.1 bundle: {e}")],
    };
    let counts = summary
        .counts
        .iter()
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut lines = vec![format!("STIX 2.1 {}: {counts}", summary.id)];
    if !summary.tlp.is_empty() {
        let labels = summary
            .tlp
            .iter()
            .map(|t| Handling::Tlp(*t).to_string())
            .collect::<Vec<_>>()
            .join(", ");
        lines.push(format!("marked {labels}"));
    }
    const SHOWN: usize = 20;
    for pattern in summary.indicator_patterns.iter().take(SHOWN) {
        lines.push(format!("indicator {pattern}"));
    }
    if summary.indicator_patterns.len() > SHOWN {
        lines.push(format!(
            "... and {} more indicators",
            summary.indicator_patterns.len() - SHOWN
        ));
    }
    lines
}

/// The format `poc export` writes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ExportFormat {
    /// IODEF 2.0 XML.
    Iodef,
    /// A STIX 2.1 bundle of the thread's indicators.
    Stix,
}

/// `poc export --iodef|--stix THREAD [--out FILE]`.
pub(crate) fn export(
    connection: &Connection,
    thread: &ThreadRef,
    format: ExportFormat,
    out: Option<&Path>,
) -> anyhow::Result<u8> {
    let mut daemon = Daemon::connect(connection)?;
    let id = resolve_thread(&mut daemon, thread)?;
    let view: ThreadView = daemon.typed(&Request::Thread { thread: id })?;
    let Some((message, inquiry)) = view.messages.iter().find_map(|m| match &m.body {
        Body::Inquiry(q) => Some((m, q)),
        _ => None,
    }) else {
        return Err(fail(
            format!("thread {id} has no inquiry ({})", view.summary.state),
            "only incident threads can be exported; see `poc show`",
        ));
    };
    let handling = parse::handling(&message.handling).map_err(|e| {
        fail(
            format!("the inquiry's handling label: {e}"),
            "poc and pocd may be different versions",
        )
    })?;
    let (document, notes) = match format {
        ExportFormat::Iodef => {
            let language = parse::language(&message.language).map_err(|e| {
                fail(
                    format!("the inquiry's language: {e}"),
                    "poc and pocd may be different versions",
                )
            })?;
            let responses = thread_texts(&view.messages);
            let incident_id = id.to_string();
            let issuer = message.sender.to_string();
            let exported = iodef::export(
                inquiry,
                &iodef::ExportOptions {
                    incident_id: &incident_id,
                    incident_id_name: &issuer,
                    generation_time: now(),
                    language,
                    handling,
                    responses: &responses,
                },
            );
            (exported.xml, exported.notes)
        }
        ExportFormat::Stix => {
            let indicators = thread_indicators(&view.messages);
            let mut notes = Vec::new();
            if handling == Handling::Confidential {
                notes.push(
                    "the thread is CONFIDENTIAL, which has no TLP marking: the bundle is unmarked and must not leave the thread's parties".to_owned(),
                );
            }
            let bundle = stix::export_indicators(&indicators, handling, message.at);
            let mut text = serde_json::to_string_pretty(&bundle)?;
            text.push('\n');
            (text, notes)
        }
    };
    // The label goes before the content (TLP 2.0), on the terminal even when
    // the document itself goes to a file.
    eprintln!("{handling}");
    for note in &notes {
        eprintln!("note: {note}");
    }
    match out {
        Some(path) => {
            std::fs::write(path, document.as_bytes()).map_err(|e| {
                fail(
                    format!("cannot write {}: {e}", path.display()),
                    "check the directory exists and is writable",
                )
            })?;
            eprintln!("wrote {}", path.display());
        }
        None => emit(&document)?,
    }
    Ok(0)
}

/// Texts of the thread's responses, follow-ups and closing note, in order.
fn thread_texts(messages: &[MessageView]) -> Vec<Text> {
    let mut texts = Vec::new();
    for m in messages {
        match &m.body {
            Body::Response(r) => match &r.outcome {
                poc_proto::message::ResponseOutcome::Immediate { answer } => {
                    texts.push(answer.clone());
                }
                poc_proto::message::ResponseOutcome::WillFollowUp { note, .. } => {
                    texts.extend(note.clone());
                }
            },
            Body::FollowUp(f) => texts.push(f.text.clone()),
            Body::Close(c) => texts.extend(c.note.clone()),
            _ => {}
        }
    }
    texts
}

/// The inquiry's indicators and those added by follow-ups, each once.
fn thread_indicators(messages: &[MessageView]) -> Vec<Indicator> {
    let mut all: Vec<Indicator> = Vec::new();
    for m in messages {
        let found = match &m.body {
            Body::Inquiry(q) => &q.incident.indicators,
            Body::FollowUp(f) => &f.indicators,
            _ => continue,
        };
        for indicator in found {
            if !all.contains(indicator) {
                all.push(indicator.clone());
            }
        }
    }
    all
}
