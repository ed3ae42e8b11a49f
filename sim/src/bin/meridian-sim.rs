//! `meridian-sim`: the fleet simulator. The commands live in `meridian_sim::cli`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    meridian_sim::cli::main().await
}
