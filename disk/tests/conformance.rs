//! One body of tests, run against [`RealDisk`] (in a temporary directory) and [`SimDisk`]
//! (default faults: none at run time), so both keep the `Disk`/`File` contract the same way.
//! Then tests of `SimDisk` alone that prove its fault model.

use std::io;
use std::path::{Path, PathBuf};

use disk::{Disk, FaultConfig, FaultCounts, File, OpenMode, RealDisk, SimDisk, is_storage_full};

/// Declares each test body once per implementation: `real::name` and `sim::name`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod real {
            $(
                #[test]
                fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$name(&disk::RealDisk::new(), dir.path());
                }
            )*
        }
        mod sim {
            $(
                #[test]
                fn $name() {
                    let disk = disk::SimDisk::new(7, disk::FaultConfig::default());
                    super::$name(&disk, &super::sim_base(&disk));
                }
            )*
        }
    };
}

/// The directory the generic tests work in on a `SimDisk`: it exists like a `tempdir` does.
fn sim_base(disk: &SimDisk) -> PathBuf {
    let base = PathBuf::from("/sim/base");
    disk.create_dir_all(&base).unwrap();
    base
}

conformance!(
    open_missing_is_not_found,
    open_in_missing_dir_is_not_found,
    create_new_existing_is_already_exists,
    create_or_open_keeps_contents,
    write_then_read,
    write_past_end_zero_fills,
    overwrite_in_the_middle,
    empty_write_changes_nothing,
    read_past_end_is_unexpected_eof,
    truncate_cuts_and_zero_extends,
    sync_keeps_contents,
    handles_share_the_file,
    read_only_handle_rejects_writes,
    rename_moves_and_replaces,
    rename_missing_is_not_found,
    remove_file_removes,
    removed_file_stays_readable_through_open_handle,
    list_dir_is_sorted_with_subdirs,
    list_dir_missing_is_not_found,
    exists_sees_files_and_dirs,
    create_dir_all_is_idempotent,
    sync_dir_succeeds_and_missing_is_not_found,
    map_shows_contents,
);

fn kind<T>(result: io::Result<T>) -> io::ErrorKind {
    match result {
        Ok(_) => panic!("expected an error, got Ok"),
        Err(err) => err.kind(),
    }
}

fn contents<F: File>(file: &F) -> Vec<u8> {
    let mut buf = vec![0; file.len().unwrap() as usize];
    file.read_at(0, &mut buf).unwrap();
    buf
}

fn open_missing_is_not_found<D: Disk>(disk: &D, base: &Path) {
    let path = base.join("missing");
    assert_eq!(
        kind(disk.open(&path, OpenMode::Read)),
        io::ErrorKind::NotFound
    );
    assert_eq!(
        kind(disk.open(&path, OpenMode::ReadWrite)),
        io::ErrorKind::NotFound
    );
    assert!(!disk.exists(&path));
}

fn open_in_missing_dir_is_not_found<D: Disk>(disk: &D, base: &Path) {
    let path = base.join("no-dir").join("file");
    for mode in [
        OpenMode::Read,
        OpenMode::ReadWrite,
        OpenMode::CreateNew,
        OpenMode::CreateOrOpen,
    ] {
        assert_eq!(
            kind(disk.open(&path, mode)),
            io::ErrorKind::NotFound,
            "{mode:?}"
        );
    }
    assert!(!disk.exists(&base.join("no-dir")));
}

fn create_new_existing_is_already_exists<D: Disk>(disk: &D, base: &Path) {
    let path = base.join("f");
    let file = disk.open(&path, OpenMode::CreateNew).unwrap();
    assert_eq!(file.len().unwrap(), 0);
    assert!(file.is_empty().unwrap());
    assert_eq!(
        kind(disk.open(&path, OpenMode::CreateNew)),
        io::ErrorKind::AlreadyExists
    );
}

fn create_or_open_keeps_contents<D: Disk>(disk: &D, base: &Path) {
    let path = base.join("f");
    let file = disk.open(&path, OpenMode::CreateOrOpen).unwrap();
    file.write_at(0, b"kept").unwrap();
    drop(file);
    let again = disk.open(&path, OpenMode::CreateOrOpen).unwrap();
    assert_eq!(contents(&again), b"kept");
}

fn write_then_read<D: Disk>(disk: &D, base: &Path) {
    let path = base.join("f");
    let file = disk.open(&path, OpenMode::CreateNew).unwrap();
    file.write_at(0, b"hello ").unwrap();
    file.write_at(6, b"world").unwrap();
    assert_eq!(file.len().unwrap(), 11);
    let mut buf = [0; 5];
    file.read_at(6, &mut buf).unwrap();
    assert_eq!(&buf, b"world");
    drop(file);

    let reader = disk.open(&path, OpenMode::Read).unwrap();
    assert_eq!(contents(&reader), b"hello world");
    let writer = disk.open(&path, OpenMode::ReadWrite).unwrap();
    writer.write_at(0, b"H").unwrap();
    assert_eq!(contents(&reader), b"Hello world");
}

fn write_past_end_zero_fills<D: Disk>(disk: &D, base: &Path) {
    let file = disk.open(&base.join("f"), OpenMode::CreateNew).unwrap();
    file.write_at(0, b"ab").unwrap();
    file.write_at(5, b"cd").unwrap();
    assert_eq!(file.len().unwrap(), 7);
    assert_eq!(contents(&file), b"ab\0\0\0cd");
}

fn overwrite_in_the_middle<D: Disk>(disk: &D, base: &Path) {
    let file = disk.open(&base.join("f"), OpenMode::CreateNew).unwrap();
    file.write_at(0, b"0123456789").unwrap();
    file.write_at(3, b"xyz").unwrap();
    assert_eq!(file.len().unwrap(), 10);
    assert_eq!(contents(&file), b"012xyz6789");
}

