//! `poc exercise`: run a simulation exercise from a scenario file, follow it
//! live, write the after-action report, and purge it from the node's record
//! after the debrief. The work is done by the `poc-exercise` library; this
//! module is the command line around it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use poc_control::{PurgeView, Request};
use poc_exercise::controller::{self, RunOptions};
use poc_exercise::report;
use poc_exercise::scenario::{Scenario, format_offset, format_span};

use crate::daemon::{Connection, Daemon, emit};
use crate::fail::{fail, usage};
use crate::render;

/// The default state file, in the current directory.
const DEFAULT_STATE: &str = "exercise-state.json";

#[derive(Debug, Subcommand)]
pub(crate) enum ExerciseCommand {
    /// Check a scenario file and show what it will do.
    Validate {
        /// The scenario (TOML).
        file: PathBuf,
    },
    /// Run a scenario: send its injects through the participants' nodes, act
    /// for automated players, tell human players what to do, watch.
    Run(RunArgs),
    /// Progress of the running (or last) exercise.
    Status {
        /// The controller's state file.
        #[arg(long, value_name = "FILE", default_value = DEFAULT_STATE)]
        state: PathBuf,
        /// Print the report data as JSON.
        #[arg(long)]
        json: bool,
        /// Print the status again every SECONDS until the exercise ends.
        #[arg(long, value_name = "SECONDS")]
        watch: Option<u64>,
    },
    /// The after-action report.
    Report {
        /// The controller's state file.
        #[arg(long, value_name = "FILE", default_value = DEFAULT_STATE)]
        state: PathBuf,
        /// md (default) or html (with an SVG chart of response times).
        #[arg(long, value_enum, default_value = "md")]
        format: Format,
        /// JSON instead: every inject and expected action with its outcome.
        #[arg(long)]
        json: bool,
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// After the debrief: remove an exercise's messages from this node's
    /// record (a purge entry keeps the hash chain whole).
    Purge {
        /// The exercise id.
        id: String,
        /// Print the daemon's answer as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    /// Markdown.
    Md,
    /// HTML with the chart embedded.
    Html,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The scenario (TOML).
    file: PathBuf,
    /// Where to keep the run's state for `status` and `report`.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_STATE)]
    state: PathBuf,
    /// A participant's control socket, NAME=PATH (repeatable; overrides the scenario).
    #[arg(long = "node", value_name = "NAME=PATH")]
    nodes: Vec<String>,
    /// Find each participant's socket at DIR/<PoC id>/data/pocd.sock.
    #[arg(long, value_name = "DIR")]
    nodes_dir: Option<PathBuf>,
    /// Override the scenario's time scale (scenario seconds per real second).
    #[arg(long, value_name = "FACTOR")]
    time_scale: Option<u32>,
    /// End once every inject is out and every expected action taken.
    #[arg(long)]
    until_complete: bool,
    /// Poll the nodes this often, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 200)]
    tick_ms: u64,
}

/// Runs `poc exercise ...`.
pub(crate) fn run(connection: &Connection, command: ExerciseCommand) -> anyhow::Result<u8> {
    match command {
        ExerciseCommand::Validate { file } => {
            let scenario = load(&file)?;
            emit(&describe(&scenario))?;
            Ok(0)
        }
        ExerciseCommand::Run(args) => run_scenario(args),
        ExerciseCommand::Status { state, json, watch } => loop {
            let log = controller::read_state(&state)
                .map_err(|e| fail(e, "give the state file of `poc exercise run` with --state"))?;
            let now = controller::now_ms();
            let report = report::build(&log, now);
            let stale = log.ended_ms.is_none() && now.saturating_sub(log.updated_ms) > 10_000;
            if json {
                emit(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
            } else {
                emit(&status_text(&report, stale))?;
            }
            match watch {
                Some(seconds) if log.ended_ms.is_none() && !stale => {
                    std::thread::sleep(Duration::from_secs(seconds.clamp(1, 3600)));
                    emit("\n")?;
                }
                _ => return Ok(0),
            }
        },
        ExerciseCommand::Report {
            state,
            format,
            json,
            out,
        } => {
            let log = controller::read_state(&state)
                .map_err(|e| fail(e, "give the state file of `poc exercise run` with --state"))?;
            let report = report::build(&log, controller::now_ms());
            let text = if json {
                format!("{}\n", serde_json::to_string_pretty(&report)?)
            } else {
                match format {
                    Format::Md => report::markdown(&report),
                    Format::Html => report::html(&report),
                }
            };
            match out {
                Some(path) => {
                    std::fs::write(&path, text).map_err(|e| {
                        fail(
                            format!("cannot write {}: {e}", path.display()),
                            "check the directory exists and is writable",
                        )
                    })?;
                    emit(&format!(
                        "{}\nreport written to {}\n",
                        render::banner(&report.exercise.id),
                        path.display()
                    ))?;
                }
                None => emit(&text)?,
            }
            Ok(0)
        }
        ExerciseCommand::Purge { id, json } => {
            let mut daemon = Daemon::connect(connection)?;
            let value = daemon.value(&Request::ExercisePurge {
                exercise: id.clone(),
            })?;
            if json {
                emit(&format!("{}\n", serde_json::to_string_pretty(&value)?))?;
                return Ok(0);
            }
            let view: PurgeView = serde_json::from_value(value)?;
            emit(&format!(
                "{}\nPurged exercise {}: {} record entries emptied, {} threads removed from the inbox.\n\
                 The purge itself is record entry #{}; `poc record verify` still checks the whole chain.\n",
                render::banner(&view.exercise),
                view.exercise,
                view.purged_entries,
                view.threads_forgotten,
                view.purge_seq
            ))?;
            Ok(0)
        }
    }
}

fn load(file: &Path) -> anyhow::Result<Scenario> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        fail(
            format!("cannot read the scenario {}: {e}", file.display()),
            "give the path of a scenario file, e.g. deploy/exercises/connectivity-drill.toml",
        )
    })?;
    let base = file.parent().unwrap_or(Path::new("."));
    let scenario = Scenario::from_toml(&text, base).map_err(|e| {
        usage(
            format!("{}: {e}", file.display()),
            "see deploy/exercises/README.md for the scenario format",
        )
    })?;
    for (field, path) in scenario.attachment_files() {
        if !path.is_file() {
            return Err(usage(
                format!("{}: {field}: no file at {}", file.display(), path.display()),
                "attachment paths are relative to the scenario file's directory",
            ));
        }
    }
    Ok(scenario)
}

