//! `poc-directory`: the directory manager's tool.
//!
//! ```text
//! poc-directory init  --out DIR                      # manager.key (0600), manager.pub
//! poc-directory build --manager-key manager.key --state EST=est/state-root.pub ...
//!                     --cert EST.cert.cert ... [--revoke POC_ID ...]
//!                     --sequence N [--previous PREV.snapshot] --out directory.snapshot
//! poc-directory show  directory.snapshot --manager-pub manager.pub [--json]
//!
//! poc-directory serve  --config poc-directory.toml    # the network service
//! poc-directory enrol  --config poc-directory.toml --state EST --root-key est/state-root.pub [--replace]
//! poc-directory submit --config poc-directory.toml EST.cert.entry ...
//! poc-directory export --config poc-directory.toml --out directory.snapshot [--sequence N]
//! poc-directory campaign start  --config poc-directory.toml
//! poc-directory campaign report --config poc-directory.toml [--campaign ID] [--json]
//! ```
//!
//! Exit codes: 0 success, 1 failure (including a snapshot with entries that
//! do not verify), 2 usage error.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli_service;
use poc_directory::snapshot::{BuildError, BuildInput, CertInput, StateInput};
use poc_directory::{inspect, manager, rng, snapshot};
use poc_keyfile::{KeyFileError, KeyKind};
use poc_proto::certificate::PocCertificate;
use poc_proto::directory::{DirectoryError, SignedSnapshot};
use poc_proto::keys::StateRootPublicKey;
use poc_proto::{PocId, StateCode};

/// The directory manager's tool: manager key, signed directory snapshots.
#[derive(Debug, Parser)]
#[command(name = "poc-directory", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the manager's key pair: DIR/manager.key (0600) and DIR/manager.pub.
    Init {
        /// Directory for the key files (created 0700 if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Build and sign a directory snapshot from State enrolments and PoC certificates.
    Build {
        /// The manager's secret key (from `poc-directory init`).
        #[arg(long, value_name = "FILE")]
        manager_key: PathBuf,
        /// Enrol a State: its code and its root public key file (repeatable).
        #[arg(long = "state", value_name = "CODE=FILE", value_parser = state_arg, required = true)]
        states: Vec<(StateCode, PathBuf)>,
        /// A PoC certificate signed by its State's root key (repeatable).
        #[arg(long = "cert", value_name = "FILE")]
        certs: Vec<PathBuf>,
        /// List this PoC as revoked (repeatable; it must be among the certificates).
        #[arg(long = "revoke", value_name = "POC_ID", value_parser = poc_id_arg)]
        revoke: Vec<PocId>,
        /// This snapshot's sequence number (1 for the first).
        #[arg(long, value_name = "N")]
        sequence: u64,
        /// The previous snapshot file (required from sequence 2 on).
        #[arg(long, value_name = "FILE")]
        previous: Option<PathBuf>,
        /// Where to write the signed snapshot.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Replace the output file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Verify a snapshot under the manager's public key and list it.
    Show {
        /// The snapshot file.
        file: PathBuf,
        /// The manager's public key file.
        #[arg(long, value_name = "FILE")]
        manager_pub: PathBuf,
        /// Print the listing as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the directory service (snapshots over QUIC, public overview, ping campaigns).
    Serve {
        /// The service configuration (poc-directory.toml).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Enrol a State's root public key (received through its Permanent Mission).
    Enrol {
        /// The service configuration.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The State (ISO 3166-1 alpha-3).
        #[arg(long, value_parser = state_code_arg)]
        state: StateCode,
        /// The State's root public key file (state-root.pub).
        #[arg(long, value_name = "FILE")]
        root_key: PathBuf,
        /// Replace the key of a State already enrolled (only on the State's
        /// request through its mission: every node of that State is alerted).
        #[arg(long)]
        replace: bool,
    },
    /// Add, update or revoke PoCs from entry submissions signed by their State's root key.
    Submit {
        /// The service configuration.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Entry submission files (`poc state sign-entry` or the library's EntrySubmission).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Write the newest snapshot (or snapshot N) to a file: a new node's first link.
    Export {
        /// The service configuration.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Which snapshot (default: the newest).
        #[arg(long, value_name = "N")]
        sequence: Option<u64>,
        /// Where to write it.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Ping campaigns: start one now, or report.
    #[command(subcommand)]
    Campaign(cli_service::CampaignCommand),
}

fn state_code_arg(text: &str) -> Result<StateCode, String> {
    StateCode::new(text.trim()).map_err(|e| e.to_string())
}

fn service_failure(e: anyhow::Error) -> Failure {
    Failure::new(
        format!("{e:#}"),
        "see the message above; nothing was changed unless it says so",
    )
}

fn state_arg(text: &str) -> Result<(StateCode, PathBuf), String> {
    let (code, path) = text.split_once('=').ok_or_else(|| {
        format!("{text:?} is not CODE=FILE; write e.g. --state EST=est/state-root.pub")
    })?;
    let state = StateCode::new(code.trim()).map_err(|e| e.to_string())?;
    if path.trim().is_empty() {
        return Err(format!("--state {text}: no file after `=`"));
    }
    Ok((state, PathBuf::from(path.trim())))
}

fn poc_id_arg(text: &str) -> Result<PocId, String> {
    PocId::new(text.trim()).map_err(|e| e.to_string())
}

/// An error for the operator: what happened and what to do next.
#[derive(Debug)]
struct Failure {
    message: String,
    hint: String,
    usage: bool,
}

impl Failure {
    fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            hint: hint.into(),
            usage: false,
        }
    }

    fn usage(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Failure {
            usage: true,
            ..Failure::new(message, hint)
        }
    }
}

fn keyfile(e: KeyFileError) -> Failure {
    let hint = match &e {
        KeyFileError::Exists { .. } => {
            "keys are never overwritten: choose another --out, or move the old key away if you really mean to replace it (every node pins manager.pub)"
        }
        KeyFileError::Permissions { .. } => "restrict the file as the message says before using it",
        KeyFileError::WrongKind { .. } => "pass the right key file",
        _ => "check the path; key files are written by `poc-directory init` and `poc state init`",
    };
    Failure::new(e.to_string(), hint)
}

fn ensure_dir(dir: &Path) -> Result<(), Failure> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            Failure::new(
                format!("cannot create directory {}: {e}", dir.display()),
                "check the path and your permissions",
            )
        })
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| {
        Failure::new(
            format!("cannot read {what} {}: {e}", path.display()),
            "check the file name",
        )
    })
}

