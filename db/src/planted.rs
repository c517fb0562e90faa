//! Planted bugs: deliberate faults the simulator must catch, compiled only with the
//! `planted-bugs` feature and switched on at run time one at a time. The server refuses to
//! start when this feature is compiled in.

use std::sync::atomic::{AtomicU8, Ordering};

/// A bug the simulator's checkers must detect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PlantedBug {
    /// Acknowledge (publish) appends without the fsync that should cover them.
    AckBeforeSync = 1,
    /// Recovery reports a torn tail but leaves it in place.
    RecoverKeepsTornTail = 2,
    /// `EXPECTED_VERSION N` also accepts a stream at version N + 1.
    VersionCheckOffByOne = 3,
    /// A retried event id is treated as a duplicate even when its content differs.
    IdempotencyIgnoresContent = 4,
    /// Frames are decoded without comparing their CRC, so damaged bytes are served as data.
    SkipCrcCheck = 5,
    /// A subscription feed woken from waiting for live events skips the first event published
    /// after the hand-over (its next position is advanced once too often).
    SubscriptionSkipsOnHandover = 6,
    /// A fill of zeros ahead of the open segment starts where the *synced* zeros end, so
    /// after a batch outran them it writes zeros over acknowledged frames.
    FillOverwritesFrames = 7,
}

impl PlantedBug {
    pub const ALL: [PlantedBug; 7] = [
        PlantedBug::AckBeforeSync,
        PlantedBug::RecoverKeepsTornTail,
        PlantedBug::VersionCheckOffByOne,
        PlantedBug::IdempotencyIgnoresContent,
        PlantedBug::SkipCrcCheck,
        PlantedBug::SubscriptionSkipsOnHandover,
        PlantedBug::FillOverwritesFrames,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::AckBeforeSync => "ack-before-sync",
            PlantedBug::RecoverKeepsTornTail => "recover-keeps-torn-tail",
            PlantedBug::VersionCheckOffByOne => "version-check-off-by-one",
            PlantedBug::IdempotencyIgnoresContent => "idempotency-ignores-content",
            PlantedBug::SkipCrcCheck => "skip-crc-check",
            PlantedBug::SubscriptionSkipsOnHandover => "subscription-skips-on-handover",
            PlantedBug::FillOverwritesFrames => "fill-overwrites-frames",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }
}

static ACTIVE: AtomicU8 = AtomicU8::new(0);

/// Switches one planted bug on (or all off with `None`) for this process.
pub fn set(bug: Option<PlantedBug>) {
    ACTIVE.store(bug.map_or(0, |b| b as u8), Ordering::SeqCst);
}

pub fn active(bug: PlantedBug) -> bool {
    ACTIVE.load(Ordering::Relaxed) == bug as u8
}
