//! Sweeps: list-valued fields expand into runs; run ids; error locations
//! (line and column of a field in the file).

/// Compact, filesystem-safe number: 0.001 → "1e-3", 0.1 → "1e-1", 3 → "3".
pub fn compact_number(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e6 {
        format!("{}", v as i64)
    } else {
        format!("{v:e}")
    }
}

pub(crate) fn toml_value_tag(v: &toml::Value) -> String {
    match v {
        toml::Value::Float(f) => compact_number(*f),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(a) => a.iter().map(toml_value_tag).collect::<Vec<_>>().join("x"),
        // An inline table (e.g. a swept `init`): its values, `kind`'s bare.
        toml::Value::Table(t) => t
            .iter()
            .map(|(k, v)| match k.as_str() {
                "kind" => toml_value_tag(v),
                _ => format!("{k}{}", toml_value_tag(v)),
            })
            .collect::<Vec<_>>()
            .join("-"),
        other => other.to_string(),
    }
}

/// Fields whose natural value is a list: they sweep only when given a list of lists.
pub(crate) const NATURAL_LISTS: &[&str] = &[
    "model.widths",
    "train.checkpoints.at",
    "hessian.keep_vectors.at",
    "dataset.teacher_widths",
    "hessian.operators",
];

/// Whether the list at `path` sweeps: any list but a natural one given
/// flat (an empty natural list, e.g. `teacher_widths = []`, is a value).
pub(crate) fn is_sweep(path: &str, a: &[toml::Value]) -> bool {
    !NATURAL_LISTS.contains(&path) || (!a.is_empty() && a.iter().all(|x| x.is_array()))
}

/// The swept axes of `table` as [`expand`] sweeps them: (path, values).
pub(crate) fn sweep_axes(table: &toml::Table, prefix: &str, out: &mut Vec<(String, usize)>) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => sweep_axes(t, &path, out),
            toml::Value::Array(a) if path != "optimizer" && is_sweep(&path, a) => {
                out.push((path, a.len()))
            }
            _ => {}
        }
    }
}

/// The number of points of a sweep over `axes` (saturating).
pub(crate) fn sweep_size(axes: &[(String, usize)]) -> u128 {
    axes.iter()
        .fold(1u128, |n, (_, len)| n.saturating_mul(*len as u128))
}

/// A swept axis and the value this point takes on it.
#[derive(Clone, Debug)]
pub(crate) struct Tag {
    pub(crate) path: String,
    pub(crate) value: toml::Value,
}

impl Tag {
    pub(crate) fn short(&self) -> String {
        let leaf = self.path.rsplit('.').next().unwrap_or(&self.path);
        let v = toml_value_tag(&self.value);
        match leaf {
            "seeds" => format!("s{v}"),
            "lr" => format!("lr{v}"),
            "momentum" => format!("m{v}"),
            "weight_decay" => format!("wd{v}"),
            "widths" => format!("w{v}"),
            "batch_size" => format!("bs{v}"),
            "activation" | "name" | "kind" => v,
            other => format!("{other}{v}"),
        }
    }
}

/// Expand every list-valued field of `table` (a cartesian product), except
/// natural lists given flat. `prefix` is the table's path.
pub(crate) fn expand(
    table: &toml::Table,
    prefix: &str,
) -> Result<Vec<(toml::Table, Vec<Tag>)>, String> {
    let mut out = vec![(toml::Table::new(), Vec::new())];
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let choices: Vec<(toml::Value, Option<Tag>)> = match v {
            toml::Value::Table(t) => expand(t, &path)?
                .into_iter()
                .map(|(t, tags)| (toml::Value::Table(t), tags.into_iter().next_back()))
                .collect::<Vec<_>>()
                .into_iter()
                .collect(),
            toml::Value::Array(a) if !is_sweep(&path, a) => vec![(v.clone(), None)],
            toml::Value::Array(a) if path == "optimizer" => {
                vec![(toml::Value::Array(a.clone()), None)]
            }
            toml::Value::Array(a) => {
                if a.is_empty() {
                    return Err(path);
                }
                a.iter()
                    .map(|x| {
                        (
                            x.clone(),
                            Some(Tag {
                                path: path.clone(),
                                value: x.clone(),
                            }),
                        )
                    })
                    .collect()
            }
            other => vec![(other.clone(), None)],
        };
        // Nested tables may carry several tags; recompute them properly.
        let nested: Option<Vec<Vec<Tag>>> = match v {
            toml::Value::Table(t) => Some(
                expand(t, &path)?
                    .into_iter()
                    .map(|(_, tags)| tags)
                    .collect(),
            ),
            _ => None,
        };
        let mut next = Vec::new();
        for (t, tags) in &out {
            for (i, (c, tag)) in choices.iter().enumerate() {
                let mut t = t.clone();
                t.insert(k.clone(), c.clone());
                let mut tags = tags.clone();
                match &nested {
                    Some(n) => tags.extend(n[i].iter().cloned()),
                    None => tags.extend(tag.clone()),
                }
                next.push((t, tags));
            }
        }
        out = next;
    }
    Ok(out)
}

/// 1-based line and column of the TOML item at `path` (e.g. `optimizer[1].lr`).
pub(crate) fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).ok()?;
    let mut span = doc.span();
    let mut cur: Option<&DeValue<'_>> = None;
    let mut table: Option<&DeTable<'_>> = Some(doc.get_ref());
    for seg in path.split('.') {
        let (name, index) = match seg.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        let t = match (table, cur) {
            (Some(t), _) => t,
            (None, Some(DeValue::Table(t))) => t,
            _ => break,
        };
        let Some((key, val)) = t.iter().find(|(k, _)| k.get_ref().as_ref() == name) else {
            break;
        };
        span = key.span();
        cur = Some(val.get_ref());
        table = None;
        if let (Some(i), DeValue::Array(a)) = (index, val.get_ref()) {
            if let Some(item) = a.get(i) {
                span = item.span();
                cur = Some(item.get_ref());
            }
        }
        if let Some(DeValue::Table(t)) = cur {
            table = Some(t);
        }
    }
    Some(line_col(text, span.start))
}

/// 1-based line and column of byte `offset` of `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}
