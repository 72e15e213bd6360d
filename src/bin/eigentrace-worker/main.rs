//! eigentrace-worker: runs one libtorch stage (train, hessian) for the
//! `eigentrace` CLI, which never links libtorch itself.
//!
//! ```text
//! eigentrace-worker exec <workdir>     request JSON on stdin (stages_torch::exec::Request)
//!                                      stdout: "progress <done> <total> <msg>" lines, then "result <json>"
//! eigentrace-worker probe              what libtorch sees (CUDA), as JSON
//! eigentrace-worker bench train|hessian|metrics|pyhessian <threads> <steps> [quick]
//! ```
//! Errors go to stderr with exit code 1.

mod bench;
mod bench_pyhessian;

use stages::cpus;

use std::io::{Read, Write};
use std::process::ExitCode;

fn exec(workdir: &str) -> Result<(), String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    let req: stages::worker::Request =
        serde_json::from_str(&text).map_err(|e| format!("bad request: {e}"))?;
    // Faults on request, for the tests of how the CLI reports a worker that
    // dies (EIGENTRACE_WORKER_FAULT=kill|panic|no-output).
    match std::env::var("EIGENTRACE_WORKER_FAULT").as_deref() {
        Ok("kill") => unsafe {
            libc::raise(libc::SIGKILL);
        },
        Ok("panic") => panic!("injected fault: a worker panic\nwith a second line"),
        Ok("no-output") => {
            println!("result {{}}");
            return Ok(());
        }
        _ => {}
    }
    let out = std::sync::Mutex::new(std::io::stdout());
    let progress = |done: u64, total: u64, msg: &str| {
        let mut o = out.lock().unwrap();
        let _ = writeln!(o, "progress {done} {total} {msg}");
        let _ = o.flush();
    };
    let meta = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        stages_torch::exec::execute(&req, std::path::Path::new(workdir), &progress)
    }))
    .map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    })?
    // The process edge: the CLI reads the error as stderr's last line.
    .map_err(|e| e.to_string())?;
    let mut o = out.lock().unwrap();
    writeln!(o, "result {meta}").map_err(|e| e.to_string())?;
    Ok(())
}

fn main() -> ExitCode {
    cpus::init_worker_pool();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["exec", workdir] => exec(workdir),
        ["probe"] => {
            println!("{}", stages_torch::exec::probe());
            Ok(())
        }
        ["bench", what, threads, steps, rest @ ..] => {
            let (t, s) = (threads.parse().unwrap_or(2), steps.parse().unwrap_or(200));
            let quick = rest.contains(&"quick");
            // `widths=784-512-512-10,…` and `rows=N`: the HVP cost at scale.
            let arg = |key: &str| rest.iter().find_map(|a| a.strip_prefix(key));
            let shapes: Vec<Vec<usize>> = arg("widths=")
                .map(|w| {
                    w.split(',')
                        .map(|s| s.split('-').filter_map(|n| n.parse().ok()).collect())
                        .collect()
                })
                .unwrap_or_default();
            let rows = arg("rows=").and_then(|r| r.parse().ok()).unwrap_or(1024);
            tch::set_num_threads(t as i32);
            match *what {
                "train" => bench::train(t, s, quick),
                "hessian" if !shapes.is_empty() => bench::hessian_scale(t, &shapes, rows, quick),
                "hessian" => bench::hessian(t, quick),
                "metrics" => bench::metrics(quick),
                "pyhessian" => bench_pyhessian::pyhessian(t, quick),
                other => Err(anyhow::anyhow!("no benchmark {other}")),
            }
            .map(|v| println!("{v}"))
            .map_err(|e| format!("{e:#}"))
        }
        _ => Err("usage: eigentrace-worker exec <workdir> | probe | bench train|hessian|metrics|pyhessian <threads> <steps> [quick]\n(this is an internal tool of `eigentrace`)".into()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