fn player_name(player: poc_exercise::scenario::Player) -> &'static str {
    match player {
        poc_exercise::scenario::Player::Human => "human",
        poc_exercise::scenario::Player::Automated => "automated",
    }
}

fn describe(s: &Scenario) -> String {
    let mut out = format!("{}\n", render::banner(&s.id));
    let _ = writeln!(
        out,
        "{} ({}): ends at {}, time scale {}",
        s.title,
        s.id,
        format_offset(s.duration),
        s.time_scale
    );
    for p in &s.participants {
        let _ = writeln!(
            out,
            "  participant {}: {} ({} {}, {}{})",
            p.name,
            p.poc,
            p.state,
            p.role,
            player_name(p.player),
            if p.delay > 0 {
                format!(", acts after {}", format_span(p.delay))
            } else {
                String::new()
            }
        );
    }
    for i in &s.injects {
        let _ = writeln!(
            out,
            "  {} {}: {} {} -> {}{}",
            format_offset(i.at),
            i.id,
            i.kind.name(),
            i.from,
            i.to.join(", "),
            match i.mode {
                poc_exercise::scenario::InjectMode::Send => "",
                poc_exercise::scenario::InjectMode::Instruct => " (the player is told to send it)",
            }
        );
    }
    for e in &s.expectations {
        let _ = writeln!(
            out,
            "  expect {}: {} sends a {} within {} after {}",
            e.id,
            e.who,
            e.kind.name(),
            format_span(e.within),
            e.after
        );
    }
    out
}