fn empty_write_changes_nothing<D: Disk>(disk: &D, base: &Path) {
    let file = disk.open(&base.join("f"), OpenMode::CreateNew).unwrap();
    file.write_at(0, b"abc").unwrap();
    file.write_at(100, b"").unwrap();
    assert_eq!(contents(&file), b"abc");
}

fn read_past_end_is_unexpected_eof<D: Disk>(disk: &D, base: &Path) {
    let file = disk.open(&base.join("f"), OpenMode::CreateNew).unwrap();
    file.write_at(0, b"abcdef").unwrap();
    let mut buf = [0; 4];
    assert_eq!(
        kind(file.read_at(4, &mut buf)),
        io::ErrorKind::UnexpectedEof
    );
    assert_eq!(
        kind(file.read_at(100, &mut buf)),
        io::ErrorKind::UnexpectedEof
    );
    // Up to the end exactly is fine, and so is an empty read at the end.
    file.read_at(2, &mut buf).unwrap();
    assert_eq!(&buf, b"cdef");
    file.read_at(6, &mut []).unwrap();
    // `read_vec_at` reads the same bytes and fails the same way.
    assert_eq!(file.read_vec_at(2, 4).unwrap(), b"cdef");
    assert_eq!(file.read_vec_at(6, 0).unwrap(), b"");
    assert_eq!(kind(file.read_vec_at(4, 4)), io::ErrorKind::UnexpectedEof);
}

fn truncate_cuts_and_zero_extends<D: Disk>(disk: &D, base: &Path) {
    let file = disk.open(&base.join("f"), OpenMode::CreateNew).unwrap();
    file.write_at(0, b"abcdef").unwrap();
    file.truncate(3).unwrap();
    assert_eq!(file.len().unwrap(), 3);
    assert_eq!(contents(&file), b"abc");
    file.truncate(6).unwrap();
    assert_eq!(file.len().unwrap(), 6);
    assert_eq!(contents(&file), b"abc\0\0\0");
    file.truncate(0).unwrap();
    assert!(file.is_empty().unwrap());
}

fn sync_keeps_contents<D: Disk>(disk: &D, base: &Path) {
    let path = base.join("f");
    let file = disk.open(&path, OpenMode::CreateNew).unwrap();
    file.write_at(0, b"durable").unwrap();
    file.sync().unwrap();
    disk.sync_dir(base).unwrap();
    file.truncate(3).unwrap();
    file.sync().unwrap();
    assert_eq!(contents(&file), b"dur");
    // Syncing with nothing pending, and through a read-only handle, is fine too.
    file.sync().unwrap();
    disk.open(&path, OpenMode::Read).unwrap().sync().unwrap();
}

fn handles_share_the_file<D: Disk>(disk: &D, base: &Path) {
    let path = base.join("f");
    let a = disk.open(&path, OpenMode::CreateNew).unwrap();
    let b = disk.open(&path, OpenMode::ReadWrite).unwrap();
    a.write_at(0, b"from a").unwrap();
    assert_eq!(contents(&b), b"from a");
    b.truncate(4).unwrap();
    assert_eq!(a.len().unwrap(), 4);
}

fn read_only_handle_rejects_writes<D: Disk>(disk: &D, base: &Path) {
    let path = base.join("f");
    disk.open(&path, OpenMode::CreateNew)
        .unwrap()
        .write_at(0, b"abc")
        .unwrap();
    let reader = disk.open(&path, OpenMode::Read).unwrap();
    // RealDisk gets EBADF/EINVAL and SimDisk PermissionDenied; the contract is only "error".
    assert!(reader.write_at(0, b"x").is_err());
    assert!(reader.truncate(0).is_err());
    assert_eq!(contents(&reader), b"abc");
}

fn rename_moves_and_replaces<D: Disk>(disk: &D, base: &Path) {
    let (a, b) = (base.join("a"), base.join("b"));
    disk.open(&a, OpenMode::CreateNew)
        .unwrap()
        .write_at(0, b"new")
        .unwrap();
    disk.open(&b, OpenMode::CreateNew)
        .unwrap()
        .write_at(0, b"old contents")
        .unwrap();
    disk.rename(&a, &b).unwrap();
    assert!(!disk.exists(&a));
    assert_eq!(kind(disk.open(&a, OpenMode::Read)), io::ErrorKind::NotFound);
    assert_eq!(contents(&disk.open(&b, OpenMode::Read).unwrap()), b"new");
    assert_eq!(disk.list_dir(base).unwrap(), ["b"]);

    // Into another directory, under a new name.
    let sub = base.join("sub");
    disk.create_dir_all(&sub).unwrap();
    disk.rename(&b, &sub.join("c")).unwrap();
    assert_eq!(disk.list_dir(&sub).unwrap(), ["c"]);
    assert_eq!(disk.list_dir(base).unwrap(), ["sub"]);
}

fn rename_missing_is_not_found<D: Disk>(disk: &D, base: &Path) {
    assert_eq!(
        kind(disk.rename(&base.join("missing"), &base.join("x"))),
        io::ErrorKind::NotFound
    );
    disk.open(&base.join("a"), OpenMode::CreateNew).unwrap();
    assert_eq!(
        kind(disk.rename(&base.join("a"), &base.join("no-dir").join("x"))),
        io::ErrorKind::NotFound
    );
    assert!(disk.exists(&base.join("a")));
}

