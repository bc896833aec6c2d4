//! Scenario files: what an exercise is, who plays, what is injected when, and
//! what each player is expected to do by when.
//!
//! The format is TOML; `deploy/exercises/README.md` documents it with a
//! commented example and the three shipped scenarios use it. Parsing
//! ([`Scenario::from_toml`]) is pure: every problem found is reported with the
//! path of the field at fault (`inject[2].to`, `expect[0].after`, ...), all at
//! once, so an exercise controller fixes the file in one go.
//!
//! All times in a scenario are *scenario time*, counted from T (the start):
//! `at = "T+15m"`, `within = "2h"`. The exercise's `time_scale` says how many
//! scenario seconds pass per real second (1 = real time; 60 = a minute per
//! second, for drills).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use poc_proto::{PocId, Role};
use serde::{Deserialize, Serialize};

/// Longest exercise id, in bytes (it travels in every message header).
pub const MAX_EXERCISE_ID_BYTES: usize = 64;

/// Largest time scale accepted (a scenario second per microsecond is
/// already beyond what a node's one-second timestamps can show).
pub const MAX_TIME_SCALE: u32 = 100_000;

/// One thing wrong with a scenario file, with the path of the field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Where: e.g. `participant[1].poc`.
    pub field: String,
    /// What is wrong and what a good value looks like.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why a scenario file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScenarioError {
    /// Not TOML, or not shaped like a scenario (unknown or mistyped field).
    #[error("the scenario is not valid TOML of the expected shape: {0}")]
    Syntax(String),
    /// Well-formed, but with problems; each names its field.
    #[error("the scenario has {} problem(s):\n{}", .0.len(), .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl ScenarioError {
    /// The problems, if the file parsed.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ScenarioError::Syntax(_) => &[],
            ScenarioError::Invalid(p) => p,
        }
    }
}

/// Whether a player acts on their own or the controller acts for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Player {
    /// A person at the node: the controller prints what to do and watches.
    Human,
    /// Scripted: the controller answers through the node per the expected
    /// actions, after the participant's `delay`.
    Automated,
}

/// A participant: one PoC's node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Participant {
    /// The handle used in the scenario (`est-cert`).
    pub name: String,
    /// The PoC.
    pub poc: PocId,
    /// Its role.
    pub role: Role,
    /// Its State's alpha-3 code, or `UN` for the directory manager.
    pub state: String,
    /// The node's control socket, if the scenario names one.
    pub socket: Option<PathBuf>,
    /// Human or automated.
    pub player: Player,
    /// For automated players: how long (scenario seconds) they take to act.
    pub delay: u64,
}

/// What an inject sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InjectKind {
    /// Opens a thread.
    Inquiry,
    /// Answers the inquiry of `thread` (with `eta`: will follow up).
    Response,
    /// More information on `thread`.
    FollowUp,
    /// Closes `thread`.
    Close,
    /// A connectivity check from the directory manager to every `to`.
    Ping,
}

impl InjectKind {
    fn parse(text: &str) -> Option<InjectKind> {
        Some(match text {
            "inquiry" => InjectKind::Inquiry,
            "response" => InjectKind::Response,
            "follow-up" => InjectKind::FollowUp,
            "close" => InjectKind::Close,
            "ping" => InjectKind::Ping,
            _ => return None,
        })
    }

    /// The name used in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            InjectKind::Inquiry => "inquiry",
            InjectKind::Response => "response",
            InjectKind::FollowUp => "follow-up",
            InjectKind::Close => "close",
            InjectKind::Ping => "ping",
        }
    }
}

/// Whether the controller sends an inject or tells its player to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InjectMode {
    /// The controller sends it through the sender's node.
    Send,
    /// The controller prints it for the (human) sender, who sends it.
    Instruct,
}

