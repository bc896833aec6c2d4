//! pocnet simulation exercises (Annex A paras 13-16 of A/78/265: simulation
//! exercises with basic scenarios, so that State representatives practise
//! the directory and the diplomatic and technical roles).
//!
//! - [`scenario`]: the TOML scenario format and its validation (pure).
//! - [`controller`]: drives a scenario through the participants' real pocd
//!   nodes, with the exercise marker on every message.
//! - [`run`]: what a run observed, evaluated against the expected actions.
//! - [`report`]: the after-action report (JSON, Markdown, HTML with an SVG
//!   chart from [`chart`]).
#![forbid(unsafe_code)]

pub mod chart;
pub mod content;
pub mod controller;
pub mod report;
pub mod run;
pub mod scenario;

pub use report::Report;
pub use run::RunLog;
pub use scenario::{Scenario, ScenarioError};
