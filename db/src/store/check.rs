//! `sierradb check`: verify a data directory without changing it, and repair what can be repaired.