/// The content of an inject (fields unused by its kind stay empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Content {
    /// Inquiry summary.
    pub summary: Option<String>,
    /// Inquiry description.
    pub description: Option<String>,
    /// Inquiry category (ddos, malware, ...).
    pub category: Option<String>,
    /// routine, priority, urgent.
    pub urgency: Option<String>,
    /// Inquiry: answer needed within (scenario seconds).
    pub respond_within: Option<u64>,
    /// Inquiry: critical infrastructure affected.
    pub critical_infrastructure: Option<bool>,
    /// Inquiry: affected sectors.
    pub sectors: Vec<String>,
    /// Files to attach, resolved against the scenario's directory.
    pub attachments: Vec<PathBuf>,
    /// Free text (response answer or note, follow-up, close note, or the
    /// instruction shown to a human player).
    pub text: Option<String>,
    /// Response or follow-up: more will follow within (scenario seconds).
    pub eta: Option<u64>,
    /// Ping: the reply window (scenario seconds; default 48 h).
    pub reply_window: Option<u64>,
}

/// A scheduled event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inject {
    /// Its id (`I1`).
    pub id: String,
    /// When, in scenario seconds after T.
    pub at: u64,
    /// Sending participant.
    pub from: String,
    /// Receiving participants (several only for pings).
    pub to: Vec<String>,
    /// What.
    pub kind: InjectKind,
    /// For replies: the inject whose thread this continues.
    pub thread: Option<String>,
    /// Sent by the controller or by the player.
    pub mode: InjectMode,
    /// The content.
    pub content: Content,
}

/// What an expected action is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExpectKind {
    /// The neutral receipt (sent by the node itself on arrival).
    Receipt,
    /// Any response.
    Response,
    /// A response saying more will follow (with an ETA).
    ResponseEta,
    /// A response with an immediate answer.
    ResponseAnswer,
    /// A follow-up.
    FollowUp,
    /// A close.
    Close,
    /// A new inquiry (opens a thread).
    Inquiry,
    /// A ping reply.
    PingReply,
}

impl ExpectKind {
    fn parse(text: &str) -> Option<ExpectKind> {
        Some(match text {
            "receipt" => ExpectKind::Receipt,
            "response" => ExpectKind::Response,
            "response-eta" => ExpectKind::ResponseEta,
            "response-answer" => ExpectKind::ResponseAnswer,
            "follow-up" => ExpectKind::FollowUp,
            "close" => ExpectKind::Close,
            "inquiry" => ExpectKind::Inquiry,
            "ping-reply" => ExpectKind::PingReply,
            _ => return None,
        })
    }

    /// The name used in scenario files and reports.
    pub fn name(self) -> &'static str {
        match self {
            ExpectKind::Receipt => "receipt",
            ExpectKind::Response => "response",
            ExpectKind::ResponseEta => "response-eta",
            ExpectKind::ResponseAnswer => "response-answer",
            ExpectKind::FollowUp => "follow-up",
            ExpectKind::Close => "close",
            ExpectKind::Inquiry => "inquiry",
            ExpectKind::PingReply => "ping-reply",
        }
    }
}

/// An action a participant is expected to take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expectation {
    /// Its id (`E1`).
    pub id: String,
    /// Who acts.
    pub who: String,
    /// What they send.
    pub kind: ExpectKind,
    /// To whom (default: the other party of the thread).
    pub to: Option<String>,
    /// The inject or expectation it follows.
    pub after: String,
    /// The thread it belongs to, as the inject that opened it (default: the
    /// thread of `after`).
    pub thread: Option<String>,
    /// Deadline, scenario seconds after `after` happened.
    pub within: u64,
    /// What an automated player says (answer, note, summary).
    pub text: Option<String>,
    /// For an automated ETA response or follow-up: more within this long.
    pub eta: Option<u64>,
}

/// A validated scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    /// The exercise id: the marker every exercise message carries.
    pub id: String,
    /// Title.
    pub title: String,
    /// What the exercise practises.
    pub description: Option<String>,
    /// End time, scenario seconds after T.
    pub duration: u64,
    /// Scenario seconds per real second (1 = real time).
    pub time_scale: u32,
    /// Language tag of the messages (`en` by default).
    pub language: String,
    /// Handling label of the messages (`confidential` by default).
    pub handling: String,
    /// Participants.
    pub participants: Vec<Participant>,
    /// Injects, in the order given (run by `at`).
    pub injects: Vec<Inject>,
    /// Expected actions.
    pub expectations: Vec<Expectation>,
}