fn remove_file_removes<D: Disk>(disk: &D, base: &Path) {
    let path = base.join("f");
    disk.open(&path, OpenMode::CreateNew).unwrap();
    disk.remove_file(&path).unwrap();
    assert!(!disk.exists(&path));
    assert_eq!(
        kind(disk.open(&path, OpenMode::Read)),
        io::ErrorKind::NotFound
    );
    assert_eq!(kind(disk.remove_file(&path)), io::ErrorKind::NotFound);
    assert!(disk.list_dir(base).unwrap().is_empty());
    // The name is free again.
    disk.open(&path, OpenMode::CreateNew).unwrap();
}

fn removed_file_stays_readable_through_open_handle<D: Disk>(disk: &D, base: &Path) {
    let path = base.join("f");
    let file = disk.open(&path, OpenMode::CreateNew).unwrap();
    file.write_at(0, b"still here").unwrap();
    disk.remove_file(&path).unwrap();
    assert_eq!(contents(&file), b"still here");
}

fn list_dir_is_sorted_with_subdirs<D: Disk>(disk: &D, base: &Path) {
    assert!(disk.list_dir(base).unwrap().is_empty());
    for name in ["b", "a", "C", "a0"] {
        disk.open(&base.join(name), OpenMode::CreateNew).unwrap();
    }
    disk.create_dir_all(&base.join("dir").join("nested"))
        .unwrap();
    assert_eq!(disk.list_dir(base).unwrap(), ["C", "a", "a0", "b", "dir"]);
    assert_eq!(disk.list_dir(&base.join("dir")).unwrap(), ["nested"]);
    assert!(
        disk.list_dir(&base.join("dir").join("nested"))
            .unwrap()
            .is_empty()
    );
}

fn list_dir_missing_is_not_found<D: Disk>(disk: &D, base: &Path) {
    assert_eq!(
        kind(disk.list_dir(&base.join("missing"))),
        io::ErrorKind::NotFound
    );
}

fn exists_sees_files_and_dirs<D: Disk>(disk: &D, base: &Path) {
    assert!(disk.exists(base));
    disk.open(&base.join("f"), OpenMode::CreateNew).unwrap();
    disk.create_dir_all(&base.join("d")).unwrap();
    assert!(disk.exists(&base.join("f")));
    assert!(disk.exists(&base.join("d")));
    assert!(!disk.exists(&base.join("g")));
    assert!(!disk.exists(&base.join("d").join("g")));
}

fn create_dir_all_is_idempotent<D: Disk>(disk: &D, base: &Path) {
    let deep = base.join("x").join("y").join("z");
    disk.create_dir_all(&deep).unwrap();
    disk.create_dir_all(&deep).unwrap();
    disk.create_dir_all(&base.join("x")).unwrap();
    disk.open(&deep.join("f"), OpenMode::CreateNew)
        .unwrap()
        .write_at(0, b"deep")
        .unwrap();
    assert_eq!(
        contents(&disk.open(&deep.join("f"), OpenMode::Read).unwrap()),
        b"deep"
    );
    // A file in the way is an error.
    assert!(disk.create_dir_all(&deep.join("f")).is_err());
    assert!(disk.create_dir_all(&deep.join("f").join("under")).is_err());
}

fn sync_dir_succeeds_and_missing_is_not_found<D: Disk>(disk: &D, base: &Path) {
    disk.open(&base.join("f"), OpenMode::CreateNew).unwrap();
    disk.create_dir_all(&base.join("d")).unwrap();
    disk.sync_dir(base).unwrap();
    disk.sync_dir(&base.join("d")).unwrap();
    assert_eq!(
        kind(disk.sync_dir(&base.join("missing"))),
        io::ErrorKind::NotFound
    );
}

fn map_shows_contents<D: Disk>(disk: &D, base: &Path) {
    let file = disk.open(&base.join("f"), OpenMode::CreateNew).unwrap();
    assert!(file.map().unwrap().is_empty());
    file.write_at(0, b"mapped bytes").unwrap();
    file.sync().unwrap();
    assert_eq!(&*file.map().unwrap(), b"mapped bytes");
    let reader = disk.open(&base.join("f"), OpenMode::Read).unwrap();
    assert_eq!(&*reader.map().unwrap(), b"mapped bytes");
}

/// `RealDisk` and `SimDisk` are usable where the traits' bounds are required.
#[test]
fn both_disks_are_send_sync_static() {
    fn assert_bounds<T: Send + Sync + 'static>() {}
    assert_bounds::<RealDisk>();
    assert_bounds::<SimDisk>();
    assert_bounds::<<SimDisk as Disk>::File>();
    assert_bounds::<<RealDisk as Disk>::File>();
}

// ---------------------------------------------------------------------------------------
// SimDisk alone: the fault model.
// ---------------------------------------------------------------------------------------

mod sim_faults {
    use super::*;

    const SECTOR: usize = 512;

    /// No faults, and a crash loses every unsynced write: the strictest crash.
    fn lose_everything() -> FaultConfig {
        FaultConfig {
            unsynced_write_kept_probability: 0.0,
            torn_write_probability: 0.0,
            ..FaultConfig::default()
        }
    }

    fn disk(seed: u64, faults: FaultConfig) -> SimDisk {
        let disk = SimDisk::new(seed, faults);
        // The first path's parent (`/db`) exists durably; nothing else does.
        disk.open(Path::new("/db/first"), OpenMode::CreateNew)
            .unwrap();
        disk.sync_dir(Path::new("/db")).unwrap();
        disk
    }

    /// A file whose name is durable, holding `bytes` durably.
    fn durable_file(disk: &SimDisk, name: &str, bytes: &[u8]) -> PathBuf {
        let path = Path::new("/db").join(name);
        let file = disk.open(&path, OpenMode::CreateNew).unwrap();
        file.write_at(0, bytes).unwrap();
        file.sync().unwrap();
        disk.sync_dir(Path::new("/db")).unwrap();
        path
    }

