//! Scenario files: the shipped ones are valid; a bad one gets every problem
//! named by its field path.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use poc_exercise::scenario::{
    ExpectKind, InjectKind, InjectMode, Player, Scenario, ScenarioError, format_offset,
    parse_offset,
};
use poc_proto::Role;

fn exercises_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/exercises")
}

fn load(name: &str) -> Scenario {
    let dir = exercises_dir();
    let text = std::fs::read_to_string(dir.join(name)).unwrap();
    Scenario::from_toml(&text, &dir).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn the_shipped_scenarios_are_valid() {
    let ping = load("connectivity-drill.toml");
    assert_eq!(ping.id, "DRILL-PING-1");
    assert_eq!(ping.injects[0].kind, InjectKind::Ping);
    assert_eq!(ping.injects[0].to.len(), 4);
    assert_eq!(ping.participants[0].role, Role::DirectoryManager);
    assert!(
        ping.expectations
            .iter()
            .all(|e| e.kind == ExpectKind::PingReply && e.within == 48 * 3600)
    );

    let tech = load("technical-inquiry.toml");
    assert_eq!(tech.time_scale, 300);
    let fra = tech.participant("fra-cert").unwrap();
    assert_eq!((fra.player, fra.delay), (Player::Automated, 20 * 60));
    // Attachments resolve against the scenario's directory and exist.
    let files = tech.attachment_files();
    assert_eq!(files.len(), 1);
    assert!(files[0].1.is_file(), "{}", files[0].1.display());
    assert_eq!(files[0].0, "inject[0].attachments[0]");

    let urgent = load("urgent-incident.toml");
    assert!(urgent.injects.iter().all(|i| i.mode == InjectMode::Send));
    let hand_back = urgent
        .expectations
        .iter()
        .find(|e| e.id == "HAND-BACK")
        .unwrap();
    assert_eq!(hand_back.thread.as_deref(), Some("DIPLO-INQ"));
}

const BAD: &str = r#"
[exercise]
id = "BAD DRILL"
title = "Everything wrong"
duration = "2h"
time_scale = 0

[[participant]]
name = "est-mfa"
poc = "EST.mfa"
role = "diplomatic"

[[participant]]
name = "fra-cert"
poc = "FRA cert"
role = "technical"

[[participant]]
name = "fra-cert2"
poc = "FRA.cert"
role = "technical"
state = "DEU"
player = "robot"

[[inject]]
id = "I1"
at = "T+3h"
from = "est-mfa"
to = "fra-cert2"
kind = "inquiry"

[[inject]]
id = "I2"
at = "T+10"
from = "est-mfa"
to = "nobody"
kind = "response"
thread = "I9"

[[expect]]
id = "E1"
who = "fra-cert2"
kind = "answer"
after = "E2"
within = "0m"
"#;

#[test]
fn every_problem_is_named_by_its_field() {
    let err = Scenario::from_toml(BAD, Path::new(".")).unwrap_err();
    let problems: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
    let has = |field: &str, words: &str| {
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with(&format!("{field}:")) && p.contains(words)),
            "no problem on {field} mentioning {words:?} in:\n{}",
            problems.join("\n")
        );
    };
    has("exercise.id", "may use only");
    has("exercise.time_scale", "out of range");
    has("participant[1].poc", "not a PoC id");
    has("participant[2].state", "does not match");
    has("participant[2].player", "human or automated");
    has("inject[0].at", "after the exercise ends");
    has("inject[0].to[0]", "Annex A para 9");
    has("inject[0].summary", "needs a summary");
    has("inject[1].at", "not a duration");
    has("inject[1].to[0]", "not a participant");
    has("inject[1].thread", "not an earlier inject");
    has("expect[0].kind", "use receipt");
    has(
        "expect[0].after",
        "neither an inject nor an earlier expectation",
    );
    has("expect[0].within", "longer than zero");
    // The error's text lists them all.
    assert!(
        err.to_string()
            .contains(&format!("{} problem(s)", problems.len()))
    );
}

#[test]
fn unknown_fields_and_bad_toml_are_refused_by_name() {
    let text = "[exercise]\nid = \"X\"\ntitle = \"t\"\nduration = \"1h\"\ncolour = \"red\"\n";
    let err = Scenario::from_toml(text, Path::new(".")).unwrap_err();
    assert!(
        matches!(&err, ScenarioError::Syntax(m) if m.contains("colour")),
        "{err}"
    );
    let err = Scenario::from_toml("[exercise", Path::new(".")).unwrap_err();
    assert!(matches!(err, ScenarioError::Syntax(_)));
    // No participant at all.
    let text = "[exercise]\nid = \"X\"\ntitle = \"t\"\nduration = \"1h\"\n";
    let err = Scenario::from_toml(text, Path::new(".")).unwrap_err();
    assert_eq!(err.problems()[0].field, "participant");
}

#[test]
fn only_the_manager_pings_and_pings_alone_go_to_many() {
    let text = r#"
[exercise]
id = "X"
title = "t"
duration = "1h"
[[participant]]
name = "a"
poc = "EST.cert"
role = "technical"
[[participant]]
name = "b"
poc = "FRA.cert"
role = "technical"
[[participant]]
name = "c"
poc = "KEN.cert"
role = "technical"
[[inject]]
id = "P"
at = "0"
from = "a"
to = ["b", "c"]
kind = "ping"
[[inject]]
id = "Q"
at = "0"
from = "a"
to = ["b", "c"]
kind = "inquiry"
summary = "s"
"#;
    let err = Scenario::from_toml(text, Path::new(".")).unwrap_err();
    let fields: Vec<&str> = err.problems().iter().map(|p| p.field.as_str()).collect();
    assert!(fields.contains(&"inject[0].from"), "{err}");
    assert!(fields.contains(&"inject[1].to"), "{err}");
}

#[test]
fn offsets_parse_and_print() {
    assert_eq!(parse_offset("T+15m"), Ok(900));
    assert_eq!(parse_offset("1h30m"), Ok(5400));
    assert_eq!(parse_offset("2d"), Ok(172_800));
    assert_eq!(parse_offset("0"), Ok(0));
    assert_eq!(parse_offset("T+0"), Ok(0));
    for bad in ["", "15", "T+", "1x", "h", "-1h", "99999999999999999999d"] {
        assert!(parse_offset(bad).is_err(), "{bad:?}");
    }
    assert_eq!(format_offset(5400), "T+1h30m");
    assert_eq!(format_offset(45), "T+45s");
    assert_eq!(format_offset(0), "T+0m");
}

#[test]
fn the_commented_example_in_the_readme_is_a_valid_scenario() {
    let dir = exercises_dir();
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let start = readme.find("```toml\n").expect("a TOML example") + "```toml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let scenario = Scenario::from_toml(&readme[start..end], &dir)
        .unwrap_or_else(|e| panic!("the README example: {e}"));
    assert_eq!(scenario.id, "CYBEX-2026-1");
    assert_eq!(scenario.time_scale, 60);
    assert!(scenario.attachment_files()[0].1.is_file());
}