impl Scenario {
    /// Parses and validates a scenario; relative paths (sockets,
    /// attachments) are resolved against `base_dir`, the scenario file's
    /// directory.
    pub fn from_toml(text: &str, base_dir: &Path) -> Result<Scenario, ScenarioError> {
        let file: file::Scenario =
            toml::from_str(text).map_err(|e| ScenarioError::Syntax(e.to_string()))?;
        validate(file, base_dir)
    }

    /// A participant by name.
    pub fn participant(&self, name: &str) -> Option<&Participant> {
        self.participants.iter().find(|p| p.name == name)
    }

    /// The participant that is this PoC.
    pub fn participant_by_poc(&self, poc: &PocId) -> Option<&Participant> {
        self.participants.iter().find(|p| &p.poc == poc)
    }

    /// Real seconds for `scenario_seconds` of scenario time.
    pub fn real_seconds(&self, scenario_seconds: u64) -> f64 {
        scenario_seconds as f64 / f64::from(self.time_scale.max(1))
    }

    /// Every file the scenario attaches, with the field naming it.
    pub fn attachment_files(&self) -> Vec<(String, &Path)> {
        self.injects
            .iter()
            .enumerate()
            .flat_map(|(i, inject)| {
                inject
                    .content
                    .attachments
                    .iter()
                    .enumerate()
                    .map(move |(j, path)| (format!("inject[{i}].attachments[{j}]"), path.as_path()))
            })
            .collect()
    }
}

/// Parses a scenario duration: `90s`, `15m`, `2h`, `1d`, `1h30m`, `0`, with
/// an optional `T+` in front (`T+15m`).
pub fn parse_offset(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "{text:?} is not a duration: write a number and a unit (s, m, h, d), e.g. T+15m, 2h, 1h30m"
        )
    };
    let t = text.trim();
    let t = t
        .strip_prefix("T+")
        .or_else(|| t.strip_prefix("t+"))
        .unwrap_or(t)
        .trim();
    if t == "0" {
        return Ok(0);
    }
    if t.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in t.chars() {
        if let Some(d) = c.to_digit(10) {
            number = Some(
                number
                    .unwrap_or(0)
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(d)))
                    .ok_or_else(bad)?,
            );
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n = number.take().ok_or_else(bad)?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
    }
    if number.is_some() {
        return Err(bad());
    }
    Ok(total)
}

/// Shows scenario seconds as `T+1h30m`.
pub fn format_offset(seconds: u64) -> String {
    format!("T+{}", format_span(seconds))
}

/// Shows a span of scenario seconds as `1h30m`, `45s`, `0m`.
pub fn format_span(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds % 86_400 / 3600,
        seconds % 3600 / 60,
        seconds % 60,
    );
    let mut out = String::new();
    if d > 0 {
        out.push_str(&format!("{d}d"));
    }
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 && d == 0 && h == 0 {
        out.push_str(&format!("{s}s"));
    }
    if out.is_empty() {
        out.push_str("0m");
    }
    out
}

