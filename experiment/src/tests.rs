use super::*;

#[test]
fn compact_numbers_are_filesystem_safe() {
    assert_eq!(compact_number(0.001), "1e-3");
    assert_eq!(compact_number(0.003), "3e-3");
    assert_eq!(compact_number(0.1), "1e-1");
    assert_eq!(compact_number(2.0), "2");
}

/// A small valid experiment; the cases below edit it.
const BASE: &str = r#"name = "t"
seeds = [0]
dtype = "f64"

[dataset]
kind = "gaussian_mixture"
classes = 3
dim = 4
samples = 120
separation = 2.0
test_fraction = 0.25
seed = 1

[model]
widths = [4, 8, 3]
activation = "tanh"

[train]
steps = 40
log_every = 5
checkpoints = { every = 20, log_spaced = 4 }

[[optimizer]]
name = "sgd"
lr = 0.1

[[optimizer]]
name = "adam"
lr = 0.01

[hessian]
k = 3
"#;

fn cfg_path() -> PathBuf {
    PathBuf::from("/nonexistent-dir/exp.toml")
}

/// BASE with `from` replaced by `to` (`from` must occur).
fn edit(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "BASE has no {from:?}");
    BASE.replacen(from, to, 1)
}

/// Assert that `text` is refused naming `field`, at the line and column of
/// `marker`'s first occurrence in `text` (1:1 for ""), with `fragment`.
fn refused(text: &str, opts: &LoadOptions, field: &str, marker: &str, fragment: &str) {
    let e = match Experiment::parse_with(&cfg_path(), text, opts) {
        Ok(_) => panic!("accepted, expected `{field}` refused:\n{text}"),
        Err(e) => e.to_string(),
    };
    let (l, c) = if marker.is_empty() {
        (1, 1)
    } else {
        let i = text
            .find(marker)
            .unwrap_or_else(|| panic!("marker {marker:?} not in the text"));
        line_col(text, i)
    };
    let want = format!("exp.toml:{l}:{c}: field `{field}`: ");
    assert!(e.contains(&want), "want {want:?} in\n  {e}");
    assert!(e.contains(fragment), "want {fragment:?} in\n  {e}");
}

