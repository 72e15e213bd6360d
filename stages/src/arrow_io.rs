//! Reading and writing Arrow IPC files, with errors that name the file and column.

use crate::error::{fmt_err, io_err, StageResult};
/// An Arrow column, as the `col_*` helpers make them.
pub use arrow_array::ArrayRef;
use arrow_array::{
    Array, BooleanArray, FixedSizeListArray, Float16Array, Float32Array, Float64Array, Int32Array,
    Int64Array, ListArray, RecordBatch, StringArray, UInt16Array,
};
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::{FileWriter, IpcWriteOptions};
use arrow_ipc::CompressionType;
use arrow_schema::{Field, Schema};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

/// Write one record batch as an Arrow IPC file, optionally zstd-compressed.
pub fn write_batch(path: &Path, columns: Vec<(&str, ArrayRef)>, compress: bool) -> StageResult<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let file = File::create(path).map_err(io_err(path))?;
    write_ipc(file, path, columns, compress)
}

/// One record batch of `columns` as Arrow IPC into `out`; `path` names it
/// in errors.
fn write_ipc(
    out: impl std::io::Write,
    path: &Path,
    columns: Vec<(&str, ArrayRef)>,
    compress: bool,
) -> StageResult<()> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, a)| Field::new(*name, a.data_type().clone(), a.null_count() > 0))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(
        schema.clone(),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .map_err(|e| fmt_err(path, e))?;
    let mut opts = IpcWriteOptions::default();
    if compress {
        opts = opts
            .try_with_compression(Some(CompressionType::ZSTD))
            .map_err(|e| fmt_err(path, e))?;
    }
    let mut w =
        FileWriter::try_new_with_options(out, &schema, opts).map_err(|e| fmt_err(path, e))?;
    w.write(&batch).map_err(|e| fmt_err(path, e))?;
    w.finish().map_err(|e| fmt_err(path, e))?;
    Ok(())
}

/// For display by tools without half precision (polars): the file as Arrow
/// IPC bytes with every float16 or bfloat16 vector column widened to
/// float32 (exact: both are subsets of f32), and the names of the columns
/// widened with their stored type; None when there is none.
pub fn widened_for_display(path: &Path) -> StageResult<Option<(Vec<u8>, Vec<String>)>> {
    // The schema first: most files have no half-precision column.
    let file = File::open(path).map_err(io_err(path))?;
    let reader = FileReader::try_new(file, None)
        .map_err(|e| fmt_err(path, format!("not an Arrow IPC file: {e}")))?;
    if !reader
        .schema()
        .fields()
        .iter()
        .any(|f| half_storage(f.data_type()).is_some())
    {
        return Ok(None);
    }
    drop(reader);
    let t = Table::open(path)?;
    let schema = t.batch.schema();
    let mut widened = Vec::new();
    let mut columns: Vec<(String, ArrayRef)> = Vec::new();
    for (f, c) in schema.fields().iter().zip(t.batch.columns()) {
        match half_storage(f.data_type()) {
            Some(kind) => {
                let mut v = VectorColumn::new(VectorDtype::F32);
                for i in 0..t.len() {
                    v.push(&t.vector_row(f.name(), i)?);
                }
                widened.push(format!("{} (stored as {kind})", f.name()));
                columns.push((f.name().clone(), v.into_array()));
            }
            None => columns.push((f.name().clone(), c.clone())),
        }
    }
    if widened.is_empty() {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    write_ipc(
        &mut bytes,
        path,
        columns
            .iter()
            .map(|(n, a)| (n.as_str(), a.clone()))
            .collect(),
        false,
    )?;
    Ok(Some((bytes, widened)))
}

/// Read every batch of an Arrow IPC file, concatenated.
pub fn read_table(path: &Path) -> StageResult<RecordBatch> {
    let file = File::open(path).map_err(io_err(path))?;
    let reader = FileReader::try_new(file, None)
        .map_err(|e| fmt_err(path, format!("not an Arrow IPC file: {e}")))?;
    let schema = reader.schema();
    let mut batches = Vec::new();
    for b in reader {
        batches.push(b.map_err(|e| fmt_err(path, e))?);
    }
    arrow_select::concat::concat_batches(&schema, &batches).map_err(|e| fmt_err(path, e))
}

/// Typed column access with a clear error.
pub struct Table<'a> {
    pub path: &'a Path,
    pub batch: RecordBatch,
}

