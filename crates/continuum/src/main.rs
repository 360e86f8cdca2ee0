//! `continuum`: the binary. All the work happens in the library crates; this file only parses
//! the command line and reports errors.

mod admin;
mod checks;
mod cli;
mod config;
mod import;
mod link;

use clap::Parser;

/// mimalloc rather than the system allocator: a request allocates and frees many small values
/// (JSON, SQL parameters), and glibc's malloc took a tenth of the request threads' time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
