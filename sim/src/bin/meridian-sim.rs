//! `meridian-sim`: the fleet simulator. The commands, and the runtime they run on, live in
//! `meridian_sim::cli`.

fn main() -> std::process::ExitCode {
    meridian_sim::cli::main()
}