impl<'a> Table<'a> {
    pub fn open(path: &'a Path) -> StageResult<Table<'a>> {
        Ok(Table {
            path,
            batch: read_table(path)?,
        })
    }
    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn col<T: 'static>(&self, name: &str, ty: &str) -> StageResult<&T> {
        let c = self
            .batch
            .column_by_name(name)
            .ok_or_else(|| fmt_err(self.path, format!("missing column `{name}`")))?;
        c.as_any().downcast_ref::<T>().ok_or_else(|| {
            fmt_err(
                self.path,
                format!("column `{name}` is {}, expected {ty}", c.data_type()),
            )
        })
    }
    pub fn i64(&self, name: &str) -> StageResult<&Int64Array> {
        self.col(name, "int64")
    }
    pub fn i32(&self, name: &str) -> StageResult<&Int32Array> {
        self.col(name, "int32")
    }
    pub fn f64(&self, name: &str) -> StageResult<&Float64Array> {
        self.col(name, "float64")
    }
    pub fn str(&self, name: &str) -> StageResult<&StringArray> {
        self.col(name, "utf8")
    }
    pub fn bool(&self, name: &str) -> StageResult<&BooleanArray> {
        self.col(name, "bool")
    }
    pub fn list(&self, name: &str) -> StageResult<&ListArray> {
        self.col(name, "list")
    }
    pub fn fixed_list(&self, name: &str) -> StageResult<&FixedSizeListArray> {
        self.col(name, "fixed_size_list")
    }
    /// The f32 values of row `i` of a list<f32> column.
    pub fn list_f32_row(&self, name: &str, i: usize) -> StageResult<Vec<f32>> {
        let l = self.list(name)?;
        let v = l.value(i);
        let f = v.as_any().downcast_ref::<Float32Array>().ok_or_else(|| {
            fmt_err(
                self.path,
                format!("column `{name}` is not a list of float32"),
            )
        })?;
        Ok(f.values().to_vec())
    }
    /// Any integer column, widened to i64 (files written by other tools
    /// pick their own widths).
    pub fn ints(&self, name: &str) -> StageResult<Vec<i64>> {
        use arrow_array::types::{Int16Type, Int32Type, Int64Type, Int8Type, UInt32Type};
        use arrow_schema::DataType as D;
        fn widen<T: arrow_array::ArrowPrimitiveType>(c: &ArrayRef) -> Vec<i64>
        where
            T::Native: Into<i64>,
        {
            use arrow_array::cast::AsArray;
            c.as_primitive::<T>()
                .values()
                .iter()
                .map(|&x| x.into())
                .collect()
        }
        let c = self.column(name)?;
        Ok(match c.data_type() {
            D::Int64 => widen::<Int64Type>(c),
            D::Int32 => widen::<Int32Type>(c),
            D::Int16 => widen::<Int16Type>(c),
            D::Int8 => widen::<Int8Type>(c),
            D::UInt32 => widen::<UInt32Type>(c),
            t => {
                return Err(fmt_err(
                    self.path,
                    format!("column `{name}` is {t}, expected an integer type"),
                ))
            }
        })
    }
    /// A column by name, or an error naming the file and the column.
    fn column(&self, name: &str) -> StageResult<&ArrayRef> {
        self.batch
            .column_by_name(name)
            .ok_or_else(|| fmt_err(self.path, format!("missing column `{name}`")))
    }
    /// Any string column (utf8, large_utf8 or utf8_view), as Strings.
    pub fn strings(&self, name: &str) -> StageResult<Vec<String>> {
        use arrow_array::cast::AsArray;
        let c = self.column(name)?;
        use arrow_schema::DataType as D;
        let all = |it: &mut dyn Iterator<Item = Option<&str>>| {
            it.map(|s| s.unwrap_or_default().to_string()).collect()
        };
        Ok(match c.data_type() {
            D::Utf8 => all(&mut c.as_string::<i32>().iter()),
            D::LargeUtf8 => all(&mut c.as_string::<i64>().iter()),
            D::Utf8View => all(&mut c.as_string_view().iter()),
            t => {
                return Err(fmt_err(
                    self.path,
                    format!("column `{name}` is {t}, expected utf8"),
                ))
            }
        })
    }
    /// Row `i` of an eigenvector column, in f64, whatever its storage
    /// ([`VectorDtype`]): list<float32>, list<float16>, or list<uint16>
    /// holding bfloat16 bits (the item field's `encoding` metadata says so).
    pub fn vector_row(&self, name: &str, i: usize) -> StageResult<Vec<f64>> {
        let c = self.column(name)?;
        // list or large_list (polars writes the latter).
        let v = if let Some(l) = c.as_any().downcast_ref::<ListArray>() {
            l.value(i)
        } else if let Some(l) = c.as_any().downcast_ref::<arrow_array::LargeListArray>() {
            l.value(i)
        } else {
            return Err(fmt_err(
                self.path,
                format!("column `{name}` is {}, expected a list", c.data_type()),
            ));
        };
        let any = v.as_any();
        if let Some(f) = any.downcast_ref::<Float32Array>() {
            return Ok(f.values().iter().map(|&x| x as f64).collect());
        }
        if let Some(f) = any.downcast_ref::<Float16Array>() {
            return Ok(f.values().iter().map(|x| x.to_f64()).collect());
        }
        let bf16 = half_storage(c.data_type()) == Some(BF16);
        match any.downcast_ref::<UInt16Array>() {
            Some(b) if bf16 => Ok(b
                .values()
                .iter()
                .map(|&x| half::bf16::from_bits(x).to_f64())
                .collect()),
            _ => Err(fmt_err(
                self.path,
                format!(
                    "column `{name}` is {}: vectors are stored as a list of float32, float16, or uint16 with {ENCODING_KEY} = \"{BF16}\"",
                    c.data_type()
                ),
            )),
        }
    }
    /// The f64 values of row `i` of a list<f64> column.
    pub fn list_f64_row(&self, name: &str, i: usize) -> StageResult<Vec<f64>> {
        self.list_f64_opt_row(name, i)?
            .ok_or_else(|| fmt_err(self.path, format!("column `{name}`: row {i} is null")))
    }

