//! `poc`: the pocnet operator's command line.
//!
//! Offline key ceremonies (`poc state init`, `poc init`, `poc state
//! sign-cert`) need no daemon. Everything else talks to the local `pocd`
//! through its control socket: `--socket PATH`, else `POC_SOCKET`, else
//! `<data_dir>/pocd.sock` from `--config` (default `pocd.toml`).
//!
//! Exit codes: 0 success, 1 failure (including a damaged record for
//! `poc record verify`), 2 usage error.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use poc_proto::message::{
    Channel, CloseReason, Handling, IncidentCategory, Indicator, Language, Sector, Urgency,
};
use poc_proto::{PocId, Role};

mod ceremony;
mod compose;
mod daemon;
mod directory_cmd;
mod exercise;
mod fail;
mod interop;
mod parse;
mod record_follow;
mod render;
mod rng;
mod state_entry;

use daemon::{Connection, Read};
use parse::{ThreadRef, When};

/// pocnet operator CLI: secure messaging between national Points of Contact
/// of the UN PoC Directory on ICT security (Annex A of A/78/265).
#[derive(Debug, Parser)]
#[command(name = "poc", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// pocd's control socket [default: env POC_SOCKET, else <data_dir>/pocd.sock from --config].
    #[arg(long, global = true, env = "POC_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    /// pocd's configuration file, to find the socket [default: pocd.toml].
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A State's root key: create it, certify the State's PoCs (offline).
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
    /// Create a PoC's identity key, prekey and certificate request (offline).
    Init(InitArgs),
    /// Send an inquiry about an ICT incident (appendix to Annex A, inquiry procedure).
    Inquire(Box<InquireArgs>),
    /// List incident threads, newest activity first.
    Inbox(JsonFlag),
    /// Show a whole thread: every message, receipt and deadline.
    Show(ShowArgs),
    /// Export an incident thread as IODEF 2.0 (RFC 7970) or as a STIX 2.1 bundle of its indicators.
    Export(ExportArgs),
    /// Respond to an inquiry (response-to-inquiry procedure).
    Respond(RespondArgs),
    /// Add information to an open thread.
    FollowUp(FollowUpArgs),
    /// Close a thread.
    Close(CloseArgs),
    /// The node: identity, directory, record, deliveries, overdue deadlines.
    Status(JsonFlag),
    /// Outgoing deliveries and their state.
    Outbox(JsonFlag),
    /// PoCs in the directory the node holds; `sync`, `list`, `show`, `status`.
    Directory(directory_cmd::DirectoryArgs),
    /// The node's tamper-evident record of everything sent and received.
    Record {
        #[command(subcommand)]
        command: RecordCommand,
    },
    /// Simulation exercises: run a scenario, follow it, report, purge.
    Exercise {
        #[command(subcommand)]
        command: exercise::ExerciseCommand,
    },
    /// Directory pings (Annex A para 8): list them, acknowledge one.
    Ping {
        #[command(subcommand)]
        command: directory_cmd::PingCommand,
    },
}

