//! Paths and directory operations of the simulated tree.
//!
//! Paths are used as given, absolute or relative, and normalised by their components alone
//! (`.` dropped, `..` pops): there is no real file system and there are no symlinks. Absolute
//! paths start at a simulated `/`, relative ones at a simulated working directory.

use std::fmt;
use std::io;
use std::path::{Component, Path};

use super::node::{DirNode, FileNode, Ino, Node};
use super::state::{ABSOLUTE_ROOT, RELATIVE_ROOT, State};

/// A normalised path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SimPath {
    absolute: bool,
    parts: Vec<String>,
}

impl SimPath {
    pub(super) fn parse(path: &Path) -> io::Result<SimPath> {
        let mut absolute = false;
        let mut parts: Vec<String> = Vec::new();
        for component in path.components() {
            match component {
                Component::Prefix(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!("{}: path prefixes are not simulated", path.display()),
                    ));
                }
                Component::RootDir => absolute = true,
                Component::CurDir => {}
                Component::ParentDir => {
                    // `/..` is `/`, as on POSIX; a relative path cannot climb out of the
                    // working directory, which has no simulated parent.
                    if parts.pop().is_none() && !absolute {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!(
                                "{}: climbs above the simulated working directory",
                                path.display()
                            ),
                        ));
                    }
                }
                Component::Normal(name) => {
                    let name = name.to_str().ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("{}: file name {name:?} is not UTF-8", path.display()),
                        )
                    })?;
                    parts.push(name.to_owned());
                }
            }
        }
        Ok(SimPath { absolute, parts })
    }

    fn root(&self) -> Ino {
        if self.absolute {
            ABSOLUTE_ROOT
        } else {
            RELATIVE_ROOT
        }
    }

    /// The parent directory and the last name, or `None` for a root.
    fn split_last(&self) -> Option<(SimPath, &str)> {
        let (name, parent) = self.parts.split_last()?;
        let parent = SimPath {
            absolute: self.absolute,
            parts: parent.to_vec(),
        };
        Some((parent, name))
    }

    /// Whether `self` lies strictly inside `dir`.
    fn is_inside(&self, dir: &SimPath) -> bool {
        self.absolute == dir.absolute
            && self.parts.len() > dir.parts.len()
            && self.parts.starts_with(&dir.parts)
    }
}

impl fmt::Display for SimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.absolute, self.parts.is_empty()) {
            (true, _) => write!(f, "/{}", self.parts.join("/")),
            (false, true) => f.write_str("."),
            (false, false) => f.write_str(&self.parts.join("/")),
        }
    }
}

fn error(kind: io::ErrorKind, path: &SimPath, what: &str) -> io::Error {
    io::Error::new(kind, format!("{path}: {what}"))
}

fn not_found(path: &SimPath) -> io::Error {
    error(io::ErrorKind::NotFound, path, "no such file or directory")
}

/// Which of a directory's entry maps a lookup walks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum View {
    /// What the running process sees.
    Current,
    /// What a crash right now would leave.
    Durable,
}

impl State {
    /// Parses `path`. The first path the disk ever sees also defines the simulated world: its
    /// parent and the parent's ancestors exist from the start and are durable, as the
    /// directory a program is pointed at exists before it runs.
    pub(super) fn path(&mut self, path: &Path) -> io::Result<SimPath> {
        let path = SimPath::parse(path)?;
        if !self.rooted {
            self.rooted = true;
            if let Some((parent, _)) = path.split_last() {
                let mut ino = parent.root();
                for name in &parent.parts {
                    let child = self.alloc(Node::Dir(DirNode::default()));
                    let dir = self.dir_mut(ino);
                    dir.entries.insert(name.clone(), child);
                    dir.durable.insert(name.clone(), child);
                    ino = child;
                }
            }
        }
        Ok(path)
    }

