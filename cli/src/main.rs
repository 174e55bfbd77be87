//! The `rask` binary: see [`rask_cli`].

fn main() -> std::process::ExitCode {
    rask_cli::main()
}
