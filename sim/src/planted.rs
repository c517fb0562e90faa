//! Planted bugs by name: the store's deliberate faults that the checkers must catch
//! (`db::planted`, compiled only with the `planted-bugs` feature, which this crate passes
//! through). Without the feature every name is unknown, so a default build cannot switch one
//! on by accident.
//!
//! The switch is process-wide (`db::planted::set`): every run on every thread of the process
//! sees the same bug, which is what `soak --planted-bug` wants. Tests that plant bugs live in
//! their own test binary (`tests/teeth.rs`) so they never leak into other tests.

/// Why a planted bug could not be switched on.
#[derive(Debug, thiserror::Error)]
pub enum PlantError {
    #[error("unknown planted bug {name:?}; known: {known}")]
    Unknown { name: String, known: String },
    #[error("planted bugs are not compiled in: build with `--features planted-bugs`")]
    NotCompiled,
}

/// The names of the planted bugs compiled in (empty without the feature).
pub fn names() -> Vec<&'static str> {
    #[cfg(feature = "planted-bugs")]
    {
        db::planted::PlantedBug::ALL
            .iter()
            .map(|b| b.name())
            .collect()
    }
    #[cfg(not(feature = "planted-bugs"))]
    {
        Vec::new()
    }
}

/// Switches the named bug on for this process (`None`: all off).
pub fn plant(name: Option<&str>) -> Result<(), PlantError> {
    #[cfg(feature = "planted-bugs")]
    {
        let bug = match name {
            None => None,
            Some(name) => Some(db::planted::PlantedBug::from_name(name).ok_or_else(|| {
                PlantError::Unknown {
                    name: name.to_string(),
                    known: names().join(", "),
                }
            })?),
        };
        db::planted::set(bug);
        Ok(())
    }
    #[cfg(not(feature = "planted-bugs"))]
    {
        match name {
            None => Ok(()),
            Some(_) => Err(PlantError::NotCompiled),
        }
    }
}
