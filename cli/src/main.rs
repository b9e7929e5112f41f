//! `pabi`: validate, inspect, embed, run and conform pabi plugins.

fn main() -> std::process::ExitCode {
    pabi_cli::main()
}
