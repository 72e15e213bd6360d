//! What users and machines do to a store and its out/ view, on the real
//! binary: a folder that is not eigentrace's is never replaced, user files
//! in a view survive, an edited result is restored, two stores cannot share
//! a view, read-only commands write nothing, a worker that dies or lies is
//! reported as such, and a closed pipe is not a panic.

mod common;

use common::*;
use std::io::{BufRead, Write};
use std::path::Path;

fn tiny(name: &str) -> String {
    tiny_config(name, "[0]", &two_optimizers(0.1))
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(d: &Path, root: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

#[test]
fn a_folder_eigentrace_did_not_make_is_never_replaced() {
    let env = Env::new();
    // A project with src/main.rs, and an experiment named "src" with --out .
    std::fs::create_dir_all(env.path().join("src")).unwrap();
    std::fs::write(env.path().join("src/main.rs"), b"fn main() {}\n").unwrap();
    let cfg = env.write_config(&tiny("src"));
    let out = env.eigentrace(&[
        "run",
        "--device",
        "cpu",
        "--out",
        ".",
        cfg.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not made by eigentrace"), "{err}");
    assert_eq!(
        std::fs::read(env.path().join("src/main.rs")).unwrap(),
        b"fn main() {}\n"
    );
    assert_eq!(files(&env.path().join("src")), vec!["main.rs".to_string()]);
    // Refused before computing anything: no record was committed.
    let records = env.path().join(".eigentrace/records");
    assert_eq!(std::fs::read_dir(records).unwrap().count(), 0);
}

#[test]
fn user_files_in_the_view_survive_a_rebuild() {
    let env = Env::new();
    let cfg = env.write_config(&tiny("keep"));
    env.run_json(&cfg);
    let view = env.path().join("out/keep");
    std::fs::write(view.join("notes.md"), b"what I saw").unwrap();
    std::fs::create_dir_all(view.join("runs/sgd-lr1e-1-s0/analysis")).unwrap();
    std::fs::write(view.join("runs/sgd-lr1e-1-s0/analysis/fit.py"), b"1").unwrap();
    // A changed learning rate rebuilds the view.
    let cfg = env.write_config(&tiny_config("keep", "[0]", &two_optimizers(0.2)));
    let out = env.eigentrace(&["run", "--device", "cpu", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("kept 2 file(s) of yours"), "{err}");
    assert_eq!(std::fs::read(view.join("notes.md")).unwrap(), b"what I saw");
    assert_eq!(
        std::fs::read(view.join("runs/sgd-lr1e-1-s0/analysis/fit.py")).unwrap(),
        b"1"
    );
    // The old run's results are gone, the new run's are there.
    assert!(!view.join("runs/sgd-lr1e-1-s0/train.arrow").exists());
    assert!(view.join("runs/sgd-lr2e-1-s0/train.arrow").is_file());
}

#[test]
fn an_edited_result_in_out_is_restored_and_status_says_so() {
    let env = Env::new();
    let cfg = env.write_config(&tiny("edit"));
    env.run_json(&cfg);
    let f = env.path().join("out/edit/runs/adam-lr1e-2-s0/train.arrow");
    let original = std::fs::read(&f).unwrap();
    // `sed -i`: a new file of the same size in its place.
    let mut edited = original.clone();
    let mid = edited.len() / 2;
    edited[mid] ^= 0x01;
    std::fs::remove_file(&f).unwrap();
    std::fs::write(&f, &edited).unwrap();
    let st = env.eigentrace(&["status", "--device", "cpu", cfg.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(text.contains("train.arrow was edited"), "{text}");
    let out = env.eigentrace(&["run", "--device", "cpu", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("restored 1 edited"), "{err}");
    assert_eq!(std::fs::read(&f).unwrap(), original);

    // Through the hard link (vim's `:w!` on a read-only file): the store's
    // object changes too; the run recomputes it and restores the view.
    let mut perm = std::fs::metadata(&f).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&f, perm).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .write_all(&edited)
        .unwrap();
    let again = env.run_json(&cfg);
    assert!(
        ran(&again).contains(&"train[adam-lr1e-2-s0]".to_string()),
        "{:?}",
        ran(&again)
    );
    assert_eq!(std::fs::read(&f).unwrap(), original);
    assert!(env.eigentrace(&["verify"]).status.success());
    let st = env.eigentrace(&["status", "--device", "cpu", cfg.to_str().unwrap()]);
    assert!(!String::from_utf8_lossy(&st.stdout).contains("edited"));
}

#[test]
fn two_stores_cannot_share_one_view() {
    let env = Env::new();
    let cfg = env.write_config(&tiny("shared"));
    env.run_json(&cfg);
    let before = tree_hash(&env.path().join("out"));
    let out = env.eigentrace(&[
        "--store",
        "other-store",
        "run",
        "--device",
        "cpu",
        cfg.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("another store"), "{err}");
    assert_eq!(tree_hash(&env.path().join("out")), before);
}

#[test]
fn read_only_commands_create_nothing() {
    let env = Env::new();
    let cfg = env.write_config(&tiny("ro"));
    for args in [
        vec!["--store", "nowhere", "status", "--device", "cpu"],
        vec!["--store", "nowhere", "report", "--device", "cpu"],
        vec!["--store", "nowhere", "verify"],
        vec!["--store", "nowhere", "gc", "--dry-run"],
    ] {
        let mut a = args.clone();
        if a.contains(&"status") || a.contains(&"report") {
            a.push(cfg.to_str().unwrap());
        }
        let out = env.eigentrace(&a);
        assert!(
            !env.path().join("nowhere").exists(),
            "{args:?} created a store: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!env.path().join("out").exists(), "{args:?} wrote out/");
    }
    // status on a store that does not exist yet: everything missing, exit 0.
    let out = env.eigentrace(&[
        "--store",
        "nowhere",
        "status",
        "--device",
        "cpu",
        cfg.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 of 10 stages fresh"));
    // A folder of someone's that is not a store is neither read as one nor
    // turned into one.
    std::fs::create_dir_all(env.path().join("docs")).unwrap();
    std::fs::write(env.path().join("docs/a.txt"), b"x").unwrap();
    for cmd in ["status", "run"] {
        let out = env.eigentrace(&[
            "--store",
            "docs",
            cmd,
            "--device",
            "cpu",
            cfg.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not an eigentrace store")
                || String::from_utf8_lossy(&out.stderr).contains("no eigentrace store")
        );
        assert_eq!(files(&env.path().join("docs")), vec!["a.txt".to_string()]);
    }
}

#[test]
fn a_closed_pipe_ends_status_quietly() {
    let env = Env::new();
    // More than a pipe's buffer (64 KiB) of status lines, so that the writer
    // meets the closed pipe.
    let seeds: Vec<String> = (0..800).map(|s| s.to_string()).collect();
    let seeds = format!("[{}]", seeds.join(", "));
    let cfg = env.write_config(&tiny_config("pipe", &seeds, &two_optimizers(0.1)));
    for _ in 0..2 {
        let mut child = env
            .cmd(&["status", "--device", "cpu", cfg.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        // stdout is closed here, like `| head -1`.
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
        assert_ne!(out.status.code(), Some(101), "{err}");
    }
}

#[test]
fn a_worker_that_dies_or_lies_is_reported_and_nothing_is_committed() {
    let env = Env::new();
    let cfg = env.write_config(&tiny("fault"));
    let run = |fault: &str| {
        env.cmd(&["run", "--device", "cpu", cfg.to_str().unwrap()])
            .env("EIGENTRACE_WORKER_FAULT", fault)
            .output()
            .unwrap()
    };
    let killed = run("kill");
    let err = String::from_utf8_lossy(&killed.stderr);
    assert_eq!(killed.status.code(), Some(1), "{err}");
    assert!(
        err.contains("SIGKILL") && err.contains("out-of-memory"),
        "{err}"
    );
    let panicked = run("panic");
    let err = String::from_utf8_lossy(&panicked.stderr);
    assert!(
        err.contains("injected fault: a worker panic") && err.contains("with a second line"),
        "{err}"
    );
    let lied = run("no-output");
    let err = String::from_utf8_lossy(&lied.stderr);
    assert_eq!(lied.status.code(), Some(1), "{err}");
    assert!(err.contains("wrote no output"), "{err}");
    // Only the dataset (no worker) was committed; every worker stage reruns.
    let records: Vec<String> = std::fs::read_dir(env.path().join(".eigentrace/records"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(records.len(), 1, "only the dataset: {records:?}");
    assert!(records[0].contains("\"kind\": \"dataset\""));
    let ok = env.run_json(&cfg);
    assert!(ok["ok"].as_bool().unwrap());
}

#[test]
fn every_object_is_readable_by_everyone_and_jobs_must_be_positive() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let cfg = env.write_config(&tiny("modes"));
    env.run_json(&cfg);
    for f in files(&env.path().join(".eigentrace/objects")) {
        let p = env.path().join(".eigentrace/objects").join(&f);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o444, "{f}");
    }
    let out = env.eigentrace(&["run", "-j", "0", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1..=1024"));
}

#[test]
fn an_io_error_says_the_os_error_once() {
    let env = Env::new();
    std::fs::write(env.path().join("a-file"), b"x").unwrap();
    let cfg = env.write_config(&tiny("io"));
    let out = env.eigentrace(&[
        "--store",
        "a-file/store",
        "run",
        "--device",
        "cpu",
        cfg.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("Not a directory").count(), 1, "{err}");
}