    /// The f64 values of row `i` of a list<f64> column; None where the row is null.
    pub fn list_f64_opt_row(&self, name: &str, i: usize) -> StageResult<Option<Vec<f64>>> {
        let l = self.list(name)?;
        if l.is_null(i) {
            return Ok(None);
        }
        let v = l.value(i);
        let f = v.as_any().downcast_ref::<Float64Array>().ok_or_else(|| {
            fmt_err(
                self.path,
                format!("column `{name}` is not a list of float64"),
            )
        })?;
        Ok(Some(f.values().to_vec()))
    }
}

/// A list<f32> column from rows of equal or different lengths.
pub fn list_f32(rows: &[Vec<f32>]) -> ArrayRef {
    let offsets = arrow_buffer::OffsetBuffer::from_lengths(rows.iter().map(Vec::len));
    let values: Vec<f32> = rows.iter().flatten().copied().collect();
    let field = Arc::new(Field::new("item", arrow_schema::DataType::Float32, false));
    Arc::new(ListArray::new(
        field,
        offsets,
        Arc::new(Float32Array::from(values)),
        None,
    ))
}

/// How eigenvectors are stored (`hessian.vector_dtype`): float32 (the
/// default), float16, or bfloat16. Arrow has no bfloat16 type, so bfloat16
/// is a list of uint16 bit patterns whose item field carries the metadata
/// `encoding = "bfloat16"`; a reader widens each to f32 by a 16-bit shift.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum VectorDtype {
    #[default]
    F32,
    F16,
    Bf16,
}