#[derive(Debug, Subcommand)]
enum StateCommand {
    /// Create the State's root key pair: DIR/state-root.key (0600) and DIR/state-root.pub.
    Init {
        /// The State's ISO 3166-1 alpha-3 code, e.g. EST.
        #[arg(long, value_name = "CODE")]
        state: String,
        /// Directory for the key files (created 0700 if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Check a PoC's certificate request and sign it with the State root key.
    SignCert {
        /// The State root secret key (from `poc state init`).
        #[arg(long, value_name = "FILE")]
        root_key: PathBuf,
        /// The request (from `poc init`), e.g. EST.cert.request.json.
        #[arg(long, value_name = "FILE")]
        request: PathBuf,
        /// Where to write the certificate, e.g. EST.cert.cert.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The root key's State, if its key file has no label.
        #[arg(long, value_name = "CODE")]
        state: Option<String>,
    },
    /// Sign a PoC's directory entry (contact details, languages, or a
    /// revocation) for the directory manager (`poc-directory submit`).
    SignEntry(state_entry::SignEntryArgs),
}

#[derive(Debug, Subcommand)]
enum RecordCommand {
    /// Check the record's hash chain (exit code 1 if any entry is damaged).
    Verify(VerifyArgs),
    /// Every record entry as JSON lines on standard output.
    Export,
    /// Print record entries as they are committed, one line each, until
    /// interrupted (Ctrl-C); exits with an error if pocd goes away.
    Follow(FollowArgs),
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// Also check that the record still holds this entry, as noted earlier
    /// and kept outside the node (an intact record's head is entry #N, N
    /// its number of entries): shows a record whose tail was deleted and
    /// head rewritten, which the chain alone cannot.
    #[arg(long, value_name = "SEQ:HASH", value_parser = parse::record_anchor)]
    anchor: Option<parse::RecordAnchor>,
    /// Print the daemon's answer as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct FollowArgs {
    /// Start after this entry (0: the whole record first) [default: the
    /// record's current last entry, so only new entries are printed].
    #[arg(long, value_name = "SEQ")]
    after: Option<u64>,
    /// One JSON object per line (seq, at, event, peer, message_id,
    /// thread_id, kind, exercise, detail, purged, entry_hash) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct JsonFlag {
    /// Print the daemon's answer as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    /// A technical PoC (usually the national CERT/CSIRT).
    Technical,
    /// A diplomatic PoC (usually the foreign ministry).
    Diplomatic,
}

#[derive(Debug, Args)]
struct InitArgs {
    /// The PoC id: the State's code, a dot, a name, e.g. EST.cert.
    #[arg(long, value_name = "POC_ID", value_parser = parse::poc_id)]
    poc: PocId,
    /// The PoC's role.
    #[arg(long, value_enum)]
    role: RoleArg,
    /// The node's QUIC address as other States reach it (repeatable).
    #[arg(long, value_name = "HOST:PORT", value_parser = parse::endpoint)]
    endpoint: Vec<String>,
    /// A relay holding the PoC's mailbox (repeatable).
    #[arg(long, value_name = "HOST:PORT", value_parser = parse::endpoint)]
    relay: Vec<String>,
    /// Directory for identity.key, prekey.key and <POC_ID>.request.json.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Certificate validity, in days (the prekey's too, for now).
    #[arg(long, value_name = "DAYS", default_value_t = 365)]
    valid_days: u32,
}

#[derive(Debug, Args)]
struct InquireArgs {
    /// The PoC to ask, e.g. FRA.cert.
    #[arg(long, value_name = "POC_ID", value_parser = parse::poc_id)]
    to: Option<PocId>,
    /// What happened (the one required field).
    #[arg(long, value_name = "TEXT")]
    summary: Option<String>,
    /// Unofficial English translation of the summary.
    #[arg(long, value_name = "TEXT")]
    english: Option<String>,
    /// ddos, malware, ransomware, phishing, intrusion, data-breach, scanning, vulnerability, defacement, or your own word.
    #[arg(long, value_name = "CATEGORY", value_parser = parse::category)]
    category: Option<IncidentCategory>,
    /// The nature of the incident, in as much detail as possible.
    #[arg(long, value_name = "TEXT")]
    description: Option<String>,
    /// ip:ADDR, net:ADDR/LEN, domain:NAME, url:URL, email:ADDR, sha256|sha1|md5|sha512:HEX, port:N[/tcp|udp|sctp], asn:N, other:KIND=VALUE (repeatable).
    #[arg(long, value_name = "TYPE:VALUE", value_parser = parse::indicator)]
    indicator: Vec<Indicator>,
    /// Affected sector: energy, water, health, finance, transport, telecommunications, government, emergency-services, food, manufacturing, elections, education, or your own (repeatable).
    #[arg(long, value_name = "SECTOR", value_parser = parse::sector)]
    sector: Vec<Sector>,
    /// Critical infrastructure is affected.
    #[arg(long)]
    critical_infrastructure: bool,
    /// When the activity was first seen (RFC 3339, e.g. 2026-11-24T22:15:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse::at)]
    first_seen: Option<When>,
    /// When the activity was last seen (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse::at)]
    last_seen: Option<When>,
    /// Observed or feared impact.
    #[arg(long, value_name = "TEXT")]
    impact: Option<String>,
    /// The information you request.
    #[arg(long, value_name = "TEXT")]
    request: Option<String>,
    /// Your name.
    #[arg(long, value_name = "TEXT")]
    name: Option<String>,
    /// Your title.
    #[arg(long, value_name = "TEXT")]
    title: Option<String>,
    /// The entity you belong to.
    #[arg(long, value_name = "TEXT")]
    entity: Option<String>,
    /// Telephone where you can be reached.
    #[arg(long, value_name = "NUMBER")]
    phone: Option<String>,
    /// E-mail where you can be reached.
    #[arg(long, value_name = "ADDRESS")]
    email: Option<String>,
    /// routine (default), priority or urgent.
    #[arg(long, value_parser = parse::urgency)]
    urgency: Option<Urgency>,
    /// Answer needed within this long, e.g. 4h, 2d.
    #[arg(long, value_name = "DURATION", value_parser = parse::within, conflicts_with = "respond_by")]
    respond_within: Option<When>,
    /// Answer needed by this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse::at)]
    respond_by: Option<When>,
    /// Preferred channel: pocnet, phone:NUMBER, email:ADDRESS, other:TEXT.
    #[arg(long, value_parser = parse::channel)]
    channel: Option<Channel>,
    /// The agency in your country that becomes the primary point of contact for this incident.
    #[arg(long, value_name = "TEXT")]
    lead_agency: Option<String>,
    /// Attach a file (IODEF .xml and STIX .json are recognised) (repeatable).
    #[arg(long, value_name = "FILE")]
    attach: Vec<PathBuf>,
    /// Language of the text: ar, zh, en (default), fr, ru, es.
    #[arg(long, value_parser = parse::language)]
    lang: Option<Language>,
    /// confidential (default), clear, green, amber, amber+strict, red.
    #[arg(long, value_parser = parse::handling)]
    handling: Option<Handling>,
    /// Mark as part of this simulation exercise.
    #[arg(long, value_name = "ID")]
    exercise: Option<String>,
    /// Start from an inquiry template (.toml or .json); flags override it.
    #[arg(long, value_name = "FILE")]
    from_file: Option<PathBuf>,
    /// Start from an IODEF 2.0 document (RFC 7970): incident, times, contacts and indicators are taken from it and the document is attached unchanged; flags override it.
    #[arg(long, value_name = "FILE", conflicts_with = "from_file")]
    from_iodef: Option<PathBuf>,
    /// Attach a STIX 2.1 bundle, checked first (repeatable).
    #[arg(long, value_name = "FILE")]
    attach_stix: Vec<PathBuf>,
    /// Print the daemon's answer as JSON.
    #[arg(long)]
    json: bool,
}

impl InquireArgs {
    fn draft(&self) -> compose::Draft {
        compose::Draft {
            to: self.to.clone(),
            summary: self.summary.clone(),
            english: self.english.clone(),
            category: self.category.clone(),
            description: self.description.clone(),
            indicators: self.indicator.clone(),
            sectors: self.sector.clone(),
            critical_infrastructure: self.critical_infrastructure.then_some(true),
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            impact: self.impact.clone(),
            request: self.request.clone(),
            name: self.name.clone(),
            title: self.title.clone(),
            entity: self.entity.clone(),
            phone: self.phone.clone(),
            email: self.email.clone(),
            urgency: self.urgency,
            respond_within: self.respond_within,
            respond_by: self.respond_by,
            channel: self.channel.clone(),
            lead_agency: self.lead_agency.clone(),
            attach: self.attach.clone(),
            lang: self.lang,
            handling: self.handling,
            exercise: self.exercise.clone(),
        }
    }
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// Thread id (32 hex digits, or a unique prefix of at least 6).
    #[arg(value_parser = parse::thread_ref)]
    thread: ThreadRef,
    /// Print the daemon's answer as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("format").required(true).args(["iodef", "stix"]))]
struct ExportArgs {
    /// Thread id (32 hex digits, or a unique prefix of at least 6).
    #[arg(value_parser = parse::thread_ref)]
    thread: ThreadRef,
    /// An IODEF 2.0 XML document (validates against the IODEF 2.0 schema).
    #[arg(long)]
    iodef: bool,
    /// A STIX 2.1 bundle of the thread's indicators, TLP 2.0-marked.
    #[arg(long)]
    stix: bool,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("outcome").required(true).args(["answer", "will_follow_up"]))]
struct RespondArgs {
    /// Thread id (32 hex digits, or a unique prefix of at least 6).
    #[arg(value_parser = parse::thread_ref)]
    thread: ThreadRef,
    /// An immediate answer (procedure step 1).
    #[arg(long, value_name = "TEXT")]
    answer: Option<String>,
    /// Say you will consider the incident and follow up (procedure step 2).
    #[arg(long)]
    will_follow_up: bool,
    /// When more will follow: a duration (24h) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN", value_parser = parse::when_spec, requires = "will_follow_up")]
    eta: Option<When>,
    /// Anything to say now, with --will-follow-up.
    #[arg(long, value_name = "TEXT", requires = "will_follow_up")]
    note: Option<String>,
    /// Unofficial English translation of the answer or note.
    #[arg(long, value_name = "TEXT")]
    english: Option<String>,
    /// Accept the channel the inquiry proposed (procedure step 3).
    #[arg(long, conflicts_with = "channel")]
    accept_channel: bool,
    /// Propose another channel: pocnet, phone:NUMBER, email:ADDRESS, other:TEXT.
    #[arg(long, value_parser = parse::channel)]
    channel: Option<Channel>,
    /// Your country's lead agency for this incident (procedure step 3).
    #[arg(long, value_name = "TEXT")]
    lead_agency: Option<String>,
    /// Attach a file (repeatable).
    #[arg(long, value_name = "FILE")]
    attach: Vec<PathBuf>,
    /// Language of the text: ar, zh, en (default), fr, ru, es.
    #[arg(long, value_parser = parse::language)]
    lang: Option<Language>,
    /// Print the daemon's answer as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct FollowUpArgs {
    /// Thread id (32 hex digits, or a unique prefix of at least 6).
    #[arg(value_parser = parse::thread_ref)]
    thread: ThreadRef,
    /// The information.
    #[arg(long, value_name = "TEXT")]
    text: String,
    /// Unofficial English translation.
    #[arg(long, value_name = "TEXT")]
    english: Option<String>,
    /// When the next update is expected: a duration (24h) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN", value_parser = parse::when_spec)]
    eta: Option<When>,
    /// Further indicators, as for `poc inquire` (repeatable).
    #[arg(long, value_name = "TYPE:VALUE", value_parser = parse::indicator)]
    indicator: Vec<Indicator>,
    /// Attach a file (repeatable).
    #[arg(long, value_name = "FILE")]
    attach: Vec<PathBuf>,
    /// Language of the text: ar, zh, en (default), fr, ru, es.
    #[arg(long, value_parser = parse::language)]
    lang: Option<Language>,
    /// Print the daemon's answer as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct CloseArgs {
    /// Thread id (32 hex digits, or a unique prefix of at least 6).
    #[arg(value_parser = parse::thread_ref)]
    thread: ThreadRef,
    /// resolved (default), no-further-action, withdrawn, moved.
    #[arg(long, default_value = "resolved", value_parser = parse::close_reason)]
    reason: CloseReason,
    /// Closing remarks.
    #[arg(long, value_name = "TEXT")]
    note: Option<String>,
    /// Language of the note: ar, zh, en (default), fr, ru, es.
    #[arg(long, value_parser = parse::language)]
    lang: Option<Language>,
    /// Print the daemon's answer as JSON.
    #[arg(long)]
    json: bool,
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let connection = Connection {
        socket: cli.socket,
        config: cli.config,
    };
    let print = |text: String| daemon::emit(&text).map(|()| 0);
    match cli.command {
        Command::State { command } => match command {
            StateCommand::Init { state, out } => print(ceremony::state_init(&state, &out)?),
            StateCommand::SignCert {
                root_key,
                request,
                out,
                state,
            } => print(ceremony::sign_cert(&ceremony::SignParams {
                root_key,
                request,
                out,
                state,
            })?),
            StateCommand::SignEntry(args) => print(state_entry::sign_entry(args)?),
        },
        Command::Init(a) => print(ceremony::init(&ceremony::InitParams {
            poc: a.poc,
            role: match a.role {
                RoleArg::Technical => Role::Technical,
                RoleArg::Diplomatic => Role::Diplomatic,
            },
            endpoints: a.endpoint,
            relays: a.relay,
            out: a.out,
            valid_days: a.valid_days,
        })?),
        Command::Inquire(a) => daemon::inquire(
            &connection,
            a.draft(),
            daemon::InquiryBase {
                template: a.from_file.as_deref(),
                iodef: a.from_iodef.as_deref(),
                stix: &a.attach_stix,
            },
            a.json,
        ),
        Command::Inbox(f) => daemon::read(&connection, Read::Inbox, f.json),
        Command::Status(f) => daemon::read(&connection, Read::Status, f.json),
        Command::Outbox(f) => daemon::read(&connection, Read::Outbox, f.json),
        Command::Directory(args) => {
            let json = args.json;
            match directory_cmd::directory(&connection, args)? {
                Some(code) => Ok(code),
                None => daemon::read(&connection, Read::Directory, json),
            }
        }
        Command::Show(a) => daemon::show(&connection, &a.thread, a.json),
        Command::Export(a) => interop::export(
            &connection,
            &a.thread,
            if a.iodef {
                interop::ExportFormat::Iodef
            } else {
                interop::ExportFormat::Stix
            },
            a.out.as_deref(),
        ),
        Command::Respond(a) => daemon::respond(
            &connection,
            daemon::RespondParams {
                thread: a.thread,
                answer: a.answer,
                eta: a.eta,
                note: a.note,
                english: a.english,
                accept_channel: a.accept_channel,
                channel: a.channel,
                lead_agency: a.lead_agency,
                attach: a.attach,
                lang: a.lang,
                json: a.json,
            },
        ),
        Command::FollowUp(a) => daemon::follow_up(
            &connection,
            daemon::FollowUpParams {
                thread: a.thread,
                text: a.text,
                english: a.english,
                eta: a.eta,
                indicators: a.indicator,
                attach: a.attach,
                lang: a.lang,
                json: a.json,
            },
        ),
        Command::Close(a) => {
            daemon::close(&connection, &a.thread, a.reason, a.note, a.lang, a.json)
        }
        Command::Record { command } => match command {
            RecordCommand::Verify(a) => {
                daemon::record_verify(&connection, a.json, a.anchor.as_ref())
            }
            RecordCommand::Export => daemon::record_export(&connection),
            RecordCommand::Follow(a) => record_follow::follow(&connection, a.after, a.json),
        },
        Command::Exercise { command } => exercise::run(&connection, command),
        Command::Ping { command } => directory_cmd::ping(&connection, command),
    }
}

fn main() -> ExitCode {
    // Help and --version exit 0; usage errors exit 2 (clap's convention).
    let cli = Cli::try_parse().unwrap_or_else(|e| e.exit());
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            let (usage_error, hint) = fail::classify(&error);
            eprintln!("error: {error:#}");
            if let Some(hint) = hint {
                eprintln!("hint: {hint}");
            }
            if usage_error {
                eprintln!("(run `poc help` or `poc <command> --help` for usage)");
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
