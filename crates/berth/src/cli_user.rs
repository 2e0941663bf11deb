//! `berth user add|remove|list --file htpasswd`: manage an htpasswd file with bcrypt entries,
//! without apache2-utils. The running server picks up changes by itself.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use berth_auth::htpasswd::{check_password, Htpasswd, DEFAULT_COST};
use clap::Subcommand;

use crate::cli_files::{locked, read_or_empty, CliError};

/// `berth user …`.
#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a user, or set the password of an existing one.
    Add {
        /// The htpasswd file (created if missing).
        #[arg(short, long)]
        file: PathBuf,
        /// User name.
        name: String,
        /// Password (1 to 72 bytes, bcrypt's limit); read from standard input when absent.
        #[arg(short, long)]
        password: Option<String>,
        /// bcrypt cost (4-31).
        #[arg(long, default_value_t = DEFAULT_COST)]
        cost: u32,
    },
    /// Remove a user.
    Remove {
        /// The htpasswd file.
        #[arg(short, long)]
        file: PathBuf,
        /// User name.
        name: String,
    },
    /// List user names.
    List {
        /// The htpasswd file.
        #[arg(short, long)]
        file: PathBuf,
    },
}

/// Runs a user command.
pub fn run(cmd: UserCommand) -> Result<(), CliError> {
    match cmd {
        UserCommand::Add {
            file,
            name,
            password,
            cost,
        } => {
            let password = match password {
                Some(p) => p,
                None => read_password()?,
            };
            check_password(&password).map_err(|e| CliError::Usage(e.to_string()))?;
            edit(&file, |h| {
                h.set_password(&name, &password, cost)
                    .map_err(|e| CliError::Usage(e.to_string()))
            })?;
            say(&format!("user {name} saved in {}", file.display()))
        }
        UserCommand::Remove { file, name } => {
            edit(&file, |h| {
                if h.remove(&name) {
                    Ok(())
                } else {
                    Err(CliError::Usage(format!(
                        "no user {name:?} in {}",
                        file.display()
                    )))
                }
            })?;
            say(&format!("user {name} removed from {}", file.display()))
        }
        UserCommand::List { file } => {
            let h = load(&file)?;
            let mut out = std::io::stdout().lock();
            for u in h.users() {
                writeln!(out, "{u}")?;
            }
            Ok(())
        }
    }
}

fn load(file: &Path) -> Result<Htpasswd, CliError> {
    let text = read_or_empty(file)?;
    Htpasswd::parse(&text).map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))
}

fn edit(
    file: &Path,
    change: impl FnOnce(&mut Htpasswd) -> Result<(), CliError>,
) -> Result<(), CliError> {
    locked(file, || {
        let mut h = load(file)?;
        change(&mut h)?;
        berth_auth::reload::write_atomic(file, h.render().as_bytes())?;
        Ok(())
    })
}

/// One line from standard input (a prompt on stderr when it is a terminal).
// The prompt is the CLI talking to the person at the terminal, not a log line.
#[allow(clippy::print_stderr)]
fn read_password() -> Result<String, CliError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password (shown as you type; or pipe it in): ");
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

fn say(msg: &str) -> Result<(), CliError> {
    writeln!(std::io::stderr(), "{msg}")?;
    Ok(())
}