/// (from, to, field, marker, fragment): BASE with one edit, refused.
const BAD: &[(&str, &str, &str, &str, &str)] = &[
    // The top level and its sections.
    (
        "[hessian]\nk = 3\n",
        "",
        "hessian",
        "",
        "missing section [hessian]: add [hessian]",
    ),
    (
        "[model]\nwidths = [4, 8, 3]\nactivation = \"tanh\"\n",
        "",
        "model",
        "",
        "missing section [model]",
    ),
    (
        "[train]\n",
        "[trainx]\n",
        "trainx",
        "trainx",
        "unknown field `trainx`",
    ),
    (
        "[dataset]",
        "[[dataset]]",
        "dataset",
        "dataset]]",
        "must be a table: write [dataset]",
    ),
    (
        "[hessian]",
        "[[hessian]]",
        "hessian",
        "hessian]]",
        "must be a table: write [hessian]",
    ),
    ("name = \"t\"\n", "", "name", "", "is missing: add name ="),
    (
        "name = \"t\"",
        "name = 5",
        "name",
        "name = 5",
        "must be a string",
    ),
    (
        "name = \"t\"",
        "name = [\"a\", \"b\"]",
        "name",
        "name = [",
        "must be a string",
    ),
    (
        "name = \"t\"",
        "name = \"../t\"",
        "name",
        "name = \"../t\"",
        "letters, digits",
    ),
    (
        "name = \"t\"",
        "name = \"\"",
        "name",
        "name = \"\"",
        "non-empty",
    ),
    (
        "seeds = [0]",
        "seeds = [1.5]",
        "seeds",
        "1.5]",
        "seeds must be non-negative integers",
    ),
    (
        "seeds = [0]",
        "seeds = [0, -1]",
        "seeds",
        "-1]",
        "seeds must be non-negative integers",
    ),
    (
        "seeds = [0]",
        "seeds = [0, \"1\"]",
        "seeds",
        "\"1\"]",
        "seeds must be non-negative integers",
    ),
    (
        "seeds = [0]",
        "seed = -3",
        "seed",
        "seed = -3",
        "seed must be a non-negative integer",
    ),
    (
        "seeds = [0]",
        "seeds = []",
        "seeds",
        "seeds = []",
        "the sweep list is empty",
    ),
    (
        "seeds = [0]",
        "seeds = [0]\nseed = 1",
        "seed",
        "seed = 1",
        "either `seed` or `seeds`",
    ),
    (
        "dtype = \"f64\"",
        "dtype = \"f16\"",
        "dtype",
        "dtype",
        "unknown variant `f16`",
    ),
    (
        "dtype = \"f64\"",
        "dtype = \"f64\"\nfoo = 1",
        "foo",
        "foo = 1",
        "unknown field `foo`",
    ),
    // [dataset]
    (
        "classes = 3",
        "classes = 1",
        "dataset.classes",
        "classes = 1",
        "2..=100000",
    ),
    (
        "classes = 3",
        "classes = 200000",
        "dataset.classes",
        "classes = 200000",
        "2..=100000",
    ),
    (
        "samples = 120",
        "samples = 1e10",
        "dataset.samples",
        "samples = 1e10",
        "write a whole number",
    ),
    (
        "samples = 120",
        "samples = 10000000000",
        "dataset.samples",
        "samples = 1",
        "6..=100000000",
    ),
    (
        "samples = 120",
        "samples = 5",
        "dataset.samples",
        "samples = 5",
        "6..=100000000",
    ),
    (
        "samples = 120",
        "samples = -5",
        "dataset.samples",
        "samples = -5",
        "≥ 0",
    ),
    (
        "dim = 4",
        "dim = 0",
        "dataset.dim",
        "dim = 0",
        "1..=1000000",
    ),
    (
        "dim = 4",
        "dim = 2000000",
        "dataset.dim",
        "dim = 2000000",
        "1..=1000000",
    ),
    (
        "separation = 2.0",
        "separation = -1.0",
        "dataset.separation",
        "separation = -1.0",
        "≥ 0",
    ),
    (
        "separation = 2.0",
        "separation = nan",
        "dataset.separation",
        "separation = nan",
        "≥ 0",
    ),
    (
        "test_fraction = 0.25",
        "test_fraction = 1.5",
        "dataset.test_fraction",
        "test_fraction = 1.5",
        "[0, 1)",
    ),
    (
        "test_fraction = 0.25",
        "test_fraction = 0.999",
        "dataset.test_fraction",
        "test_fraction = 0.999",
        "no train rows",
    ),
    (
        "kind = \"gaussian_mixture\"",
        "kind = \"spirals\"",
        "dataset.separation",
        "separation = 2.0",
        "does not apply to kind = \"spirals\"",
    ),
    (
        "seed = 1\n",
        "seed = 1\nnoise = 0.1\n",
        "dataset.noise",
        "noise = 0.1",
        "does not apply to kind = \"gaussian_mixture\"",
    ),
    (
        "separation = 2.0",
        "teacher_widths = [0]",
        "dataset.teacher_widths",
        "teacher_widths = [0]",
        "does not apply",
    ),
    (
        "kind = \"gaussian_mixture\"",
        "kind = \"mnist\"",
        "dataset.kind",
        "kind = \"mnist\"",
        "unknown variant `mnist`",
    ),
    (
        "seed = 1\n",
        "seed = 1\nbogus = 1\n",
        "dataset.bogus",
        "bogus = 1",
        "unknown field `bogus`",
    ),
    (
        "seed = 1\n",
        "seed = -1\n",
        "dataset.seed",
        "seed = -1",
        "≥ 0",
    ),
    // [model]
    (
        "widths = [4, 8, 3]",
        "widths = [4, 0, 3]",
        "model.widths",
        "widths = [4, 0, 3]",
        "1..=1000000",
    ),
    (
        "widths = [4, 8, 3]",
        "widths = [4, 100000000, 3]",
        "model.widths",
        "widths = [4, 1",
        "1..=1000000",
    ),
    (
        "widths = [4, 8, 3]",
        "widths = [4]",
        "model.widths",
        "widths = [4]",
        "2 to 1001 widths",
    ),
    (
        "widths = [4, 8, 3]",
        "widths = []",
        "model.widths",
        "widths = []",
        "2 to 1001 widths",
    ),
    (
        "widths = [4, 8, 3]",
        "widths = [5, 8, 3]",
        "model.widths",
        "widths = [5",
        "must equal dataset.dim (4)",
    ),
    (
        "widths = [4, 8, 3]",
        "widths = [4, 8, 2]",
        "model.widths",
        "widths = [4, 8, 2]",
        "must equal dataset.classes (3)",
    ),
    (
        "widths = [4, 8, 3]",
        "widths = [4, -8, 3]",
        "model.widths",
        "widths = [4, -8",
        "≥ 0",
    ),
    (
        "activation = \"tanh\"",
        "activation = \"sigmoid\"",
        "model.activation",
        "activation = \"sigmoid\"",
        "unknown variant `sigmoid`",
    ),
    (
        "activation = \"tanh\"\n",
        "",
        "model.activation",
        "model]",
        "is missing: add `activation = …` to [model]",
    ),
    (
        "activation = \"tanh\"",
        "activation = \"tanh\"\ninit = { kind = \"normal\", std = -1.0 }",
        "model.init.std",
        "std = -1.0",
        "finite number > 0",
    ),
    (
        "activation = \"tanh\"",
        "activation = \"tanh\"\ninit = \"xavier\"",
        "model.init",
        "init = \"xavier\"",
        "unknown init `xavier`",
    ),
    (
        "activation = \"tanh\"",
        "activation = \"tanh\"\ninit = { kind = \"normal\" }",
        "model.init",
        "init = {",
        "takes one number, `std`",
    ),
    (
        "activation = \"tanh\"",
        "activation = \"tanh\"\ninit = { kind = \"normal\", std = 0.1, mean = 1.0 }",
        "model.init",
        "init = {",
        "takes one number, `std`",
    ),
    (
        "activation = \"tanh\"",
        "activation = \"tanh\"\ninit = 3",
        "model.init",
        "init = 3",
        "must be a string or a table",
    ),
    // [train]
    (
        "steps = 40",
        "steps = 0",
        "train.steps",
        "steps = 0",
        "1..=1000000000",
    ),
    (
        "steps = 40",
        "steps = 1000000000000",
        "train.steps",
        "steps = 1",
        "1..=1000000000",
    ),
    (
        "steps = 40",
        "steps = 1e12",
        "train.steps",
        "steps = 1e12",
        "write a whole number",
    ),
    (
        "steps = 40",
        "steps = -1",
        "train.steps",
        "steps = -1",
        "≥ 0",
    ),
    ("steps = 40\n", "", "train", "train]", "give a budget"),
    (
        "steps = 40",
        "epochs = 1000000000000",
        "train.epochs",
        "epochs = 1",
        "1..=1000000000 (1 steps per epoch",
    ),
    (
        "steps = 40",
        "epochs = 0",
        "train.epochs",
        "epochs = 0",
        "1..=1000000000",
    ),
    (
        "steps = 40",
        "steps = 40\nepochs = 2",
        "train.epochs",
        "epochs = 2",
        "either `steps` or `epochs`",
    ),
    (
        "steps = 40",
        "stepz = 40",
        "train.stepz",
        "stepz = 40",
        "unknown field `stepz`",
    ),
    (
        "log_every = 5",
        "log_every = 0",
        "train.log_every",
        "log_every = 0",
        "1..=1000000000",
    ),
    (
        "log_every = 5",
        "log_every = 5\nbatch_size = 0",
        "train.batch_size",
        "batch_size = 0",
        "1..=90 (the train split)",
    ),
    (
        "log_every = 5",
        "log_every = 5\nbatch_size = 1000",
        "train.batch_size",
        "batch_size = 1000",
        "1..=90 (the train split)",
    ),
    (
        "every = 20, log_spaced = 4",
        "every = 0",
        "train.checkpoints.every",
        "every = 0",
        "1..=1000000000",
    ),
    (
        "steps = 40",
        "steps = 1000000000",
        "train.checkpoints.every",
        "every = 20",
        "over the limit of 100000",
    ),
    (
        "log_spaced = 4",
        "log_spaced = 1000000000000",
        "train.checkpoints.log_spaced",
        "log_spaced = 1",
        "2..=100000",
    ),
    (
        "log_spaced = 4",
        "log_spaced = 1",
        "train.checkpoints.log_spaced",
        "log_spaced = 1",
        "2..=100000",
    ),
    (
        "log_spaced = 4",
        "at = [10, 50]",
        "train.checkpoints.at",
        "at = [10, 50]",
        "step 50 is beyond the last step (40); give steps in 0..=40",
    ),
    (
        "log_spaced = 4",
        "at = [-1]",
        "train.checkpoints.at",
        "at = [-1]",
        "≥ 0",
    ),
    (
        "log_spaced = 4",
        "evry = 5",
        "train.checkpoints.evry",
        "evry = 5",
        "unknown field `evry`",
    ),
    (
        "log_every = 5",
        "log_every = 5\nschedule = { kind = \"cosine\", warmup = 50 }",
        "train.schedule.warmup",
        "warmup = 50",
        "0..=40",
    ),
    (
        "log_every = 5",
        "log_every = 5\nschedule = { final_fraction = 0.5 }",
        "train.schedule.final_fraction",
        "final_fraction = 0.5",
        "[0, 1], and only with kind = \"cosine\"",
    ),
    (
        "log_every = 5",
        "log_every = 5\nschedule = { kind = \"cosine\", final_fraction = 2.0 }",
        "train.schedule.final_fraction",
        "final_fraction = 2.0",
        "[0, 1]",
    ),
    (
        "log_every = 5",
        "log_every = 5\nschedule = { kind = \"linear\" }",
        "train.schedule.kind",
        "kind = \"linear\"",
        "unknown variant `linear`",
    ),
    // [[optimizer]]
    (
        "lr = 0.1",
        "lr = 0.1\nbeta1 = 0.9",
        "optimizer[0].beta1",
        "beta1 = 0.9",
        "does not apply to sgd (it uses lr, momentum, dampening, nesterov, weight_decay)",
    ),
    (
        "lr = 0.01",
        "lr = 0.01\nmomentum = 0.9",
        "optimizer[1].momentum",
        "momentum = 0.9",
        "does not apply to adam (it uses lr, beta1, beta2, eps, amsgrad, weight_decay)",
    ),
    (
        "lr = 0.01",
        "lr = 0.01\nns_steps = 5",
        "optimizer[1].ns_steps",
        "ns_steps = 5",
        "does not apply to adam",
    ),
    (
        "lr = 0.01",
        "lr = 0.01\nmomentum = [0.0, 0.9]",
        "optimizer[1].momentum",
        "momentum = [",
        "does not apply to adam",
    ),
    (
        "lr = 0.1",
        "lr = 0.1\nmomentum = 2.0",
        "optimizer[0].momentum",
        "momentum = 2.0",
        "must be in [0, 1), got 2",
    ),
    (
        "lr = 0.1",
        "lr = 0.1\nmomentum = [0.9, 1.0]",
        "optimizer[0].momentum",
        "momentum = [",
        "must be in [0, 1), got 1",
    ),
    (
        "lr = 0.1",
        "lr = 0.1\ndampening = 1.0",
        "optimizer[0].dampening",
        "dampening = 1.0",
        "[0, 1)",
    ),
    (
        "lr = 0.1",
        "lr = 0.1\nnesterov = true",
        "optimizer[0].nesterov",
        "nesterov = true",
        "needs momentum > 0",
    ),
    (
        "lr = 0.1",
        "lr = 0.1\nweight_decay = -1.0",
        "optimizer[0].weight_decay",
        "weight_decay = -1.0",
        "finite number ≥ 0",
    ),
    (
        "lr = 0.01",
        "lr = 0.01\nbeta2 = 1.0",
        "optimizer[1].beta2",
        "beta2 = 1.0",
        "[0, 1)",
    ),
    (
        "lr = 0.01",
        "lr = 0.01\nbeta1 = -0.1",
        "optimizer[1].beta1",
        "beta1 = -0.1",
        "[0, 1)",
    ),
    (
        "lr = 0.01",
        "lr = 0.01\neps = 0.0",
        "optimizer[1].eps",
        "eps = 0.0",
        "finite number > 0",
    ),
    (
        "lr = 0.01",
        "lr = 0.01\namsgrad = 1",
        "optimizer[1].amsgrad",
        "amsgrad = 1",
        "invalid type",
    ),
    (
        "lr = 0.01",
        "lr = -0.01",
        "optimizer[1].lr",
        "lr = -0.01",
        "finite number > 0",
    ),
    (
        "lr = 0.01",
        "lr = 0.0",
        "optimizer[1].lr",
        "lr = 0.0",
        "finite number > 0",
    ),
    (
        "lr = 0.01",
        "lr = inf",
        "optimizer[1].lr",
        "lr = inf",
        "finite number > 0",
    ),
    (
        "lr = 0.01",
        "lr = []",
        "optimizer[1].lr",
        "lr = []",
        "the sweep list is empty",
    ),
    (
        "lr = 0.01",
        "lr = \"fast\"",
        "optimizer[1].lr",
        "lr = \"fast\"",
        "invalid type",
    ),
    (
        "lr = 0.1\n",
        "",
        "optimizer[0].lr",
        "[[optimizer]]",
        "is missing: add `lr = …` to this [[optimizer]]",
    ),
    (
        "name = \"adam\"",
        "name = \"adamax\"",
        "optimizer[1].name",
        "name = \"adamax\"",
        "unknown variant `adamax`",
    ),
    (
        "name = \"adam\"",
        "name = \"muon\"\nns_steps = 0",
        "optimizer[1].ns_steps",
        "ns_steps = 0",
        "1..=100",
    ),
    (
        "name = \"adam\"",
        "name = \"muon\"\nns_steps = 1000",
        "optimizer[1].ns_steps",
        "ns_steps = 1000",
        "1..=100",
    ),
    (
        "name = \"adam\"",
        "name = \"muon\"\naux_lr = 0.0",
        "optimizer[1].aux_lr",
        "aux_lr = 0.0",
        "finite number > 0",
    ),
    (
        "name = \"adam\"",
        "name = \"muon\"\ndampening = 0.1",
        "optimizer[1].dampening",
        "dampening = 0.1",
        "does not apply to muon",
    ),
    (
        "name = \"adam\"",
        "name = \"muon\"",
        "optimizer[1].name",
        "name = \"muon\"",
        "has none, so it would be AdamW; add a hidden layer, or set matrices = \"all\"",
    ),
    (
        "name = \"adam\"",
        "name = \"muon\"\nmatrices = \"first\"",
        "optimizer[1].matrices",
        "matrices = \"first\"",
        "unknown variant `first`",
    ),
    (
        "name = \"adam\"",
        "name = \"muon\"\nmomentum = 1.5",
        "optimizer[1].momentum",
        "momentum = 1.5",
        "[0, 1)",
    ),
    (
        "name = \"adam\"",
        "name = \"rmsprop\"\nalpha = 1.0",
        "optimizer[1].alpha",
        "alpha = 1.0",
        "[0, 1)",
    ),
    (
        "name = \"adam\"",
        "name = \"rmsprop\"\nbeta1 = 0.9",
        "optimizer[1].beta1",
        "beta1 = 0.9",
        "does not apply to rmsprop",
    ),
    (
        "name = \"adam\"",
        "name = \"adagrad\"\nlr_decay = -1.0",
        "optimizer[1].lr_decay",
        "lr_decay = -1.0",
        "≥ 0",
    ),
    (
        "name = \"adam\"",
        "name = \"adagrad\"\nmomentum = 0.9",
        "optimizer[1].momentum",
        "momentum = 0.9",
        "does not apply to adagrad",
    ),
    (
        "name = \"adam\"",
        "name = \"lion\"\neps = 1e-8",
        "optimizer[1].eps",
        "eps = 1e-8",
        "does not apply to lion",
    ),
    (
        "name = \"adam\"",
        "name = \"adam\"\nlabel = \"../../escape\"",
        "optimizer[1].label",
        "label = ",
        "not filesystem-safe",
    ),
    (
        "name = \"adam\"",
        "name = \"adam\"\nlabel = \"\"",
        "optimizer[1].label",
        "label = ",
        "1 to 100 characters",
    ),
    (
        "name = \"adam\"",
        "name = \"adam\"\nlabel = 5",
        "optimizer[1].label",
        "label = 5",
        "must be a string",
    ),
    (
        "name = \"adam\"",
        "name = \"adam\"\nlabel = [\"a\", \"b\"]",
        "optimizer[1].label",
        "label = [",
        "must be a string",
    ),
    (
        "name = \"adam\"\nlr = 0.01",
        "name = \"sgd\"\nlr = 0.1",
        "optimizer[1]",
        "[[optimizer]]\nname = \"sgd\"\nlr = 0.1\n\n[hessian]",
        "duplicate run id `sgd-lr1e-1-s0`",
    ),
    (
        "lr = 0.01",
        "lr = 0.01\nbetas = [0.9, 0.99]",
        "optimizer[1].betas",
        "betas = [",
        "unknown field `betas`",
    ),
    // [hessian]
    (
        "k = 3",
        "k = 0",
        "hessian.k",
        "k = 0",
        "1..=66 (below the model's P = 67 parameters",
    ),
    ("k = 3", "k = 67", "hessian.k", "k = 67", "1..=66"),
    ("k = 3", "k = -3", "hessian.k", "k = -3", "≥ 0"),
    (
        "k = 3\n",
        "",
        "hessian.k",
        "hessian]",
        "is missing: add `k = …` to [hessian]",
    ),
    (
        "k = 3",
        "k = 3\noperators = [\"ggn\"]",
        "hessian.operators",
        "operators = [\"ggn\"]",
        "must list \"hessian\"",
    ),
    (
        "k = 3",
        "k = 3\noperators = [\"hessian\", \"ggn\", \"ggn\"]",
        "hessian.operators",
        "operators = [",
        "lists \"ggn\" twice",
    ),
    (
        "k = 3",
        "k = 3\noperators = [\"hessian\", \"gnn\"]",
        "hessian.operators",
        "operators = [",
        "unknown variant `gnn`",
    ),
    (
        "k = 3",
        "k = 3\nchunk_rows = 10\noperators = [\"hessian\", \"fisher\"]",
        "hessian.operators",
        "operators = [",
        "\"fisher\" has no chunked product",
    ),
    (
        "k = 3",
        "k = 3\nanalysis_size = 1\noperators = [\"hessian\", \"fisher\"]",
        "hessian.analysis_size",
        "analysis_size = 1",
        "needs at least 2 rows",
    ),
    (
        "k = 3",
        "k = 3\nanalysis_size = 2\noperators = [\"hessian\", \"fisher\"]",
        "hessian.operators",
        "operators = [",
        "\"fisher\" has rank at most 2 on 2 analysis rows",
    ),
    (
        "k = 3",
        "k = 5\nanalysis_size = 2\noperators = [\"hessian\", \"ggn\"]",
        "hessian.operators",
        "operators = [",
        "rank at most 4 on 2 analysis rows × 2 (classes − 1)",
    ),
    (
        "k = 3",
        "k = 3\n\n[density]\nsteps = 1",
        "density.steps",
        "steps = 1",
        "2..=67",
    ),
    (
        "k = 3",
        "k = 3\n\n[density]\nsigma = 0.0",
        "density.sigma",
        "sigma = 0.0",
        "(0, 1)",
    ),
    (
        "k = 3",
        "k = 3\n\n[density]\nprobes = 0",
        "density.probes",
        "probes = 0",
        "1..=1000",
    ),
    (
        "k = 3",
        "k = 3\n\n[trace]\nmatvecs = 2",
        "trace.matvecs",
        "matvecs = 2",
        "3..=10000",
    ),
    (
        "k = 3",
        "k = 3\n\n[trace]\nprobes = 30",
        "trace.probes",
        "probes = 30",
        "unknown field `probes`",
    ),
    (
        "k = 3",
        "k = 3\nanalysis_size = 1000",
        "hessian.analysis_size",
        "analysis_size = 1000",
        "1..=90 (the train split)",
    ),
    (
        "k = 3",
        "k = 3\nanalysis_size = 0",
        "hessian.analysis_size",
        "analysis_size = 0",
        "1..=90",
    ),
    (
        "k = 3",
        "k = 3\ntol = 0.0",
        "hessian.tol",
        "tol = 0.0",
        "(0, 1)",
    ),
    (
        "k = 3",
        "k = 3\ntol = 2.0",
        "hessian.tol",
        "tol = 2.0",
        "(0, 1)",
    ),
    (
        "k = 3",
        "k = 3\nmax_iter = 2",
        "hessian.max_iter",
        "max_iter = 2",
        "3..=1000000 (at least hessian.k)",
    ),
    (
        "k = 3",
        "k = 3\nmax_iter = 10000000",
        "hessian.max_iter",
        "max_iter = 1",
        "3..=1000000",
    ),
    (
        "k = 3",
        "k = 3\nchunk_rows = 0",
        "hessian.chunk_rows",
        "chunk_rows = 0",
        "1..=100000000",
    ),
    (
        "k = 3",
        "k = 3\nblock = 0",
        "hessian.block",
        "block = 0",
        "1..=64",
    ),
    (
        "k = 3",
        "k = 3\nblock = 65",
        "hessian.block",
        "block = 65",
        "1..=64",
    ),
    // The null's own tolerance: in (0, 1).
    (
        "k = 3\n",
        "k = 3\n\n[null]\nreplicas = 2\ntol = 0.0\n",
        "null.tol",
        "tol = 0.0",
        "must be in (0, 1)",
    ),
    (
        "k = 3\n",
        "k = 3\n\n[null]\nreplicas = 2\ntol = 1.5\n",
        "null.tol",
        "tol = 1.5",
        "must be in (0, 1)",
    ),
    // Thick restart: room for the wanted pairs and two more, within
    // max_iter, and classic (b = 1) Lanczos only.
    (
        "k = 3",
        "k = 3\nmax_basis = 4",
        "hessian.max_basis",
        "max_basis = 4",
        "must be in 5..=300",
    ),
    (
        "k = 3",
        "k = 3\nwhich = \"both_ends\"\nmax_basis = 7",
        "hessian.max_basis",
        "max_basis = 7",
        "must be in 8..=300",
    ),
    (
        "k = 3",
        "k = 3\nmax_basis = 400",
        "hessian.max_basis",
        "max_basis = 400",
        "at most hessian.max_iter",
    ),
    (
        "k = 3",
        "k = 3\nblock = 2\nmax_basis = 20",
        "hessian.max_basis",
        "max_basis = 20",
        "set hessian.block = 1",
    ),
    (
        "k = 3",
        "k = 3\nwhich = \"smallest\"",
        "hessian.which",
        "which = ",
        "unknown variant `smallest`",
    ),
    (
        "k = 3",
        "k = 3\nkk = 3",
        "hessian.kk",
        "kk = 3",
        "unknown field `kk`",
    ),
    (
        "k = 3",
        "k = 3\nwarm_start = \"yes\"",
        "hessian.warm_start",
        "warm_start = ",
        "invalid type",
    ),
    // [null]
    (
        "k = 3\n",
        "k = 3\n\n[null]\nreplicas = 5000\n",
        "null.replicas",
        "replicas = 5000",
        "0..=1000",
    ),
    (
        "k = 3\n",
        "k = 3\n\n[null]\nreplicas = -1\n",
        "null.replicas",
        "replicas = -1",
        "≥ 0",
    ),
    (
        "k = 3\n",
        "k = 3\n\n[[null]]\nreplicas = 1\n",
        "null",
        "null]]",
        "must be a table: write [null]",
    ),
    (
        "k = 3\n",
        "k = 3\n\n[null]\nreplica = 1\n",
        "null.replica",
        "replica = 1",
        "unknown field `replica`",
    ),
    // [metrics]
    (
        "k = 3\n",
        "k = 3\n\n[metrics]\ndegeneracy_threshold = 1.5\n",
        "metrics.degeneracy_threshold",
        "degeneracy_threshold = 1.5",
        "must be in (0, 1)",
    ),
    (
        "k = 3\n",
        "k = 3\n\n[metrics]\ndegeneracy_threshold = 0.0\n",
        "metrics.degeneracy_threshold",
        "degeneracy_threshold = 0.0",
        "must be in (0, 1)",
    ),
    (
        "k = 3\n",
        "k = 3\n\n[metrics]\ninclude_untrusted = 1\n",
        "metrics.include_untrusted",
        "include_untrusted = 1",
        "invalid type",
    ),
    (
        "k = 3\n",
        "k = 3\n\n[metrics]\ninclude_untrustd = true\n",
        "metrics.include_untrustd",
        "include_untrustd = true",
        "unknown field `include_untrustd`",
    ),
    (
        "k = 3\n",
        "k = 3\n\n[[metrics]]\ninclude_untrusted = true\n",
        "metrics",
        "metrics]]",
        "must be a table: write [metrics]",
    ),
];

