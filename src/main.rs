//! The `predmon` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use predmon::cli::{Cli, Command};
use predmon::config::Settings;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PREDMON_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in files or journald.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("predmon: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Report(args) => {
            let settings = Settings::load(args.config.as_deref())?;
            let out = predmon::report::run(
                &settings,
                args.window.as_deref(),
                &args.files,
                args.format,
                predmon::now_ns(),
            )?;
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error worth a message.
            let _ = stdout.write_all(out.as_bytes());
            Ok(())
        }
        Command::CheckConfig { config } => {
            let settings = Settings::load(config.as_deref())?;
            print!("{}", settings.to_toml_redacted());
            eprintln!("predmon: configuration is valid");
            Ok(())
        }
        Command::Run(args) => predmon::app::run(args),
        Command::Generate(args) => predmon::source::generate::cli(args),
    }
}
