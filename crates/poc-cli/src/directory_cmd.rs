//! `poc directory [list|show|sync|status]` and `poc ping [list|ack]`.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use poc_control::{DirectoryEntryView, DirectoryStatusView, DirectorySyncView, PingView, Request};

use crate::daemon::{Connection, Daemon, emit};
use crate::fail::fail;

/// `poc directory`.
#[derive(Debug, Args)]
pub(crate) struct DirectoryArgs {
    #[command(subcommand)]
    command: Option<DirectoryCommand>,
    /// Print the daemon's answer as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
enum DirectoryCommand {
    /// List PoCs, optionally filtered.
    List {
        /// Only this State (ISO 3166-1 alpha-3).
        #[arg(long)]
        state: Option<String>,
        /// Only this role: diplomatic or technical.
        #[arg(long)]
        role: Option<String>,
        /// Only PoCs working in this language (ar, zh, en, fr, ru, es).
        #[arg(long)]
        language: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one PoC's entry.
    Show {
        /// The PoC id.
        poc: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Fetch, verify and adopt the newest snapshot (from the directory
    /// service, or from a file).
    Sync {
        /// A snapshot file to offer instead of asking the service.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send an entry signed by your State's root key (`poc state sign-entry`)
    /// to the directory service.
    Submit {
        /// The submission file.
        file: PathBuf,
    },
    /// The snapshot held, the last sync and any alert about your State's entries.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `poc ping`.
#[derive(Debug, Subcommand)]
pub(crate) enum PingCommand {
    /// Pings received from the directory manager.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge a ping: send the ping reply (Annex A para 8: within 48 hours).
    Ack {
        /// The campaign id (from `poc ping list`).
        campaign: String,
    },
}

fn pretty(value: &impl serde::Serialize) -> anyhow::Result<String> {
    Ok(format!("{}\n", serde_json::to_string_pretty(value)?))
}

fn matches(
    entry: &DirectoryEntryView,
    state: Option<&str>,
    role: Option<&str>,
    language: Option<&str>,
) -> bool {
    state.is_none_or(|s| {
        entry
            .state
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(s))
    }) && role.is_none_or(|r| entry.role.eq_ignore_ascii_case(r))
        && language.is_none_or(|l| {
            entry
                .working_languages
                .iter()
                .chain(entry.language.iter())
                .any(|t| t.eq_ignore_ascii_case(l))
        })
}

fn entry_text(e: &DirectoryEntryView) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{}{}",
        e.poc_id,
        if e.revoked { "   REVOKED" } else { "" }
    );
    let _ = writeln!(
        text,
        "  State:      {}",
        e.state.as_deref().unwrap_or("(directory manager)")
    );
    let _ = writeln!(text, "  role:       {}", e.role);
    for (label, value) in [
        ("entity", &e.entity),
        ("name", &e.person_name),
        ("title", &e.person_title),
        ("phone", &e.phone),
        ("e-mail", &e.email),
        ("English", &e.english),
    ] {
        if let Some(value) = value {
            let _ = writeln!(text, "  {label:<10}  {value}");
        }
    }
    if let Some(language) = &e.language {
        let _ = writeln!(text, "  written in: {language}");
    }
    if !e.working_languages.is_empty() {
        let _ = writeln!(text, "  works in:   {}", e.working_languages.join(", "));
    }
    let _ = writeln!(text, "  endpoints:  {}", e.endpoints.join(", "));
    let _ = writeln!(text, "  key:        {}", e.identity_key);
    let _ = writeln!(text, "  valid until {}", e.valid_until);
    text
}

/// `poc directory ...`; `None` means the plain listing.
pub(crate) fn directory(
    connection: &Connection,
    args: DirectoryArgs,
) -> anyhow::Result<Option<u8>> {
    let Some(command) = args.command else {
        return Ok(None);
    };
    let mut daemon = Daemon::connect(connection)?;
    match command {
        DirectoryCommand::List {
            state,
            role,
            language,
            json,
        } => {
            let entries: Vec<DirectoryEntryView> = daemon.typed(&Request::DirectoryEntries)?;
            let chosen: Vec<_> = entries
                .into_iter()
                .filter(|e| matches(e, state.as_deref(), role.as_deref(), language.as_deref()))
                .collect();
            if json || args.json {
                emit(&pretty(&chosen)?)?;
            } else {
                let mut text = String::new();
                for e in &chosen {
                    let _ = writeln!(
                        text,
                        "{:<24} {:<4} {:<18} {:<8} {}{}",
                        e.poc_id,
                        e.state.as_deref().unwrap_or("-"),
                        e.role,
                        e.working_languages.join(","),
                        e.entity.as_deref().unwrap_or("-"),
                        if e.revoked { "  REVOKED" } else { "" }
                    );
                }
                let _ = writeln!(text, "{} PoC(s)", chosen.len());
                emit(&text)?;
            }
        }
        DirectoryCommand::Show { poc, json } => {
            let entries: Vec<DirectoryEntryView> = daemon.typed(&Request::DirectoryEntries)?;
            let entry = entries
                .into_iter()
                .find(|e| e.poc_id.as_str() == poc)
                .ok_or_else(|| {
                    fail(
                        format!("{poc} is not in the directory this node holds"),
                        "run `poc directory sync`, or check the id with `poc directory list`",
                    )
                })?;
            emit(&if json || args.json {
                pretty(&entry)?
            } else {
                entry_text(&entry)
            })?;
        }
        DirectoryCommand::Sync { file, json } => {
            let file = file.map(|f| std::path::absolute(&f).unwrap_or(f).display().to_string());
            let view: DirectorySyncView = daemon.typed(&Request::DirectorySync { file })?;
            if json || args.json {
                emit(&pretty(&view)?)?;
            } else {
                let mut text = if view.adopted == 0 {
                    format!("Directory up to date at snapshot {}.\n", view.to_sequence)
                } else {
                    format!(
                        "Directory synced: snapshot {} -> {} ({} adopted, signatures and chain verified).\n",
                        view.from_sequence, view.to_sequence, view.adopted
                    )
                };
                for id in &view.revoked {
                    let _ = writeln!(text, "  REVOKED: {id}");
                }
                for r in &view.rejected {
                    let _ = writeln!(text, "  refused entry: {r}");
                }
                for a in &view.alerts {
                    let _ = writeln!(text, "!!! ALERT: {a}");
                }
                emit(&text)?;
                if !view.alerts.is_empty() {
                    return Ok(Some(3));
                }
            }
        }
        DirectoryCommand::Submit { file } => {
            let file = std::path::absolute(&file)
                .unwrap_or(file)
                .display()
                .to_string();
            let answer: String = daemon.typed(&Request::DirectorySubmit { file })?;
            emit(&format!("{answer}\nRun `poc directory sync` to see it.\n"))?;
        }
        DirectoryCommand::Status { json } => {
            let view: DirectoryStatusView = daemon.typed(&Request::DirectoryStatus)?;
            if json || args.json {
                emit(&pretty(&view)?)?;
            } else {
                let mut text = format!(
                    "Directory snapshot {} (digest {}), issued {}; {} PoCs.\n",
                    view.sequence, view.digest, view.issued_at, view.entries
                );
                let _ = writeln!(
                    text,
                    "Last sync: {}",
                    view.last_sync.as_deref().unwrap_or("never")
                );
                for r in &view.rejected {
                    let _ = writeln!(text, "  refused entry: {r}");
                }
                for a in &view.alerts {
                    let _ = writeln!(text, "!!! ALERT: {a}");
                }
                emit(&text)?;
            }
        }
    }
    Ok(Some(0))
}

/// `poc ping ...`.
pub(crate) fn ping(connection: &Connection, command: PingCommand) -> anyhow::Result<u8> {
    let mut daemon = Daemon::connect(connection)?;
    match command {
        PingCommand::List { json } => {
            let pings: Vec<PingView> = daemon.typed(&Request::Pings)?;
            if json {
                emit(&pretty(&pings)?)?;
            } else {
                let mut text = String::new();
                for p in &pings {
                    let _ = writeln!(
                        text,
                        "campaign {}  from {}  received {}  reply by {}  {}",
                        p.campaign,
                        p.from,
                        p.received_at,
                        p.reply_by,
                        if p.answered {
                            "acknowledged"
                        } else {
                            "NOT ACKNOWLEDGED: run `poc ping ack <campaign>`"
                        }
                    );
                }
                if pings.is_empty() {
                    text.push_str("No ping received.\n");
                }
                emit(&text)?;
            }
        }
        PingCommand::Ack { campaign } => {
            let view: PingView = daemon.typed(&Request::PingAck { campaign })?;
            emit(&format!(
                "Ping of campaign {} acknowledged: the ping reply to {} is on its way (see `poc outbox`).\n",
                view.campaign, view.from
            ))?;
        }
    }
    Ok(0)
}