fn init(out: &Path) -> Result<String, Failure> {
    for name in ["manager.key", "manager.pub"] {
        let path = out.join(name);
        if path.exists() {
            return Err(keyfile(KeyFileError::Exists { path }));
        }
    }
    ensure_dir(out)?;
    let created = manager::create(out).map_err(keyfile)?;
    let mut text = String::new();
    let _ = writeln!(text, "Directory manager key created.");
    let _ = writeln!(
        text,
        "  secret:  {}   (mode 0600: it signs every directory snapshot)",
        created.secret.display()
    );
    let _ = writeln!(text, "  public:  {}", created.public.display());
    let _ = writeln!(text, "  key:     {}", hex::encode(created.key.to_bytes()));
    let _ = writeln!(
        text,
        "Next: give {} to every State's node ([directory] manager_key in pocd.toml), and confirm the key above by a second channel.",
        created.public.display()
    );
    Ok(text)
}

fn build_hint(e: &BuildError) -> &'static str {
    match e {
        BuildError::SequenceZero => "give --sequence 1 for the first snapshot",
        BuildError::DuplicateState { .. } => "give each State's --state once",
        BuildError::Unreadable { .. } => {
            "pass the certificate file written by `poc state sign-cert`"
        }
        BuildError::StateNotEnrolled { .. } => {
            "enrol the State with --state CODE=state-root.pub (as registered through its Permanent Mission), or leave the certificate out"
        }
        BuildError::NotSignedByState { .. } => {
            "leave this certificate out, and ask the State to sign the PoC's request with the root key it enrolled (`poc state sign-cert`); if the State changed its root key, re-enrol it through its Permanent Mission first"
        }
        BuildError::ManagerIssued { .. } => "leave the certificate out",
        BuildError::DuplicatePoc { .. } => "keep only the current certificate of each PoC",
        BuildError::RevokeUnknown(_) => {
            "add the PoC's certificate with --cert so it stays listed as revoked, or drop --revoke"
        }
        BuildError::PreviousMissing { .. } => {
            "pass the snapshot this one follows with --previous, or --sequence 1 to start a chain"
        }
        BuildError::PreviousUnexpected => "drop --previous, or give the right --sequence",
        BuildError::PreviousInvalid(_) => {
            "pass the previous snapshot signed with this same manager key"
        }
        BuildError::PreviousSequence { .. } => {
            "give --sequence one more than the previous snapshot's"
        }
        _ => "nothing was written; report this with the command you ran",
    }
}