    fn dir(&self, ino: Ino) -> Option<&DirNode> {
        match self.nodes.get(&ino) {
            Some(Node::Dir(dir)) => Some(dir),
            _ => None,
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> &mut DirNode {
        match self.nodes.get_mut(&ino) {
            Some(Node::Dir(dir)) => dir,
            _ => panic!("SimDisk: inode {ino} is not a live directory"),
        }
    }

    fn is_dir(&self, ino: Ino) -> bool {
        self.dir(ino).is_some()
    }

    /// Resolves `path` through the entries `view` names.
    pub(super) fn lookup(&self, path: &SimPath, view: View) -> io::Result<Ino> {
        let mut ino = path.root();
        for name in &path.parts {
            let dir = self
                .dir(ino)
                .ok_or_else(|| error(io::ErrorKind::NotADirectory, path, "not a directory"))?;
            let entries = match view {
                View::Current => &dir.entries,
                View::Durable => &dir.durable,
            };
            ino = *entries.get(name).ok_or_else(|| not_found(path))?;
        }
        Ok(ino)
    }

    /// The directory that holds `path` (which must exist) and the name in it.
    fn parent<'p>(&self, path: &'p SimPath) -> io::Result<(Ino, &'p str)> {
        let (parent, name) = path.split_last().ok_or_else(|| {
            error(
                io::ErrorKind::InvalidInput,
                path,
                "a root has no parent directory",
            )
        })?;
        let ino = self.lookup(&parent, View::Current)?;
        if !self.is_dir(ino) {
            return Err(error(io::ErrorKind::NotADirectory, path, "not a directory"));
        }
        Ok((ino, name))
    }

    fn entry(&self, dir: Ino, name: &str) -> Option<Ino> {
        self.dir(dir)?.entries.get(name).copied()
    }

    /// `open` in `Read` or `ReadWrite` mode.
    pub(super) fn open_existing(&self, path: &SimPath) -> io::Result<Ino> {
        let ino = self.lookup(path, View::Current)?;
        if self.is_dir(ino) {
            return Err(error(io::ErrorKind::IsADirectory, path, "is a directory"));
        }
        Ok(ino)
    }

    /// `open` in `CreateNew` (`exclusive`) or `CreateOrOpen` mode. A new file's entry is
    /// current, not durable.
    pub(super) fn open_creating(&mut self, path: &SimPath, exclusive: bool) -> io::Result<Ino> {
        let (dir, name) = self.parent(path)?;
        match self.entry(dir, name) {
            Some(_) if exclusive => Err(error(io::ErrorKind::AlreadyExists, path, "file exists")),
            Some(ino) if self.is_dir(ino) => {
                Err(error(io::ErrorKind::IsADirectory, path, "is a directory"))
            }
            Some(ino) => Ok(ino),
            None => {
                let ino = self.alloc(Node::File(FileNode::with_links(1)));
                self.dir_mut(dir).insert(name.to_owned(), ino);
                Ok(ino)
            }
        }
    }

    /// `create_dir_all`: each new directory is a current, not durable, entry of its parent.
    pub(super) fn create_dirs(&mut self, path: &SimPath) -> io::Result<()> {
        let mut ino = path.root();
        for (i, name) in path.parts.iter().enumerate() {
            ino = match self.entry(ino, name) {
                Some(child) if self.is_dir(child) => child,
                Some(_) if i + 1 == path.parts.len() => {
                    return Err(error(io::ErrorKind::AlreadyExists, path, "file exists"));
                }
                Some(_) => {
                    return Err(error(io::ErrorKind::NotADirectory, path, "not a directory"));
                }
                None => {
                    let child = self.alloc(Node::Dir(DirNode::default()));
                    self.dir_mut(ino).insert(name.clone(), child);
                    child
                }
            };
        }
        Ok(())
    }

    pub(super) fn list(&self, path: &SimPath) -> io::Result<Vec<String>> {
        let ino = self.lookup(path, View::Current)?;
        let dir = self
            .dir(ino)
            .ok_or_else(|| error(io::ErrorKind::NotADirectory, path, "not a directory"))?;
        // BTreeMap keys come sorted the way `Vec<String>::sort` sorts.
        Ok(dir.entries.keys().cloned().collect())
    }

    pub(super) fn rename(&mut self, from: &SimPath, to: &SimPath) -> io::Result<()> {
        let (from_dir, from_name) = self.parent(from)?;
        let ino = self
            .entry(from_dir, from_name)
            .ok_or_else(|| not_found(from))?;
        let (to_dir, to_name) = self.parent(to)?;
        let replaced = self.entry(to_dir, to_name);
        if replaced == Some(ino) {
            // Same file under both names: POSIX says do nothing.
            return Ok(());
        }
        let moving_dir = self.is_dir(ino);
        if moving_dir && to.is_inside(from) {
            return Err(error(
                io::ErrorKind::InvalidInput,
                to,
                "cannot move a directory inside itself",
            ));
        }
        if let Some(replaced) = replaced {
            match (moving_dir, self.dir(replaced)) {
                (false, Some(_)) => {
                    return Err(error(io::ErrorKind::IsADirectory, to, "is a directory"));
                }
                (true, None) => {
                    return Err(error(io::ErrorKind::NotADirectory, to, "not a directory"));
                }
                (true, Some(dir)) if !dir.entries.is_empty() => {
                    return Err(error(
                        io::ErrorKind::DirectoryNotEmpty,
                        to,
                        "directory not empty",
                    ));
                }
                _ => {}
            }
        }
        // The moved inode keeps its link count: one current entry goes, one comes.
        self.dir_mut(from_dir).remove(from_name);
        self.dir_mut(to_dir).insert(to_name.to_owned(), ino);
        match replaced {
            // A replaced (empty) directory may still be named by a durable entry, and
            // whatever it took with it is the tree walk's to find.
            Some(replaced) if self.is_dir(replaced) => self.collect_garbage(),
            Some(replaced) => self.unlink_file(replaced),
            None => {}
        }
        Ok(())
    }

    pub(super) fn remove(&mut self, path: &SimPath) -> io::Result<()> {
        let (dir, name) = self.parent(path)?;
        let ino = self.entry(dir, name).ok_or_else(|| not_found(path))?;
        if self.is_dir(ino) {
            return Err(error(io::ErrorKind::IsADirectory, path, "is a directory"));
        }
        self.dir_mut(dir).remove(name);
        self.unlink_file(ino);
        Ok(())
    }

    /// The directory `path` resolves to, for `sync_dir`.
    pub(super) fn lookup_dir(&self, path: &SimPath) -> io::Result<Ino> {
        let ino = self.lookup(path, View::Current)?;
        if !self.is_dir(ino) {
            return Err(error(io::ErrorKind::NotADirectory, path, "not a directory"));
        }
        Ok(ino)
    }

    /// Makes the current entries of directory `ino` durable.
    pub(super) fn persist_dir(&mut self, ino: Ino) {
        // The durable map now names what the current one does: files it names anew gain a
        // link, and the ones only the old durable map named (synced removals, replaced rename
        // targets) lose one, which may have been their last. Gains first, so a file that only
        // changed its name never looks unlinked.
        let (gained, lost) = self.dir_mut(ino).persist();
        for child in gained {
            if let Some(Node::File(file)) = self.nodes.get_mut(&child) {
                file.links += 1;
            }
        }
        if lost.iter().any(|&child| self.is_dir(child)) {
            // A directory may take a subtree with it: walk the whole tree.
            self.collect_garbage();
            return;
        }
        for child in lost {
            self.unlink_file(child);
        }
    }

    /// The file `path` resolves to in `view`, if it is a file.
    pub(super) fn lookup_file(&self, path: &SimPath, view: View) -> Option<&FileNode> {
        match self.nodes.get(&self.lookup(path, view).ok()?) {
            Some(Node::File(file)) => Some(file),
            _ => None,
        }
    }
}