impl VectorDtype {
    pub fn is_f32(&self) -> bool {
        *self == VectorDtype::F32
    }
    /// Bytes per stored entry.
    pub fn bytes(&self) -> usize {
        match self {
            VectorDtype::F32 => 4,
            VectorDtype::F16 | VectorDtype::Bf16 => 2,
        }
    }
    /// The unit roundoff of the storage: half the spacing of numbers in
    /// [1, 2), the largest relative error of one rounded normal entry.
    pub fn unit_roundoff(&self) -> f64 {
        match self {
            VectorDtype::F32 => 2f64.powi(-24),
            VectorDtype::F16 => 2f64.powi(-11),
            VectorDtype::Bf16 => 2f64.powi(-8),
        }
    }
}

/// The item field's metadata key that marks bfloat16 bits.
pub const ENCODING_KEY: &str = "encoding";
const BF16: &str = "bfloat16";

/// "float16" for a list of float16, "bfloat16" for a list of uint16 marked
/// as bfloat16 bits; None for any other type.
fn half_storage(t: &arrow_schema::DataType) -> Option<&'static str> {
    use arrow_schema::DataType as D;
    match t {
        D::List(item) | D::LargeList(item) => match item.data_type() {
            D::Float16 => Some("float16"),
            D::UInt16 if item.metadata().get(ENCODING_KEY).map(String::as_str) == Some(BF16) => {
                Some(BF16)
            }
            _ => None,
        },
        _ => None,
    }
}

/// A column of vectors, each rounded to its storage dtype as it is pushed
/// (so that a stage holds its vectors at the stored size, not in f64).
#[derive(Default)]
pub struct VectorColumn {
    dtype: VectorDtype,
    lengths: Vec<usize>,
    f32s: Vec<f32>,
    halves: Vec<u16>,
}

impl VectorColumn {
    pub fn new(dtype: VectorDtype) -> VectorColumn {
        VectorColumn {
            dtype,
            lengths: Vec::new(),
            f32s: Vec::new(),
            halves: Vec::new(),
        }
    }
    /// Round `v` to the storage dtype (round to nearest even, from f64).
    pub fn push(&mut self, v: &[f64]) {
        self.lengths.push(v.len());
        match self.dtype {
            VectorDtype::F32 => self.f32s.extend(v.iter().map(|&x| x as f32)),
            VectorDtype::F16 => self
                .halves
                .extend(v.iter().map(|&x| half::f16::from_f64(x).to_bits())),
            VectorDtype::Bf16 => self
                .halves
                .extend(v.iter().map(|&x| half::bf16::from_f64(x).to_bits())),
        }
    }
    pub fn len(&self) -> usize {
        self.lengths.len()
    }
    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }
    /// The list column.
    pub fn into_array(self) -> ArrayRef {
        let offsets = arrow_buffer::OffsetBuffer::from_lengths(self.lengths);
        let (field, values): (Field, ArrayRef) = match self.dtype {
            VectorDtype::F32 => (
                Field::new("item", arrow_schema::DataType::Float32, false),
                Arc::new(Float32Array::from(self.f32s)),
            ),
            VectorDtype::F16 => (
                Field::new("item", arrow_schema::DataType::Float16, false),
                Arc::new(Float16Array::from(
                    self.halves
                        .into_iter()
                        .map(half::f16::from_bits)
                        .collect::<Vec<_>>(),
                )),
            ),
            VectorDtype::Bf16 => (
                Field::new("item", arrow_schema::DataType::UInt16, false).with_metadata(
                    [(ENCODING_KEY.to_string(), BF16.to_string())]
                        .into_iter()
                        .collect::<std::collections::HashMap<_, _>>(),
                ),
                Arc::new(UInt16Array::from(self.halves)),
            ),
        };
        Arc::new(ListArray::new(Arc::new(field), offsets, values, None))
    }
}