    fn read_all(disk: &SimDisk, path: &Path) -> Vec<u8> {
        contents(&disk.open(path, OpenMode::Read).unwrap())
    }

    fn is_power_loss(err: &io::Error) -> bool {
        err.kind() == io::ErrorKind::Other && err.to_string().contains("simulated power loss")
    }

    #[test]
    fn synced_write_survives_crash() {
        for seed in 0..50 {
            let disk = disk(seed, lose_everything());
            let path = durable_file(&disk, "f", &[7; 3000]);
            disk.crash();
            assert_eq!(read_all(&disk, &path), [7; 3000]);
            assert_eq!(disk.fault_counts().crashes, 1);
        }
    }

    #[test]
    fn with_nothing_kept_unsynced_writes_are_lost() {
        let disk = disk(1, lose_everything());
        let path = durable_file(&disk, "f", b"synced");
        let file = disk.open(&path, OpenMode::ReadWrite).unwrap();
        file.write_at(6, b" and not").unwrap();
        file.write_at(0, b"S").unwrap();
        disk.crash();
        assert_eq!(read_all(&disk, &path), b"synced");
        assert_eq!(disk.fault_counts().lost_writes, 2);
    }

    /// Over many seeds an unsynced write is kept whole, torn at a whole number of sectors
    /// from its start, or lost, each at least once, and never anything else.
    #[test]
    fn unsynced_write_is_kept_torn_or_lost() {
        let old = [0xAA_u8; 1000];
        let new = [0x55_u8; 2000];
        let write_at = 300;
        let (mut kept, mut torn, mut torn_to_nothing, mut lost) = (0, 0, 0, 0);
        for seed in 0..300 {
            let disk = disk(seed, FaultConfig::default());
            let path = durable_file(&disk, "f", &old);
            let file = disk.open(&path, OpenMode::ReadWrite).unwrap();
            file.write_at(write_at as u64, &new).unwrap();
            disk.crash();
            let after = read_all(&disk, &path);
            let counts = disk.fault_counts();

            // How many of the new bytes, counted from the write's start, made it.
            let survived = after.len().saturating_sub(write_at).min(new.len());
            let survived = after[write_at.min(after.len())..]
                .iter()
                .take(survived)
                .take_while(|&&b| b == 0x55)
                .count();
            let mut expected = old.to_vec();
            expected.resize(old.len().max(write_at + survived), 0);
            expected[write_at..write_at + survived].fill(0x55);
            assert_eq!(
                after, expected,
                "seed {seed}: not old bytes plus a prefix of new"
            );

            if survived == new.len() {
                assert_eq!((counts.torn_writes, counts.lost_writes), (0, 0));
                kept += 1;
            } else {
                assert_eq!(
                    survived % SECTOR,
                    0,
                    "seed {seed}: torn off a sector boundary"
                );
                match (counts.torn_writes, counts.lost_writes) {
                    (1, 0) if survived > 0 => torn += 1,
                    (1, 0) => torn_to_nothing += 1,
                    (0, 1) => {
                        assert_eq!(survived, 0);
                        lost += 1;
                    }
                    other => panic!("seed {seed}: counts {other:?} for {survived} bytes"),
                }
            }
        }
        assert!(kept > 0 && torn > 0 && torn_to_nothing > 0 && lost > 0);
        assert_eq!(kept + torn + torn_to_nothing + lost, 300);
    }

    #[test]
    fn unsynced_truncate_may_or_may_not_survive() {
        let (mut cut, mut not_cut) = (0, 0);
        for seed in 0..100 {
            let disk = disk(seed, lose_everything());
            let path = durable_file(&disk, "f", b"0123456789");
            disk.open(&path, OpenMode::ReadWrite)
                .unwrap()
                .truncate(4)
                .unwrap();
            disk.crash();
            match read_all(&disk, &path).as_slice() {
                b"0123" => cut += 1,
                b"0123456789" => not_cut += 1,
                other => panic!("seed {seed}: {other:?}"),
            }
        }
        assert!(cut > 0 && not_cut > 0);
    }

    #[test]
    fn crash_makes_everything_durable() {
        let disk = disk(3, FaultConfig::default());
        let path = durable_file(&disk, "f", b"x");
        let file = disk.open(&path, OpenMode::ReadWrite).unwrap();
        file.write_at(0, &[1; 5000]).unwrap();
        disk.crash();
        assert_eq!(disk.durable_contents(&path), disk.written_contents(&path));
        // A second crash with nothing pending changes nothing.
        let before = disk.written_contents(&path);
        disk.crash();
        assert_eq!(disk.written_contents(&path), before);
    }

    #[test]
    fn file_without_sync_dir_disappears() {
        let disk = disk(0, FaultConfig::default());
        let path = Path::new("/db/new");
        let file = disk.open(path, OpenMode::CreateNew).unwrap();
        file.write_at(0, b"data").unwrap();
        file.sync().unwrap();
        assert_eq!(disk.durable_contents(path), None);
        disk.crash();
        assert!(!disk.exists(path));
        assert_eq!(disk.list_dir(Path::new("/db")).unwrap(), ["first"]);
    }

    #[test]
    fn file_with_sync_dir_stays() {
        let disk = disk(0, lose_everything());
        let path = Path::new("/db/new");
        disk.open(path, OpenMode::CreateNew).unwrap();
        disk.sync_dir(Path::new("/db")).unwrap();
        disk.crash();
        assert!(disk.exists(path));
        assert_eq!(read_all(&disk, path), b"");
    }

