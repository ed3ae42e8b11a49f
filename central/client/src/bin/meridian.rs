//! `meridian`: the tenant and operator command line. See [`meridian_central::cli`].

use std::process::ExitCode;

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = meridian_client::Args::parse();
    ExitCode::from(meridian_client::run(args).await)
}
