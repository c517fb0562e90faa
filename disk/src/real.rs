//! [`RealDisk`]: the operating system's files, with positional I/O and `memmap2` maps.

use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::{Disk, File, Mapped, OpenMode};

/// The real file system, rooted nowhere in particular: paths are used as given.
#[derive(Clone, Debug, Default)]
pub struct RealDisk;

impl RealDisk {
    pub fn new() -> Self {
        RealDisk
    }
}

/// A `std::fs::File` used with `pread`/`pwrite`.
#[derive(Debug)]
pub struct RealFile {
    file: fs::File,
    path: PathBuf,
}

impl Disk for RealDisk {
    type File = RealFile;

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<RealFile> {
        let mut options = fs::OpenOptions::new();
        options.read(true);
        match mode {
            OpenMode::Read => {}
            OpenMode::ReadWrite => {
                options.write(true);
            }
            OpenMode::CreateNew => {
                options.write(true).create_new(true);
            }
            OpenMode::CreateOrOpen => {
                options.write(true).create(true);
            }
        }
        let file = options.open(path)?;
        Ok(RealFile {
            file,
            path: path.to_owned(),
        })
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            let name = name.into_string().map_err(|name| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: file name {name:?} is not UTF-8", dir.display()),
                )
            })?;
            names.push(name);
        }
        names.sort();
        Ok(names)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        fs::File::open(dir)?.sync_all()
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

impl File for RealFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all_at(bytes, offset)
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn map(&self) -> io::Result<Mapped> {
        if self.len()? == 0 {
            return Ok(Mapped::from_bytes(Vec::new()));
        }
        // SAFETY: the map is read-only and only taken of sealed files, which this process
        // never writes again; other processes are kept out by the data directory's lock file.
        // A truncation by a third party would be a SIGBUS, which is documented in the
        // operations guide.
        let map = unsafe { memmap2::Mmap::map(&self.file) }.map_err(|err| {
            io::Error::new(err.kind(), format!("mmap {}: {err}", self.path.display()))
        })?;
        Ok(Mapped::from_mmap(map))
    }
}