/// `[metrics]` reaches the metrics stage's parameters; without it they
/// are the defaults, serialized as before the section existed.
#[test]
fn the_metrics_section_sets_the_metrics_params() {
    let graph = |text: &str| {
        Experiment::parse(&cfg_path(), text)
            .unwrap_or_else(|e| panic!("{e}"))
            .graph(&json!({}))
    };
    let metrics_params = |g: &Graph| -> Vec<Value> {
        g.instances
            .iter()
            .filter(|i| i.kind == "metrics")
            .map(|i| i.params.clone())
            .collect()
    };
    let default = metrics_params(&graph(BASE));
    assert_eq!(default.len(), 2);
    for p in &default {
        assert_eq!(
            serde_json::to_string(p).unwrap(),
            r#"{"degeneracy_threshold":0.001}"#
        );
    }
    let text = edit(
        "k = 3\n",
        "k = 3\n\n[metrics]\ninclude_untrusted = true\ndegeneracy_threshold = 0.01\n",
    );
    let exp = Experiment::parse(&cfg_path(), &text).unwrap_or_else(|e| panic!("{e}"));
    for r in &exp.runs {
        assert_eq!(
            r.metrics,
            MetricsParams {
                degeneracy_threshold: 0.01,
                include_untrusted: true
            }
        );
    }
    for p in metrics_params(&graph(&text)) {
        assert_eq!(p["include_untrusted"], json!(true));
        assert_eq!(p["degeneracy_threshold"], json!(0.01));
    }
    // Only include_untrusted: the threshold keeps its default.
    let text = edit("k = 3\n", "k = 3\n\n[metrics]\ninclude_untrusted = true\n");
    let exp = Experiment::parse(&cfg_path(), &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(exp.runs[0].metrics.degeneracy_threshold, 1e-3);
}

#[test]
fn bad_configs_name_the_field_at_its_line_and_column_with_the_range() {
    for (from, to, field, marker, fragment) in BAD {
        refused(
            &edit(from, to),
            &LoadOptions::unchecked(),
            field,
            marker,
            fragment,
        );
    }
    assert!(BAD.len() >= 100, "{} cases", BAD.len());
}

#[test]
fn a_section_given_a_value_is_refused_as_such() {
    let text = BASE
        .replace("[hessian]\nk = 3\n", "")
        .replace("dtype = \"f64\"", "dtype = \"f64\"\nhessian = 3");
    refused(
        &text,
        &LoadOptions::unchecked(),
        "hessian",
        "hessian = 3",
        "must be a table: write [hessian] with k = 10",
    );
}

#[test]
fn teacher_widths_suggestion_is_valid() {
    let teacher =
        edit("separation = 2.0", "teacher_widths = [0]").replace("gaussian_mixture", "teacher");
    refused(
        &teacher,
        &LoadOptions::unchecked(),
        "dataset.teacher_widths",
        "teacher_widths = [0]",
        "give [] for a linear teacher",
    );
    // ... and what it suggests is accepted: a linear teacher.
    let linear = teacher.replace("teacher_widths = [0]", "teacher_widths = []");
    let exp = Experiment::parse(&cfg_path(), &linear).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        exp.datasets[0].2.kind,
        DatasetKind::Teacher {
            teacher_widths: vec![]
        }
    );
    // An empty `at` is no checkpoint list, not an empty sweep.
    let at = edit("log_spaced = 4", "log_spaced = 4, at = []");
    assert!(Experiment::parse(&cfg_path(), &at).is_ok());
}

