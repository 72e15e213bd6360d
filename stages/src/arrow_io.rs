//! Reading and writing Arrow IPC files, with errors that name the file and column.

use crate::error::{fmt_err, io_err, StageResult};
/// An Arrow column, as the `col_*` helpers make them.
pub use arrow_array::ArrayRef;
use arrow_array::{
    Array, BooleanArray, FixedSizeListArray, Float32Array, Float64Array, Int32Array, Int64Array,
    ListArray, RecordBatch, StringArray,
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
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let file = File::create(path).map_err(io_err(path))?;
    let mut opts = IpcWriteOptions::default();
    if compress {
        opts = opts
            .try_with_compression(Some(CompressionType::ZSTD))
            .map_err(|e| fmt_err(path, e))?;
    }
    let mut w =
        FileWriter::try_new_with_options(file, &schema, opts).map_err(|e| fmt_err(path, e))?;
    w.write(&batch).map_err(|e| fmt_err(path, e))?;
    w.finish().map_err(|e| fmt_err(path, e))?;
    Ok(())
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
    /// The f64 values of row `i` of a list<f64> column.
    pub fn list_f64_row(&self, name: &str, i: usize) -> StageResult<Vec<f64>> {
        let l = self.list(name)?;
        let v = l.value(i);
        let f = v.as_any().downcast_ref::<Float64Array>().ok_or_else(|| {
            fmt_err(
                self.path,
                format!("column `{name}` is not a list of float64"),
            )
        })?;
        Ok(f.values().to_vec())
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