    #[test]
    fn directory_without_parent_sync_dir_disappears_with_its_files() {
        let disk = disk(0, lose_everything());
        let dir = Path::new("/db/segments");
        disk.create_dir_all(dir).unwrap();
        // The file is synced and its entry too, but `/db` never learns of `segments`.
        let file = disk.open(&dir.join("seg-0"), OpenMode::CreateNew).unwrap();
        file.write_at(0, b"synced file").unwrap();
        file.sync().unwrap();
        disk.sync_dir(dir).unwrap();
        disk.crash();
        assert!(!disk.exists(dir));
        assert_eq!(disk.list_dir(Path::new("/db")).unwrap(), ["first"]);

        disk.create_dir_all(dir).unwrap();
        disk.sync_dir(Path::new("/db")).unwrap();
        durable_file(&disk, "segments/seg-0", b"synced file");
        disk.sync_dir(dir).unwrap();
        disk.crash();
        assert_eq!(read_all(&disk, &dir.join("seg-0")), b"synced file");
    }

    #[test]
    fn unsynced_rename_reverts_and_synced_rename_stays() {
        let disk = disk(0, lose_everything());
        let tmp = durable_file(&disk, "tmp", b"new");
        let target = durable_file(&disk, "target", b"old");
        disk.rename(&tmp, &target).unwrap();
        assert_eq!(read_all(&disk, &target), b"new");
        disk.crash();
        assert_eq!(read_all(&disk, &target), b"old");
        assert_eq!(read_all(&disk, &tmp), b"new");

        disk.rename(&tmp, &target).unwrap();
        disk.sync_dir(Path::new("/db")).unwrap();
        disk.crash();
        assert_eq!(read_all(&disk, &target), b"new");
        assert!(!disk.exists(&tmp));
    }

    #[test]
    fn unsynced_remove_comes_back() {
        let disk = disk(0, lose_everything());
        let path = durable_file(&disk, "f", b"back");
        disk.remove_file(&path).unwrap();
        disk.crash();
        assert_eq!(read_all(&disk, &path), b"back");
        disk.remove_file(&path).unwrap();
        disk.sync_dir(Path::new("/db")).unwrap();
        disk.crash();
        assert!(!disk.exists(&path));
    }

    #[test]
    fn handles_are_stale_after_crash() {
        let disk = disk(0, FaultConfig::default());
        let path = durable_file(&disk, "f", b"abc");
        let file = disk.open(&path, OpenMode::ReadWrite).unwrap();
        disk.crash();
        let mut buf = [0; 1];
        assert!(file.read_at(0, &mut buf).is_err());
        assert!(file.write_at(0, b"x").is_err());
        assert!(file.sync().is_err());
        assert!(file.truncate(0).is_err());
        assert!(file.len().is_err());
        assert!(file.map().is_err());
        drop(file);
        assert_eq!(read_all(&disk, &path), b"abc");
    }

    #[test]
    fn crash_after_ops_cuts_at_the_right_op() {
        let disk = disk(0, FaultConfig::default());
        let path = durable_file(&disk, "f", b"");
        let file = disk.open(&path, OpenMode::ReadWrite).unwrap();
        disk.crash_after_ops(3);
        // Reads and other non-mutating calls do not count.
        for i in 0..3u8 {
            file.write_at(u64::from(i), &[i]).unwrap();
            let mut buf = [0; 1];
            file.read_at(u64::from(i), &mut buf).unwrap();
            assert_eq!(file.len().unwrap(), u64::from(i) + 1);
            disk.list_dir(Path::new("/db")).unwrap();
        }
        assert!(!disk.is_powered_off());
        let err = file.write_at(3, b"x").unwrap_err();
        assert!(is_power_loss(&err), "{err}");
        assert!(disk.is_powered_off());
        assert_eq!(disk.written_contents(&path).unwrap(), [0, 1, 2]);

        // Everything fails now, reads included.
        let mut buf = [0; 1];
        assert!(is_power_loss(&file.read_at(0, &mut buf).unwrap_err()));
        assert!(is_power_loss(&file.len().unwrap_err()));
        assert!(is_power_loss(
            &disk.open(&path, OpenMode::Read).unwrap_err()
        ));
        assert!(is_power_loss(&disk.list_dir(Path::new("/db")).unwrap_err()));
        assert!(is_power_loss(&disk.sync_dir(Path::new("/db")).unwrap_err()));
        assert!(!disk.exists(&path));
        // Disarming does not bring the power back; only a crash does.
        disk.disarm();
        assert!(disk.is_powered_off());

        disk.crash();
        assert!(!disk.is_powered_off());
        assert!(file.len().is_err(), "handle from before the crash");
        assert!(disk.open(&path, OpenMode::ReadWrite).is_ok());
    }

    #[test]
    fn crash_after_ops_counts_every_mutating_kind() {
        let disk = disk(0, FaultConfig::default());
        let file = disk
            .open(Path::new("/db/first"), OpenMode::ReadWrite)
            .unwrap();
        disk.crash_after_ops(8);
        file.write_at(0, b"1").unwrap();
        file.sync().unwrap();
        file.truncate(0).unwrap();
        disk.create_dir_all(Path::new("/db/d")).unwrap();
        disk.open(Path::new("/db/g"), OpenMode::CreateNew).unwrap();
        disk.rename(Path::new("/db/g"), Path::new("/db/h")).unwrap();
        disk.remove_file(Path::new("/db/h")).unwrap();
        disk.sync_dir(Path::new("/db")).unwrap();
        assert!(!disk.is_powered_off());
        assert!(
            disk.open(Path::new("/db/i"), OpenMode::CreateOrOpen)
                .is_err()
        );
        assert!(disk.is_powered_off());
    }