fn run_scenario(args: RunArgs) -> anyhow::Result<u8> {
    let mut scenario = load(&args.file)?;
    if let Some(scale) = args.time_scale {
        if scale == 0 || scale > poc_exercise::scenario::MAX_TIME_SCALE {
            return Err(usage(
                format!("--time-scale {scale} is out of range"),
                "give a factor from 1 (real time) to 100000",
            ));
        }
        scenario.time_scale = scale;
    }
    let mut sockets: BTreeMap<String, PathBuf> = BTreeMap::new();
    for p in &scenario.participants {
        if let Some(dir) = &args.nodes_dir {
            sockets.insert(
                p.name.clone(),
                dir.join(p.poc.as_str()).join("data").join("pocd.sock"),
            );
        } else if let Some(socket) = &p.socket {
            sockets.insert(p.name.clone(), socket.clone());
        }
    }
    for spec in &args.nodes {
        let (name, path) = spec.split_once('=').ok_or_else(|| {
            usage(
                format!("--node {spec:?} is not NAME=PATH"),
                "e.g. --node est-cert=/var/lib/pocd/pocd.sock",
            )
        })?;
        if scenario.participant(name).is_none() {
            return Err(usage(
                format!("--node {name}: no such participant in the scenario"),
                "use the participant names of the scenario file",
            ));
        }
        sockets.insert(name.to_owned(), PathBuf::from(path));
    }
    let options = RunOptions {
        state_file: args.state,
        until_complete: args.until_complete,
        tick: Duration::from_millis(args.tick_ms.clamp(20, 5000)),
    };
    let mut say = |line: &str| {
        let _ = emit(&format!("{line}\n"));
    };
    let log = controller::run(scenario, &sockets, &options, &mut say).map_err(|e| {
        fail(
            e.to_string(),
            "check that every participant's pocd runs and the scenario names the right sockets",
        )
    })?;
    emit(&format!(
        "State kept in {}: `poc exercise report --state {}` writes the after-action report.\n",
        options.state_file.display(),
        options.state_file.display()
    ))?;
    let _ = log;
    Ok(0)
}

fn status_text(r: &report::Report, stale: bool) -> String {
    let e = &r.exercise;
    let mut out = format!("{}\n", render::banner(&e.id));
    let state = if stale {
        "running, but the controller has not updated for over 10 s (stopped?)".to_owned()
    } else {
        e.status.clone()
    };
    let _ = writeln!(
        out,
        "{} ({}): {state}, at {} of {}",
        e.title,
        e.id,
        format_offset(e.elapsed_s),
        format_offset(e.duration_s)
    );
    let _ = writeln!(
        out,
        "Expected actions: {} met, {} late, {} missed, {} open (of {})\n",
        r.totals.met, r.totals.late, r.totals.missed, r.totals.open, r.totals.expected
    );
    let rows: Vec<Vec<String>> = r
        .injects
        .iter()
        .map(|i| {
            vec![
                i.id.clone(),
                format_offset(i.planned_s),
                i.kind.clone(),
                format!("{} -> {}", i.from, i.to.join(", ")),
                i.outcome.to_uppercase(),
            ]
        })
        .collect();
    out.push_str(&render::table(
        &["INJECT", "PLANNED", "KIND", "FROM -> TO", "STATE"],
        &rows,
    ));
    out.push('\n');
    let rows: Vec<Vec<String>> = r
        .expectations
        .iter()
        .map(|x| {
            vec![
                x.id.clone(),
                x.who.clone(),
                x.kind.clone(),
                x.deadline_s
                    .map(format_offset)
                    .unwrap_or_else(|| format!("{} after {}", format_span(x.within_s), x.after)),
                x.done_s.map(format_offset).unwrap_or_else(|| "-".into()),
                x.outcome.to_uppercase(),
            ]
        })
        .collect();
    out.push_str(&render::table(
        &["EXPECT", "WHO", "KIND", "DEADLINE", "DONE", "STATE"],
        &rows,
    ));
    let _ = writeln!(out, "\n{} exercise message(s) seen.", r.timeline.len());
    out
}

/// Marks every line of a `status` or `outbox` view that names an exercise
/// thread with the EXERCISE banner (those views list threads by id only).
pub(crate) fn mark_exercise_lines(daemon: &mut Daemon, text: String) -> String {
    let Ok(threads) = daemon.typed::<Vec<poc_control::ThreadSummary>>(&Request::Inbox) else {
        return text;
    };
    let exercises: Vec<(String, String)> = threads
        .into_iter()
        .filter_map(|t| t.exercise.map(|e| (t.thread_id.to_string(), e)))
        .collect();
    if exercises.is_empty() {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        out.push_str(line);
        if let Some((_, exercise)) = exercises.iter().find(|(id, _)| line.contains(id.as_str())) {
            out.push_str("  ");
            out.push_str(&render::banner(exercise));
        }
        out.push('\n');
    }
    out
}