#[test]
fn long_names_and_ids_are_refused_up_front() {
    let long = "a".repeat(245);
    refused(
        &edit("name = \"t\"", &format!("name = \"{long}\"")),
        &LoadOptions::unchecked(),
        "name",
        "name = ",
        "is 245 characters, at most 100",
    );
    let label = "b".repeat(300);
    refused(
        &edit(
            "name = \"adam\"",
            &format!("name = \"adam\"\nlabel = \"{label}\""),
        ),
        &LoadOptions::unchecked(),
        "optimizer[1].label",
        "label = ",
        "must be 1 to 100 characters, got 300",
    );
    // Each part short enough, the id too long: the longest part is named.
    let label = "c".repeat(100);
    let text = edit(
        "name = \"adam\"\nlr = 0.01",
        &format!("name = \"adam\"\nlabel = \"{label}\"\nlr = [0.0123456789012345, 0.1]\nweight_decay = [0.0123456789012345, 0.1]\neps = [1.23456789012345e-9, 1e-8]"),
    );
    refused(
        &text,
        &LoadOptions::unchecked(),
        "optimizer[1].label",
        "label = ",
        "over the limit of 150",
    );
    // A swept inline table (here `init`) makes a readable id part; it
    // used to be refused as "not filesystem-safe", blamed on the label.
    let text = edit(
        "activation = \"tanh\"",
        "activation = \"tanh\"\ninit = [{ kind = \"normal\", std = 0.1 }, \"torch_default\"]",
    );
    let exp = Experiment::parse(&cfg_path(), &text).unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<&str> = exp.runs.iter().map(|r| r.id.as_str()).collect();
    assert!(ids.contains(&"sgd-lr1e-1-initnormal-std1e-1-s0"), "{ids:?}");
    assert!(ids.contains(&"sgd-lr1e-1-inittorch_default-s0"), "{ids:?}");
}