    #[test]
    fn failed_ops_do_not_count_towards_the_cut() {
        let disk = disk(0, FaultConfig::default());
        disk.crash_after_ops(1);
        assert_eq!(
            kind(disk.remove_file(Path::new("/db/missing"))),
            io::ErrorKind::NotFound
        );
        disk.open(Path::new("/db/a"), OpenMode::CreateNew).unwrap();
        assert!(is_power_loss(
            &disk
                .open(Path::new("/db/b"), OpenMode::CreateNew)
                .unwrap_err()
        ));
    }

    #[test]
    fn disarm_cancels_an_armed_cut() {
        let disk = disk(0, FaultConfig::default());
        disk.crash_after_ops(0);
        disk.disarm();
        disk.open(Path::new("/db/a"), OpenMode::CreateNew).unwrap();
        assert!(!disk.is_powered_off());
    }

    /// A sync that is the cut point persists an in-order prefix of its pending writes:
    /// seen empty, partial and whole across seeds, and never anything else.
    #[test]
    fn mid_sync_cut_persists_an_in_order_prefix() {
        const WRITES: usize = 6;
        let (mut none, mut some, mut all) = (0, 0, 0);
        for seed in 0..200 {
            let disk = disk(seed, lose_everything());
            let path = durable_file(&disk, "f", &[0; WRITES]);
            let file = disk.open(&path, OpenMode::ReadWrite).unwrap();
            // Overlapping writes, so only an in-order prefix gives these bytes:
            // after k writes, bytes 0..k hold k.
            let mut prefixes = vec![vec![0; WRITES]];
            for k in 1..=WRITES {
                file.write_at(0, &vec![k as u8; k]).unwrap();
                let mut next = prefixes[k - 1].clone();
                next[..k].fill(k as u8);
                prefixes.push(next);
            }
            disk.crash_after_ops(0);
            assert!(is_power_loss(&file.sync().unwrap_err()));
            let durable = disk.durable_contents(&path).unwrap();
            let k = prefixes
                .iter()
                .position(|p| *p == durable)
                .unwrap_or_else(|| panic!("seed {seed}: {durable:?} is no prefix"));
            match k {
                0 => none += 1,
                WRITES => all += 1,
                _ => some += 1,
            }
            // With nothing else kept, the crash leaves exactly the persisted prefix.
            disk.crash();
            assert_eq!(read_all(&disk, &path), prefixes[k], "seed {seed}");
        }
        assert!(none > 0 && some > 0 && all > 0, "{none} {some} {all}");
    }

    #[test]
    fn read_bit_flip_fires_at_one() {
        let disk = disk(0, FaultConfig::default());
        let path = durable_file(&disk, "f", &[0x0F; 64]);
        disk.set_faults(FaultConfig {
            read_bit_flip_probability: 1.0,
            ..FaultConfig::default()
        });
        let file = disk.open(&path, OpenMode::Read).unwrap();
        for i in 1..=10 {
            let mut buf = [0; 64];
            file.read_at(0, &mut buf).unwrap();
            let flipped: u32 = buf.iter().map(|b| (b ^ 0x0F).count_ones()).sum();
            assert_eq!(flipped, 1);
            assert_eq!(disk.fault_counts().bit_flips, 2 * i - 1);
            // `read_vec_at` draws the same fault, on its own copy.
            let copy = file.read_vec_at(0, 64).unwrap();
            let flipped: u32 = copy.iter().map(|b| (b ^ 0x0F).count_ones()).sum();
            assert_eq!(flipped, 1);
            assert_eq!(disk.fault_counts().bit_flips, 2 * i);
        }
        // The stored bytes are intact.
        assert_eq!(disk.written_contents(&path).unwrap(), [0x0F; 64]);
        assert_eq!(disk.durable_contents(&path).unwrap(), [0x0F; 64]);
    }

    #[test]
    fn misdirected_write_fires_at_one() {
        let disk = disk(0, FaultConfig::default());
        let path = durable_file(&disk, "f", &[0; 4 * SECTOR]);
        disk.set_faults(FaultConfig {
            misdirected_write_probability: 1.0,
            ..FaultConfig::default()
        });
        let file = disk.open(&path, OpenMode::ReadWrite).unwrap();
        file.write_at(SECTOR as u64, &[9; SECTOR]).unwrap();
        assert_eq!(disk.fault_counts().misdirected_writes, 1);
        let after = read_all(&disk, &path);
        assert_eq!(
            after.len(),
            4 * SECTOR,
            "a misdirected write stays in the file"
        );
        let landed: Vec<usize> = (0..4)
            .filter(|s| after[s * SECTOR..(s + 1) * SECTOR] == [9; SECTOR])
            .collect();
        assert_eq!(landed.len(), 1);
        assert_ne!(landed[0], 1, "landed where it was meant to");
        assert_eq!(after.iter().filter(|&&b| b == 9).count(), SECTOR);
    }

    #[test]
    fn misdirected_writes_land_whole_sectors_away_within_the_file() {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..100 {
            let disk = disk(seed, FaultConfig::default());
            let path = durable_file(&disk, "f", &[0; 8 * SECTOR]);
            disk.set_faults(FaultConfig {
                misdirected_write_probability: 1.0,
                ..FaultConfig::default()
            });
            let file = disk.open(&path, OpenMode::ReadWrite).unwrap();
            // 100 bytes at 3 sectors + 10.
            file.write_at(3 * SECTOR as u64 + 10, &[9; 100]).unwrap();
            let after = read_all(&disk, &path);
            assert_eq!(after.len(), 8 * SECTOR);
            let start = after.iter().position(|&b| b == 9).unwrap();
            assert_eq!(after[start..start + 100], [9; 100]);
            assert_eq!((start - 10) % SECTOR, 0);
            assert_ne!(start, 3 * SECTOR + 10);
            seen.insert(start / SECTOR);
        }
        // Both directions happen: sectors 0..=2 below, 4..=7 above.
        assert!(
            seen.iter().any(|&s| s < 3) && seen.iter().any(|&s| s > 3),
            "{seen:?}"
        );
    }

