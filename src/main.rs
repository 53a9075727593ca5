//! The `socktalk` binary: parse the command line, set up logging, run, and turn the outcome into
//! an exit code (0 ok, 1 runtime error, 2 usage error, 3 a client timed out, 128 + the
//! signal's number when a signal cut it short: 130 for Ctrl-C). Errors are one line on stderr.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use socktalk::cli::Cli;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    init_logging(cli.verbose, cli.quiet);
    // One socket gains nothing from more worker threads, and waking a task on another thread
    // costs latency; servers of many connections and load generators get the cores.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut builder = match cli.worker_threads(cores) {
        None => tokio::runtime::Builder::new_current_thread(),
        Some(threads) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads);
            builder
        }
    };
    // `top -H` and `perf` show the process's threads by this name (tokio's blocking threads too).
    let runtime = match builder.enable_all().thread_name("socktalk-worker").build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("socktalk: error: cannot start the runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(socktalk::app::run(cli));
    // A task may still be blocked reading stdin; don't wait for it.
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(socktalk::Error::StdoutClosed) => ExitCode::SUCCESS,
        Err(err) if let Some(signal) = err.interrupted_by() => {
            say(format_args!("socktalk: {err}"));
            ExitCode::from(socktalk::signals::exit_status(signal))
        }
        Err(err) => {
            say(format_args!("socktalk: error: {err}"));
            ExitCode::from(if err.is_usage() {
                2
            } else if err.is_timeout() {
                3
            } else {
                1
            })
        }
    }
}

/// Writes `line` to stderr, if it still can: after a hang-up the terminal is gone (EIO), and
/// `eprintln!` would panic on it, turning the exit code into 101.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Help and version go to stdout with code 0; real usage errors become one line on stderr.
fn usage_error(err: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = err.print();
        return ExitCode::from(
            if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                2
            } else {
                0
            },
        );
    }
    // A value our own parser refused already names itself and says why.
    if let Some(source) =
        std::error::Error::source(err).and_then(|source| source.downcast_ref::<socktalk::Error>())
    {
        eprintln!("socktalk: error: {source}");
        return ExitCode::from(2);
    }
    let text = err.render().to_string();
    // clap's first paragraph names the problem (some kinds list arguments on the next lines);
    // the usage and tip after it are what --help is for.
    let first = text
        .split("\n\n")
        .next()
        .unwrap_or("invalid command line")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let first = first.trim_start_matches("error: ");
    eprintln!(
        "socktalk: error: {first}{} (see {} --help)",
        from_environment(err).unwrap_or_default(),
        command_of(&text)
    );
    ExitCode::from(2)
}

/// clap names a refused value by its flag even when the value came from the flag's environment
/// variable; a user who never typed `--threads` needs to hear where it came from.
fn from_environment(err: &clap::Error) -> Option<String> {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    let flag = arg.split_whitespace().next()?;
    let command = Cli::command();
    let var = command
        .get_arguments()
        .find(|a| a.get_long().is_some_and(|long| flag == format!("--{long}")))?
        .get_env()?;
    let typed = std::env::args_os().skip(1).any(|word| {
        word.to_str()
            .is_some_and(|word| word == flag || word.starts_with(&format!("{flag}=")))
    });
    (!typed).then(|| format!(", from {}", var.to_string_lossy()))
}

/// The command a clap error is about, from its usage line (`Usage: socktalk bench fanout
/// [OPTIONS] <ADDR>` → `socktalk bench fanout`): its own --help is the one that helps.
fn command_of(text: &str) -> String {
    let Some(usage) = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("Usage: "))
    else {
        return command_in_args();
    };
    let words: Vec<&str> = usage
        .split_whitespace()
        .take_while(|word| !word.starts_with(['[', '<', '-']))
        .collect();
    if words.is_empty() {
        "socktalk".into()
    } else {
        words.join(" ")
    }
}

/// The command the command line names (`socktalk connect`), for an error that quotes no usage
/// line: a value its option's parser refused (`--linger abc`).
fn command_in_args() -> String {
    let mut command = Cli::command();
    let mut words = vec!["socktalk".to_string()];
    // Arguments that are not UTF-8 are no subcommand's name (and `args()` would panic on them).
    for arg in std::env::args_os()
        .skip(1)
        .filter_map(|arg| arg.into_string().ok())
    {
        if let Some(sub) = command.find_subcommand(&arg).cloned() {
            words.push(arg);
            command = sub;
        }
    }
    words.join(" ")
}

fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = EnvFilter::try_from_env("SOCKTALK_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("socktalk={default}")));
    // Colour only on a terminal: a log file or a pipe gets plain text.
    let is_terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(is_terminal && std::env::var_os("NO_COLOR").is_none())
        .with_target(false)
        .init();
}