#[allow(clippy::too_many_arguments)]
fn build(
    manager_key: &Path,
    states: &[(StateCode, PathBuf)],
    certs: &[PathBuf],
    revoke: Vec<PocId>,
    sequence: u64,
    previous: Option<&Path>,
    out: &Path,
    force: bool,
) -> Result<String, Failure> {
    if out.exists() && !force {
        return Err(Failure::new(
            format!("{} already exists; nothing was written", out.display()),
            "choose another --out (keep every snapshot of the chain), or pass --force to replace it",
        ));
    }
    let manager = manager::load_secret(manager_key).map_err(keyfile)?;
    let mut state_inputs = Vec::new();
    for (state, path) in states {
        let file = poc_keyfile::read_public(path, KeyKind::StateRoot).map_err(keyfile)?;
        if let Some(label) = file.label.as_deref().map(str::trim)
            && !label.is_empty()
            && label != state.as_str()
        {
            return Err(Failure::usage(
                format!(
                    "--state {state}={}: that key file is labelled {label}, not {state}",
                    path.display()
                ),
                "pair each State with its own state-root.pub",
            ));
        }
        let root_key = StateRootPublicKey::from_bytes(file.public).map_err(|e| {
            Failure::new(
                format!("{}: not a usable root key: {e}", path.display()),
                "ask the State for its state-root.pub again",
            )
        })?;
        state_inputs.push(StateInput {
            state: *state,
            root_key,
            source: path.display().to_string(),
        });
    }
    let mut cert_inputs = Vec::new();
    for path in certs {
        let bytes = read(path, "certificate")?;
        let certificate = PocCertificate::from_bytes(&bytes).map_err(|e| {
            Failure::new(
                format!("{} is not a PoC certificate: {e}", path.display()),
                "pass the certificate file written by `poc state sign-cert`",
            )
        })?;
        cert_inputs.push(CertInput {
            certificate,
            source: path.display().to_string(),
        });
    }
    let previous = match previous {
        Some(path) => Some(
            SignedSnapshot::from_bytes(&read(path, "previous snapshot")?).map_err(|e| {
                Failure::new(
                    format!("{} is not a directory snapshot: {e}", path.display()),
                    "pass the snapshot file this one follows",
                )
            })?,
        ),
        None => None,
    };
    let (signed, summary) = snapshot::build(BuildInput {
        manager: &manager,
        states: state_inputs,
        certificates: cert_inputs,
        revoke,
        sequence,
        previous,
        issued_at: rng::now(),
    })
    .map_err(|e| Failure::new(format!("{e}. Nothing was written."), build_hint(&e)))?;
    write_atomically(out, &signed.to_bytes())?;

    let mut text = String::new();
    let _ = writeln!(text, "Directory snapshot {} signed.", summary.sequence);
    let _ = writeln!(text, "  file:       {}", out.display());
    let _ = writeln!(text, "  digest:     {}", summary.digest);
    let _ = writeln!(text, "  previous:   {}", summary.previous);
    let _ = writeln!(text, "  issued at:  {}", summary.issued_at);
    let _ = writeln!(
        text,
        "  States ({}): {}",
        summary.states.len(),
        summary.states.join(", ")
    );
    for role in ["diplomatic", "technical"] {
        let ids = summary.pocs_by_role.get(role).cloned().unwrap_or_default();
        let _ = writeln!(
            text,
            "  {role} PoCs ({}): {}",
            ids.len(),
            if ids.is_empty() {
                "-".to_owned()
            } else {
                ids.join(", ")
            }
        );
    }
    if !summary.revoked.is_empty() {
        let _ = writeln!(text, "  REVOKED: {}", summary.revoked.join(", "));
    }
    for w in &summary.warnings {
        let _ = writeln!(text, "warning: {w}");
    }
    let _ = writeln!(
        text,
        "Next: give {} to every node ([directory] snapshot in pocd.toml); the next snapshot is --sequence {} --previous {}.",
        out.display(),
        summary.sequence + 1,
        out.display()
    );
    Ok(text)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "snapshot".into());
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Failure::new(
            format!("cannot write {}: {e}", path.display()),
            "check the path and your permissions",
        )
    })
}

fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let render = |cells: Vec<&str>| {
        let mut line = String::new();
        for (cell, w) in cells.iter().zip(&widths) {
            let _ = write!(
                line,
                "{cell}{}  ",
                " ".repeat(w.saturating_sub(cell.chars().count()))
            );
        }
        format!("{}\n", line.trim_end())
    };
    let mut out = render(headers.to_vec());
    for row in rows {
        out.push_str(&render(row.iter().map(String::as_str).collect()));
    }
    out
}