    #[test]
    fn read_error_fires_at_one() {
        let disk = disk(0, FaultConfig::default());
        let path = durable_file(&disk, "f", b"abc");
        disk.set_faults(FaultConfig {
            read_error_probability: 1.0,
            ..FaultConfig::default()
        });
        let file = disk.open(&path, OpenMode::Read).unwrap();
        let err = file.read_at(0, &mut [0; 3]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(5));
        assert_eq!(disk.fault_counts().read_errors, 1);
    }

    #[test]
    fn write_error_fires_at_one_and_writes_nothing() {
        let disk = disk(0, FaultConfig::default());
        let path = durable_file(&disk, "f", b"abc");
        disk.set_faults(FaultConfig {
            write_error_probability: 1.0,
            ..FaultConfig::default()
        });
        let file = disk.open(&path, OpenMode::ReadWrite).unwrap();
        let err = file.write_at(1, b"XYZW").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(5));
        assert_eq!(disk.fault_counts().write_errors, 1);
        assert_eq!(disk.written_contents(&path).unwrap(), b"abc");
    }

    #[test]
    fn sync_error_fires_at_one_and_leaves_writes_pending() {
        let disk = disk(0, FaultConfig::default());
        let path = durable_file(&disk, "f", b"abc");
        let file = disk.open(&path, OpenMode::ReadWrite).unwrap();
        file.write_at(3, b"def").unwrap();
        disk.set_faults(FaultConfig {
            sync_error_probability: 1.0,
            ..lose_everything()
        });
        assert_eq!(file.sync().unwrap_err().raw_os_error(), Some(5));
        assert_eq!(
            disk.sync_dir(Path::new("/db")).unwrap_err().raw_os_error(),
            Some(5)
        );
        assert_eq!(disk.fault_counts().sync_errors, 2);
        assert_eq!(disk.durable_contents(&path).unwrap(), b"abc");
        assert_eq!(disk.written_contents(&path).unwrap(), b"abcdef");

        // Still pending: a later successful sync makes them durable.
        disk.set_faults(lose_everything());
        file.sync().unwrap();
        disk.crash();
        assert_eq!(read_all(&disk, &path), b"abcdef");
    }

    #[test]
    fn latency_adds_up_within_its_range() {
        let disk = disk(0, FaultConfig::default());
        assert_eq!(disk.io_time_ns(), 0);
        disk.set_faults(FaultConfig {
            latency_ns: (100, 200),
            ..FaultConfig::default()
        });
        let file = disk
            .open(Path::new("/db/first"), OpenMode::ReadWrite)
            .unwrap();
        let ops = 50;
        for i in 0..ops {
            file.write_at(i, b"x").unwrap();
        }
        // The open counts too.
        let total = disk.io_time_ns();
        assert!(
            (100 * (ops + 1)..=200 * (ops + 1)).contains(&total),
            "{total}"
        );
        disk.set_faults(FaultConfig {
            latency_ns: (70, 70),
            ..FaultConfig::default()
        });
        file.len().unwrap();
        assert_eq!(disk.io_time_ns(), total + 70);
    }

    /// At probability 0 no run-time fault fires over a busy workload.
    #[test]
    fn no_fault_fires_at_zero() {
        for seed in 0..20 {
            let disk = disk(seed, FaultConfig::default());
            let path = durable_file(&disk, "f", b"");
            let file = disk.open(&path, OpenMode::ReadWrite).unwrap();
            let mut expected = Vec::new();
            for i in 0..50u64 {
                let chunk = vec![i as u8; 300];
                file.write_at(i * 300, &chunk).unwrap();
                expected.extend_from_slice(&chunk);
                let mut buf = vec![0; 300];
                file.read_at(i * 300, &mut buf).unwrap();
                assert_eq!(buf, chunk);
                file.sync().unwrap();
            }
            disk.sync_dir(Path::new("/db")).unwrap();
            assert_eq!(&*file.map().unwrap(), expected.as_slice());
            assert_eq!(disk.fault_counts(), FaultCounts::default());
            assert_eq!(disk.io_time_ns(), 0);
        }
    }

    #[test]
    fn storage_full_changes_nothing_and_clears() {
        let disk = disk(0, FaultConfig::default());
        disk.set_capacity(Some(1000));
        let path = durable_file(&disk, "f", &[1; 800]);
        assert_eq!(disk.used_bytes(), 800);
        let file = disk.open(&path, OpenMode::ReadWrite).unwrap();

        let err = file.write_at(800, &[2; 300]).unwrap_err();
        assert!(is_storage_full(&err), "{err}");
        assert_eq!(err.raw_os_error(), Some(28));
        let err = file.truncate(1200).unwrap_err();
        assert!(is_storage_full(&err), "{err}");
        assert_eq!(disk.fault_counts().storage_full, 2);
        assert_eq!(disk.written_contents(&path).unwrap(), [1; 800]);
        assert_eq!(disk.used_bytes(), 800);

        // Overwrites and growth that fit still work.
        file.write_at(0, &[3; 10]).unwrap();
        file.write_at(800, &[4; 200]).unwrap();
        assert_eq!(disk.used_bytes(), 1000);
        assert!(is_storage_full(&file.write_at(1000, b"x").unwrap_err()));

        disk.set_capacity(None);
        file.write_at(1000, &[5; 300]).unwrap();
        assert_eq!(file.len().unwrap(), 1300);
        assert_eq!(disk.used_bytes(), 1300);
        assert_eq!(disk.faults().capacity_bytes, None);
    }

    #[test]
    fn a_read_only_disk_refuses_changes_with_erofs_and_keeps_reads() {
        let disk = disk(0, FaultConfig::default());
        let path = durable_file(&disk, "f", b"stored");
        let file = disk.open(&path, OpenMode::ReadWrite).unwrap();
        disk.set_read_only(true);
        let erofs = |result: io::Result<()>| result.unwrap_err().raw_os_error() == Some(30);
        assert!(erofs(file.write_at(6, b"more")));
        assert!(erofs(file.truncate(0)));
        assert!(erofs(disk.open(&path, OpenMode::ReadWrite).map(drop)));
        let other = Path::new("/db/g");
        assert!(erofs(disk.open(other, OpenMode::CreateOrOpen).map(drop)));
        assert!(erofs(disk.rename(&path, other)));
        assert!(erofs(disk.remove_file(&path)));
        assert!(erofs(disk.create_dir_all(Path::new("/db/sub"))));
        // Nothing to create, nothing to write: these still work.
        disk.create_dir_all(Path::new("/db")).unwrap();
        file.sync().unwrap();
        disk.sync_dir(Path::new("/db")).unwrap();
        assert_eq!(read_all(&disk, &path), b"stored");
        assert_eq!(disk.list_dir(Path::new("/db")).unwrap(), ["f", "first"]);

        disk.set_read_only(false);
        file.write_at(6, b"more").unwrap();
        assert_eq!(read_all(&disk, &path), b"storedmore");
    }

    #[test]
    fn removed_files_free_space_once_durable_and_closed() {
        let disk = disk(0, FaultConfig::default());
        let path = durable_file(&disk, "f", &[1; 500]);
        let file = disk.open(&path, OpenMode::Read).unwrap();
        disk.remove_file(&path).unwrap();
        disk.sync_dir(Path::new("/db")).unwrap();
        assert_eq!(disk.used_bytes(), 500, "still open");
        drop(file);
        assert_eq!(disk.used_bytes(), 0);
    }

    #[test]
    fn corrupt_is_persistent() {
        let disk = disk(0, FaultConfig::default());
        let path = durable_file(&disk, "f", b"abcd");
        disk.corrupt(&path, 1, 0xFF).unwrap();
        let damaged = [b'a', b'b' ^ 0xFF, b'c', b'd'];
        assert_eq!(read_all(&disk, &path), damaged);
        assert_eq!(disk.durable_contents(&path).unwrap(), damaged);
        disk.crash();
        assert_eq!(read_all(&disk, &path), damaged);
        assert_eq!(kind(disk.corrupt(&path, 4, 1)), io::ErrorKind::InvalidInput);
        assert_eq!(
            kind(disk.corrupt(Path::new("/db/missing"), 0, 1)),
            io::ErrorKind::NotFound
        );
    }

    /// A fault-heavy workload, returning everything observable.
    fn workload(seed: u64) -> (Vec<Option<Vec<u8>>>, Vec<String>, FaultCounts, u64) {
        let disk = SimDisk::new(
            seed,
            FaultConfig {
                read_bit_flip_probability: 0.2,
                misdirected_write_probability: 0.2,
                read_error_probability: 0.1,
                write_error_probability: 0.1,
                sync_error_probability: 0.2,
                capacity_bytes: Some(40_000),
                latency_ns: (10, 1000),
                ..FaultConfig::default()
            },
        );
        let dir = Path::new("/data/db");
        let _ = disk.create_dir_all(dir);
        let mut names = Vec::new();
        for f in 0..4u64 {
            let path = dir.join(format!("f{f}"));
            names.push(path.clone());
            let Ok(file) = disk.open(&path, OpenMode::CreateOrOpen) else {
                continue;
            };
            for i in 0..20u64 {
                let _ = file.write_at(i * 700, &vec![(f * 31 + i) as u8; 1000]);
                let _ = file.read_at(i * 100, &mut [0; 50]);
                if i % 5 == 4 {
                    let _ = file.sync();
                }
            }
            if f % 2 == 0 {
                let _ = disk.sync_dir(dir);
            }
        }
        let _ = disk.rename(&names[1], &names[3]);
        disk.crash();
        let contents = names.iter().map(|p| disk.written_contents(p)).collect();
        let listing = disk.list_dir(dir).unwrap_or_default();
        (contents, listing, disk.fault_counts(), disk.io_time_ns())
    }

    #[test]
    fn same_seed_same_results_different_seeds_differ() {
        let runs: Vec<_> = (0..8).map(workload).collect();
        for (seed, run) in runs.iter().enumerate() {
            assert_eq!(
                *run,
                workload(seed as u64),
                "seed {seed} is not deterministic"
            );
        }
        for run in &runs[1..] {
            assert_ne!(*run, runs[0]);
        }
        // The workload does exercise the faults.
        let counts = runs[0].2;
        assert!(counts.misdirected_writes + counts.write_errors + counts.sync_errors > 0);
    }

    #[test]
    fn clones_share_the_disk() {
        let disk = disk(0, FaultConfig::default());
        let clone = disk.clone();
        let path = durable_file(&clone, "f", b"shared");
        assert_eq!(read_all(&disk, &path), b"shared");
        clone.crash();
        assert_eq!(disk.fault_counts().crashes, 1);
    }

    #[test]
    fn relative_and_dotted_paths_normalise() {
        let disk = SimDisk::new(0, FaultConfig::default());
        disk.create_dir_all(Path::new("data/./db")).unwrap();
        disk.open(Path::new("data/db/../db/f"), OpenMode::CreateNew)
            .unwrap();
        assert!(disk.exists(Path::new("./data/db/f")));
        assert_eq!(disk.list_dir(Path::new("data/db")).unwrap(), ["f"]);
        assert!(
            !disk.exists(Path::new("/data/db/f")),
            "relative is not absolute"
        );
    }
}