/// The file's shape, before validation.
mod file {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Scenario {
        pub(super) exercise: Exercise,
        #[serde(default)]
        pub(super) participant: Vec<Participant>,
        #[serde(default)]
        pub(super) inject: Vec<Inject>,
        #[serde(default)]
        pub(super) expect: Vec<Expect>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(untagged)]
    pub(super) enum Scale {
        Factor(i64),
        Word(String),
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Exercise {
        pub(super) id: String,
        pub(super) title: String,
        pub(super) description: Option<String>,
        pub(super) duration: String,
        pub(super) time_scale: Option<Scale>,
        pub(super) language: Option<String>,
        pub(super) handling: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Participant {
        pub(super) name: String,
        pub(super) poc: String,
        pub(super) role: String,
        pub(super) state: Option<String>,
        pub(super) socket: Option<String>,
        pub(super) player: Option<String>,
        pub(super) delay: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(untagged)]
    pub(super) enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Inject {
        pub(super) id: String,
        pub(super) at: String,
        pub(super) from: String,
        pub(super) to: OneOrMany,
        pub(super) kind: String,
        pub(super) thread: Option<String>,
        pub(super) mode: Option<String>,
        pub(super) summary: Option<String>,
        pub(super) description: Option<String>,
        pub(super) category: Option<String>,
        pub(super) urgency: Option<String>,
        pub(super) respond_within: Option<String>,
        pub(super) critical_infrastructure: Option<bool>,
        #[serde(default)]
        pub(super) sectors: Vec<String>,
        #[serde(default)]
        pub(super) attachments: Vec<String>,
        pub(super) text: Option<String>,
        pub(super) eta: Option<String>,
        pub(super) reply_window: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Expect {
        pub(super) id: String,
        pub(super) who: String,
        pub(super) kind: String,
        pub(super) to: Option<String>,
        pub(super) after: String,
        pub(super) thread: Option<String>,
        pub(super) within: String,
        pub(super) text: Option<String>,
        pub(super) eta: Option<String>,
    }
}

/// Collects problems by field path.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            field: field.into(),
            message: message.into(),
        });
    }

    fn offset(&mut self, field: &str, text: &str) -> u64 {
        parse_offset(text).unwrap_or_else(|e| {
            self.add(field, e);
            0
        })
    }

    fn positive(&mut self, field: &str, text: &str) -> u64 {
        let value = self.offset(field, text);
        if value == 0 && parse_offset(text).is_ok() {
            self.add(field, "must be longer than zero");
        }
        value
    }

    fn text(&mut self, field: &str, text: &str, max: usize) {
        if text.trim().is_empty() {
            self.add(field, "must not be empty");
        } else if text.len() > max {
            self.add(field, format!("is {} bytes; at most {max}", text.len()));
        }
    }
}

fn parse_role(text: &str) -> Option<Role> {
    Some(match text {
        "technical" => Role::Technical,
        "diplomatic" => Role::Diplomatic,
        "directory-manager" => Role::DirectoryManager,
        _ => return None,
    })
}

fn resolve(base_dir: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_dir.join(path)
    }
}

/// Whether the role rule of Annex A para 9 lets `from` write to `to`.
fn roles_allow(from: &Participant, to: &Participant, kind: InjectKind) -> bool {
    match (from.role, to.role) {
        (Role::DirectoryManager, _) => kind == InjectKind::Ping,
        (_, Role::DirectoryManager) => false,
        _ if from.state == to.state => true,
        (a, b) => a == b,
    }
}

