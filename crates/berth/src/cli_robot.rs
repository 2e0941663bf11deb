//! `berth robot create|list|rotate|delete --file robots.yml`: robot accounts for CI.
//!
//! A robot logs in as `robot$<name>` with the secret printed by `create` and `rotate` (shown
//! once; the file keeps only its SHA-256). The running server re-reads the file when it changes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use berth_auth::robots::{NewRobot, Robots};
use berth_auth::{Action, RepoPattern, ROBOT_PREFIX};
use clap::Subcommand;

use crate::cli_files::{locked, read_or_empty, CliError};

/// `berth robot …`.
#[derive(Subcommand)]
pub enum RobotCommand {
    /// Create a robot and print its secret (once).
    Create {
        /// The robots file (created if missing).
        #[arg(short, long)]
        file: PathBuf,
        /// Robot name (the login is `robot$<name>`).
        #[arg(short, long)]
        name: String,
        /// Repository patterns, comma-separated or repeated: `team-a/*`, `team-a/**`.
        #[arg(short, long, value_delimiter = ',', required = true)]
        repos: Vec<String>,
        /// Actions: pull, push, delete (comma-separated).
        #[arg(short, long, value_delimiter = ',', default_value = "pull")]
        actions: Vec<String>,
        /// Lifetime (`30d`, `12h`, `never`).
        #[arg(short, long, default_value = "never")]
        expires: String,
        /// Free text.
        #[arg(short, long)]
        description: Option<String>,
    },
    /// List robots (never secrets).
    List {
        /// The robots file.
        #[arg(short, long)]
        file: PathBuf,
    },
    /// Replace a robot's secret and print the new one; the old one stops working.
    Rotate {
        /// The robots file.
        #[arg(short, long)]
        file: PathBuf,
        /// Robot name.
        #[arg(short, long)]
        name: String,
        /// New lifetime from now (`30d`, `never`); unchanged when absent.
        #[arg(short, long)]
        expires: Option<String>,
    },
    /// Delete a robot.
    Delete {
        /// The robots file.
        #[arg(short, long)]
        file: PathBuf,
        /// Robot name.
        #[arg(short, long)]
        name: String,
    },
}

/// Runs a robot command.
pub fn run(cmd: RobotCommand) -> Result<(), CliError> {
    let now = SystemTime::now();
    match cmd {
        RobotCommand::Create {
            file,
            name,
            repos,
            actions,
            expires,
            description,
        } => {
            let new = NewRobot {
                name: name.clone(),
                repositories: patterns(&repos)?,
                actions: parse_actions(&actions)?,
                expires: expiry(&expires, now)?,
                description,
            };
            let secret = edit(&file, |r| r.create(new, now))?;
            print_secret(&name, &secret)
        }
        RobotCommand::Rotate {
            file,
            name,
            expires,
        } => {
            let expires = expires.map(|e| expiry(&e, now)).transpose()?;
            let secret = edit(&file, |r| r.rotate(&name, expires, now))?;
            print_secret(&name, &secret)
        }
        RobotCommand::Delete { file, name } => {
            edit(&file, |r| r.delete(&name))?;
            writeln!(std::io::stderr(), "robot {ROBOT_PREFIX}{name} deleted")?;
            Ok(())
        }
        RobotCommand::List { file } => list(&load(&file)?, now),
    }
}

fn list(robots: &Robots, now: SystemTime) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "LOGIN\tREPOSITORIES\tACTIONS\tEXPIRES\tSTATUS")?;
    for r in &robots.robots {
        let repos: Vec<&str> = r.repositories.iter().map(RepoPattern::as_str).collect();
        let acts: Vec<&str> = r.actions.iter().map(|a| a.as_str()).collect();
        let status = if r.expired(now) { "expired" } else { "active" };
        writeln!(
            out,
            "{ROBOT_PREFIX}{}\t{}\t{}\t{}\t{status}",
            r.name,
            repos.join(","),
            acts.join(","),
            r.expires.as_deref().unwrap_or("never"),
        )?;
    }
    Ok(())
}

fn print_secret(name: &str, secret: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "username: {ROBOT_PREFIX}{name}")?;
    writeln!(out, "secret: {secret}")?;
    writeln!(
        std::io::stderr(),
        "store the secret now: it is not kept and cannot be shown again (rotate for a new one)"
    )?;
    Ok(())
}

fn load(file: &Path) -> Result<Robots, CliError> {
    Robots::parse(&read_or_empty(file)?)
        .map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))
}

fn edit<T>(
    file: &Path,
    change: impl FnOnce(&mut Robots) -> Result<T, berth_auth::robots::RobotError>,
) -> Result<T, CliError> {
    locked(file, || {
        let mut robots = load(file)?;
        let out = change(&mut robots).map_err(|e| CliError::Usage(e.to_string()))?;
        berth_auth::reload::write_atomic(file, robots.render().as_bytes())?;
        Ok(out)
    })
}

fn patterns(list: &[String]) -> Result<Vec<RepoPattern>, CliError> {
    list.iter()
        .map(|p| RepoPattern::parse(p.trim()).map_err(|e| CliError::Usage(e.to_string())))
        .collect()
}

fn parse_actions(list: &[String]) -> Result<Vec<Action>, CliError> {
    list.iter()
        .map(|a| {
            Action::parse(a.trim())
                .ok_or_else(|| CliError::Usage(format!("{a:?} is not pull, push or delete")))
        })
        .collect()
}

fn expiry(s: &str, now: SystemTime) -> Result<Option<SystemTime>, CliError> {
    if s == "never" {
        return Ok(None);
    }
    let d: Duration = humantime::parse_duration(s).map_err(|e| {
        CliError::Usage(format!("--expires {s:?}: {e} (use e.g. 30d, 12h or never)"))
    })?;
    Ok(Some(now + d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_expiries_actions_and_patterns() {
        let now = SystemTime::UNIX_EPOCH;
        assert_eq!(expiry("never", now).unwrap(), None);
        assert_eq!(
            expiry("30d", now).unwrap(),
            Some(now + Duration::from_secs(30 * 86400))
        );
        assert!(expiry("soon", now).is_err());
        assert_eq!(
            parse_actions(&["pull".into(), " push".into()]).unwrap(),
            [Action::Pull, Action::Push]
        );
        assert!(parse_actions(&["fly".into()]).is_err());
        assert!(patterns(&["team-a/*".into()]).is_ok());
        assert!(patterns(&["../x".into()]).is_err());
    }
}
