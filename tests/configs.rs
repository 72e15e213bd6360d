//! Config validation through the binary: a bad config exits 2 naming the
//! field at its line and column, before anything is computed or written; a
//! config too big for the machine is refused with its estimate, unless
//! `--force-size`; runaway inputs (a huge file, /dev/zero) are refused without
//! reading them whole. The bulk of the cases are `experiment/src/tests.rs`'s unit
//! tests; these check that the CLI keeps those promises.

mod common;

use common::{tiny_config, two_optimizers, Env};
use std::time::{Duration, Instant};

/// The tiny config with `from` replaced by `to` (`from` must occur).
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "no {from:?} in the config");
    text.replacen(from, to, 1)
}

/// 1-based line and column of `marker` in `text`.
fn line_col(text: &str, marker: &str) -> (usize, usize) {
    let i = text
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in the config"));
    let before = &text[..i];
    (
        before.matches('\n').count() + 1,
        before.rsplit('\n').next().unwrap().chars().count() + 1,
    )
}

#[test]
fn bad_configs_exit_2_at_the_field_before_anything_is_written() {
    let env = Env::new();
    let good = tiny_config("cfg", "[0]", &two_optimizers(0.1));
    let long_name = "n".repeat(245);
    let long_label = "l".repeat(300);
    // (config, field, marker of the reported line:col ("" = 1:1), fragment)
    let cases: Vec<(String, &str, &str, &str)> = vec![
        // Sizes refused before anything is allocated or generated.
        (
            edit(&good, "samples = 120", "samples = 10000000000"),
            "dataset.samples",
            "samples = ",
            "..=100000000",
        ),
        (
            edit(&good, "classes = 3", "classes = 100000000"),
            "dataset.classes",
            "classes = ",
            "2..=100000",
        ),
        (
            edit(&good, "widths = [4, 8, 3]", "widths = [4, 100000000, 3]"),
            "model.widths",
            "widths = ",
            "1..=1000000",
        ),
        (
            edit(&good, "steps = 40", "steps = 1000000000000"),
            "train.steps",
            "steps = ",
            "1..=1000000000",
        ),
        (
            edit(&good, "steps = 40", "steps = 1000000000"),
            "train.checkpoints.every",
            "every = 20",
            "over the limit of 100000",
        ),
        (
            edit(&good, "log_spaced = 4", "log_spaced = 1000000000000"),
            "train.checkpoints.log_spaced",
            "log_spaced = ",
            "2..=100000",
        ),
        // Too big for any machine: the estimate, and the field to change.
        (
            edit(
                &good,
                "widths = [4, 8, 3]",
                "widths = [4, 1000000, 1000000, 3]",
            ),
            "model.widths",
            "widths = ",
            "--force-size",
        ),
        // Long names, before any stage runs.
        (
            edit(&good, "name = \"cfg\"", &format!("name = \"{long_name}\"")),
            "name",
            "name = ",
            "at most 100",
        ),
        (
            edit(
                &good,
                "name = \"adam\"",
                &format!("name = \"adam\"\nlabel = \"{long_label}\""),
            ),
            "optimizer[1].label",
            "label = ",
            "1 to 100 characters",
        ),
        // Messages at the right field.
        (
            edit(&good, "seeds = [0]", "seeds = [1.5]"),
            "seeds",
            "1.5]",
            "seeds must be non-negative integers",
        ),
        (
            edit(&good, "[dataset]", "[[dataset]]"),
            "dataset",
            "dataset]]",
            "must be a table: write [dataset]",
        ),
        (
            edit(&good, "[hessian]\nk = 3\n", ""),
            "hessian",
            "",
            "missing section [hessian]",
        ),
        (
            edit(
                &edit(&good, "gaussian_mixture", "teacher"),
                "separation = 2.0",
                "teacher_widths = [0]",
            ),
            "dataset.teacher_widths",
            "teacher_widths = ",
            "give [] for a linear teacher",
        ),
        // Accepted silently before.
        (
            edit(&good, "lr = 0.1", "lr = 0.1\nbeta1 = 0.9"),
            "optimizer[0].beta1",
            "beta1 = ",
            "does not apply to sgd (it uses lr, momentum, dampening, nesterov, weight_decay)",
        ),
        (
            edit(&good, "lr = 0.1", "lr = 0.1\nmomentum = 2.0"),
            "optimizer[0].momentum",
            "momentum = ",
            "[0, 1)",
        ),
        (
            edit(&good, "log_spaced = 4", "at = [10, 50]"),
            "train.checkpoints.at",
            "at = ",
            "0..=40",
        ),
        (
            edit(&good, "every = 20", "every = 0"),
            "train.checkpoints.every",
            "every = 0",
            "1..=",
        ),
        (
            edit(&good, "name = \"adam\"", "name = \"muon\"\nns_steps = 0"),
            "optimizer[1].ns_steps",
            "ns_steps = ",
            "1..=100",
        ),
    ];
    for (text, field, marker, fragment) in &cases {
        let cfg = env.write_config(text);
        let out = env.eigentrace(&["run", "--device", "cpu", cfg.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{field}: {err}");
        let (l, c) = if marker.is_empty() {
            (1, 1)
        } else {
            line_col(text, marker)
        };
        let at = format!("exp.toml:{l}:{c}: field `{field}`: ");
        assert!(err.contains(&at), "want {at:?} in: {err}");
        assert!(err.contains(fragment), "want {fragment:?} in: {err}");
        assert!(
            !env.path().join(".eigentrace").exists() && !env.path().join("out").exists(),
            "{field}: a refused config wrote the store or out/"
        );
    }
}

#[test]
fn force_size_accepts_what_the_estimate_refuses() {
    let env = Env::new();
    let huge = edit(
        &tiny_config("huge", "[0]", &two_optimizers(0.1)),
        "widths = [4, 8, 3]",
        "widths = [4, 1000000, 1000000, 3]",
    );
    let cfg = env.write_config(&huge);
    let cfg = cfg.to_str().unwrap();
    let out = env.eigentrace(&["status", "--device", "cpu", cfg]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("GB of memory in its train stage, more than the")
            && err.contains("field `model.widths`"),
        "{err}"
    );
    // With --force-size the estimate is waved through: status lists the
    // stages (nothing is computed, nothing written).
    let out = env.eigentrace(&["status", "--device", "cpu", "--force-size", cfg]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("train[sgd-lr1e-1-s0]"), "{stdout}");
    assert!(!env.path().join(".eigentrace").exists());
    // The hard limits are not waved through.
    let wider = huge.replace("1000000, 1000000", "1000001, 1000000");
    let cfg = env.write_config(&wider);
    let out = env.eigentrace(&[
        "status",
        "--device",
        "cpu",
        "--force-size",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn runaway_config_files_are_refused_without_reading_them_whole() {
    let env = Env::new();
    let big = env.path().join("big.toml");
    // 5 MiB of comments: valid TOML, over the 4 MiB limit.
    let line = format!("# {}\n", "x".repeat(1022));
    std::fs::write(&big, line.repeat(5 * 1024)).unwrap();
    let dir = env.path().join("adir.toml");
    std::fs::create_dir(&dir).unwrap();
    let cases = [
        (big.to_str().unwrap().to_string(), "over the limit of 4 MiB"),
        ("/dev/zero".to_string(), "not a regular file"),
        (dir.to_str().unwrap().to_string(), "is a directory"),
    ];
    for (path, fragment) in &cases {
        let t0 = Instant::now();
        let out = env.eigentrace(&["run", "--device", "cpu", path]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{path}: {err}");
        assert!(err.contains(path.as_str()), "names the file: {err}");
        assert!(err.contains(fragment), "want {fragment:?} in: {err}");
        assert!(t0.elapsed() < Duration::from_secs(30), "{path}: slow");
        assert!(!env.path().join(".eigentrace").exists());
    }
}

#[test]
fn valid_configs_still_pass_through_the_cli() {
    // configs/*.toml parse and fit this machine: status reads them, writes nothing.
    let env = Env::new();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    for name in [
        "quick.toml",
        "paper.toml",
        "paper-teacher.toml",
        "paper-lr.toml",
    ] {
        let cfg = dir.join(name);
        let out = env.eigentrace(&["status", "--device", "cpu", cfg.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).is_empty(),
            "{name}: a config that fits prints nothing on stderr"
        );
    }
    assert!(!env.path().join(".eigentrace").exists());
}