fn validate(file: file::Scenario, base_dir: &Path) -> Result<Scenario, ScenarioError> {
    let mut p = Problems::default();
    let ex = file.exercise;

    p.text("exercise.id", &ex.id, MAX_EXERCISE_ID_BYTES);
    if !ex
        .id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        p.add(
            "exercise.id",
            format!(
                "{:?} may use only A-Z a-z 0-9 - _ . (it is shown on every exercise message)",
                ex.id
            ),
        );
    }
    p.text("exercise.title", &ex.title, 256);
    let duration = p.positive("exercise.duration", &ex.duration);
    let time_scale = match ex.time_scale {
        None => 1,
        Some(file::Scale::Word(w)) if w == "real" => 1,
        Some(file::Scale::Factor(n)) if (1..=i64::from(MAX_TIME_SCALE)).contains(&n) => {
            u32::try_from(n).unwrap_or(1)
        }
        Some(file::Scale::Factor(n)) => {
            p.add(
                "exercise.time_scale",
                format!("{n} is out of range: give \"real\" or a factor from 1 to {MAX_TIME_SCALE} (scenario seconds per real second)"),
            );
            1
        }
        Some(file::Scale::Word(w)) => {
            p.add(
                "exercise.time_scale",
                format!("{w:?}: give \"real\" or a compression factor such as 60 (a scenario minute per real second)"),
            );
            1
        }
    };
    let language = ex.language.unwrap_or_else(|| "en".into());
    if poc_proto::message::Language::from_tag(&language).is_none() {
        p.add(
            "exercise.language",
            format!(
                "{language:?} is not one of the six UN official languages (ar, zh, en, fr, ru, es)"
            ),
        );
    }
    let handling = ex.handling.unwrap_or_else(|| "confidential".into());
    if crate::content::handling(&handling).is_none() {
        p.add(
            "exercise.handling",
            format!("{handling:?}: use confidential, clear, green, amber, amber+strict or red"),
        );
    }

    // Participants.
    if file.participant.is_empty() {
        p.add(
            "participant",
            "an exercise needs at least one [[participant]]",
        );
    }
    let mut participants = Vec::new();
    let mut names = BTreeSet::new();
    let mut pocs = BTreeSet::new();
    for (i, fp) in file.participant.into_iter().enumerate() {
        let at = |f: &str| format!("participant[{i}].{f}");
        p.text(&at("name"), &fp.name, 64);
        if !names.insert(fp.name.clone()) {
            p.add(
                at("name"),
                format!("{:?} is used by another participant", fp.name),
            );
        }
        let poc = match PocId::new(fp.poc.clone()) {
            Ok(poc) => {
                if !pocs.insert(poc.clone()) {
                    p.add(at("poc"), format!("{poc} is listed twice"));
                }
                Some(poc)
            }
            Err(e) => {
                p.add(at("poc"), e.to_string());
                None
            }
        };
        let role = parse_role(&fp.role);
        if role.is_none() {
            p.add(
                at("role"),
                format!(
                    "{:?}: use technical, diplomatic or directory-manager",
                    fp.role
                ),
            );
        }
        let derived = match (role, &poc) {
            (Some(Role::DirectoryManager), _) => "UN".to_owned(),
            (_, Some(poc)) => poc.as_str().split('.').next().unwrap_or("").to_owned(),
            _ => String::new(),
        };
        let state = match fp.state {
            Some(s)
                if role != Some(Role::DirectoryManager) && !derived.is_empty() && s != derived =>
            {
                p.add(
                    at("state"),
                    format!("{s:?} does not match the PoC id, which is of {derived}"),
                );
                s
            }
            Some(s) => s,
            None => derived,
        };
        let player = match fp.player.as_deref() {
            None | Some("human") => Player::Human,
            Some("automated") => Player::Automated,
            Some(other) => {
                p.add(at("player"), format!("{other:?}: use human or automated"));
                Player::Human
            }
        };
        let delay = match &fp.delay {
            Some(d) if player == Player::Automated => p.offset(&at("delay"), d),
            Some(_) => {
                p.add(at("delay"), "only an automated player has a delay");
                0
            }
            None => 0,
        };
        if let (Some(poc), Some(role)) = (poc, role) {
            participants.push(Participant {
                name: fp.name,
                poc,
                role,
                state,
                socket: fp.socket.map(|s| resolve(base_dir, &s)),
                player,
                delay,
            });
        }
    }
    let by_name: BTreeMap<&str, &Participant> =
        participants.iter().map(|p| (p.name.as_str(), p)).collect();
    let known = |p: &mut Problems, field: String, name: &str| -> Option<Participant> {
        match by_name.get(name) {
            Some(found) => Some((*found).clone()),
            None => {
                p.add(
                    field,
                    format!(
                        "{name:?} is not a participant (participants: {})",
                        by_name.keys().copied().collect::<Vec<_>>().join(", ")
                    ),
                );
                None
            }
        }
    };

    // Injects.
    let mut injects = Vec::new();
    let mut inject_kinds: BTreeMap<String, InjectKind> = BTreeMap::new();
    for (i, fi) in file.inject.into_iter().enumerate() {
        let at = |f: &str| format!("inject[{i}].{f}");
        p.text(&at("id"), &fi.id, 64);
        if inject_kinds.contains_key(&fi.id) {
            p.add(at("id"), format!("{:?} is used by another inject", fi.id));
        }
        let when = p.offset(&at("at"), &fi.at);
        if when > duration {
            p.add(
                at("at"),
                format!(
                    "{} is after the exercise ends ({})",
                    format_offset(when),
                    format_offset(duration)
                ),
            );
        }
        let from = known(&mut p, at("from"), &fi.from);
        let to_names = match fi.to {
            file::OneOrMany::One(one) => vec![one],
            file::OneOrMany::Many(many) => many,
        };
        if to_names.is_empty() {
            p.add(at("to"), "names no participant");
        }
        let to: Vec<Option<Participant>> = to_names
            .iter()
            .enumerate()
            .map(|(j, name)| known(&mut p, format!("inject[{i}].to[{j}]"), name))
            .collect();
        let kind = InjectKind::parse(&fi.kind);
        if kind.is_none() {
            p.add(
                at("kind"),
                format!(
                    "{:?}: use inquiry, response, follow-up, close or ping",
                    fi.kind
                ),
            );
        }
        let mode = match fi.mode.as_deref() {
            None | Some("send") => InjectMode::Send,
            Some("instruct") => InjectMode::Instruct,
            Some(other) => {
                p.add(at("mode"), format!("{other:?}: use send or instruct"));
                InjectMode::Send
            }
        };
        if let (Some(kind), Some(from)) = (kind, &from) {
            if kind == InjectKind::Ping && from.role != Role::DirectoryManager {
                p.add(
                    at("from"),
                    format!(
                        "{} is {}; only the directory manager sends pings (Annex A para 8)",
                        from.poc, from.role
                    ),
                );
            }
            if kind != InjectKind::Ping && to_names.len() > 1 {
                p.add(at("to"), "only a ping goes to several participants");
            }
            for (j, to) in to.iter().enumerate() {
                if let Some(to) = to {
                    if to.name == from.name {
                        p.add(format!("inject[{i}].to[{j}]"), "is the sender");
                    } else if !roles_allow(from, to, kind) {
                        p.add(
                            format!("inject[{i}].to[{j}]"),
                            format!(
                                "{} ({}) may not send a {} to {} ({}): diplomatic PoCs write to diplomatic PoCs and technical to technical (Annex A para 9)",
                                from.poc, from.role, kind.name(), to.poc, to.role
                            ),
                        );
                    }
                }
            }
            match (kind, &fi.thread) {
                (InjectKind::Inquiry | InjectKind::Ping, Some(_)) => p.add(
                    at("thread"),
                    format!("a {} opens its own thread", kind.name()),
                ),
                (InjectKind::Response | InjectKind::FollowUp | InjectKind::Close, None) => p.add(
                    at("thread"),
                    format!(
                        "a {} continues a thread: name the inject that opened it",
                        kind.name()
                    ),
                ),
                (_, Some(thread)) => match inject_kinds.get(thread) {
                    Some(InjectKind::Inquiry) => {}
                    Some(_) => p.add(at("thread"), format!("{thread:?} is not an inquiry inject")),
                    None => p.add(at("thread"), format!("{thread:?} is not an earlier inject")),
                },
                _ => {}
            }
            if kind == InjectKind::Inquiry {
                match &fi.summary {
                    Some(s) => p.text(&at("summary"), s, 64 * 1024),
                    None => p.add(at("summary"), "an inquiry needs a summary"),
                }
            }
            if kind == InjectKind::FollowUp && fi.text.is_none() {
                p.add(at("text"), "a follow-up needs text");
            }
            if kind == InjectKind::Response && fi.text.is_none() && fi.eta.is_none() {
                p.add(
                    at("text"),
                    "a response needs text (an answer) or an eta (will follow up)",
                );
            }
            if mode == InjectMode::Instruct && from.player == Player::Automated {
                p.add(
                    at("mode"),
                    format!(
                        "{} is automated; only a human player is instructed",
                        from.name
                    ),
                );
            }
        }
        if let Some(category) = &fi.category
            && crate::content::category(category).is_none()
        {
            p.add(at("category"), format!("{category:?} is not a category"));
        }
        if let Some(u) = &fi.urgency
            && crate::content::urgency(u).is_none()
        {
            p.add(
                at("urgency"),
                format!("{u:?}: use routine, priority or urgent"),
            );
        }
        let content = Content {
            summary: fi.summary,
            description: fi.description,
            category: fi.category,
            urgency: fi.urgency,
            respond_within: fi
                .respond_within
                .map(|w| p.positive(&at("respond_within"), &w)),
            critical_infrastructure: fi.critical_infrastructure,
            sectors: fi.sectors,
            attachments: fi
                .attachments
                .iter()
                .map(|a| resolve(base_dir, a))
                .collect(),
            text: fi.text,
            eta: fi.eta.map(|e| p.positive(&at("eta"), &e)),
            reply_window: fi.reply_window.map(|w| p.positive(&at("reply_window"), &w)),
        };
        if let Some(kind) = kind {
            inject_kinds.insert(fi.id.clone(), kind);
            if let Some(from) = from {
                injects.push(Inject {
                    id: fi.id,
                    at: when,
                    from: from.name,
                    to: to.into_iter().flatten().map(|p| p.name).collect(),
                    kind,
                    thread: fi.thread,
                    mode,
                    content,
                });
            }
        }
    }

    // Expectations.
    let mut expectations = Vec::new();
    let mut anchors: BTreeSet<String> = inject_kinds.keys().cloned().collect();
    let mut expect_kinds: BTreeMap<String, ExpectKind> = BTreeMap::new();
    for (i, fe) in file.expect.into_iter().enumerate() {
        let at = |f: &str| format!("expect[{i}].{f}");
        p.text(&at("id"), &fe.id, 64);
        if anchors.contains(&fe.id) {
            p.add(
                at("id"),
                format!("{:?} is used by an inject or another expectation", fe.id),
            );
        }
        let who = known(&mut p, at("who"), &fe.who);
        let to = fe.to.as_ref().and_then(|t| known(&mut p, at("to"), t));
        let kind = ExpectKind::parse(&fe.kind);
        if kind.is_none() {
            p.add(
                at("kind"),
                format!("{:?}: use receipt, response, response-eta, response-answer, follow-up, close, inquiry or ping-reply", fe.kind),
            );
        }
        if !anchors.contains(&fe.after) {
            p.add(
                at("after"),
                format!(
                    "{:?} is neither an inject nor an earlier expectation",
                    fe.after
                ),
            );
        }
        if let Some(thread) = &fe.thread
            && inject_kinds.get(thread) != Some(&InjectKind::Inquiry)
            && expect_kinds.get(thread) != Some(&ExpectKind::Inquiry)
        {
            p.add(
                at("thread"),
                format!("{thread:?} is not an inquiry inject or an earlier inquiry expectation"),
            );
        }
        if kind == Some(ExpectKind::Inquiry) && fe.to.is_none() {
            p.add(at("to"), "an expected inquiry names its recipient");
        }
        let within = p.positive(&at("within"), &fe.within);
        let eta = fe.eta.map(|e| p.positive(&at("eta"), &e));
        if kind == Some(ExpectKind::ResponseEta)
            && eta.is_none()
            && who.as_ref().is_some_and(|w| w.player == Player::Automated)
        {
            p.add(at("eta"), "an automated player's ETA response needs an eta");
        }
        anchors.insert(fe.id.clone());
        if let (Some(who), Some(kind)) = (who, kind) {
            expect_kinds.insert(fe.id.clone(), kind);
            expectations.push(Expectation {
                id: fe.id,
                who: who.name,
                kind,
                to: to.map(|t| t.name),
                after: fe.after,
                thread: fe.thread,
                within,
                text: fe.text,
                eta,
            });
        }
    }

    if p.0.is_empty() {
        Ok(Scenario {
            id: ex.id,
            title: ex.title,
            description: ex.description,
            duration,
            time_scale,
            language,
            handling,
            participants,
            injects,
            expectations,
        })
    } else {
        Err(ScenarioError::Invalid(p.0))
    }
}