/// A list<f64> column.
pub fn list_f64(rows: &[Vec<f64>]) -> ArrayRef {
    let offsets = arrow_buffer::OffsetBuffer::from_lengths(rows.iter().map(Vec::len));
    let values: Vec<f64> = rows.iter().flatten().copied().collect();
    let field = Arc::new(Field::new("item", arrow_schema::DataType::Float64, false));
    Arc::new(ListArray::new(
        field,
        offsets,
        Arc::new(Float64Array::from(values)),
        None,
    ))
}

/// A list<f64> column whose rows may be null (None).
pub fn list_f64_opt(rows: &[Option<Vec<f64>>]) -> ArrayRef {
    let offsets = arrow_buffer::OffsetBuffer::from_lengths(
        rows.iter().map(|r| r.as_ref().map_or(0, Vec::len)),
    );
    let values: Vec<f64> = rows.iter().flatten().flatten().copied().collect();
    let field = Arc::new(Field::new("item", arrow_schema::DataType::Float64, false));
    let nulls = rows.iter().any(Option::is_none).then(|| {
        arrow_buffer::NullBuffer::from(rows.iter().map(Option::is_some).collect::<Vec<_>>())
    });
    Arc::new(ListArray::new(
        field,
        offsets,
        Arc::new(Float64Array::from(values)),
        nulls,
    ))
}

/// A list<i64> column.
pub fn list_i64(rows: &[Vec<i64>]) -> ArrayRef {
    let offsets = arrow_buffer::OffsetBuffer::from_lengths(rows.iter().map(Vec::len));
    let values: Vec<i64> = rows.iter().flatten().copied().collect();
    let field = Arc::new(Field::new("item", arrow_schema::DataType::Int64, false));
    Arc::new(ListArray::new(
        field,
        offsets,
        Arc::new(Int64Array::from(values)),
        None,
    ))
}

