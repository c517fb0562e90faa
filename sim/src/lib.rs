//! Deterministic simulation (lands with the simulator issue).
