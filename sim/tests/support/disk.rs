//! [`TurmoilDisk`]: the [`Disk`] trait over turmoil-fs 0.1's simulated POSIX file system.
//!
//! turmoil-fs keeps one file system per [`Fs`] value and finds "the current one" through a
//! thread-local set by [`Fs::enter`]. The store calls its disk from the host's runtime thread
//! *and* from tokio's blocking pool (group commit runs `write` + `fsync` through
//! `Env::run_blocking`), so every method here enters its own `Fs` for the duration of the call
//! instead of relying on whatever the calling thread has entered. That also keeps one host's
//! disk from ever reaching another host's.
//!
//! The mapping is one shim call per trait method, mirroring [`disk::RealDisk`]:
//!
//! | trait | turmoil-fs |
//! |---|---|
//! | `File::write_at` / `read_at` | `FileExt::write_all_at` / `read_exact_at` on the shim `File` |
//! | `File::sync` | `File::sync_data` (data and size durable; the entry is not) |
//! | `File::truncate` / `len` | `set_len` / `metadata().len()` |
//! | `File::map` | a copy of the whole file (turmoil-fs has no mmap) |
//! | `Disk::sync_dir` | the turmoil-only `sync_dir` (entries durable) |
//!
//! What a crash does is turmoil-fs's model ([`Fs::crash`]): pending writes are lost or, with a
//! block size set, torn to a prefix of whole blocks; files whose directory entry was never
//! `sync_dir`-ed disappear.

use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use disk::{Disk, File, Mapped, OpenMode};
use turmoil_fs::Fs;
use turmoil_fs::shim::std::fs as shim;

/// A simulated disk: one turmoil-fs file system. Clones share it.
#[derive(Clone)]
pub struct TurmoilDisk {
    fs: Fs,
}

impl TurmoilDisk {
    /// The disk over `fs`. The test keeps its own clone of `fs` to crash it.
    pub fn new(fs: Fs) -> Self {
        TurmoilDisk { fs }
    }
}

/// An open file of a [`TurmoilDisk`].
pub struct TurmoilFile {
    fs: Fs,
    /// `Some` until dropped; taken in `Drop` inside `fs.enter()`, so the shim can release its
    /// descriptor in the right file system.
    file: Option<shim::File>,
}

impl TurmoilFile {
    fn with<R>(&self, op: impl FnOnce(&shim::File) -> io::Result<R>) -> io::Result<R> {
        let _entered = self.fs.enter();
        op(self.file.as_ref().expect("open until dropped"))
    }
}

impl Drop for TurmoilFile {
    fn drop(&mut self) {
        let _entered = self.fs.enter();
        drop(self.file.take());
    }
}

impl Disk for TurmoilDisk {
    type File = TurmoilFile;

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<TurmoilFile> {
        let _entered = self.fs.enter();
        let mut options = shim::OpenOptions::new();
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
        Ok(TurmoilFile {
            fs: self.fs.clone(),
            file: Some(file),
        })
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let _entered = self.fs.enter();
        shim::create_dir_all(path)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let _entered = self.fs.enter();
        let mut names = Vec::new();
        for entry in shim::read_dir(dir)? {
            let name = entry?.file_name().into_string().map_err(|name| {
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
        let _entered = self.fs.enter();
        shim::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let _entered = self.fs.enter();
        shim::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let _entered = self.fs.enter();
        shim::sync_dir(dir)
    }

    fn exists(&self, path: &Path) -> bool {
        let _entered = self.fs.enter();
        shim::exists(path)
    }
}

impl File for TurmoilFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.with(|file| file.read_exact_at(buf, offset))
    }

    fn write_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.with(|file| file.write_all_at(bytes, offset))
    }

    fn sync(&self) -> io::Result<()> {
        self.with(shim::File::sync_data)
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.with(|file| file.set_len(len))
    }

    fn len(&self) -> io::Result<u64> {
        self.with(|file| Ok(file.metadata()?.len()))
    }

    fn map(&self) -> io::Result<Mapped> {
        self.with(|file| {
            let len = usize::try_from(file.metadata()?.len())
                .map_err(|_| io::Error::other("file too large to map"))?;
            let mut bytes = vec![0; len];
            file.read_exact_at(&mut bytes, 0)?;
            Ok(Mapped::from_bytes(bytes))
        })
    }
}