pub fn col_i64(v: Vec<i64>) -> ArrayRef {
    Arc::new(Int64Array::from(v))
}
pub fn col_i32(v: Vec<i32>) -> ArrayRef {
    Arc::new(Int32Array::from(v))
}
pub fn col_f64(v: Vec<f64>) -> ArrayRef {
    Arc::new(Float64Array::from(v))
}
pub fn col_bool(v: Vec<bool>) -> ArrayRef {
    Arc::new(BooleanArray::from(v))
}
pub fn col_str<S: AsRef<str>>(v: &[S]) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(v.iter().map(|s| s.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries across the range a unit vector holds at P up to millions:
    /// signs, powers of two, f16's subnormals and a value f16 cannot hold.
    fn entries() -> Vec<f64> {
        let mut v = vec![0.0, -0.0, 1.0, -0.5, 0.1, 1.0 / 3.0, 70_000.0];
        let mut x = 0.7311;
        for _ in 0..400 {
            x = (x * 3.917 + 0.13f64).fract();
            v.push((x - 0.5) * 10f64.powf(-8.0 * x));
        }
        v
    }

    #[test]
    fn nullable_f64_lists_round_trip_with_their_nulls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.arrow");
        let rows = vec![
            Some(vec![1.0, -2.5]),
            None,
            Some(vec![]),
            None,
            Some(vec![7.0]),
        ];
        write_batch(&path, vec![("g", list_f64_opt(&rows))], true).unwrap();
        let t = Table::open(&path).unwrap();
        assert!(t.batch.schema().field(0).is_nullable());
        let back: Vec<Option<Vec<f64>>> = (0..t.len())
            .map(|i| t.list_f64_opt_row("g", i).unwrap())
            .collect();
        assert_eq!(back, rows);
        let e = t.list_f64_row("g", 1).unwrap_err().to_string();
        assert!(e.contains("row 1 is null"), "{e}");
        // Without a null the column stays non-nullable, as before.
        write_batch(&path, vec![("g", list_f64_opt(&rows[..1]))], true).unwrap();
        assert!(!Table::open(&path)
            .unwrap()
            .batch
            .schema()
            .field(0)
            .is_nullable());
    }

    fn round_trip(d: VectorDtype) -> (Vec<f64>, Vec<f64>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.arrow");
        let v = entries();
        let mut c = VectorColumn::new(d);
        c.push(&v);
        c.push(&v[..3]);
        assert_eq!(c.len(), 2);
        write_batch(&path, vec![("vector", c.into_array())], true).unwrap();
        let t = Table::open(&path).unwrap();
        assert_eq!(t.vector_row("vector", 1).unwrap(), vec![0.0, -0.0, 1.0]);
        (v, t.vector_row("vector", 0).unwrap())
    }

    #[test]
    fn f32_storage_is_the_f32_rounding() {
        let (v, r) = round_trip(VectorDtype::F32);
        for (x, y) in v.iter().zip(&r) {
            assert_eq!(*y, *x as f32 as f64);
        }
    }

    /// f16 and bf16 against their definitions, computed here without the
    /// `half` crate: round to nearest even at the dtype's precision, and
    /// the relative error within the unit roundoff for normal numbers.
    #[test]
    fn half_storage_rounds_to_nearest_within_the_unit_roundoff() {
        for (d, min_normal, max) in [
            (VectorDtype::F16, 2f64.powi(-14), 65504.0),
            (VectorDtype::Bf16, 2f64.powi(-126), 3.38e38),
        ] {
            let (v, r) = round_trip(d);
            let u = d.unit_roundoff();
            let mut rounded = 0;
            for (x, y) in v.iter().zip(&r) {
                if x.abs() > max {
                    assert!(y.is_infinite(), "{d:?}: {x} → {y}");
                } else if x.abs() >= min_normal {
                    assert!((x - y).abs() <= u * x.abs(), "{d:?}: {x} → {y}");
                } else {
                    // Subnormal: the absolute spacing is min_normal · 2u.
                    assert!((x - y).abs() <= min_normal * u, "{d:?}: {x} → {y}");
                }
                if x != y {
                    rounded += 1;
                }
            }
            assert!(rounded > 300, "{d:?}: only {rounded} entries were rounded");
        }
        // bf16 is the top half of the f32 bits, rounded to nearest even:
        // 1 + 2⁻⁸ is a tie (rounds to 1) and 1 + 3·2⁻⁸ rounds up to 1 + 2⁻⁶.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.arrow");
        let mut c = VectorColumn::new(VectorDtype::Bf16);
        c.push(&[1.0 + 2f64.powi(-8), 1.0 + 3.0 * 2f64.powi(-8), -2.0]);
        write_batch(&path, vec![("vector", c.into_array())], false).unwrap();
        let t = Table::open(&path).unwrap();
        assert_eq!(
            t.vector_row("vector", 0).unwrap(),
            vec![1.0, 1.0 + 2f64.powi(-6), -2.0]
        );
    }

    #[test]
    fn uint16_vectors_without_the_bfloat16_mark_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.arrow");
        let field = Arc::new(Field::new("item", arrow_schema::DataType::UInt16, false));
        let col = Arc::new(ListArray::new(
            field,
            arrow_buffer::OffsetBuffer::from_lengths([2]),
            Arc::new(UInt16Array::from(vec![1u16, 2])),
            None,
        ));
        write_batch(&path, vec![("vector", col)], false).unwrap();
        let err = Table::open(&path)
            .unwrap()
            .vector_row("vector", 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("u.arrow") && err.contains("bfloat16"), "{err}");
    }
}
