use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = switchboard::cli::parse_or_exit();
    // While this is the only thread, growing the descriptor table costs nothing
    // (with more, every growth stalls whoever opens a socket: fds.rs).
    switchboard::fds::reserve_table();
    switchboard::telemetry::init(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(switchboard::run(cli));
    // After SIGTERM's drain too: the spans still queued are exported.
    switchboard::telemetry::shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(e.exit_code())
        }
    }
}
