//! The `berth` binary: command line, configuration, wiring, serving.
//!
//! Design decision: only this crate reads configuration files and the environment. It turns the
//! registry:2-shaped YAML into one validated [`config::Settings`], builds the storage backend and
//! metadata store from it, and hands the library crates their own option structs.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod access;
mod app;
mod cli_files;
mod cli_robot;
mod cli_user;
mod config;
mod datadir;
mod health;
mod kube_secret;
mod listener;
mod logging;
mod metrics;
mod migrate_db;
mod observe;
mod purge;
mod serve;
mod tls;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Berth: a self-hosted OCI container registry.
#[derive(Parser)]
#[command(name = "berth", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry (defaults: 0.0.0.0:5000, storage and metadata under ./data).
    Serve {
        /// registry:2-style config.yml; `REGISTRY_*` variables override its keys.
        #[arg(short, long, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Inspect configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Apply pending PostgreSQL metadata migrations and exit (`serve` also applies them).
    MigrateDb {
        /// The config.yml whose `database.url` names the database (`REGISTRY_DATABASE_URL`
        /// overrides it, as for `serve`).
        #[arg(short, long, env = "BERTH_CONFIG")]
        config: Option<PathBuf>,
        /// The database instead of the config's:
        /// postgres://user:password@host:port/dbname[?sslmode=require&sslrootcert=/ca.pem]
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Print a Kubernetes image pull Secret (kubernetes.io/dockerconfigjson) for this registry.
    KubeSecret(kube_secret::Args),
    /// Manage htpasswd users (bcrypt).
    #[command(subcommand)]
    User(cli_user::UserCommand),
    /// Manage robot accounts (`robot$<name>` logins for CI).
    #[command(subcommand)]
    Robot(cli_robot::RobotCommand),
    /// Benchmark any OCI registry (push, pull, list, catalog, mixed CI workloads).
    Bench(Box<berth_bench::Args>),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config file (plus `REGISTRY_*` overrides) and print the effective
    /// configuration with secrets masked; exits non-zero when it is invalid.
    Check {
        /// The config.yml to check (none: defaults plus environment).
        file: Option<PathBuf>,
    },
    /// Print the JSON Schema of the config file.
    Schema,
}

// The CLI's own output: `config schema` prints the schema to stdout, and a failed command ends
// with one `berth: …` line on stderr (logging may not be set up yet, or goes elsewhere).
#[allow(clippy::print_stdout, clippy::print_stderr)]
fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config } => run_serve(config).map_err(|e| e.to_string()),
        Command::Config(ConfigCommand::Check { file }) => {
            check_config(file).map_err(|e| e.to_string())
        }
        Command::Config(ConfigCommand::Schema) => {
            print!("{}", config::schema_json());
            Ok(())
        }
        Command::MigrateDb {
            config,
            database_url,
        } => run_migrate_db(config, database_url).map_err(|e| e.to_string()),
        Command::User(c) => cli_user::run(c).map_err(|e| e.to_string()),
        Command::Robot(c) => cli_robot::run(c).map_err(|e| e.to_string()),
        Command::KubeSecret(args) => kube_secret::run(args).map_err(|e| e.to_string()),
        Command::Bench(args) => berth_bench::cli(*args).map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("berth: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_serve(path: Option<PathBuf>) -> Result<(), serve::ServeError> {
    let loaded = config::load(path.as_deref(), std::env::vars())?;
    logging::init(&loaded.settings.log);
    for w in &loaded.warnings {
        tracing::warn!(key = %w.key, "{}", w.message);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve::serve(loaded.settings))
}

// `config check` prints the effective configuration to stdout: that is its output.
#[allow(clippy::print_stdout)]
fn check_config(path: Option<PathBuf>) -> Result<(), serve::ServeError> {
    let loaded = config::load(path.as_deref(), std::env::vars())?;
    let yaml = config::effective_yaml(&loaded)
        .map_err(|e| serve::ServeError::Unsupported(format!("cannot print config: {e}")))?;
    print!("{yaml}");
    Ok(())
}

// `migrate-db` reports what it applied on stdout: that is its output.
#[allow(clippy::print_stdout)]
fn run_migrate_db(path: Option<PathBuf>, url: Option<String>) -> Result<(), serve::ServeError> {
    let loaded = config::load(path.as_deref(), std::env::vars())?;
    logging::init(&loaded.settings.log);
    let url = match (url, &loaded.settings.database) {
        (Some(url), _) => url,
        (None, config::DatabaseSettings::Postgres { url, .. }) => url.clone(),
        (None, config::DatabaseSettings::Sqlite { .. }) => {
            return Err(serve::ServeError::Unsupported(
                "migrate-db needs a PostgreSQL database: set database.url (or \
                 REGISTRY_DATABASE_URL) to postgres://…, or pass --database-url; the embedded \
                 SQLite database migrates itself when serve opens it"
                    .into(),
            ))
        }
    };
    let applied = migrate_db::run(&url)?;
    if applied.is_empty() {
        println!(
            "metadata schema is current (version {})",
            berth_meta::postgres::SCHEMA_VERSION
        );
    } else {
        println!("applied migrations: {}", applied.join(", "));
    }
    Ok(())
}

/// Caps glibc malloc at two arenas. Blob streaming allocates 1 MiB buffers on tokio's blocking
/// threads; with glibc's default of one arena per thread and its dynamic mmap threshold, freed
/// buffers stay cached in many arenas and four concurrent 1 GiB pulls grew RSS to ~70 MiB. With two
/// arenas the same workload peaks at ~25 MiB (measured; see docs/performance.md), and buffers are
/// still reused from the heap rather than mmapped (and page-faulted) for every chunk.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; it runs first in main, before any other
    // thread exists, and M_ARENA_MAX takes a plain integer.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}
