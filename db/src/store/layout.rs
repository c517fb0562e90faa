//! Names and places on disk, parsed and formatted here and nowhere else.
//!
//! ```text
//! <dir>/
//!   sierradb.layout                  format, partitions, buckets, segment size (+ CRC)
//!   bucket-000/
//!     segment-0000000000.log         sealed segment (frames)
//!     segment-0000000000.idx         its index file (bloom filters inside)
//!     segment-0000000001.log         the open segment: the highest id; no .idx
//! ```

use std::path::{Path, PathBuf};

use disk::{Disk, File, OpenMode};

use crate::config::StoreConfig;
use crate::error::StoreError;

pub const LAYOUT_FILE: &str = "sierradb.layout";
pub const LAYOUT_FORMAT: u32 = 1;

pub fn bucket_dir(root: &Path, bucket: u16) -> PathBuf {
    root.join(format!("bucket-{bucket:03}"))
}

pub fn segment_file(bucket_dir: &Path, segment: u32) -> PathBuf {
    bucket_dir.join(format!("segment-{segment:010}.log"))
}

pub fn index_file(bucket_dir: &Path, segment: u32) -> PathBuf {
    bucket_dir.join(format!("segment-{segment:010}.idx"))
}

pub fn index_temp_file(bucket_dir: &Path, segment: u32) -> PathBuf {
    bucket_dir.join(format!("segment-{segment:010}.idx.tmp"))
}

/// What a bucket directory entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BucketEntry {
    Segment(u32),
    Index(u32),
    IndexTemp(u32),
    Unknown(String),
}

pub fn parse_bucket_entry(name: &str) -> BucketEntry {
    let parse = |rest: &str, suffix: &str| -> Option<u32> {
        let digits = rest.strip_suffix(suffix)?;
        (digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse().ok())
            .flatten()
    };
    if let Some(rest) = name.strip_prefix("segment-") {
        if let Some(id) = parse(rest, ".log") {
            return BucketEntry::Segment(id);
        }
        if let Some(id) = parse(rest, ".idx") {
            return BucketEntry::Index(id);
        }
        if let Some(id) = parse(rest, ".idx.tmp") {
            return BucketEntry::IndexTemp(id);
        }
    }
    BucketEntry::Unknown(name.to_owned())
}

fn layout_text(config: &StoreConfig) -> String {
    let body = format!(
        "format = {LAYOUT_FORMAT}\npartitions = {}\nbuckets = {}\nsegment_size_bytes = {}\n",
        config.partition_count, config.bucket_count, config.segment_size_bytes
    );
    let crc = crc32fast::hash(body.as_bytes());
    format!("{body}crc = {crc:08x}\n")
}

/// Writes the layout file of a new directory, or checks that an existing one agrees with
/// `config`. The file is written to a temporary name, synced, renamed and the directory
/// synced, so a crash leaves either no layout or a whole one.
pub fn ensure_layout<D: Disk>(
    disk: &D,
    root: &Path,
    config: &StoreConfig,
) -> Result<(), StoreError> {
    let path = root.join(LAYOUT_FILE);
    // Directory entries are synced on every open, not only when this open creates them: an
    // earlier open may have created them and failed before its sync, and what a directory
    // shows is not necessarily durable.
    if !disk.exists(root) {
        disk.create_dir_all(root)
            .map_err(|e| StoreError::io("create directory", root, e))?;
    }
    if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
        disk.sync_dir(parent)
            .map_err(|e| StoreError::io("sync directory", parent, e))?;
    }
    if !disk.exists(&path) {
        let temp = root.join(format!("{LAYOUT_FILE}.tmp"));
        let text = layout_text(config);
        let file = disk
            .open(&temp, OpenMode::CreateOrOpen)
            .map_err(|e| StoreError::io("create", &temp, e))?;
        file.truncate(0)
            .and_then(|()| file.write_at(0, text.as_bytes()))
            .and_then(|()| file.sync())
            .map_err(|e| StoreError::io("write", &temp, e))?;
        disk.rename(&temp, &path)
            .map_err(|e| StoreError::io("rename", &temp, e))?;
    }
    disk.sync_dir(root)
        .map_err(|e| StoreError::io("sync directory", root, e))?;
    let file = disk
        .open(&path, OpenMode::Read)
        .map_err(|e| StoreError::io("open", &path, e))?;
    let len = file.len().map_err(|e| StoreError::io("stat", &path, e))?;
    if len > 4096 {
        return Err(StoreError::corrupt(&path, 0, "layout file is too long"));
    }
    let mut bytes = vec![0; len as usize];
    file.read_at(0, &mut bytes)
        .map_err(|e| StoreError::io("read", &path, e))?;
    let text = String::from_utf8(bytes).map_err(|_| StoreError::corrupt(&path, 0, "not UTF-8"))?;
    let (body, crc_line) = text
        .trim_end_matches('\n')
        .rsplit_once('\n')
        .ok_or_else(|| StoreError::corrupt(&path, 0, "missing checksum line"))?;
    let body = format!("{body}\n");
    let expected_crc = format!("crc = {:08x}", crc32fast::hash(body.as_bytes()));
    if crc_line != expected_crc {
        return Err(StoreError::corrupt(&path, 0, "checksum mismatch"));
    }
    let mut fields = std::collections::BTreeMap::new();
    for line in body.lines() {
        let (key, value) = line
            .split_once(" = ")
            .ok_or_else(|| StoreError::corrupt(&path, 0, format!("bad line {line:?}")))?;
        fields.insert(key.to_owned(), value.to_owned());
    }
    let checks: [(&'static str, &str, String); 4] = [
        ("format", "format", LAYOUT_FORMAT.to_string()),
        (
            "partition count",
            "partitions",
            config.partition_count.to_string(),
        ),
        ("bucket count", "buckets", config.bucket_count.to_string()),
        (
            "segment size",
            "segment_size_bytes",
            config.segment_size_bytes.to_string(),
        ),
    ];
    for (field, key, configured) in checks {
        let on_disk = fields
            .get(key)
            .ok_or_else(|| StoreError::corrupt(&path, 0, format!("missing {key}")))?;
        if *on_disk != configured {
            return Err(StoreError::LayoutMismatch {
                path,
                field,
                on_disk: on_disk.clone(),
                configured,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_entries_parse_strictly() {
        assert_eq!(
            parse_bucket_entry("segment-0000000012.log"),
            BucketEntry::Segment(12)
        );
        assert_eq!(
            parse_bucket_entry("segment-0000000012.idx"),
            BucketEntry::Index(12)
        );
        assert_eq!(
            parse_bucket_entry("segment-0000000012.idx.tmp"),
            BucketEntry::IndexTemp(12)
        );
        for name in ["segment-12.log", "segment-00000000x2.log", "notes.txt"] {
            assert_eq!(
                parse_bucket_entry(name),
                BucketEntry::Unknown(name.to_owned())
            );
        }
        let dir = Path::new("/d");
        assert_eq!(
            parse_bucket_entry(segment_file(dir, 7).file_name().unwrap().to_str().unwrap()),
            BucketEntry::Segment(7)
        );
    }
}
