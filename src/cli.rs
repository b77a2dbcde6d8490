//! Command-line interface: `run`, `report`, `check-config`, `generate`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::report::Format;

#[derive(Debug, Parser)]
#[command(
    name = "predmon",
    version,
    about = "Watches the quality of ML classifiers in production and exports it to Prometheus"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: read sources, join, aggregate, serve /metrics.
    Run(RunArgs),
    /// Read events from files once and print one report.
    Report(ReportArgs),
    /// Validate a configuration file and print the effective configuration.
    CheckConfig {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Write a synthetic event stream to a file, standard output or a Kafka topic.
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// TOML configuration; without it predmon runs the built-in demo (a `generate` source).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Address to listen on for HTTP (overrides server.listen_address).
    #[arg(long = "web.listen-address")]
    pub listen_address: Option<String>,
    /// Path under which to expose metrics (overrides server.telemetry_path).
    #[arg(long = "web.telemetry-path")]
    pub telemetry_path: Option<String>,
    /// exporter-toolkit web configuration (TLS, basic auth).
    #[arg(long = "web.config.file")]
    pub web_config: Option<PathBuf>,
    /// Start with empty state when the snapshot cannot be loaded (it is kept aside, not deleted).
    #[arg(long = "state.discard-unreadable")]
    pub discard_unreadable_state: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Report only the window of this length ending at the watermark (e.g. 5m).
    #[arg(long)]
    pub window: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Input files, read as one stream in order; `-` is standard input.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Events per second (0: as fast as possible).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// FILE, `-` for standard output, or kafka://broker:port/topic.
    #[arg(long, default_value = "-")]
    pub output: String,
    /// Stop after this many events (default: run until interrupted).
    #[arg(long)]
    pub count: Option<u64>,
    /// Configuration whose first `generate` source sets the scenario.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}