#[test]
fn sweeps_are_bounded_before_they_expand() {
    let seeds: Vec<String> = (0..=10_000).map(|s| s.to_string()).collect();
    let text = edit("seeds = [0]", &format!("seeds = [{}]", seeds.join(", ")));
    refused(
        &text,
        &LoadOptions::unchecked(),
        "seeds",
        "seeds = ",
        "the sweep expands to 20002 runs",
    );
    // 200 × 200 × 200 points would be 8e6 tables: refused from the lengths.
    let list: Vec<String> = (1..=200)
        .map(|i| format!("{}", i as f64 / 1000.0))
        .collect();
    let l = list.join(", ");
    let text = edit(
        "lr = 0.1",
        &format!("lr = [{l}]\nmomentum = [{l}]\nweight_decay = [{l}]"),
    );
    refused(
        &text,
        &LoadOptions::unchecked(),
        "optimizer[0].lr",
        "lr = [",
        "over the limit of 10000",
    );
}

#[test]
fn toml_syntax_errors_have_a_line_and_column() {
    let e = Experiment::parse(&cfg_path(), &edit("steps = 40", "steps = [40"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.starts_with("/nonexistent-dir/exp.toml:"), "{e}");
    let pos = e.split(':').nth(1).unwrap();
    assert!(pos.parse::<usize>().unwrap() >= 19, "{e}");
    assert!(e.contains("(TOML syntax)"), "{e}");
    assert!(!e.contains(":1:1:"), "{e}");
}

/// 16 GB of memory, no disk check.
fn mem16() -> LoadOptions {
    LoadOptions {
        force_size: false,
        mem_bytes: Some(16_000_000_000),
        disk_free_bytes: None,
    }
}

/// `[null] tol` is the null's alone: the null stage gets it, the hessian
/// stages keep theirs, and without it the null has hessian.tol.
#[test]
fn the_null_tolerance_is_its_own_or_the_hessians() {
    let opts = LoadOptions::default();
    let plain = Experiment::parse_with(&cfg_path(), BASE, &opts).unwrap();
    let loose = format!("{BASE}\n[null]\ntol = 0.01\n");
    let loose = Experiment::parse_with(&cfg_path(), &loose, &opts).unwrap();
    for (a, b) in plain.runs.iter().zip(&loose.runs) {
        let (na, nb) = (a.null.as_ref().unwrap(), b.null.as_ref().unwrap());
        assert_eq!(na.tol, a.hessian.tol());
        assert_eq!(nb.tol, 0.01);
        assert_eq!(a.hessian, b.hessian);
    }
}

/// `hessian.vector_dtype`: "f32", the default, is in no key (the graph is
/// the same as without it); "bf16" reaches both the hessian and the null
/// stages' parameters.
#[test]
fn the_vector_dtype_enters_the_keys_only_when_not_f32() {
    let f32 = BASE.replace("k = 3", "k = 3\nvector_dtype = \"f32\"");
    assert_ne!(f32, BASE);
    assert_eq!(graph_digest(&f32), graph_digest(BASE));
    let bf = BASE.replace("k = 3", "k = 3\nvector_dtype = \"bf16\"");
    assert_ne!(graph_digest(&bf), graph_digest(BASE));
    let exp = Experiment::parse(&cfg_path(), &bf).unwrap();
    for r in &exp.runs {
        assert_eq!(r.hessian.vector_dtype, stages::hessian::VectorDtype::Bf16);
        assert_eq!(
            r.null.as_ref().unwrap().vector_dtype,
            stages::hessian::VectorDtype::Bf16
        );
    }
}

/// `hessian.keep_vectors`: the default (and `every = 1`, which keeps every
/// checkpoint) is in no key; a subset changes the hessian stage's key and
/// not the train stage's; a step that is no checkpoint is refused.
#[test]
fn keep_vectors_enters_the_hessian_key_only_when_it_drops_some() {
    let with = |kv: &str| BASE.replace("k = 3", &format!("k = 3\nkeep_vectors = {kv}"));
    assert_eq!(graph_digest(&with("{ every = 1 }")), graph_digest(BASE));
    assert_eq!(graph_digest(&with("{}")), graph_digest(BASE));
    let some = with("{ every = 20, at = [20, 0] }");
    assert_ne!(graph_digest(&some), graph_digest(BASE));
    let (a, b) = (
        Experiment::parse(&cfg_path(), BASE).unwrap(),
        Experiment::parse(&cfg_path(), &some).unwrap(),
    );
    for (x, y) in a.runs.iter().zip(&b.runs) {
        assert_eq!(x.train, y.train);
        assert_ne!(x.hessian, y.hessian);
        assert_eq!(
            y.hessian.keep_vectors.at,
            [0, 20],
            "sorted and deduplicated"
        );
    }
    let e = Experiment::parse(&cfg_path(), &with("{ at = [7] }"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("hessian.keep_vectors.at") && e.contains("step 7 is not a checkpoint"),
        "{e}"
    );
    let e = Experiment::parse(&cfg_path(), &with("{ every = 0 }"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("hessian.keep_vectors.every"), "{e}");
    let e = Experiment::parse(&cfg_path(), &with("{ evry = 2 }"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("evry"), "{e}");
}

#[test]
fn configs_that_do_not_fit_in_memory_are_refused_with_the_field_to_change() {
    // P ≈ 1e12: the parameter vectors alone.
    let wide = edit("widths = [4, 8, 3]", "widths = [4, 1000000, 1000000, 3]");
    refused(
        &wide,
        &mem16(),
        "model.widths",
        "widths = ",
        "GB of memory in its train stage, more than the 16.0 GB of this machine",
    );
    // --force-size runs it anyway; the hard limits still hold.
    let force = LoadOptions {
        force_size: true,
        ..mem16()
    };
    assert!(Experiment::parse_with(&cfg_path(), &wide, &force).is_ok());
    // 8e6 parameters: a 301-vector Lanczos basis in f64 is 19 GB.
    let basis = edit("widths = [4, 8, 3]", "widths = [4, 1000000, 3]")
        .replace("k = 3", "k = 3\nanalysis_size = 10");
    refused(
        &basis,
        &mem16(),
        "hessian.max_iter",
        "hessian]",
        "the Lanczos basis",
    );
    let fewer = basis.replace("k = 3", "k = 3\nmax_iter = 100");
    assert!(Experiment::parse_with(&cfg_path(), &fewer, &mem16()).is_ok());
    // The trace estimators hold 2 × matvecs vectors, an SLQ probe `steps`:
    // counted too, with their own field named.
    let traced = format!("{fewer}\n[trace]\nmatvecs = 400\n");
    refused(
        &traced,
        &mem16(),
        "trace.matvecs",
        "matvecs = 400",
        "the Lanczos basis (800 vectors",
    );
    let dense = format!("{fewer}\n[density]\nsteps = 500\n");
    refused(
        &dense,
        &mem16(),
        "density.steps",
        "steps = 500",
        "the Lanczos basis (500 vectors",
    );
    let modest = format!("{fewer}\n[trace]\nmatvecs = 60\n\n[density]\nsteps = 80\n");
    assert!(Experiment::parse_with(&cfg_path(), &modest, &mem16()).is_ok());
    // 1e8 rows: the training activations.
    let rows = edit("samples = 120", "samples = 100000000");
    refused(
        &rows,
        &mem16(),
        "dataset.samples",
        "samples = ",
        "the training activations",
    );
    // A log row every step of 1e9.
    let log = edit("steps = 40", "steps = 1000000000")
        .replace("log_every = 5", "log_every = 1")
        .replace("every = 20, log_spaced = 4", "log_spaced = 4");
    refused(
        &log,
        &mem16(),
        "train.log_every",
        "log_every = 1",
        "the training log",
    );
    // 50,001 checkpoints: the metrics' Gram matrix of every pair.
    let ckpts =
        edit("steps = 40", "steps = 1000000").replace("every = 20, log_spaced = 4", "every = 20");
    refused(
        &ckpts,
        &mem16(),
        "train.checkpoints",
        "checkpoints = ",
        "in its metrics stage",
    );
    // 8e5 analysis rows through 1,003 neurons: the HVPs (train fits in 64 GB).
    let mem64 = LoadOptions {
        mem_bytes: Some(64_000_000_000),
        ..mem16()
    };
    let hvp = edit("samples = 120", "samples = 1000000")
        .replace("widths = [4, 8, 3]", "widths = [4, 1000, 3]")
        .replace("k = 3", "k = 3\nmax_iter = 20");
    refused(
        &hvp,
        &mem64,
        "hessian.analysis_size",
        "hessian]",
        "the Hessian-vector products",
    );
    let chunked = hvp.replace("k = 3", "k = 3\nchunk_rows = 10000");
    assert!(Experiment::parse_with(&cfg_path(), &chunked, &mem64).is_ok());
    // The CLI's own dataset: 1e8 rows of 1000 features.
    let data = edit("samples = 120", "samples = 100000000")
        .replace("dim = 4", "dim = 1000")
        .replace("widths = [4, 8, 3]", "widths = [1000, 8, 3]");
    refused(
        &data,
        &mem64,
        "dataset.samples",
        "samples = ",
        "in its dataset stage",
    );
}

#[test]
fn results_that_do_not_fit_on_disk_are_refused() {
    let opts = LoadOptions {
        force_size: false,
        mem_bytes: Some(16_000_000_000),
        disk_free_bytes: Some(1_000),
    };
    refused(
        BASE,
        &opts,
        "train.checkpoints",
        "checkpoints = ",
        "GB of disk, more than the 0.0 GB free",
    );
    let opts = LoadOptions {
        disk_free_bytes: Some(1_000_000_000),
        ..opts
    };
    assert!(Experiment::parse_with(&cfg_path(), BASE, &opts).is_ok());
}

/// The shipped configs and a variety of valid ones: (name, text).
fn valid_configs() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out.push(("base".into(), BASE.into()));
    out.push((
        "spirals-epochs-muon".into(),
        BASE.replace("kind = \"gaussian_mixture\"", "kind = \"spirals\"")
            .replace("separation = 2.0", "noise = 0.1")
            .replace("dim = 4", "dim = 3")
            .replace("widths = [4, 8, 3]", "widths = [3, 8, 8, 3]")
            .replace("activation = \"tanh\"", "activation = \"relu\"\ninit = { kind = \"normal\", std = 0.1 }")
            .replace("steps = 40", "epochs = 6\nbatch_size = 30\nschedule = { kind = \"cosine\", warmup = 3, final_fraction = 0.1 }")
            .replace("seeds = [0]", "seeds = [0, 1]")
            .replace("lr = 0.1", "lr = [0.1, 0.05]\nmomentum = 0.9\nnesterov = true\nweight_decay = 1e-4")
            .replace("name = \"adam\"\nlr = 0.01", "name = \"muon\"\nlr = 0.02\nns_steps = 3\naux_lr = 1e-3\n\n[[optimizer]]\nname = \"adamw\"\nlabel = \"aw\"\nlr = 0.01\nbeta2 = 0.99\neps = 1e-7\namsgrad = true"),
    ));
    out.push((
        "teacher-f32-hessian".into(),
        BASE.replace("kind = \"gaussian_mixture\"", "kind = \"teacher\"")
            .replace("separation = 2.0", "teacher_widths = [16, 8]")
            .replace("dtype = \"f64\"", "dtype = \"f32\"")
            .replace("activation = \"tanh\"", "activation = [\"tanh\", \"gelu\"]")
            .replace("every = 20, log_spaced = 4", "at = [3, 7], log_spaced = 3")
            .replace("k = 3", "k = 2\nanalysis_size = 50\nwhich = \"both_ends\"\ntol = 1e-3\nmax_iter = 40\nchunk_rows = 20\nblock = 2\nwarm_start = false\npreconditioned = false\n\n[null]\nreplicas = 2")
            .replace("name = \"adam\"\nlr = 0.01", "name = \"rmsprop\"\nlr = 0.01\nalpha = 0.9\ncentered = true\nmomentum = 0.5\n\n[[optimizer]]\nname = \"adagrad\"\nlr = 0.1\nlr_decay = 0.01\neps = 1e-9\n\n[[optimizer]]\nname = \"lion\"\nlr = 1e-4\nbeta1 = 0.8\nbeta2 = 0.98\nweight_decay = 0.1"),
    ));
    out.push((
        "digits-sweeps".into(),
        BASE.replace(
            "kind = \"gaussian_mixture\"\nclasses = 3\ndim = 4\nsamples = 120\nseparation = 2.0",
            "kind = \"digits\"\nsubset = 300",
        )
        .replace("seed = 1\n", "seed = [0, 1]\n")
        .replace("widths = [4, 8, 3]", "widths = [[64, 16, 10], [64, 8, 10]]")
        .replace("k = 3", "k = 3\nmax_iter = 50"),
    ));
    out
}

#[test]
fn valid_configs_fit_a_small_machine() {
    // 4 GB of memory and 20 GB of disk: the shipped configs (paper.toml:
    // 21 runs of P = 26,122 at 45 checkpoints) and the variety above.
    let opts = LoadOptions {
        force_size: false,
        mem_bytes: Some(4_000_000_000),
        disk_free_bytes: Some(20_000_000_000),
    };
    for (name, text) in valid_configs() {
        if let Err(e) = Experiment::parse_with(&cfg_path(), &text, &opts) {
            panic!("{name}: {e}");
        }
    }
}

/// blake3 of every instance of the graph: id, kind, code version,
/// resolved parameters, env, inputs and view.
fn graph_digest(text: &str) -> String {
    let exp = Experiment::parse(&cfg_path(), text).unwrap_or_else(|e| panic!("{e}"));
    let g = exp.graph(&json!({ "libtorch": "test", "device": "cpu" }));
    let mut h = blake3::Hasher::new();
    // Parameters, ids, inputs and views: what the parser decides. (Code
    // versions and environments are the stages' business, and change
    // on purpose.)
    for i in &g.instances {
        let v = json!([i.id, i.kind, i.params, i.inputs, i.view]);
        h.update(serde_json::to_string(&v).unwrap().as_bytes());
    }
    h.finalize().to_hex()[..16].to_string()
}

/// Valid configs keep exactly their resolved parameters, ids and views
/// (what the cache keys and out/ are made of). The digests were taken
/// with the parser before the validation of issue 13 (over code versions
/// and environments too), then retaken without those two at the commit
/// where that earlier digest still held. Issue 14 changed the two with a
/// Muon run on purpose (torch.optim.Muon's weight decay 0.1, `matrices`).
/// Issue 16 changed all of them on purpose: every graph gains the
/// findings stage (an input of the report), the null's default replicas
/// went from 5 to 20, and paper.toml runs 5 seeds with 20 replicas;
/// paper-teacher.toml too; paper-lr.toml is new; the findings stage
/// then gained each run's dataset as an input (the columns' max |z|),
/// and so did the report (fig10_input_mass); paper-shuffled.toml is new;
/// issue 19 added mnist-scale.toml.
#[test]
fn valid_configs_resolve_exactly_as_before() {
    let golden: &[(&str, &str)] = &[
        ("paper-lr.toml", "0441ecab9b2076dd"),
        ("paper-shuffled.toml", "7cacb14ca8c7679e"),
        ("paper-teacher.toml", "d74d9427f8882aff"),
        ("mnist-scale.toml", "08a0ce96f6f351fc"),
        ("paper.toml", "f634de91827ced01"),
        ("quick.toml", "1d714c53fa5a87c1"),
        ("base", "730ca38c74a8f21f"),
        ("spirals-epochs-muon", "7633a0f2f05b4c02"),
        ("teacher-f32-hessian", "445219dd93429653"),
        ("digits-sweeps", "413eedbc2dc81d90"),
    ];
    let mut got = Vec::new();
    for (name, text) in valid_configs() {
        got.push(format!("(\"{name}\", \"{}\"),", graph_digest(&text)));
    }
    assert_eq!(got.len(), golden.len(), "{}", got.join("\n"));
    for (name, digest) in golden {
        assert!(
            got.contains(&format!("(\"{name}\", \"{digest}\"),")),
            "{name}: resolved params changed; now:\n{}",
            got.join("\n")
        );
    }
}
