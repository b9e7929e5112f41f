//! The worker of `Isolation::WorkerProcess` as a program of its own: serves
//! the worker protocol on standard input and output (see
//! `pabi_host::worker`).

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PABI_LOG").unwrap_or_else(|_| "info".into()))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    std::process::exit(pabi_host::worker::run());
}