fn show(file: &Path, manager_pub: &Path, json: bool) -> Result<(String, u8), Failure> {
    let key = manager::load_public(manager_pub).map_err(keyfile)?;
    let bytes = read(file, "snapshot")?;
    let listing = inspect::list(&bytes, &key, rng::now()).map_err(|e| match e {
        DirectoryError::BadSignature => Failure::new(
            format!(
                "{} does NOT verify under the manager key {}",
                file.display(),
                manager_pub.display()
            ),
            "do not use this snapshot; check that you have the right manager.pub and an unaltered snapshot file",
        ),
        other => Failure::new(
            format!("{} is not a valid directory snapshot: {other}", file.display()),
            "do not use this snapshot; fetch it again from the directory manager",
        ),
    })?;
    let code = if listing.rejected.is_empty() { 0 } else { 1 };
    if json {
        let mut text = serde_json::to_string_pretty(&listing)
            .map_err(|e| Failure::new(e.to_string(), "report this"))?;
        text.push('\n');
        return Ok((text, code));
    }
    let mut text = String::new();
    let _ = writeln!(
        text,
        "Directory snapshot {} — signature verified under {}",
        listing.sequence,
        manager_pub.display()
    );
    let _ = writeln!(text, "  digest:     {}", listing.digest);
    let _ = writeln!(text, "  previous:   {}", listing.previous);
    let _ = writeln!(text, "  issued at:  {}", listing.issued_at);
    let _ = writeln!(text, "\nStates ({}):", listing.states.len());
    let rows: Vec<Vec<String>> = listing
        .states
        .iter()
        .map(|s| vec![s.state.clone(), s.root_key.clone()])
        .collect();
    text.push_str(&table(&["STATE", "ROOT KEY"], &rows));
    let _ = writeln!(text, "\nPoCs ({}):", listing.pocs.len());
    let rows: Vec<Vec<String>> = listing
        .pocs
        .iter()
        .map(|p| {
            vec![
                p.poc_id.clone(),
                p.role.clone(),
                match p.status.as_str() {
                    "active" => "active".to_owned(),
                    other => other.to_uppercase(),
                },
                p.valid_until.clone(),
                p.endpoints.join(", "),
            ]
        })
        .collect();
    text.push_str(&table(
        &["POC", "ROLE", "STATUS", "VALID UNTIL", "ENDPOINTS"],
        &rows,
    ));
    if !listing.rejected.is_empty() {
        let _ = writeln!(
            text,
            "\nREJECTED entries ({}), not signed by their State's enrolled root key:",
            listing.rejected.len()
        );
        for r in &listing.rejected {
            let _ = writeln!(
                text,
                "  {}: {}",
                r.poc_id.as_deref().unwrap_or("(undecodable)"),
                r.reason
            );
        }
    }
    Ok((text, code))
}

fn run(cli: Cli) -> Result<(String, u8), Failure> {
    match cli.command {
        Command::Init { out } => init(&out).map(|t| (t, 0)),
        Command::Build {
            manager_key,
            states,
            certs,
            revoke,
            sequence,
            previous,
            out,
            force,
        } => build(
            &manager_key,
            &states,
            &certs,
            revoke,
            sequence,
            previous.as_deref(),
            &out,
            force,
        )
        .map(|t| (t, 0)),
        Command::Show {
            file,
            manager_pub,
            json,
        } => show(&file, &manager_pub, json),
        Command::Serve { config } => cli_service::serve(&config)
            .map(|t| (t, 0))
            .map_err(service_failure),
        Command::Enrol {
            config,
            state,
            root_key,
            replace,
        } => cli_service::enrol(&config, state, &root_key, replace)
            .map(|t| (t, 0))
            .map_err(service_failure),
        Command::Submit { config, files } => cli_service::submit(&config, &files)
            .map(|t| (t, 0))
            .map_err(service_failure),
        Command::Export {
            config,
            sequence,
            out,
        } => cli_service::export(&config, sequence)
            .map_err(service_failure)
            .and_then(|(bytes, sequence)| {
                write_atomically(&out, &bytes)?;
                Ok((
                    format!(
                        "Directory snapshot {sequence} written to {}.\n",
                        out.display()
                    ),
                    0,
                ))
            }),
        Command::Campaign(command) => cli_service::campaign(command)
            .map(|t| (t, 0))
            .map_err(service_failure),
    }
}

fn main() -> ExitCode {
    let cli = Cli::try_parse().unwrap_or_else(|e| e.exit());
    match run(cli) {
        Ok((text, code)) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
            ExitCode::from(code)
        }
        Err(f) => {
            eprintln!("error: {}", f.message);
            eprintln!("hint: {}", f.hint);
            if f.usage {
                eprintln!(
                    "(run `poc-directory help` or `poc-directory <command> --help` for usage)"
                );
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
