//! The `taskmaster` binary's library: settings, the application that wires the roles, and the
//! command line. `main.rs` only reads the settings, installs telemetry and runs the CLI.
//!
//! # Layout
//! - [`settings`]: the one `Settings`, read once from the environment.
//! - [`app`]: `Application::build` + `run_until_stopped`, shared by `main` and the tests.
//! - [`cli`]: the subcommands (`dev`, `serve`, `migrate`, `nats apply`, `replay`, `verify`, …).
//! - [`progress`]: how a long command (a rebuild) shows where it is.

pub mod app;
pub mod cli;
pub mod progress;
pub mod settings;

pub use app::{Application, Roles};
pub use settings::Settings;
