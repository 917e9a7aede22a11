//! The `portcullis` binary: parse the CLI, then run, check the config, or
//! run an operator's command (`callahead`, `ldap`).

use clap::Parser;
use mimalloc::MiMalloc;
use portcullis::cli::{Cli, Command};
use portcullis::config::Config;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Some(Command::CheckConfig { file }) => match Config::from_file(&file) {
            Ok(config) => {
                print!("{}", config.to_toml());
                0
            }
            Err(e) => {
                eprintln!("portcullis: invalid config: {e}");
                2
            }
        },
        Some(Command::Callahead(args)) => portcullis::cli::callahead::run(args),
        Some(Command::Ldap(args)) => portcullis::cli::ldap::run(args),
        Some(Command::Passwd(args)) => portcullis::cli::passwd::run(args),
        Some(Command::Queue(args)) => portcullis::cli::queue::run(args),
        Some(Command::Run(args)) => run(args),
        None => run(cli.run),
    };
    exit_now(code);
}

/// Ends the process without the C exit handlers. mimalloc's handler
/// (`mi_process_done`) walks every heap, including pages freed across
/// threads by threads that have ended (shards, glommio's helpers); about
/// one start-and-SIGTERM in a hundred under load crashed in that walk
/// (SIGSEGV in `mi_page_thread_collect_to_local`, a free list ending in
/// 0xfff…, only the main thread alive, in the core dumps). Nothing is left
/// for the handlers to do: `run` returns after the spool is synced, the
/// mail logs written and every thread of ours joined, and stdout and
/// stderr are flushed here.
fn exit_now(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit ends the process at once; no Rust state is used after.
    unsafe { libc::_exit(code) }
}

fn run(args: portcullis::cli::RunArgs) -> i32 {
    // SIGHUP rebuilds the config the same way: the same file, the same flags.
    let again = args.clone();
    let source: portcullis::config::reload::ConfigSource = Box::new(move || again.clone().into_config());
    let config = match args.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("portcullis: invalid config: {e}");
            return 2;
        }
    };
    match portcullis::lifecycle::run(config, source) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("portcullis: {e}");
            1
        }
    }
}
